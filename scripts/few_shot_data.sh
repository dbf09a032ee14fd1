#!/usr/bin/env bash
# Writes tests/data/few_shot/: this machine's CPU timed as a device that is only timed whole
# (400 nb201 and 400 mbv3 networks end to end, 60 of each a second time for the noise floor),
# and the op tables used as priors (the CPU's own at fp32, at int8, and through OpenVINO's EP).
# tests/few_shot.rs reads them; run this only to re-measure on another machine (~15 min).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release -q
hwnas=target/release/hwnas
out=tests/data/few_shot
mkdir -p "$out"
for space in nb201 mbv3; do
    $hwnas profile --device device_profiles/cpu.toml --space $space --out "$out/cpu-$space.csv" --resume
    $hwnas profile --device device_profiles/cpu.toml --space $space --precision int8 \
        --out "$out/cpu-$space-int8.csv" --resume
    $hwnas profile --device device_profiles/openvino-cpu.toml --space $space \
        --out "$out/openvino-$space.csv" --resume
done
for space in nb201 mbv3; do
    $hwnas measure --device device_profiles/cpu.toml --space $space --samples 400 --seed 1 \
        --out "$out/cpu-$space-networks.csv"
    # The same seed's first 60, again: how far two timings of one network lie apart.
    $hwnas measure --device device_profiles/cpu.toml --space $space --samples 60 --seed 1 \
        --out "$out/cpu-$space-networks-again.csv"
done
