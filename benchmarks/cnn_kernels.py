"""Time and peak memory of CNN kernels: layouts, tiles, and neural-tangents for scale.

The case: a ReLU CNN of 4 conv layers (3 x 3, same padding, σ_w = 1.4, σ_b = 0.1) on
8 x 8 x 3 images, N = 64, float64, Θ(x, x) of shape (64, 64), read out

* by ``global_avg_pool`` (the "CNN-GAP" kernel): the full layout, (8·8)² pixel pairs per input pair;
* by ``flatten``: the diagonal layout, 8·8 pixel pairs per input pair (inferred);
* by ``flatten`` with ``layout="full"`` forced: what a compiler without layout inference would do;
* CNN-GAP in one piece (``batch_size=N``), by default (cache-sized tiles, ``tiling.preferred_peak``
  bytes, chosen from the measured memory model) and in tiles of 16 x 16 points: the same numbers
  in less memory, and faster (arrays nearer the caches; self-kernels compute the tiles on and above
  the diagonal only).

Each case runs ``--repeat`` times after a warm-up (best time); peak memory is tracemalloc's peak
over one more run (NumPy reports its allocations there). neural-tangents' time for the CNN-GAP
kernel on the same machine (jit, float64, CPU) is measured by the script with ``--neural-tangents``
in a Python that has it (e.g. .bench-nt/bin/python), for scale.

Run: python benchmarks/cnn_kernels.py [--n 64] [--repeat 3]
     .bench-nt/bin/python benchmarks/cnn_kernels.py --neural-tangents [--n 64]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

SPEC = """network cnn(input = [8, 8, 3]) {{
    conv(64, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1)
    repeat 3 {{ relu; conv(64, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1) }}
    relu
    {readout}
    dense(10, w_std = 1.4, b_std = 0.1)
}}"""


def best_time(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def ntkdsl_cases(n: int, repeat: int) -> None:
    import ntkdsl

    x = np.random.default_rng(0).standard_normal((n, 8, 8, 3))
    gap = ntkdsl.loads(SPEC.format(readout="global_avg_pool"))
    cases = [
        ("CNN-GAP (full layout), one piece", gap, {"batch_size": n}),
        ("CNN-GAP, default (cache-sized tiles)", gap, {}),
        ("CNN-GAP in 16 x 16 tiles", gap, {"batch_size": 16}),
        ("CNN-flatten (diagonal layout, inferred)", ntkdsl.loads(SPEC.format(readout="flatten")), {}),
        ("CNN-flatten, full layout forced, one piece", ntkdsl.loads(SPEC.format(readout="flatten"), layout="full"),
         {"batch_size": n}),
    ]
    reference = gap.kernels(x, batch_size=n).ntk
    print(f"N = {n}, 8 x 8 x 3 images, float64, best of {repeat}")
    for label, net, options in cases:
        t = best_time(lambda: net.kernels(x, **options), repeat)
        peak = peak_bytes(lambda: net.kernels(x, **options))
        k = net.kernels(x, **options).ntk
        diff = np.max(np.abs(k - reference)) / np.max(np.abs(reference)) if "GAP" in label else float("nan")
        layout = net.program.steps[0].state.layout
        print(f"  {label:42s} {t:8.3f} s   peak {peak / 2**20:8.1f} MiB   input layout {layout:8s}"
              + (f"   vs one piece {diff:.1e}" if "tiles" in label else ""))
    tile = gap._tile(x, None, None, None, None)
    print(f"  CNN-GAP in one piece: estimate {gap.memory_estimate(n) / 2**20:.1f} MiB; default tiles {tile}")


def neural_tangents_case(n: int, repeat: int) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    block = [stax.Relu(), stax.Conv(64, (3, 3), padding="SAME", W_std=1.4, b_std=0.1)]
    layers = [stax.Conv(64, (3, 3), padding="SAME", W_std=1.4, b_std=0.1)] + block * 3
    layers += [stax.Relu(), stax.GlobalAvgPool(), stax.Dense(10, W_std=1.4, b_std=0.1)]
    kernel_fn = jax.jit(stax.serial(*layers)[2], static_argnames="get")
    x = np.random.default_rng(0).standard_normal((n, 8, 8, 3))
    t = best_time(lambda: kernel_fn(x, None, get=("nngp", "ntk")).ntk.block_until_ready(), repeat)
    print(f"  neural-tangents CNN-GAP (jit, CPU)        {t:8.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--neural-tangents", action="store_true", help="time neural-tangents instead")
    args = parser.parse_args()
    (neural_tangents_case if args.neural_tangents else ntkdsl_cases)(args.n, args.repeat)


if __name__ == "__main__":
    main()
