#!/usr/bin/env python3
"""One table of what scripts/gpu_check.sh found, as Markdown, from its output folder.

    python3 scripts/gpu_report.py DIR [BASELINE]

BASELINE: an earlier run's folder (tests/data/h200 holds one from an H200): each wgpu op kind's
time now against then.

Reads DIR/steps.tsv (each check: name, exit status or n/a, milliseconds), the latency tables
DIR/{wgpu,ort}-SPACE.csv, the validation reports DIR/*.validate.json, DIR/gpu.txt and the
conformance log. Standard library only: the GPU machine may have nothing else.
"""

import csv
import glob
import json
import os
import re
import statistics
import sys

# FP32 peak of common NVIDIA data-centre and desktop GPUs (dense, boost clock), TFLOP/s, from
# their data sheets. A GPU not listed gets no "% of peak".
FP32_PEAK_TFLOPS = [
    ("H200", 67.0),
    ("H100 PCIe", 51.2),
    ("H100", 67.0),
    ("A100", 19.5),
    ("L40S", 91.6),
    ("L4", 30.3),
    ("A10", 31.2),
    ("RTX 4090", 82.6),
    ("T4", 8.1),
]


def read_table(path):
    """The rows of an hwnas latency table and its provenance."""
    meta, lines = {}, []
    with open(path) as f:
        for line in f:
            if line.startswith("# "):
                key, _, value = line[2:].partition(": ")
                meta[key] = value.strip()
            else:
                lines.append(line)
    return list(csv.DictReader(lines)), meta


def kind(row):
    """The op kind for throughput, convolutions split by what their kernels do."""
    k, groups, cin, kernel = row["kind"], row["groups"], row["cin"], row["kernel"]
    if k == "conv":
        if groups and int(groups) > 1:
            return "conv depthwise" if groups == cin else "conv grouped"
        return "conv 1x1" if kernel == "1" else f"conv {kernel}x{kernel}"
    return k


def peak_tflops(name):
    for model, tflops in FP32_PEAK_TFLOPS:
        if model.lower() in name.lower():
            return tflops
    return None


def steps_section(folder):
    out = ["| check | result | time |", "|---|---|---|"]
    with open(os.path.join(folder, "steps.tsv")) as f:
        for name, status, ms in csv.reader(f, delimiter="\t"):
            log = os.path.join(folder, name + ".log")
            detail = ""
            if name == "conformance" and os.path.exists(log):
                passed = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", open(log).read())
                if passed:
                    ok_, bad = (sum(int(p[i]) for p in passed) for i in (0, 1))
                    detail = f": {ok_} passed, {bad} failed"
            if status == "skipped":
                result = "skipped: " + open(log).read().strip()
            elif status == "n/a":
                why = open(log).read().strip()
                if "no energy counter" in why:
                    tried = re.findall(r"(NVML|RAPL): ", why)
                    why = f"no energy counter ({' and '.join(tried)} tried; {name}.log says why)"
                result = "not here: " + why[:200]
            else:
                result = ("ok" if status == "0" else f"FAILED (exit {status})") + detail
            out.append(f"| {name} | {result} | {int(ms) / 1000:.1f} s |")
    return out


def throughput_section(folder, adapter):
    peak = peak_tflops(adapter)
    out = [
        f"Per op kind: achieved GFLOP/s (all the kind's FLOPs over all its time); wgpu's % of "
        f"the GPU's FP32 peak ({f'{peak} TFLOP/s' if peak else 'not known for this adapter'}); "
        "time of the same ops, wgpu / ORT (median of per-op ratios).",
        "",
        "| space | kind | ops | wgpu GFLOP/s | % of peak | ORT GFLOP/s | wgpu / ORT |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(glob.glob(os.path.join(folder, "wgpu-*.csv"))):
        space = os.path.basename(path)[len("wgpu-"):-len(".csv")]
        other = os.path.join(folder, f"ort-{space}.csv")
        wgpu, _ = read_table(path)
        ort = {r["key"]: r for r in read_table(other)[0]} if os.path.exists(other) else {}
        kinds = {}
        for r in wgpu:
            if float(r["median_us"]) > 0:
                kinds.setdefault(kind(r), []).append(r)
        for k, rows in sorted(kinds.items()):
            def gflops(rs):
                us = sum(float(r["median_us"]) for r in rs)
                return sum(int(r["flops"]) for r in rs) / us / 1e3 if us > 0 else 0.0
            g = gflops(rows)
            pct = f"{100 * g / 1e3 / peak:.1f}%" if peak else "-"
            both = [r for r in rows if r["key"] in ort and float(ort[r["key"]]["median_us"]) > 0]
            o = f"{gflops([ort[r['key']] for r in both]):.1f}" if both else "-"
            ratio = (
                f"{statistics.median(float(r['median_us']) / float(ort[r['key']]['median_us']) for r in both):.2f}x"
                if both else "-"
            )
            out.append(f"| {space} | {k} | {len(rows)} | {g:.1f} | {pct} | {o} | {ratio} |")
    return out if len(out) > 4 else []  # nothing measured: no empty table


def validation_section(folder):
    out = [
        "| device | space | networks | within ±10% | RMSPE | bias | Kendall tau | energy within ±10% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    reports = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.validate.json"))):
        r = json.load(open(path))
        a = r["accuracy"]
        e = r.get("energy") or {}
        energy = f"{100 * e['accuracy']['within_10']:.0f}%" if e else "-"
        name = os.path.basename(path)[: -len(".validate.json")]
        reports[name] = r
        out.append(
            f"| {r['device']} | {r['space']} | {r['samples']} | {100 * a['within_10']:.0f}% | "
            f"{100 * a['rmspe']:.1f}% | {100 * a['bias']:+.1f}% | {a['kendall_tau']:.3f} | {energy} |"
        )
    # The same held-out networks on both devices (same space, seed and calibration sample).
    for name, r in reports.items():
        if not name.startswith("wgpu-") or "ort-" + name[5:] not in reports:
            continue
        theirs = {n["arch"]: n["measured_us"] for n in reports["ort-" + name[5:]]["networks"]}
        ratios = [n["measured_us"] / theirs[n["arch"]] for n in r["networks"] if theirs.get(n["arch"])]
        if ratios:
            out.append("")
            out.append(
                f"Whole {r['space']} networks, wgpu / ORT measured time: median {statistics.median(ratios):.2f}x "
                f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x, {len(ratios)} networks)"
            )
    return out if len(out) > 2 else []  # nothing measured: no empty table


