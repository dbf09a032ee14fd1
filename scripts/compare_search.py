#!/usr/bin/env python3
"""hwnas's search against pymoo's NSGA-II, side by side in one sitting, on the same evaluations.

  nb201: NAS-Bench-201's CIFAR-10 accuracies (../shared/data) and a latency for every cell
         predicted by an hwnas model (`hwnas predict --all`); pymoo runs through the shared
         anchor (`../shared/anchors/pymoo_nsga2_nb201.py`, imported, so its own set-up, HV and
         reference point), hwnas through `hwnas search --latency table:` on the same file.
         Gap = 1 - HV/HV(exhaustive front), the anchor's definition.
  SPACE  (mbv3 or a space file): maximise MFLOPs (the accuracy proxy) and minimise predicted
         latency; pymoo evaluates through `hwnas predict --archs -` (the same model, the same
         numbers), with the anchor's NSGA-II set-up. No exhaustive front: gaps are against the
         best front any run found, pooled, with the reference point at the pooled worst.

hwnas runs as it comes, and without its surrogate screening, its local search, and both.
Per run also EvoXBench's indicators against that reference front: normalised HV and IGD+.
Writes SUMMARY.json and prints a markdown table.

  python3 scripts/compare_search.py nb201 --model cpu-nb201.model.json --seeds 20 --out cmp
  python3 scripts/compare_search.py mbv3 --model cpu-mbv3.model.json --seeds 20 --out cmp-mbv3
"""
import argparse
import csv
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = ROOT.parent / "shared" / "anchors"
ACC = ROOT.parent / "shared" / "data" / "nb201" / "cifar10_test_acc.csv"


