"""predict_batch from Python: 100,000 mbv3 architectures, as encodings and as a genome matrix.

Usage: .venv/bin/python scripts/bench_python.py MODEL.model.json [--repeat 7]
Prints the rate of each run (after one warm-up that compiles the model for the space), and the
median with the spread of the runs, which is this machine's noise.
"""

import argparse
import statistics
import time

import numpy as np

import hwnas


def rates(fn, n, repeat):
    fn()  # warm-up: compiles the model for the space
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(n / (time.perf_counter() - start) / 1e6)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--count", type=int, default=100_000)
    args = ap.parse_args()
    m = hwnas.LatencyModel.load(args.model)
    space = hwnas.space("mbv3")
    archs = space.sample(args.count, seed=1)
    genomes = np.array([space.encode(a) for a in archs], dtype=np.uint8)
    assert np.array_equal(m.predict_batch(space, archs), m.predict_batch(space, genomes))
    for name, batch in [("encodings", archs), ("genome matrix", genomes)]:
        r = rates(lambda: m.predict_batch(space, batch), args.count, args.repeat)
        print(
            f"predict_batch of {args.count:,} mbv3 {name}: median {statistics.median(r):.2f} M/s "
            f"(runs {min(r):.2f}-{max(r):.2f} M/s, {args.repeat} runs)"
        )


if __name__ == "__main__":
    main()
