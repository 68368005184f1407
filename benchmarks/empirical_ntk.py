"""Speed of the empirical NTK: structured contraction vs the explicit Jacobian, same run.

The case: a ReLU MLP with 3 hidden layers of width 1024 and one output, NTK
parameterization, 256 inputs of dimension 784, float64, Θ(x, x) of shape (256, 256). Reference
figures (neural-tangents' ``empirical_ntk_fn`` on its authors' hardware, float64):
"structured derivatives" 0.06 s, Jacobian contraction 7.4 s.

* structured (``fnet.ntk``): forward, backpropagate one cotangent per output, then per dense layer
  [σ_w²/n·(a·a′) + σ_b²]⊙(δ·δ′) (kernel-math.md §5): O(N²·n) per layer, no Jacobian.
* explicit Jacobian (``fnet.ntk(..., method="jacobian")``): per layer, materialise the per-example
  Jacobian (N, k, P_l) (2.1 GB for a 1024 x 1024 layer at N = 256) and contract J·Jᵀ: O(N²·P).

The structured method and one forward pass (``fnet.apply``, for scale: the NTK needs a forward
pass, a backward pass and per-layer Gram matrices) run ``--repeat`` times after a warm-up, and the
best time is reported; the explicit Jacobian runs once (it takes tens of seconds). Then the
agreement of the two results. Timings on a shared machine vary with its load: run it a few times.

With neural-tangents' environment installed (.bench-nt, benchmarks/README.md), the same network (its
parameters handed over) also runs through ``nt.empirical_ntk_fn`` in a subprocess, same run.

Run: python benchmarks/empirical_ntk.py [--width 1024] [--n 256] [--dim 784] [--repeat 5] [--quick] [--no-nt-jacobian]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import ntkdsl

SPEC = """
network bench(input = {dim}) {{
    repeat 3 {{ dense({width}, b_std = 0.1); relu }}
    dense(1, b_std = 0.1)
}}
"""
NEURAL_TANGENTS = {"structured": 0.06, "jacobian": 7.4}  # seconds: the neural-tangents figures the sampler was specified against
NT_PYTHON = Path(__file__).resolve().parent.parent / ".bench-nt" / "bin" / "python"


def neural_tangents_same_run(fnet, x, repeat: int, jacobian: bool):
    """neural-tangents' empirical NTK of the very same network (its parameters handed over), timed in its
    own environment as a subprocess; None when .bench-nt is not installed (benchmarks/README.md)."""
    if not NT_PYTHON.exists():
        return None
    dense = [p for p in fnet.params if p]
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {"x": x, "depth": len(dense) - 1, "b_std": 0.1}
        for i, p in enumerate(dense):
            arrays[f"w{i}"], arrays[f"b{i}"] = p["w"], p["b"]
        np.savez(Path(tmp) / "in.npz", **arrays)
        cmd = [str(NT_PYTHON), str(Path(__file__).with_name("nt_empirical_ntk.py")), str(Path(tmp) / "in.npz"),
               str(Path(tmp) / "out.npz"), "--repeat", str(repeat)] + ([] if jacobian else ["--no-jacobian"])
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL, env={**os.environ, "JAX_PLATFORMS": "cpu"})
        out = np.load(Path(tmp) / "out.npz")
        return float(out["structured"]), float(out["jacobian"]), out["ntk"]


def best_time(fn, repeat: int):
    fn()  # warm-up (caches, BLAS threads, page faults)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--n", type=int, default=256, help="number of inputs")
    p.add_argument("--dim", type=int, default=784, help="input dimension")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="width 128, 32 inputs (a smoke run)")
    p.add_argument("--no-nt-jacobian", action="store_true", help="skip neural-tangents' (slow) Jacobian contraction")
    args = p.parse_args(argv)
    if args.quick:
        args.width, args.n, args.repeat = 128, 32, 1

    net = ntkdsl.loads(SPEC.format(dim=args.dim, width=args.width))
    fnet = net.finite(seed=0)
    x = np.random.default_rng(0).standard_normal((args.n, args.dim))
    print(f"ReLU MLP, 3 hidden layers of width {args.width}, 1 output, {fnet.num_params:,} parameters; "
          f"{args.n} inputs of dim {args.dim}; float64; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    t_f, _ = best_time(lambda: fnet.apply(x), args.repeat)
    t_s, k_s = best_time(lambda: fnet.ntk(x), args.repeat)
    t0 = time.perf_counter()
    k_j = fnet.ntk(x, method="jacobian")
    t_j = time.perf_counter() - t0
    diff = np.abs(k_s - k_j).max() / np.abs(k_j).max()
    print(f"  forward pass only   {t_f:9.4f} s")
    print(f"  structured          {t_s:9.4f} s   (neural-tangents structured: {NEURAL_TANGENTS['structured']} s)")
    print(f"  explicit Jacobian   {t_j:9.4f} s   (neural-tangents Jacobian contraction: {NEURAL_TANGENTS['jacobian']} s)")
    print(f"  ratio explicit / structured: {t_j / t_s:.1f}x;  structured vs neural-tangents structured: "
          f"{NEURAL_TANGENTS['structured'] / t_s:.2f}x faster")
    print(f"  max |structured − explicit| / max |Θ| = {diff:.1e}")
    assert diff < 1e-10, diff  # the same sums in another order: round-off only
    nt = neural_tangents_same_run(fnet, x, args.repeat, jacobian=not args.no_nt_jacobian)
    if nt is None:
        print(f"  (neural-tangents not installed in {NT_PYTHON.parent.parent}: no same-run comparison)")
        return
    t_nt, t_nt_j, k_nt = nt
    print(f"  neural-tangents, same run, same parameters: structured {t_nt:.4f} s, Jacobian contraction "
          f"{t_nt_j:.4f} s (jitted, float64)")
    print(f"  ntkdsl structured is {t_nt / t_s:.2f}x the speed of neural-tangents' structured derivatives; "
          f"max |ntkdsl − neural-tangents| / max |Θ| = {np.abs(k_s - k_nt).max() / np.abs(k_nt).max():.1e}")


if __name__ == "__main__":
    main()
