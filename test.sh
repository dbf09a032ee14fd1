#!/usr/bin/env bash
# Run every check hwnas has: formatting, lints, unit and integration tests against the real
# ONNX Runtime. Installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
bash scripts/check_sizes.sh
cargo test --workspace
