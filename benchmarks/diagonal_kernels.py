"""Σ(x, x) and Θ(x, x) per point: ``net.kernels(x, diagonal=True)`` against the diagonal of the full
self-kernel, and a flow's ensemble variances (compute_cov=False) that use it, in the same run.

    python benchmarks/diagonal_kernels.py                      # examples/mlp.ntk, N_test = 2000 and 6000
    python benchmarks/diagonal_kernels.py --n-test 2000 8000 --n-train 500

Peak memory is tracemalloc's (NumPy reports its array allocations to it), time the best of 3 calls
(after a warm-up call that loads the modules). "full" is what the flow did before: the (N_test,
N_test) test kernel on the NumPy backend, then its diagonal; "diagonal" is kernels(x, diagonal=True).
The ensemble rows time KernelFlow.ensemble(x_test, t, compute_cov=False) of a network flow (now
the diagonal) against the same flow given the full test kernel's blocks (TestKernels: the earlier
path's arrays); both evaluate their test blocks, K(x*, X) included, in every call, on the default
backend ("auto": the fused numba kernels for the large blocks where numba is installed).
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np

import ntkdsl
from ntkdsl.flow import KernelFlow, TestKernels

SPEC = Path(__file__).resolve().parents[1] / "examples" / "mlp.ntk"


def measure(fn, repeats: int = 3):
    """(peak bytes of one call under tracemalloc, best seconds of ``repeats`` untraced calls)."""
    fn()  # warm-up: modules loaded, caches filled
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    best = min(_seconds(fn) for _ in range(repeats))
    return peak, best


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def row(label: str, full, diagonal) -> None:
    print(f"{label:<34} full {full[0] / 1e6:9.1f} MB {full[1]:8.3f} s | diagonal {diagonal[0] / 1e6:7.2f} MB "
          f"{diagonal[1]:8.4f} s | memory {full[0] / max(diagonal[0], 1):7.0f}x less, time {full[1] / diagonal[1]:6.0f}x less")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-test", type=int, nargs="+", default=[2000, 6000])
    p.add_argument("--n-train", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    net = ntkdsl.load(SPEC)
    rng = np.random.default_rng(args.seed)
    d = net.ir.input_dim
    x = rng.normal(size=(args.n_train, d))
    y = np.sin(x[:, :2])
    print(f"{SPEC.name}: input {d}, N_train = {args.n_train}, {os.cpu_count()} CPUs, NumPy backend")
    flow = KernelFlow(net, x, y, learning_rate=0.5)
    k = net.kernels(x)
    given = KernelFlow.from_kernels(k.ntk, y, k.nngp, learning_rate=0.5)
    for n in args.n_test:
        xt = rng.normal(size=(n, d))
        full = measure(lambda: net.kernels(xt, backend="numpy").nngp.diagonal().copy())
        diagonal = measure(lambda: net.kernels(xt, backend="numpy", diagonal=True).nngp)
        row(f"Σ(x*, x*) diagonal, N_test = {n}", full, diagonal)

        def before():  # the test blocks evaluated in the call, as the network flow's are
            kt = net.kernels(xt, x)
            return given.ensemble(TestKernels(kt.ntk, kt.nngp, net.kernels(xt).nngp), 1.0, compute_cov=False)

        def after():
            flow._network._cache = (None, None, None)  # every call evaluates its test kernels, as before() does
            return flow.ensemble(xt, 1.0, compute_cov=False)

        assert np.array_equal(before()[1], after()[1])  # the same variances
        row(f"ensemble variances, N_test = {n}", measure(before), measure(after))


if __name__ == "__main__":
    main()
