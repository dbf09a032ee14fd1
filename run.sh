#!/usr/bin/env bash
# The main job: set up what is missing, profile this machine's CPU through ONNX Runtime on both
# built-in search spaces, show the latency tables, and compose the latency of a few networks. Results go to runs/latest/ (override
# with HWNAS_OUT=dir); an interrupted run continues where it stopped (delete the folder to
# measure again from scratch).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh

cargo build --release --quiet
hwnas=target/release/hwnas
out="${HWNAS_OUT:-runs/latest}"
mkdir -p "$out"

$hwnas devices
for space in nb201 mbv3; do
    echo
    echo "== profiling the $space search space on this CPU"
    $hwnas profile --device device_profiles/cpu.toml --space "$space" --out "$out/cpu-$space.csv" --resume
done
for space in nb201 mbv3; do
    echo
    $hwnas table show "$out/cpu-$space.csv"
done

echo
echo "== whole-network latency on this CPU, summed from the tables"
$hwnas predict --table "$out/cpu-nb201.csv" --space nb201 \
    --arch '|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|' \
    --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|' \
    --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|'
$hwnas predict --table "$out/cpu-mbv3.csv" --space mbv3 \
    --arch r160-d22222-k33333333333333333333-e33333333333333333333 \
    --arch r224-d44444-k77777777777777777777-e66666666666666666666
echo
echo "tables: $out/cpu-nb201.csv $out/cpu-mbv3.csv"
