"""The fused image kernels (backend="numba") against the NumPy backend on the spatial operations of the
new layers: one network per operation, x with itself, both backends in the same run.

    python benchmarks/fused_new_ops.py                      # every row, 3 repeats (a few minutes on 2 cores)
    python benchmarks/fused_new_ops.py --only resize --repeat 5

Per row: one warm-up call per backend (numba's compile or its disk-cache load), then ``--repeat``
rounds, each timing one NumPy call and one numba call (interleaved, so that other jobs' load hits
both alike); reported: the median seconds of each, their ratio (NumPy / numba) and the largest
difference of the two NTKs relative to the largest entry. Inputs from ``default_rng(0)``. Results:
``benchmarks/results/fused_new_ops.json``.

Rows whose operation runs on the pixel diagonal (flatten read-outs) use N = 256 points on 16 x 16
outputs; those in the full layout (global pooling: pixel-pair grids, P² entries per input pair) use a
smaller N, as the NumPy backend holds (P², N, N) arrays.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import ntkdsl  # noqa: E402

CONV = "conv(32, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1)"
ROWS = {  # name -> (operation, .ntk text, N)
    "conv_transpose-flatten": ("conv_transpose_taps (diagonal)", f"""network t(input = [8, 8, 3]) {{
        conv_transpose(32, kernel = 3, stride = 2, padding = same, w_std = 1.4, b_std = 0.1); relu
        {CONV}; relu; flatten; dense(1) }}""", 256),
    "conv_transpose-gap": ("conv_transpose_taps (full)", f"""network t(input = [5, 5, 3]) {{
        {CONV}; relu
        conv_transpose(32, kernel = 3, stride = 2, padding = circular, w_std = 1.4, b_std = 0.1); relu
        global_avg_pool; dense(1) }}""", 24),
    "index-flatten": ("spatial_index", f"""network i(input = [16, 16, 3]) {{
        {CONV}; relu; index[2:14, ::-1]; {CONV}; relu; flatten; dense(1) }}""", 256),
    "conv_local-gap": ("diagonal_embed", f"""network c(input = [8, 8, 3]) {{
        {CONV}; relu; conv_local(32, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1); relu
        {CONV}; relu; global_avg_pool; dense(1) }}""", 32),
    "resize-gap": ("resize_map (linear, full)", f"""network r(input = [8, 8, 3]) {{
        {CONV}; relu; {CONV}; resize((12, 12), method = linear); relu; global_avg_pool; dense(1) }}""", 24),
    "layer_norm-flatten": ("flatten_mean of variances (layer_norm over space)", f"""network l(input = [16, 16, 3]) {{
        {CONV}; layer_norm(axes = spatial_and_channels); relu; {CONV}; relu; flatten; dense(1) }}""", 256),
    "dropout-flatten": ("same-point indicator (dropout)", f"""network d(input = [16, 16, 3]) {{
        {CONV}; relu; dropout(0.8); {CONV}; relu; flatten; dense(1) }}""", 256),
    "recurrent": ("time_shift", """network r(input = [32, 8]) {
        recurrent(64, w_std = 1.2, u_std = 1.1, b_std = 0.1); dense(1) }""", 256),
}


def measure(name: str, repeat: int) -> dict:
    operation, text, n = ROWS[name]
    net = ntkdsl.loads(text)
    x = np.random.default_rng(0).standard_normal((n, *net.ir.input_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to NumPy would make the comparison meaningless
        fused = net.kernels(x, backend="numba")
    reference = net.kernels(x, backend="numpy")
    times = {"numpy": [], "numba": []}
    for _ in range(repeat):
        for backend in times:
            start = time.perf_counter()
            net.kernels(x, backend=backend)
            times[backend].append(time.perf_counter() - start)
    numpy_s, numba_s = statistics.median(times["numpy"]), statistics.median(times["numba"])
    diff = float(np.max(np.abs(fused.ntk - reference.ntk)) / np.max(np.abs(reference.ntk)))
    return dict(row=name, operation=operation, n=n, input=list(net.ir.input_shape), numpy_s=numpy_s, numba_s=numba_s,
                speedup=numpy_s / numba_s, ntk_rel_diff=diff)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="row names or prefixes (default: every row)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fused_new_ops.json")
    args = parser.parse_args(argv)
    names = [r for r in ROWS if not args.only or any(r.startswith(p) for p in args.only)]
    results = []
    print(f"{'row':24s} {'operation':48s} {'N':>4s} {'numpy s':>9s} {'numba s':>9s} {'speed-up':>8s} {'NTK rel diff':>12s}")
    for name in names:
        r = measure(name, args.repeat)
        results.append(r)
        print(f"{r['row']:24s} {r['operation']:48s} {r['n']:4d} {r['numpy_s']:9.3f} {r['numba_s']:9.3f} "
              f"{r['speedup']:8.1f} {r['ntk_rel_diff']:12.1e}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(machine=platform.processor() or platform.machine(), repeat=args.repeat,
                                        rows=results), indent=1) + "\n")


if __name__ == "__main__":
    main()
