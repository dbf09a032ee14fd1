#!/usr/bin/env bash
# Everything scripts/gpu_check.sh needs on a GPU machine that has no Rust toolchain or no
# network, built here into one folder (default .gpu-bundle, ignored by git; ~45 MB): the hwnas
# binary and the wgpu conformance tests (release, stripped) and the ONNX Runtime library.
# There: HWNAS_BUNDLE=.gpu-bundle scripts/gpu_check.sh --out DIR
#   scripts/gpu_bundle.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
dir="${1:-.gpu-bundle}"
rm -rf "$dir" && mkdir -p "$dir"
cargo build --release --quiet --bin hwnas
cp target/release/hwnas "$dir/hwnas"
tests=$(cargo test --release --quiet --no-run -p hwnas-profiler --test gpu_conformance \
    --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu_conformance" and m.get("executable"):
        print(m["executable"])')
cp "$tests" "$dir/gpu_conformance"
strip "$dir/hwnas" "$dir/gpu_conformance"
cp "$ORT_DYLIB_PATH" "$dir/"
du -sh "$dir"
