"""Predictions from Python are the CLI's, to the last digit it prints."""

import json

import numpy as np
import pytest

import hwnas
from conftest import run_cli


@pytest.mark.parametrize("name", ["mbv3", "nb201"])
def test_batch_predictions_equal_the_clis(models, tmp_path, name):
    m = hwnas.LatencyModel.load(models[name])
    space = hwnas.space(name)
    archs = space.sample(300, seed=7)
    ours = m.predict_batch(name, archs)
    assert ours.shape == (300,) and ours.dtype == np.float64
    listing = tmp_path / "archs.txt"
    listing.write_text("\n".join(archs) + "\n")
    cli = run_cli("predict", "--model", models[name], "--space", name, "--archs", listing)
    rows = [line.rsplit(",", 1) for line in cli.splitlines()[1:]]
    assert [r[0].strip('"') for r in rows] == archs
    assert [r[1] for r in rows] == [f"{v:.6f}" for v in ours]
    # The genome matrix is the fast path to the same numbers.
    genomes = np.array([space.encode(a) for a in archs])
    assert np.array_equal(m.predict_batch(space, genomes), ours)


def test_one_prediction_equals_the_clis_with_its_interval(models):
    m = hwnas.LatencyModel.load(models["mbv3"])
    arch = "r224-d44444-k77777777777777777777-e66666666666666666666"
    p = m.predict("mbv3", arch)
    cli = json.loads(
        run_cli("predict", "--model", models["mbv3"], "--space", "mbv3", "--arch", arch, "--json")
    )[0]
    assert p.ms == cli["latency_us"] / 1e3
    assert (p.low_ms, p.high_ms) == (cli["low_us"] / 1e3, cli["high_us"] / 1e3)
    assert p.low_ms <= p.ms <= p.high_ms
    assert m.device == "mock"


def test_spaces_list_their_genes_and_round_trip_encodings(tmp_path):
    nb201 = hwnas.space("nb201")
    genes = nb201.genes()
    assert len(genes) == 6 and all(levels == 5 for _, levels, _, _ in genes)
    cell = nb201.sample(1, seed=3)[0]
    assert nb201.decode(nb201.encode(cell)) == cell
    mflops, mparams, memory = nb201.sizes(cell)
    assert mflops > 0 and mparams > 0 and memory > 0
    assert "nb201" in repr(nb201)


def test_errors_carry_the_clis_messages(models, tmp_path):
    m = hwnas.LatencyModel.load(models["mbv3"])
    with pytest.raises(hwnas.HwnasError, match="architecture 1: .*resolution"):
        m.predict_batch("mbv3", ["r224-d44444-k77777777777777777777-e66666666666666666666", "x-d1-k1-e1"])
    with pytest.raises(hwnas.HwnasError, match="genome 0: gene 0 is 9"):
        m.predict_batch("mbv3", np.full((1, 46), 9))
    with pytest.raises(hwnas.HwnasError, match="46 genes"):
        m.predict_batch("mbv3", np.zeros((2, 5)))
    with pytest.raises(hwnas.HwnasError, match="no-such.model.json"):
        hwnas.LatencyModel.load(tmp_path / "no-such.model.json")
    with pytest.raises(hwnas.HwnasError, match="space"):
        hwnas.space("no-such-space")


def test_tables_read_as_the_cli_reads_them_and_predict_as_predict_table(models, tmp_path):
    table_path = models["nb201"].with_suffix("").with_suffix(".csv")
    table = hwnas.LatencyTable.read(table_path)
    assert table.meta["device"] == "mock" and len(table) == 22
    lines = [l for l in table_path.read_text().splitlines() if not l.startswith("#")]
    header = lines[0].split(",")
    rows = [dict(zip(header, l.split(","))) for l in lines[1:]]
    assert table.keys() == [r["key"] for r in rows]
    assert list(table.column("median_us")) == [float(r["median_us"]) for r in rows]
    assert table[rows[0]["key"]]["flops"] == int(rows[0]["flops"])
    with pytest.raises(hwnas.HwnasError, match="no column `speed`"):
        table.column("speed")

    m = hwnas.LatencyModel.from_table(table_path)
    archs = hwnas.space("nb201").sample(50, seed=5)
    listing = tmp_path / "archs.txt"
    listing.write_text("\n".join(archs) + "\n")
    cli = run_cli("predict", "--table", table_path, "--space", "nb201", "--archs", listing)
    assert [l.rsplit(",", 1)[1] for l in cli.splitlines()[1:]] == [
        f"{v:.6f}" for v in m.predict_batch("nb201", archs)
    ]

    bad = tmp_path / "bad.csv"
    bad.write_text(table_path.read_text() + "conv-bogus,conv,1\n")
    with pytest.raises(hwnas.HwnasError, match="bad.csv"):
        hwnas.LatencyTable.read(bad)
