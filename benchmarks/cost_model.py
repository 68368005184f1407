"""The static cost model of ``ntkdsl check`` (ntkdsl/codegen/cost.py) against real runs on this machine.

    python benchmarks/cost_model.py            # per-operation costs, then estimate vs measured
    python benchmarks/cost_model.py --quick    # fewer sizes

Part 1 measures per-operation costs in a hot loop: the input Gram matrix's flop rate, one
arithmetic pass and one transcendental function per array entry (ntkdsl/codegen/cost.py's constants are the
effective costs fitted on part 2's runs: the evaluator's passes write fresh arrays, page faults
included, so an arithmetic pass costs it several times the hot-loop figure). Part 2 evaluates a set
of networks at a few sizes (NumPy evaluator, and the fused numba kernels where they apply; compile
excluded, best of two) and prints the measured time and peak memory (tracemalloc) against the
static estimates, as ratios.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np

import ntkdsl
from ntkdsl.codegen import cost
from ntkdsl.codegen.fused import fusable

NETWORKS = {
    "mlp": "network n(input = 784) { repeat 3 { dense(512, w_std = 1.5, b_std = 0.1); relu }; dense(10) }",
    "erf-d5": "network n(input = 64) { repeat 5 { dense(256, w_std = 1.5, b_std = 0.1); erf }; dense(1) }",
    "relu-d20": "network n(input = 64) { repeat 20 { dense(256, w_std = 1.4, b_std = 0.1); relu }; dense(1) }",
    "gelu": "network n(input = 32) { dense(64); gelu; dense(64); gelu; dense(1) }",
    "residual": "network n(input = 16) { dense(32); repeat 3 { residual { relu; dense(32) } }; dense(1) }",
    "cnn-gap-8x8": "network n(input = [8, 8, 3]) { conv(16, kernel = 3, padding = same); relu; "
                   "conv(16, kernel = 3, padding = same); relu; global_avg_pool; dense(1) }",
    "cnn-flat-8x8": "network n(input = [8, 8, 3]) { conv(16, kernel = 3, padding = same); relu; "
                    "conv(16, kernel = 3, padding = same); relu; flatten; dense(1) }",
}


def best(fn, repeat=3) -> float:
    out = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - start)
    return out


def constants() -> None:
    a, b = np.random.rand(2, 4_000_000)
    x = np.random.rand(2000, 784)
    rate = 2 * 2000 * 2000 * 784 / best(lambda: x @ x.T)
    print(f"gemm: {rate / 1e9:.1f} Gflop/s (model {cost.GEMM_FLOPS / 1e9:.0f})")
    print(f"arithmetic pass: {best(lambda: a * b) / a.size * 1e9:.2f} ns/entry (model {cost.NS_PER_OP})")
    print(f"arctan2: {best(lambda: np.arctan2(a, b)) / a.size * 1e9:.2f} ns/entry (model {cost.NS_PER_TRANSCENDENTAL})")


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def compare(quick: bool) -> None:
    print(f"{'network':14s} {'backend':7s} {'N':>5s} {'measured':>10s} {'estimate':>10s} {'ratio':>6s}   "
          f"{'peak MB':>8s} {'model MB':>8s} {'ratio':>6s}")
    for name, spec in NETWORKS.items():
        net = ntkdsl.loads(spec)
        image = len(net.ir.input_shape) > 1
        sizes = ((16, 32) if quick else (16, 32, 64)) if image else ((300, 1000) if quick else (300, 1000, 2000))
        backends = ["numpy"] + ([] if fusable(net.program) else ["numba"])
        memory = cost.numpy_memory(net.program)
        for backend in backends:
            for n in sizes:
                x = np.random.default_rng(0).standard_normal((n,) + net.ir.input_shape)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    def run(net=net, x=x, backend=backend):
                        return net.kernels(x, backend=backend, batch_size=10**9)  # one piece
                    run()  # compile (numba) and load once
                    seconds = best(run, 2)
                    peak = peak_bytes(run) if backend == "numpy" else None
                estimate = cost.seconds(net.program, n, n, backend)
                mem = (f"{peak / 2**20:8.1f} {memory.peak(n, n) / 2**20:8.1f} {memory.peak(n, n) / peak:6.2f}"
                       if peak else "")
                print(f"{name:14s} {backend:7s} {n:5d} {seconds * 1000:8.1f}ms {estimate * 1000:8.1f}ms "
                      f"{seconds / estimate:6.2f}   {mem}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer sizes")
    args = p.parse_args()
    constants()
    compare(args.quick)


if __name__ == "__main__":
    main()
