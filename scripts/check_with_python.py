#!/usr/bin/env python3
"""Independent check of a latency table: time the same ONNX models with ONNX Runtime's own
Python API and compare with what `hwnas profile` recorded.

    .venv/bin/python scripts/check_with_python.py runs/latest/cpu-mbv3.csv [--ops 8] [--seed 0]

For each picked op it runs `hwnas export-op KEY --out op.onnx`, opens an InferenceSession with
the table's settings (CPU EP, 1 intra-op thread, ORT_ENABLE_ALL), and measures
  - wall: the median time of `session.run`, as a Python user would time the lone op, and
  - kernel: the median per-run sum of node kernel times from ORT's profiler, without the
    layout reorders at the graph's edges (hwnas's in-network definition, computed here anew).
It prints a Markdown table: hwnas's median_us / wall_us beside these, with relative differences.
"""
import argparse, csv, json, os, random, statistics, subprocess, sys, tempfile, time

import numpy as np
import onnxruntime as ort


def read_table(path):
    meta, rows = {}, []
    with open(path) as f:
        lines = [l for l in f]
    body = []
    for l in lines:
        if l.startswith("#"):
            k, _, v = l[1:].strip().partition(":")
            meta[k.strip()] = v.strip()
        else:
            body.append(l)
    rows = list(csv.DictReader(body))
    return meta, rows


def session(path, threads, profile):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(os.path.dirname(path), "prof")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def feeds(sess, rng):
    return {i.name: rng.uniform(-1, 1, i.shape).astype(np.float32) for i in sess.get_inputs()}


def time_wall(sess, feed, budget_s=1.0, max_runs=2000):
    for _ in range(10):
        sess.run(None, feed)
    t, start = [], time.perf_counter()
    while len(t) < 30 or (time.perf_counter() - start < budget_s and len(t) < max_runs):
        a = time.perf_counter()
        sess.run(None, feed)
        t.append((time.perf_counter() - a) * 1e6)
    return statistics.median(t), len(t)


def edge_share(sess, feed, runs=300):
    for _ in range(runs):
        sess.run(None, feed)
    events = json.load(open(sess.end_profiling()))
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("cat") == "Session" and e.get("name") == "model_run")
    per_run = [[] for _ in spans]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            for i, (s, end) in enumerate(spans):
                if s <= e["ts"] <= end:
                    per_run[i].append((e["ts"], e["dur"], e["args"]["op_name"]))
                    break
    shares = []
    for nodes in per_run[20:]:  # the first runs warm up
        nodes.sort()
        ops = [n[2] for n in nodes]
        lo, hi = 0, len(nodes)
        while lo < hi and ops[lo] == "ReorderInput":
            lo += 1
        while hi > lo and ops[hi - 1] == "ReorderOutput":
            hi -= 1
        total = sum(n[1] + 0.5 for n in nodes)
        shares.append(1 - sum(n[1] + 0.5 for n in nodes[lo:hi]) / total if total else 0.0)
    return statistics.median(shares)


def null_model_overhead(hwnas, tmp, threads, rng):
    path = os.path.join(tmp, "null.onnx")
    subprocess.run([hwnas, "export-op", "add-in:1x1x1x1", "--out", path], check=True, capture_output=True)
    s = session(path, threads, False)
    return time_wall(s, feeds(s, rng))[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table")
    ap.add_argument("--ops", type=int, default=8, help="how many ops to check (spread over the latency range)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hwnas", default="target/release/hwnas")
    args = ap.parse_args()
    meta, rows = read_table(args.table)
    threads = int(meta.get("intra_threads", "1"))
    rows.sort(key=lambda r: float(r["median_us"]))
    # Evenly spaced over the sorted latencies: small, medium and large ops.
    n = min(args.ops, len(rows))
    picked = [rows[round(i * (len(rows) - 1) / max(n - 1, 1))] for i in range(n)]
    rng = np.random.default_rng(args.seed)
    print(f"ONNX Runtime {ort.__version__} (Python), {threads} intra-op thread(s); table {args.table} "
          f"(ORT {meta.get('ort_version')}, {meta.get('cpu')})\n")
    print("| op | hwnas in-network us | python in-network us | diff | hwnas wall us | python wall us | diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    diffs_k, diffs_w, sums = [], [], [0.0, 0.0]
    with tempfile.TemporaryDirectory() as tmp:
        overhead = null_model_overhead(args.hwnas, tmp, threads, rng)
        for r in picked:
            path = os.path.join(tmp, "op.onnx")
            subprocess.run([args.hwnas, "export-op", r["key"], "--out", path], check=True, capture_output=True)
            wall, _ = time_wall(session(path, threads, False), feeds(session(path, threads, False), rng))
            ps = session(path, threads, True)
            kern = max(wall - overhead, 0.0) * (1 - edge_share(ps, feeds(ps, rng)))
            hk, hw = float(r["median_us"]), float(r["wall_us"])
            dk, dw = kern / hk - 1, wall / hw - 1
            diffs_k.append(abs(dk)); diffs_w.append(abs(dw))
            sums[0] += hk; sums[1] += kern
            print(f"| `{r['key']}` | {hk:.1f} | {kern:.1f} | {dk:+.1%} | {hw:.1f} | {wall:.1f} | {dw:+.1%} |")
    print(f"| sum of the ops above | {sums[0]:.1f} | {sums[1]:.1f} | {sums[1] / sums[0] - 1:+.1%} | | | |")
    print(f"\nmedian |diff|: in-network {statistics.median(diffs_k):.1%}, wall {statistics.median(diffs_w):.1%}; "
          f"Python's run overhead {overhead:.1f} us, hwnas's {meta.get('run_overhead_us')} us")


if __name__ == "__main__":
    sys.exit(main())
