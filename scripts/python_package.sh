#!/usr/bin/env bash
# Builds the `hwnas` Python package (python/: PyO3 + maturin) into a wheel in target/wheels and
# installs it into ./.venv (scripts/setup.sh makes the venv and installs maturin). Cargo's
# incremental build makes a second run quick; the wheel is reinstalled every time, so the venv
# always holds what the sources say. `--debug` builds without optimisation, reusing what
# `cargo test` built (./test.sh: the tests check numbers, not speed); the default is release.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
profile=(--release)
if [[ "${1:-}" == --debug ]]; then profile=(); fi
rm -f target/wheels/hwnas-*.whl
(cd python && ../.venv/bin/maturin build "${profile[@]}" --quiet --interpreter ../.venv/bin/python --out ../target/wheels)
.venv/bin/pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels/hwnas-*.whl
echo "python package: $(.venv/bin/python -c 'import hwnas, os; print(os.path.dirname(hwnas.__file__))')" >&2
