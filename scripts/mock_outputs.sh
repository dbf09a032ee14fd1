#!/usr/bin/env bash
# Runs the whole pipeline on the simulated device (profile, fit, predict, search, lut export)
# with one hwnas binary and writes every output, with the fields that differ from run to run
# blanked, to OUT. `tests/cli/golden.rs` compares OUT with tests/golden/mock/, which the same
# script wrote before a refactoring: a change that should not alter behaviour must leave every
# byte as it was. Plots are left out (their drawing code is not part of that promise).
#   scripts/mock_outputs.sh target/release/hwnas /tmp/mock-out
set -euo pipefail
bin=$(realpath "$1")
out=$(realpath -m "$2")
cd "$(dirname "$0")/.."
rm -rf "$out" && mkdir -p "$out"
dev=device_profiles/mock.toml
nb_arch="|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
mb_arch="r224-d44444-k77777777777777777777-e66666666666666666666"
mb_arch2="r160-d23423-k35735735735735735735-e34634634634634634634"

run() { "$bin" "$@" >>"$out/stdout.txt" 2>/dev/null; }
for space in nb201 mbv3; do
    run profile --device "$dev" --space "$space" --out "$out/mock-$space.csv"
    run fit --table "$out/mock-$space.csv" --device "$dev" --calibrate 0 --seed 3 \
        --out "$out/mock-$space.model.json"
    run lut export --model "$out/mock-$space.model.json" --space "$space" \
        --out "$out/mock-$space.lut.json"
    run search --space "$space" --model "$out/mock-$space.model.json" --max-evaluations 400 \
        --seed 5 --out "$out/search-$space"
done
run predict --model "$out/mock-nb201.model.json" --space nb201 --arch "$nb_arch" --per-op
run predict --model "$out/mock-mbv3.model.json" --space mbv3 --arch "$mb_arch" --arch "$mb_arch2" --json
run predict --table "$out/mock-mbv3.csv" --space mbv3 --arch "$mb_arch"
rm -f "$out"/search-*/*.svg

# Blank what legitimately changes between runs: clocks, load, paths, timings.
python3 - "$(realpath "$out")" <<'EOF'
import csv, io, json, pathlib, re, sys
root = pathlib.Path(sys.argv[1])
VOLATILE = {"created", "seconds", "table", "load1", "cpu_mhz", "load_average", "tool_version",
            "cpu", "os", "logical_cpus", "elapsed_s", "fit_ms"}
def blank_json(v):
    if isinstance(v, dict):
        return {k: ("_" if k in VOLATILE else blank_json(x)) for k, x in v.items()}
    if isinstance(v, list):
        if len(v) == 2 and v[0] in VOLATILE and isinstance(v[1], str):
            return [v[0], "_"]  # a provenance pair
        return [blank_json(x) for x in v]
    return v
for p in sorted(x for x in root.rglob("*") if x.is_file()):
    p.write_text(p.read_text().replace(str(root), "OUT"))
    if p.suffix == ".json":
        p.write_text(json.dumps(blank_json(json.loads(p.read_text())), indent=1, sort_keys=True))
    elif p.suffix == ".csv":
        text = p.read_text()
        head = [l for l in text.splitlines(True) if l.startswith("#")]
        head = [re.sub(r"^# (%s): .*$" % "|".join(VOLATILE), r"# \1: _", l) for l in head]
        body = "".join(l for l in text.splitlines(True) if not l.startswith("#"))
        rows = list(csv.reader(io.StringIO(body)))
        if rows:
            cols = [i for i, c in enumerate(rows[0]) if c in VOLATILE]
            for r in rows[1:]:
                for i in cols:
                    if i < len(r):
                        r[i] = "_"
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        p.write_text("".join(head) + buf.getvalue())
    elif p.suffix == ".txt":
        t = re.sub(r"\b\d+(\.\d+)?\s*(ms|s) elapsed\b", "_ elapsed", p.read_text())
        t = re.sub(r"in \d+(\.\d+)? ?(ms|s)\b", "in _", t)
        t = re.sub(r"(\d%\s+[\d.]+)\s+[\d.]+$", r"\1 _", t, flags=re.M)  # fit times
        p.write_text(t)
EOF
