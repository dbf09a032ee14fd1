#!/usr/bin/env bash
# Run every check hwnas has: formatting, lints, unit and integration tests against the real
# ONNX Runtime, then the Python package's tests on its wheel. Installs what is missing first
# (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
bash scripts/check_sizes.sh
cargo test --workspace
bash scripts/python_package.sh --debug
HWNAS_BIN=target/debug/hwnas .venv/bin/python -m pytest -q python/tests
