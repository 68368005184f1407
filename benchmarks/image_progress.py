"""The cost of progress over the fused image kernels' blocks of pairs (ntkdsl.progress.pair_progress).

A 2-conv GAP CNN on 8 x 8 x 3 images (pooling: full-layout grids of 64² pixel pairs), N points,
x with itself on backend="numba": the best and the median of ``--repeat`` calls each without
progress, with a callable (the worker threads call ``advance`` after every block) and with a bar
(written to a throw-away stream), interleaved so that other jobs' load hits all three alike; and
the cost of ``advance`` itself times the number of blocks (the bound on what progress can add).

    python benchmarks/image_progress.py              # N = 120, 9 repeats (about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ntkdsl
from ntkdsl.progress import pair_progress

SPEC = """network cnn(input = [8, 8, 3]) {
    conv(16, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1)
    relu
    conv(16, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1)
    relu
    global_avg_pool
    dense(1)
}
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=120, help="points (default 120)")
    parser.add_argument("--repeat", type=int, default=9, help="timed calls per mode (default 9)")
    args = parser.parse_args(argv)
    net = ntkdsl.loads(SPEC)
    x = np.random.default_rng(0).standard_normal((args.n, 8, 8, 3))
    net.kernels(x, backend="numba")  # warm-up (compile or disk-cache load)
    modes = {"none": False, "callable": lambda done, total: None, "bar": True}
    times = {mode: [] for mode in modes}
    for _ in range(args.repeat):
        for mode, progress in modes.items():
            with redirect_stderr(io.StringIO()):
                start = time.perf_counter()
                net.kernels(x, backend="numba", progress=progress)
                times[mode].append(time.perf_counter() - start)
    advance, blocks = pair_progress.advance, []
    pair_progress.advance = lambda self, n: (blocks.append(n), advance(self, n))[1]  # count the blocks once
    try:
        net.kernels(x, backend="numba", progress=lambda done, total: None)
    finally:
        pair_progress.advance = advance
    pairs = args.n * (args.n + 1) // 2
    bar = pair_progress(lambda done, total: None, pairs, "probe", interval=0.0)
    start = time.perf_counter()
    for _ in range(10_000):
        bar.advance(0)
    per_advance = (time.perf_counter() - start) / 10_000
    print(f"N = {args.n}: {pairs} pairs in {len(blocks)} blocks (one advance() each; redraws at most 10 a second)")
    for mode, t in times.items():
        print(f"  {mode:9s} best {min(t):.3f} s  median {statistics.median(t):.3f} s  "
              f"median/none {statistics.median(t) / statistics.median(times['none']):.3f}")
    print(f"  advance() costs {per_advance * 1e6:.2f} µs unthrottled (the lock, the clock, one callback): "
          f"{len(blocks) * per_advance * 1e3:.2f} ms a request at most")
    return 0


if __name__ == "__main__":
    sys.exit(main())