def energy_section(folder):
    path = os.path.join(folder, "energy-wgpu-nb201.csv")
    if not os.path.exists(path):
        return []
    rows, meta = read_table(path)
    with_energy = [float(r["energy_uj"]) for r in rows if r.get("energy_uj")]
    return [
        f"Energy: {len(with_energy)} of {len(rows)} nb201 ops from {meta.get('energy_counter', '?')}, "
        f"idle {meta.get('energy_idle_w', '?')} W subtracted, counter period {meta.get('energy_period_ms', '?')} ms; "
        f"one run of each op: {sum(with_energy) / 1e3:.3f} mJ in all.",
    ]


def clocks_section(folder):
    """The GPU's clocks and power through the check (`nvidia-smi dmon`, a line a second)."""
    path = os.path.join(folder, "dmon.txt")
    if not os.path.exists(path):
        return []
    columns, rows = [], []
    for line in open(path):
        fields = line.split()
        if line.startswith("# gpu"):
            columns = fields[1:]
        elif fields and not line.startswith("#") and len(fields) == len(columns):
            rows.append(dict(zip(columns, fields)))

    def values(column):
        return sorted(float(r[column]) for r in rows if r.get(column, "-").replace(".", "").isdigit())

    sm, watts = values("pclk"), values("pwr")
    if not sm or not watts:
        return []
    return [
        f"GPU through the check ({len(rows)} s): SM clock {sm[0]:.0f}-{sm[-1]:.0f} MHz "
        f"(median {statistics.median(sm):.0f}), power median {statistics.median(watts):.0f} W "
        f"(max {watts[-1]:.0f} W)."
    ]


def baseline_section(folder, baseline):
    """Per op kind, this run's wgpu time over an earlier run's (the same keys), e.g. a kernel
    change timed against the H200 run in tests/data/h200."""
    if not baseline:
        return []
    out = [
        f"Against {baseline} (wgpu, the same ops): median time now / then per kind.",
        "",
        "| space | kind | ops | now / then (median) | min | max |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted(glob.glob(os.path.join(folder, "wgpu-*.csv"))):
        name = os.path.basename(path)
        then_path = os.path.join(baseline, name)
        if not os.path.exists(then_path):
            continue
        then = {r["key"]: float(r["median_us"]) for r in read_table(then_path)[0]}
        kinds = {}
        for r in read_table(path)[0]:
            if then.get(r["key"], 0) > 0 and float(r["median_us"]) > 0:
                kinds.setdefault(kind(r), []).append(float(r["median_us"]) / then[r["key"]])
        for k, ratios in sorted(kinds.items()):
            out.append(
                f"| {name[len('wgpu-'):-len('.csv')]} | {k} | {len(ratios)} | "
                f"{statistics.median(ratios):.2f}x | {min(ratios):.2f}x | {max(ratios):.2f}x |"
            )
    return out if len(out) > 4 else [f"Against {baseline}: no wgpu table of the same space there."]


def main(folder, baseline=None):
    gpu = open(os.path.join(folder, "gpu.txt")).read().strip()
    devices = open(os.path.join(folder, "devices.log")).read() if os.path.exists(os.path.join(folder, "devices.log")) else ""
    adapters = [l.strip() for l in devices.splitlines() if re.search(r"\b(vulkan|metal|dx12|gl)\b", l)]
    adapter = " ".join(adapters[0].split()) if adapters else "?"
    ort = open(os.path.join(folder, "ort-name.txt")).read().strip() if os.path.exists(os.path.join(folder, "ort-name.txt")) else "?"
    lines = [
        "# hwnas GPU check",
        "",
        f"GPU: {gpu}. wgpu adapter: {adapter}. ONNX Runtime device: {ort}.",
        "",
    ]
    sections = (
        ("steps", lambda: steps_section(folder)),
        ("throughput", lambda: throughput_section(folder, adapter + " " + gpu)),
        ("validation", lambda: validation_section(folder)),
        ("energy", lambda: energy_section(folder)),
        ("clocks", lambda: clocks_section(folder)),
        ("baseline", lambda: baseline_section(folder, baseline)),
    )
    for name, section in sections:
        # A run cut short leaves a table half written: report what can be read.
        try:
            rows = section()
        except (OSError, ValueError, KeyError) as e:
            rows = [f"({name}: cannot be read: {e})"]
        if rows:
            lines.extend(rows + [""])
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
