"""The cost of progress over the fused kernels' blocks of pairs or rows (ntkdsl.progress.pair_progress).

A 2-conv GAP CNN on 8 x 8 x 3 images (pooling: full-layout grids of 64² pixel pairs), or with
``--fcn`` a 4-layer MLP (relu, erf) on 32-dimensional inputs, N points, x with itself on
backend="numba": the best and the median of ``--repeat`` calls each without progress, with a
callable (the worker threads call ``advance`` after every block) and with a bar (written to a
throw-away stream), interleaved so that other jobs' load hits all alike; for the MLP also
"one call": each thread's rows in a single call of the compiled loops (no blocks of rows: the
kernels as they were before progress), the baseline of the blocks' cost ("paired": the median over
rounds of each round's ratio, robust to load that drifts between rounds); and the cost of
``advance`` itself times the number of blocks (the bound on what progress can add).

    python benchmarks/image_progress.py              # N = 120, 9 repeats (about a minute on 2 cores)
    python benchmarks/image_progress.py --fcn        # N = 6000, 9 repeats (about a minute on 2 cores)
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
FCN = """network mlp(input = 32) {
    dense(512, w_std = 1.4, b_std = 0.1)
    relu
    dense(512, w_std = 1.4, b_std = 0.1)
    erf
    dense(512, w_std = 1.4, b_std = 0.1)
    relu
    dense(1)
}
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fcn", action="store_true", help="the MLP (rows) instead of the CNN (pairs)")
    parser.add_argument("--n", type=int, default=None, help="points (default 120; --fcn: 6000)")
    parser.add_argument("--repeat", type=int, default=9, help="timed calls per mode (default 9)")
    args = parser.parse_args(argv)
    args.n = args.n or (6000 if args.fcn else 120)
    net = ntkdsl.loads(FCN if args.fcn else SPEC)
    x = np.random.default_rng(0).standard_normal((args.n, 32) if args.fcn else (args.n, 8, 8, 3))
    net.kernels(x, backend="numba")  # warm-up (compile or disk-cache load)
    module = net._modules["numba"]
    blocked = getattr(module, "_rows_per_block", None)
    modes = {"none": False, "callable": lambda done, total: None, "bar": True}
    if blocked is not None:
        modes = {"one call": False, **modes}
    times = {mode: [] for mode in modes}
    for _ in range(args.repeat):
        for mode, progress in modes.items():
            if blocked is not None:  # "one call": a block as large as the whole request
                module._rows_per_block = (lambda n2: 1 << 62) if mode == "one call" else blocked
            with redirect_stderr(io.StringIO()):
                start = time.perf_counter()
                net.kernels(x, backend="numba", progress=progress)
                times[mode].append(time.perf_counter() - start)
    if blocked is not None:
        module._rows_per_block = blocked
    advance, blocks = pair_progress.advance, []
    pair_progress.advance = lambda self, n: (blocks.append(n), advance(self, n))[1]  # count the blocks once
    try:
        net.kernels(x, backend="numba", progress=lambda done, total: None)
    finally:
        pair_progress.advance = advance
    pairs, unit = (args.n, "rows") if args.fcn else (args.n * (args.n + 1) // 2, "pairs")
    bar = pair_progress(lambda done, total: None, pairs, "probe", interval=0.0)
    start = time.perf_counter()
    for _ in range(10_000):
        bar.advance(0)
    per_advance = (time.perf_counter() - start) / 10_000
    print(f"N = {args.n}: {pairs} {unit} in {len(blocks)} blocks (one advance() each; redraws at most 10 a second)")
    for mode, t in times.items():
        print(f"  {mode:9s} best {min(t):.3f} s  median {statistics.median(t):.3f} s  "
              f"median/none {statistics.median(t) / statistics.median(times['none']):.3f}"
              + (f"  paired/one call {statistics.median(a / b for a, b in zip(t, times['one call'])):.3f}"
                 if "one call" in times else ""))
    print(f"  advance() costs {per_advance * 1e6:.2f} µs unthrottled (the lock, the clock, one callback): "
          f"{len(blocks) * per_advance * 1e3:.2f} ms a request at most")
    return 0


if __name__ == "__main__":
    sys.exit(main())
