"""float32 against float64 on the fused FCN kernels: speed (same run, ratios) and accuracy.

For depth-3 networks with closed-form duals (relu, erf, gelu), d = 64 Gaussian inputs, the full
self-kernel x with itself (the upper triangle, mirrored) on backend="numba":

* time: the best of ``--repeat`` calls per dtype after a warm-up call (numba's compile or disk-cache
  load), the two dtypes interleaved so that load from other jobs hits both alike; the ratio
  float64 time / float32 time;
* accuracy: the largest |float32 − float64| over sqrt(Σ(x, x)·Σ(x', x')) (and Θ likewise): the
  normwise error that a float32 kernel can promise (an entry near 0, θ near π/2 for odd duals or
  anti-parallel inputs for relu, has a cancellation in float64 too); the largest entrywise relative
  error; and for relu the same against the arc-cosine recursion of Cho & Saul (2009), written here
  with numpy.arccos, independent of the generated code (atan2 of perp).

    python benchmarks/float32.py                  # N = 2000 and 8000 (about 2 minutes on 2 cores)
    python benchmarks/float32.py --n 2000 --repeat 3
    python benchmarks/float32.py --out benchmarks/results/float32.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ntkdsl

D, W_STD, B_STD = 64, 1.5, 0.1


def spec(activation: str, depth: int = 3) -> str:
    layers = "".join(f"    dense(512, w_std = {W_STD}, b_std = {B_STD})\n    {activation}\n" for _ in range(depth))
    name = activation.split("(")[0]
    return f"network {name}{depth}(input = {D}, parameterization = ntk) {{\n{layers}    dense(1, w_std = {W_STD}, b_std = {B_STD})\n}}\n"


def arccos_relu(x: np.ndarray, depth: int = 3):
    """NNGP and NTK of a depth-`depth` relu network (NTK parameterisation) by the arc-cosine kernel of
    degree 1 (Cho & Saul 2009, eq. 6; the NTK recursion of Jacot et al. 2018 / Arora et al. 2019):
    Σ' = √(q q')/(2π)·(sin θ + (π − θ) cos θ), Σ̇ = (π − θ)/(2π), θ = arccos(Σ/√(q q'))."""
    sigma = x @ x.T / x.shape[1]
    w2, b2 = W_STD ** 2, B_STD ** 2
    sigma = w2 * sigma + b2
    theta_ntk = sigma.copy()
    for _ in range(depth):
        q = np.diag(sigma).copy()
        norm = np.sqrt(np.outer(q, q))
        t = np.arccos(np.clip(sigma / norm, -1.0, 1.0))
        act = norm / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))
        dot = (np.pi - t) / (2 * np.pi)
        sigma = w2 * act + b2
        theta_ntk = sigma + w2 * dot * theta_ntk
    return sigma, theta_ntk


def errors(single, double):
    """(normwise, entrywise relative) largest errors of float32 results against a float64 reference."""
    scale = np.sqrt(np.outer(np.diag(double), np.diag(double)))
    diff = np.abs(single.astype(np.float64) - double)
    return float(np.max(diff / scale)), float(np.max(diff / np.maximum(np.abs(double), 1e-300)))


def run(activation: str, n: int, repeat: int) -> dict:
    net = ntkdsl.loads(spec(activation))
    x = np.random.default_rng(0).standard_normal((n, D))
    results = {}
    for dtype in ("float64", "float32"):
        results[dtype] = net.kernels(x, backend="numba", dtype=dtype)  # warm-up: compile or disk-cache load
    times = {"float64": math.inf, "float32": math.inf}
    for _ in range(repeat):
        for dtype in times:
            start = time.perf_counter()
            net.kernels(x, backend="numba", dtype=dtype)
            times[dtype] = min(times[dtype], time.perf_counter() - start)
    row = {"activation": activation, "n": n, "float64_s": times["float64"], "float32_s": times["float32"],
           "speedup": times["float64"] / times["float32"]}
    for kind in ("nngp", "ntk"):
        single, double = getattr(results["float32"], kind), getattr(results["float64"], kind)
        row[f"{kind}_normwise"], row[f"{kind}_relative"] = errors(single, double)
        row[f"{kind}_symmetric"] = bool(np.array_equal(single, single.T))
    if activation == "relu":
        oracle = dict(zip(("nngp", "ntk"), arccos_relu(x)))
        for kind in ("nngp", "ntk"):
            row[f"{kind}_vs_arccos_f32"] = errors(getattr(results["float32"], kind), oracle[kind])[0]
            row[f"{kind}_vs_arccos_f64"] = errors(getattr(results["float64"], kind).astype(np.float32), oracle[kind])[0]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[2000, 8000], help="numbers of points (default 2000 8000)")
    parser.add_argument("--activations", nargs="+", default=["relu", "erf", "gelu"], help="closed-form activations")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per dtype (the best is kept)")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = []
    print("activation      N  float64 s  float32 s  f64/f32  NNGP err  NTK err  (normwise; entrywise rel.)  vs arccos")
    for n in args.n:
        for activation in args.activations:
            r = run(activation, n, args.repeat)
            rows.append(r)
            oracle = (f"  {r['nngp_vs_arccos_f32']:.1e} {r['ntk_vs_arccos_f32']:.1e}"
                      f" (float64 stored as float32: {r['nngp_vs_arccos_f64']:.1e} {r['ntk_vs_arccos_f64']:.1e})"
                      if "nngp_vs_arccos_f32" in r else "")
            print(f"{activation:10s} {n:6d}  {r['float64_s']:9.3f}  {r['float32_s']:9.3f}  {r['speedup']:6.2f}x  "
                  f"{r['nngp_normwise']:.1e} {r['ntk_normwise']:.1e}  ({r['nngp_relative']:.1e} {r['ntk_relative']:.1e})"
                  f"{oracle}", flush=True)
    if args.out:
        meta = {"machine": platform.machine(), "python": platform.python_version(), "cpus": len(__import__("os").sched_getaffinity(0))}
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
