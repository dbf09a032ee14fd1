#!/usr/bin/env bash
# Join the parts examples/slurm/profile.sh wrote into one table, and check it: `table merge`
# fails when a shard is missing, when two parts were measured differently (another device,
# other settings) or when an op appears twice; `table check` when provenance is missing or a
# row is noisy. Same environment as profile.sh; OUT is the merged table (default SPACE.csv).
#SBATCH --job-name=hwnas-merge
#SBATCH --ntasks=1
set -euo pipefail
HWNAS="${HWNAS:-hwnas}"
SPACE="${SPACE:-mbv3}"
PARTS="${PARTS:-parts}"
name="$(basename "$SPACE" .toml)"
OUT="${OUT:-$name.csv}"
"$HWNAS" table merge "$PARTS/$name"-*.csv --out "$OUT"
"$HWNAS" table check "$OUT"
