"""Sweeps, the automatic backend choice and float32, measured in one run (ratios in the same run).

    python benchmarks/sweeps.py [--quick] [--out benchmarks/results/sweeps.json]

1. Sweeps: a sweep point used to recompile the fused module (its numbers were printed into it);
   now they are run-time arguments. Per workload: the cold compile of the fused module (a fresh
   cache folder: what every point of a sweep paid before), then three points of a
   ``with_hyperparameters(w_std=...)`` sweep (compiled once).
2. backend "auto": NumPy and warm numba times, the static cost model's NumPy estimate
   (:func:`ntkdsl.codegen.cost.seconds`) over the measured time, and what "auto" runs on a cold cache and
   with the module compiled (:func:`ntkdsl.codegen.dispatch.fused_pays`).
3. float32 against float64 on the fused kernels: time and the largest relative difference of the NTK.

Times: median of 3 calls (wall clock); compile times: CPU seconds of the compiling process. The
1-minute load average is recorded with each row: on a shared machine absolute times vary; compare
ratios from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workloads import cnn, fcn, ntk_source  # noqa: E402

import ntkdsl  # noqa: E402
from ntkdsl.codegen import cost  # noqa: E402
from ntkdsl.codegen import dispatch  # noqa: E402


def _median(call, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _load():
    return round(os.getloadavg()[0], 2)


def _points(w, n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *w["input"]))


def sweep_rows(workloads):
    rows = []
    for w in workloads:
        net = ntkdsl.loads(ntk_source(w))
        x = _points(w, w["n"])
        cpu = time.process_time()
        net.kernels(x[:2], backend="numba")  # cold cache (XDG_CACHE_HOME is a fresh folder): compiles
        compile_s = time.process_time() - cpu
        points = []
        for value in (1.3, 1.4, 1.5):
            t = time.perf_counter()
            net.with_hyperparameters(w_std=value).kernels(x, backend="numba")
            points.append(time.perf_counter() - t)
        run = _median(lambda: net.kernels(x, backend="numba"))
        rows.append({"workload": w["name"], "n": w["n"], "compile_cpu_s": round(compile_s, 2),
                     "sweep_point_s": [round(p, 3) for p in points], "run_s": round(run, 4),
                     "before_per_point_s": round(compile_s + run, 2),
                     "speedup_per_point": round((compile_s + run) / statistics.median(points), 1), "load": _load()})
        print(rows[-1], flush=True)
    return rows


def auto_rows(workloads):
    rows = []
    for w in workloads:
        net = ntkdsl.loads(ntk_source(w))
        x = _points(w, w["n"])
        net.kernels(x[:2], backend="numba")  # warm: compiled in this process
        numpy_s = _median(lambda: net.kernels(x, backend="numpy"))
        numba_s = _median(lambda: net.kernels(x, backend="numba"))
        n = w["n"]
        cold = dispatch.resolve(net.program, None, n * n, {})[0]  # what a first call on a cold cache runs
        warm = dispatch.resolve(net.program, None, n * n, net._modules)[0]  # with the module compiled
        rows.append({"workload": w["name"], "n": n, "numpy_s": round(numpy_s, 4), "numba_s": round(numba_s, 4),
                     "numpy_over_numba": round(numpy_s / numba_s, 2),
                     "model_numpy_s": round(cost.seconds(net.program, n, n, "numpy"), 4),
                     "model_over_measured_numpy": round(cost.seconds(net.program, n, n, "numpy") / numpy_s, 2),
                     "compile_estimate_s": round(dispatch.compile_seconds(net.program), 1),
                     "auto_cold": cold, "auto_warm": warm,
                     "auto_warm_s": round(numba_s if warm == "numba" else numpy_s, 4), "load": _load()})
        print(rows[-1], flush=True)
    return rows


def float32_rows(workloads):
    rows = []
    for w in workloads:
        net = ntkdsl.loads(ntk_source(w))
        x = _points(w, w["n"])
        net.kernels(x[:2], backend="numba")
        net.kernels(x[:2], backend="numba", dtype="float32")
        t64 = _median(lambda: net.kernels(x, backend="numba"))
        t32 = _median(lambda: net.kernels(x, backend="numba", dtype="float32"))
        k64 = net.kernels(x, backend="numba").ntk
        k32 = net.kernels(x, backend="numba", dtype="float32").ntk
        rows.append({"workload": w["name"], "n": w["n"], "float64_s": round(t64, 4), "float32_s": round(t32, 4),
                     "float32_over_float64": round(t32 / t64, 2),
                     "ntk_max_rel_diff": float(np.max(np.abs(k32 - k64)) / np.max(np.abs(k64))), "load": _load()})
        print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller N (a minute or two)")
    parser.add_argument("--out", default="benchmarks/results/sweeps.json", help="where the JSON goes")
    parser.add_argument("--only", choices=("sweep", "auto", "float32"), help="one part only")
    args = parser.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ntkdsl-bench-")  # cold compiles, measured
    q = args.quick
    sweep = [fcn("relu", 5, 500, "float64"), cnn("gap", 2, 8, 16)]
    auto = [fcn("relu", 5, n, "float64") for n in ((100, 500) if q else (100, 500, 1000, 2000))]
    auto += [fcn("relu", 20, 1000, "float64"), cnn("flatten", 2, 8, 64)]
    auto += [cnn("gap", 2, 8, n) for n in ((8, 32) if q else (8, 16, 32, 64))]
    f32 = [fcn("relu", 5, 1000 if q else 2000, "float64"), cnn("gap", 2, 8, 16 if q else 64)]
    result = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "cpus": os.cpu_count()}
    if args.only in (None, "sweep"):
        result["sweep"] = sweep_rows(sweep)
    if args.only in (None, "auto"):
        result["auto"] = auto_rows(auto)
    if args.only in (None, "float32"):
        result["float32"] = float32_rows(f32)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
