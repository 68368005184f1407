"""Kernel-flow speed: one eigendecomposition reused for every time, against recomputing it per time.

    python benchmarks/flow_speed.py                       # N = 4000 train, 1000 test, 100 times
    python benchmarks/flow_speed.py --recompute 100       # time all 100 recomputations (~15 min)

Both methods compute f_t(x*) = Θ(x*, X) Θ⁻¹(I − e^{−ηΘt/N}) y (kernel-math.md §4) from the same
kernels in the same run. "reuse" is KernelFlow: one eigendecomposition, then one matrix product for
all times. "recompute" builds a fresh flow (a fresh eigendecomposition) for each time; by default it
is timed on the first --recompute times and its per-time cost multiplied by the number of times
(each recomputation costs the same: one eigendecomposition of the same N x N matrix plus products).
The kernel evaluation, shared by both, is reported separately.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import ntkdsl
from ntkdsl.flow import KernelFlow

SPEC = Path(__file__).resolve().parents[1] / "examples" / "mlp.ntk"


def sphere(n: int, d: int, rng) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(d)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--times", type=int, default=100, help="number of times, log-spaced in [1, 1e5]")
    p.add_argument("--recompute", type=int, default=5, help="how many of the per-time recomputations to time")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    rng = np.random.default_rng(args.seed)
    net = ntkdsl.load(SPEC)
    d = net.ir.input_dim
    x, xt = sphere(args.n_train, d, rng), sphere(args.n_test, d, rng)
    y = np.sin(x[:, 0]) + 0.1 * rng.normal(size=args.n_train)
    times = np.geomspace(1.0, 1e5, args.times)
    print(f"{SPEC.name}: N = {args.n_train} train, {args.n_test} test, {args.times} times, "
          f"{os.cpu_count()} CPUs")

    start = time.perf_counter()
    k_train, k_test = net.ntk(x), net.ntk(xt, x)
    print(f"kernels (shared by both methods):   {time.perf_counter() - start:8.2f} s")

    start = time.perf_counter()
    flow = KernelFlow.from_kernels(k_train, y)
    flow.eigen()
    decomposed = time.perf_counter()
    reuse = flow.predict(k_test, times)
    done = time.perf_counter()
    t_reuse = done - start
    print(f"reuse:     eigendecomposition       {decomposed - start:8.2f} s")
    print(f"           predictions at all times {done - decomposed:8.2f} s")
    print(f"           total                    {t_reuse:8.2f} s")

    count = min(args.recompute, args.times)
    start = time.perf_counter()
    worst = 0.0
    for i in range(count):
        fresh = KernelFlow.from_kernels(k_train, y).predict(k_test, times[i])
        worst = max(worst, float(np.abs(fresh - reuse[i]).max()))
    per_time = (time.perf_counter() - start) / max(count, 1)
    t_recompute = per_time * args.times
    how = "measured" if count == args.times else f"{count} measured x {args.times / count:.3g}"
    print(f"recompute: per time                 {per_time:8.2f} s")
    print(f"           total ({how}) {t_recompute:8.2f} s")
    print(f"speed-up of reuse over recompute:   {t_recompute / t_reuse:8.1f}x")
    print(f"max |reuse - recompute| on the compared times: {worst:.2e} "
          f"(outputs of size {np.abs(reuse).max():.2g})")


if __name__ == "__main__":
    main()
