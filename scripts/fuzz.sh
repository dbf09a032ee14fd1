#!/usr/bin/env bash
# Fuzz every parser for a bounded time: ./scripts/fuzz.sh [SECONDS per target, default 60].
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); installs cargo-fuzz from
# crates.io if it is missing. Seeds come from the project's own files (device profiles, a table,
# generated ONNX models, op keys). A crash stops the run with the input saved under
# fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/ so the stable test suite replays
# it forever (profiler/tests/fuzz_regressions.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || { echo "fuzz: needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }

corpus=fuzz/corpus
mkdir -p "$corpus"/{onnx,latency_table,device_profile,op_key,latency_model,space_file}
cp spaces/*.toml "$corpus/space_file/"
cp device_profiles/*.toml "$corpus/device_profile/"
cargo run --quiet --release -- space ops --space nb201 --keys | head -40 | split -l 1 - "$corpus/op_key/key-"
for family in resnet18 mobilenetv3 shufflenetv2; do
    cargo run --quiet --release -- export --family "$family" --resolution 32 --out "$corpus/onnx/$family.onnx" >/dev/null
done
cargo run --quiet --release -- profile --device device_profiles/mock.toml --space nb201 --out "$corpus/latency_table/mock.csv" >/dev/null
cargo run --quiet --release -- fit --table "$corpus/latency_table/mock.csv" --calibrate 0 --out "$corpus/latency_model/mock.model.json" >/dev/null

cd fuzz
for target in onnx latency_table device_profile op_key latency_model space_file; do
    echo "== fuzzing $target for ${seconds}s"
    cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536
done
