"""Fixtures: the hwnas binary (the CLI the package must agree with) and mock-device models.

The mock device is deterministic and needs no hardware: `hwnas profile --device
device_profiles/mock.toml` then `hwnas fit`, as the CLI tests make theirs.
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NB201_ACCURACY = ROOT.parent / "shared" / "data" / "nb201" / "cifar10_test_acc.csv"


def hwnas_binary() -> Path:
    given = os.environ.get("HWNAS_BIN")
    for path in [given] if given else [ROOT / "target/debug/hwnas", ROOT / "target/release/hwnas"]:
        if path and Path(path).exists():
            return Path(path)
    raise RuntimeError("no hwnas binary: build it (cargo build) or set HWNAS_BIN")


def run_cli(*args: str) -> str:
    out = subprocess.run(
        [str(hwnas_binary()), *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, f"hwnas {args}: {out.stderr}"
    return out.stdout


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict:
    """`{"nb201": path, "mbv3": path}`: mock-device models fitted without calibration."""
    d = tmp_path_factory.mktemp("models")
    out = {}
    for space in ["nb201", "mbv3"]:
        table, model = d / f"{space}.csv", d / f"{space}.model.json"
        run_cli("profile", "--device", "device_profiles/mock.toml", "--space", space, "--out", table)
        run_cli("fit", "--table", table, "--out", model, "--calibrate", "0")
        out[space] = model
    return out


@pytest.fixture(scope="session")
def nb201_accuracy() -> dict:
    """NAS-Bench-201's CIFAR-10 accuracy of every cell (the shared data set)."""
    assert NB201_ACCURACY.exists(), f"{NB201_ACCURACY} (the shared NAS-Bench-201 data) is missing"
    rows = NB201_ACCURACY.read_text().splitlines()[1:]
    return {r.split(",")[1]: float(r.split(",")[2]) for r in rows}
