"""`hwnas.Search`: ask/tell gives the CLI's front, and a killed search resumes to the same one."""

import json
import subprocess
import sys
import textwrap

import pytest

import hwnas
from conftest import NB201_ACCURACY, ROOT, run_cli

SETTINGS = dict(objectives=["accuracy", "latency"], seed=3, max_evaluations=300, population=30)


def drive(search, accuracy):
    """Answers every ask from the table; the number of batches."""
    batches = 0
    while not search.done():
        archs = search.ask()
        search.tell(archs, [accuracy[a] for a in archs])
        batches += 1
    return batches


def test_ask_tell_finds_the_front_the_cli_writes(models, nb201_accuracy, tmp_path):
    search = hwnas.Search("nb201", models=[hwnas.LatencyModel.load(models["nb201"])], **SETTINGS)
    assert search.front() is None
    assert drive(search, nb201_accuracy) == 10
    assert len(search.told()) == 300
    run_cli(
        "search", "--space", "nb201", "--model", models["nb201"], "--accuracy",
        f"table:{NB201_ACCURACY}", "--objectives", "accuracy,latency", "--seed", "3",
        "--max-evaluations", "300", "--population", "30", "--out", tmp_path / "cli",
    )
    cli = json.loads((tmp_path / "cli" / "front.json").read_text())["front"]
    assert search.front() == cli
    search.save(tmp_path / "py")
    assert (tmp_path / "py" / "front.csv").read_text() == (tmp_path / "cli" / "front.csv").read_text()


def test_an_accuracy_spec_runs_the_search_on_its_own(models):
    search = hwnas.Search(
        "nb201", models=[models["nb201"]], accuracy=f"table:{NB201_ACCURACY}", **SETTINGS
    )
    assert search.ask() == [] and search.done()
    assert len(search.front()) > 3
    # A latency table as the model (`LatencyModel.from_table`).
    table = hwnas.LatencyModel.from_table(models["nb201"].with_suffix("").with_suffix(".csv"))
    search = hwnas.Search("nb201", models=[table], accuracy=f"table:{NB201_ACCURACY}", **SETTINGS)
    assert search.done()
    assert all("mock" in m["latency"] for m in search.front())


def test_a_killed_search_resumes_from_its_state_to_the_same_front(models, nb201_accuracy, tmp_path):
    straight = hwnas.Search("nb201", models=[models["nb201"]], **SETTINGS)
    drive(straight, nb201_accuracy)

    state = tmp_path / "run" / "state.json"  # its folder is made
    # A separate process, killed (SIGKILL) right after its fourth tell.
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT / "python" / "tests")!r})
        import hwnas
        accuracy = {{l.split(",")[1]: float(l.split(",")[2])
                    for l in open({str(NB201_ACCURACY)!r}).read().splitlines()[1:]}}
        s = hwnas.Search("nb201", models=[{str(models["nb201"])!r}], state={str(state)!r}, **{SETTINGS!r})
        for n in range(1, 100):
            archs = s.ask()
            s.tell(archs, [accuracy[a] for a in archs])
            if n == 4:
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert len(json.loads(state.read_text())["accuracies"]) == 120

    resumed = hwnas.Search("nb201", models=[models["nb201"]], state=state, **SETTINGS)
    assert len(resumed.told()) == 120
    assert drive(resumed, nb201_accuracy) == 6
    assert resumed.front() == straight.front()

    with pytest.raises(hwnas.HwnasError, match="holds another search"):
        hwnas.Search("nb201", models=[models["nb201"]], state=state, **{**SETTINGS, "seed": 4})


def test_tell_checks_what_it_is_told(models):
    search = hwnas.Search("nb201", models=[models["nb201"]], **SETTINGS)
    archs = search.ask()
    assert search.ask() == archs
    with pytest.raises(hwnas.HwnasError, match="asked for and not told"):
        search.tell(archs[:-1], [90.0] * (len(archs) - 1))
    with pytest.raises(hwnas.HwnasError, match="finite"):
        search.tell(archs, [float("nan")] * len(archs))
    with pytest.raises(hwnas.HwnasError, match="unknown `speed`"):
        hwnas.Search("nb201", objectives="accuracy,speed")
    with pytest.raises(hwnas.HwnasError, match="nsga2 or random"):
        hwnas.Search("nb201", strategy="annealing", objectives="accuracy,mflops")


def test_screening_is_on_by_default_and_can_be_switched_off(models, tmp_path):
    screened = {}
    for flag in (True, False):
        search = hwnas.Search("mbv3", models=[models["mbv3"]], accuracy="proxy", screening=flag, **SETTINGS)
        assert search.done()
        search.save(tmp_path / str(flag))
        rows = (tmp_path / str(flag) / "history.csv").read_text().splitlines()
        assert rows[0] == "generation,evaluations,front,hypervolume,screened"
        screened[flag] = [int(r.split(",")[-1]) for r in rows[1:]]
    # From the second generation on, at least the floor share (a tenth of 30) is the model's.
    assert all(s >= 3 for s in screened[True][1:]), screened[True]
    assert not any(screened[False])


def test_energy_is_an_objective_and_a_bound_as_in_the_cli(models, tmp_path):
    # A table with energy, as `profile --energy` writes one (the mock device has no counter:
    # each op is given 12.5 µJ per µs of its latency, plus 40 µJ for conv ops, so energy and
    # latency do not rank networks alike).
    lines = models["nb201"].with_suffix("").with_suffix(".csv").read_text().splitlines()
    header = next(i for i, l in enumerate(lines) if not l.startswith("#"))
    columns = lines[header].split(",")
    at = {c: columns.index(c) for c in ("median_us", "wall_us", "kind", "energy_uj", "energy_spread")}
    rows = []
    for line in lines[header + 1:]:
        cells = line.split(",")
        uj = 12.5 * float(cells[at["median_us"]]) + (40.0 if cells[at["kind"]] == "conv" else 0.0)
        cells[at["energy_uj"]], cells[at["energy_spread"]] = f"{uj}", "0.01"
        rows.append(",".join(cells))
    table, model = tmp_path / "energy.csv", tmp_path / "energy.model.json"
    table.write_text("\n".join(lines[:header] + ["# energy_counter: simulated (test)", lines[header]] + rows) + "\n")
    run_cli("fit", "--table", table, "--out", model, "--calibrate", "0")

    # Bounded at the median energy of the unbounded front.
    cli = ["search", "--space", "nb201", "--model", model, "--accuracy", f"table:{NB201_ACCURACY}",
           "--objectives", "accuracy,latency,energy", "--seed", "3", "--max-evaluations", "300",
           "--population", "30"]
    run_cli(*cli, "--out", tmp_path / "free")
    free = json.loads((tmp_path / "free" / "front.json").read_text())["front"]
    bound = sorted(m["energy_mj"]["mock"] for m in free)[len(free) // 2]
    run_cli(*cli, "--max-energy-mj", bound, "--out", tmp_path / "cli")

    settings = dict(
        objectives=["accuracy", "latency", "energy"], seed=3, max_evaluations=300, population=30,
        accuracy=f"table:{NB201_ACCURACY}", max_energy_mj=bound,
    )
    search = hwnas.Search("nb201", models=[model], **settings)
    assert search.ask() == [] and search.done()
    front = search.front()
    assert front and all(0 < m["energy_mj"]["mock"] <= bound for m in front)
    assert front == json.loads((tmp_path / "cli" / "front.json").read_text())["front"]
    with pytest.raises(Exception, match="profiled with --energy"):
        hwnas.Search("nb201", models=[models["nb201"]], **settings)