def anchor():
    spec = importlib.util.spec_from_file_location("anchor", ANCHORS / "pymoo_nsga2_nb201.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# The anchor's own exact 2-D hypervolume scores every run, pymoo's and hwnas's, on any space.
ANCHOR = anchor()
hv2d = ANCHOR.hv2d


def front_of(F):
    """Non-dominated rows of a 2-D F (minimisation), duplicates once: a sweep by the first."""
    F = np.unique(np.asarray(F, dtype=float), axis=0)  # sorted by f0, then f1
    keep, best = [], np.inf
    for i, (_, f1) in enumerate(F):
        if f1 < best:
            keep.append(i)
            best = f1
    return F[keep]


def evoxbench(F, ref_front):
    """EvoXBench's normalised HV and IGD+ of F against ref_front (both minimised, 2-D)."""
    lo, hi = ref_front.min(axis=0), ref_front.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    n = lambda X: (np.asarray(X) - lo) / span
    r = 1.0 + 1.0 / max(1, len(ref_front) - 1)
    hv = lambda X: hv2d(n(X), np.array([r, r]))
    igd = np.mean([np.min(np.sqrt(np.sum(np.maximum(n(F) - z, 0) ** 2, axis=1))) for z in n(ref_front)])
    return hv(F) / hv(ref_front), float(igd)


def hwnas_runs(a, space, extra, seeds, out, label):
    runs = []
    for s in seeds:
        d = out / label / str(s)
        cmd = [a.hwnas, "search", "--space", space, "--max-evaluations", str(a.budget),
               "--seed", str(s), "--out", str(d)] + extra
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        report = json.loads((d / "front.json").read_text())
        F = np.array([m["minimised"] for m in report["front"]])
        runs.append({"seed": s, "front": F, "wall": report["seconds"], "evals": report["evaluations"]})
    return runs


# hwnas's search as it comes, then with each of its two additions to NSGA-II switched off, then
# plain NSGA-II (Deb et al. 2002): what each addition is worth, on the same seeds.
VARIANTS = {
    "hwnas nsga2 (default)": [],
    "hwnas nsga2 --no-screening": ["--no-screening"],
    "hwnas nsga2 --no-local-search": ["--no-local-search"],
    "hwnas plain NSGA-II (--no-screening --no-local-search)": ["--no-screening", "--no-local-search"],
}


def hwnas_variants(a, space, common, seeds, out):
    return {name: hwnas_runs(a, space, common + extra, seeds, out, f"hwnas-{k}")
            for k, (name, extra) in enumerate(VARIANTS.items())}


def nb201(a, out):
    mod = ANCHOR
    lat_arch = out / "latency.csv"
    with open(lat_arch, "w") as f:
        subprocess.run([a.hwnas, "predict", "--model", a.model, "--space", "nb201", "--all"],
                       check=True, stdout=f)
    by_arch = {r["arch"]: r["latency_ms"] for r in csv.DictReader(open(lat_arch))}
    lat_idx = out / "latency_by_index.csv"
    with open(lat_idx, "w") as f:
        f.write("arch_index,latency_ms\n")
        for r in csv.DictReader(open(ACC)):
            f.write(f"{r['arch_index']},{by_arch[r['arch_string']]}\n")
    genes, acc, code2idx, lats = mod.load(str(ACC), str(lat_idx))
    lat = lats["latency_ms"]
    F_all = np.column_stack([-acc, lat])
    ref = np.array([-acc.min(), 1.1 * lat.max()])
    truth = F_all[mod.front_mask(F_all)]
    hv_true = mod.hv2d(F_all, ref)
    seeds = list(range(a.seeds))
    methods = {}
    rows = []
    for s in seeds:
        ev, _, wall = mod.run_nsga2(code2idx, acc, lat, 50, s, a.budget)
        rows.append({"seed": s, "front": front_of(F_all[np.unique(ev[: a.budget])]), "wall": wall,
                     "evals": len(ev)})
    methods["pymoo NSGA-II (pop 50)"] = rows
    common = ["--accuracy", f"table:{ACC}", "--latency", f"table:{lat_arch}"]
    methods.update(hwnas_variants(a, "nb201", common, seeds, out))
    gap = lambda F: 1.0 - mod.hv2d(F, ref) / hv_true
    return summarise(methods, truth, gap, "exhaustive front")


def other_space(a, out):
    genes = list(csv.DictReader(subprocess.run(
        [a.hwnas, "space", "genes", "--space", a.space], check=True, capture_output=True,
        text=True).stdout.splitlines()))
    levels = np.array([int(g["levels"]) for g in genes])
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize
    from pymoo.termination import get_termination

    predictor = subprocess.Popen(
        [a.hwnas, "predict", "--model", a.model, "--space", a.space, "--archs", "-", "--sizes"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    predictor.stdout.readline()  # header

    class Space(Problem):
        def __init__(self):
            super().__init__(n_var=len(levels), n_obj=2, xl=0, xu=levels - 1, vtype=int)
            self.seen = []

        def _evaluate(self, X, out, *args, **kwargs):
            F = []
            for x in np.asarray(X, dtype=int):
                predictor.stdin.write(",".join(map(str, x)) + "\n")
                predictor.stdin.flush()
                row = next(csv.reader([predictor.stdout.readline()]))
                F.append([-float(row[2]), float(row[1])])
            self.seen.extend(F)
            out["F"] = np.array(F)

    seeds = list(range(a.seeds))
    rows = []
    for s in seeds:
        prob = Space()
        t0 = time.perf_counter()
        algo = NSGA2(pop_size=50, sampling=IntegerRandomSampling(),
                     crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                     mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                     eliminate_duplicates=True)
        minimize(prob, algo, get_termination("n_eval", a.budget), seed=s, verbose=False)
        rows.append({"seed": s, "front": front_of(prob.seen[: a.budget]),
                     "wall": time.perf_counter() - t0, "evals": len(prob.seen)})
    predictor.stdin.close()
    predictor.wait()
    methods = {"pymoo NSGA-II (pop 50)": rows}
    common = ["--model", a.model, "--accuracy", "proxy"]
    methods.update(hwnas_variants(a, a.space, common, seeds, out))
    pooled = front_of(np.vstack([r["front"] for rs in methods.values() for r in rs]))
    everything = np.vstack([r["front"] for rs in methods.values() for r in rs])
    ref = everything.max(axis=0) + 0.1 * (everything.max(axis=0) - everything.min(axis=0))
    gap = lambda F: 1.0 - hv2d(F, ref) / hv2d(pooled, ref)
    return summarise(methods, pooled, gap, "pooled best front")


def summarise(methods, ref_front, gap, basis):
    out = {"basis": basis, "reference_front": len(ref_front), "methods": {}}
    for name, rows in methods.items():
        gaps = [gap(r["front"]) for r in rows]
        ev = [evoxbench(r["front"], ref_front) for r in rows]
        out["methods"][name] = {
            "gap_median": statistics.median(gaps), "gap_worst": max(gaps), "gap_best": min(gaps),
            "gaps": gaps,
            "normalised_hv_median": statistics.median(e[0] for e in ev),
            "igd_plus_median": statistics.median(e[1] for e in ev),
            "wall_ms_median": 1e3 * statistics.median(r["wall"] for r in rows),
            "evaluations": sorted({r["evals"] for r in rows}),
        }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("space", help="nb201, mbv3 or a space file")
    ap.add_argument("--model", required=True, help="an hwnas latency model of the space")
    ap.add_argument("--hwnas", default=str(ROOT / "target" / "release" / "hwnas"))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--out", default="compare-search")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = nb201(a, out) if a.space == "nb201" else other_space(a, out)
    summary.update(space=a.space, seeds=a.seeds, budget=a.budget)
    (out / "SUMMARY.json").write_text(json.dumps(summary, indent=1))
    print(f"{a.space}, {a.budget} evaluations, {a.seeds} seeds; gap = 1 - HV/HV({summary['basis']}, "
          f"{summary['reference_front']} points)")
    print("| method | gap median | gap worst | gap best | normalised HV (median) | IGD+ (median) | wall per run |")
    print("|---|---|---|---|---|---|---|")
    for name, m in summary["methods"].items():
        print(f"| {name} | {m['gap_median']:.5f} | {m['gap_worst']:.5f} | {m['gap_best']:.5f} | "
              f"{m['normalised_hv_median']:.4f} | {m['igd_plus_median']:.4f} | {m['wall_ms_median']:.1f} ms |")
    print(f"wrote {out / 'SUMMARY.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
