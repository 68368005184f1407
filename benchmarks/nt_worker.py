"""neural-tangents' side of one benchmark workload, run by ``run.py`` in NT's own environment.

    .bench-nt/bin/python benchmarks/nt_worker.py '<workload json>' REPEAT

jit-compiled kernel_fn, float64 through ``jax_enable_x64`` (float32 workloads run without it, so
that XLA computes in float32), one warm-up call (compilation), then REPEAT timed calls. Prints one
JSON line: median and all times, the first call, peak RSS (ru_maxrss) and RSS before the warm-up,
and a small sample of the kernels for the agreement check.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workloads import B_STD, W_STD, input_shape, steady_peak_mb  # noqa: E402


def main() -> None:
    w = json.loads(sys.argv[1])
    repeat = int(sys.argv[2])
    import jax

    if w["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    import numpy as np
    from neural_tangents import stax

    act = {"relu": stax.Relu(), "erf": stax.Erf(), "gelu": stax.Gelu(approximate=False)}[w["act"]]
    layers = []
    if w["kind"] == "fcn":
        for _ in range(w["depth"]):
            layers += [stax.Dense(512, W_std=W_STD, b_std=B_STD), act]
    else:
        for _ in range(w["depth"]):
            layers += [stax.Conv(w["channels"], (3, 3), padding="SAME", W_std=W_STD, b_std=B_STD), act]
        layers.append(stax.GlobalAvgPool() if w["readout"] == "gap" else stax.Flatten())
    layers.append(stax.Dense(1, W_std=W_STD, b_std=B_STD))
    _, _, kernel_fn = stax.serial(*layers)
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")

    x = np.random.default_rng(0).standard_normal(input_shape(w)).astype(w["dtype"])
    x = jax.numpy.asarray(x)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    k = kernel_fn(x, None, ("nngp", "ntk"))
    k.ntk.block_until_ready()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        k = kernel_fn(x, None, ("nngp", "ntk"))
        k.nngp.block_until_ready()
        k.ntk.block_until_ready()
        times.append(time.perf_counter() - t)
    nngp, ntk = np.asarray(k.nngp), np.asarray(k.ntk)
    del k

    def call():
        k = kernel_fn(x, None, ("nngp", "ntk"))
        k.ntk.block_until_ready()
        return k

    call_mb = steady_peak_mb(call)
    print(json.dumps({
        "times": times, "first_call_s": first, "call_peak_mb": call_mb, "dtype": str(ntk.dtype),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "base_rss_mb": base / 1024,
        "sample": {"nngp": nngp[:4, :4].tolist(), "ntk": ntk[:4, :4].tolist()},
        "versions": {"neural_tangents": __import__("neural_tangents").__version__, "jax": jax.__version__},
    }))


if __name__ == "__main__":
    main()
