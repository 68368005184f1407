"""neural-tangents' side of the numerical-dual benchmark (``numerical_duals.py --speed``), run in NT's
own environment:

    .bench-nt/bin/python benchmarks/nt_numerical.py ACT N REPEAT BATCH [ROWS]

A depth-3 FCN (dense(512, W_std = √2, b_std = 0.1) + ACT three times, dense(1)) with ACT as
``stax.ElementwiseNumerical(fn, deg=25)`` (Gauss–Hermite, 25² nodes per entry; df by jax.grad, the
documented default), jitted, float64 (``jax_enable_x64``), inputs ``default_rng(0)`` of shape (N, 784).
BATCH > 0 evaluates through ``nt.batch`` in BATCH x BATCH blocks (ElementwiseNumerical holds
25² x N² values at once: 20 GB at N = 2000); one warm-up call at N = BATCH (compiles the block
function), then REPEAT timed calls of the kernel between x[:ROWS] and x (default ROWS = N: the full
N x N self-kernel; fewer rows time a strip of the kernel, 1/ROWS·N of its entries). Prints one JSON
line: times, and the kernels at SAMPLE entries.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

SAMPLE = ((0, 1), (2, 3), (5, 7), (0, 0), (11, 13), (17, 19))  # (i, j) entries returned for the accuracy check


def main() -> None:
    act, n, repeat, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rows = int(sys.argv[5]) if len(sys.argv) > 5 else n
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt
    import numpy as np
    from neural_tangents import stax

    fn = {"tanh": jnp.tanh, "silu": jax.nn.silu, "softplus": jax.nn.softplus}[act]
    layers = []
    for _ in range(3):
        layers += [stax.Dense(512, W_std=math.sqrt(2.0), b_std=0.1), stax.ElementwiseNumerical(fn, deg=25)]
    layers.append(stax.Dense(1, W_std=math.sqrt(2.0), b_std=0.1))
    _, _, kernel_fn = stax.serial(*layers)
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")
    if batch:
        kernel_fn = nt.batch(kernel_fn, batch_size=batch, store_on_device=False)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((n, 784)))
    t = time.perf_counter()
    kernel_fn(x[:batch or n], None, ("nngp", "ntk")).ntk.block_until_ready()
    first = time.perf_counter() - t
    times, loads = [], []
    for _ in range(repeat):
        before = os.getloadavg()[0]
        t = time.perf_counter()
        k = kernel_fn(x, None, ("nngp", "ntk")) if rows == n else kernel_fn(x[:rows], x, ("nngp", "ntk"))
        k.ntk.block_until_ready()
        times.append(time.perf_counter() - t)
        loads.append((before, os.getloadavg()[0]))
    nngp, ntk = np.asarray(k.nngp), np.asarray(k.ntk)
    print(json.dumps({"times": times, "first_call_s": first, "load": loads,
                      "sample": {"nngp": [float(nngp[i, j]) for i, j in SAMPLE],
                                 "ntk": [float(ntk[i, j]) for i, j in SAMPLE]},
                      "versions": {"neural_tangents": nt.__version__, "jax": jax.__version__}}))


if __name__ == "__main__":
    main()
