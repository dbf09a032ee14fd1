"""Models from whole-network timings, from Python: the CLI's fit, intervals and suggestions."""

import csv

import numpy as np
import pytest

import hwnas
from conftest import ROOT, run_cli

TIMINGS = ROOT / "tests" / "data" / "few_shot" / "cpu-nb201-networks.csv"


def timings(n: int) -> tuple[list[str], list[float]]:
    """The first `n` of this CPU's committed nb201 timings."""
    rows = [r for r in TIMINGS.read_text().splitlines() if not r.startswith("#")]
    data = list(csv.DictReader(rows))[:n]
    return [r["arch"] for r in data], [float(r["latency_ms"]) for r in data]


def test_a_fit_to_timings_equals_the_clis(tmp_path):
    archs, ms = timings(30)
    train = tmp_path / "train.csv"
    train.write_text("arch,latency_ms\n" + "".join(f'"{a}",{v}\n' for a, v in zip(archs, ms)))
    cli_model = tmp_path / "cli.model.json"
    run_cli("fit", "--space", "nb201", "--networks", train, "--name", "pixel", "--out", cli_model)
    ours = hwnas.LatencyModel.roofline("pixel").fit_networks("nb201", archs, ms, device="pixel")
    assert ours.device == "pixel" and ours.held_out_errors.shape == (30,)
    theirs = hwnas.LatencyModel.load(cli_model)
    probe = hwnas.space("nb201").sample(50, seed=3)
    assert np.array_equal(ours.predict_batch("nb201", probe), theirs.predict_batch("nb201", probe))
    p = ours.predict("nb201", probe[0])
    assert p.low_ms < p.ms < p.high_ms
    ours.save(tmp_path / "py.model.json")
    assert hwnas.LatencyModel.load(tmp_path / "py.model.json").predict("nb201", probe[0]) == p

    candidates = tmp_path / "candidates.txt"
    candidates.write_text("\n".join(probe) + "\n")
    cli = run_cli(
        "fit", "--space", "nb201", "--networks", train, "--suggest", "4", "--candidates", candidates
    ).split()
    assert ours.suggest("nb201", probe, 4) == cli
    assert not set(cli) & set(archs), "a timed network is never suggested again"


def test_held_out_errors_point_at_a_disturbed_timing():
    archs, ms = timings(25)
    ms[7] *= 1.6
    model = hwnas.LatencyModel.roofline().fit_networks("nb201", archs, ms)
    assert int(np.argmax(np.abs(model.held_out_errors))) == 7


def test_bad_timings_are_hwnas_errors():
    archs, ms = timings(5)
    roofline = hwnas.LatencyModel.roofline()
    with pytest.raises(hwnas.HwnasError, match="5 architectures but 4 latencies"):
        roofline.fit_networks("nb201", archs, ms[:4])
    with pytest.raises(hwnas.HwnasError, match="positive"):
        roofline.fit_networks("nb201", archs, [-1.0] + ms[1:])
    with pytest.raises(hwnas.HwnasError, match="twice"):
        roofline.fit_networks("nb201", [archs[0]] + archs[:4], ms)
    with pytest.raises(hwnas.HwnasError, match="at least 3"):
        roofline.fit_networks("nb201", archs[:2], ms[:2])
    with pytest.raises(hwnas.HwnasError, match="invalid nb201 architecture"):
        roofline.fit_networks("nb201", ["conv"] + archs[1:], ms)
