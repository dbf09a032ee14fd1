#!/usr/bin/env bash
# Profile a search space across a Slurm job array: each array task measures its shard of the
# ops (`--shard auto` reads SLURM_ARRAY_TASK_ID/MIN/MAX) on the node it runs on, into its own
# part; examples/slurm/merge.sh joins the parts once every task is done:
#
#   jid=$(sbatch --parsable examples/slurm/profile.sh)
#   sbatch --dependency=afterok:$jid examples/slurm/merge.sh
#
# The nodes should be identical (the parts are one device's table). A requeued task resumes
# its part. Override the defaults with the environment sbatch passes on:
#   HWNAS   the hwnas binary                      (default: hwnas on PATH)
#   DEVICE  the device profile                    (default: device_profiles/cpu.toml)
#   SPACE   the search space or space file        (default: mbv3)
#   PARTS   the folder the parts are written to   (default: parts)
#SBATCH --job-name=hwnas-profile
#SBATCH --array=0-7
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
set -euo pipefail
HWNAS="${HWNAS:-hwnas}"
DEVICE="${DEVICE:-device_profiles/cpu.toml}"
SPACE="${SPACE:-mbv3}"
PARTS="${PARTS:-parts}"
mkdir -p "$PARTS"
exec "$HWNAS" profile --device "$DEVICE" --space "$SPACE" --shard auto --resume \
    --out "$PARTS/$(basename "$SPACE" .toml)-$SLURM_ARRAY_TASK_ID.csv"
