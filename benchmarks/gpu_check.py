"""The GPU benchmark of the CuPy backend; `benchmarks/gpu_check.sh` runs it after the tests.

Workloads (inputs from default_rng(0), built by ``workloads.py`` like every other benchmark):

* FCN ReLU depth 10 (10 x dense(512, w_std = √2, b_std = 0.1) + relu, then dense(1)), d = 784,
  N = 20000, the full N x N NNGP and NTK of x with itself, float32 and float64;
* the 21-layer 3x3 CNN (conv SAME + relu) on 32x32x3 images, flatten and global-average-pool
  readouts, float32, in ms per kernel entry, against neural-tangents' published V100 figures
  (Novak et al. 2020, ICLR, "Neural Tangents", performance table: flatten 0.0047 ms, GAP 2.70 ms).

Each timing: a warm-up call (CuPy compiles the kernels, cached on disk), then the median of
``--repeats`` calls, synchronised, inputs already on the GPU. Memory: the peak of CuPy's memory pool
over one call. Accuracy: the backend against the NumPy backend on a subset of the points.

    python benchmarks/gpu_check.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ntkdsl  # noqa: E402
import workloads  # noqa: E402

NT_V100_MS_PER_ENTRY = {"flatten": 0.0047, "gap": 2.70}  # neural-tangents, float32, V100 (published)


def _time(call, repeats: int, cupy):
    """Median seconds of ``repeats`` synchronised calls after one warm-up; CuPy pool peak in bytes."""
    sync = cupy.cuda.Device().synchronize
    pool = cupy.get_default_memory_pool()
    call()
    sync()
    pool.free_all_blocks()
    before = pool.total_bytes()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = call()
        sync()
        times.append(time.perf_counter() - start)
        del out
    return statistics.median(times), pool.total_bytes() - before


def _accuracy(net, x, dtype, points: int) -> float:
    """Max relative difference (floor: 1e-300) of the CuPy NTK to the NumPy backend's, on ``points`` inputs."""
    sub = np.asarray(x[:points].get())
    got = net.kernels(sub, backend="cupy", dtype=dtype, to_numpy=True).ntk
    want = net.kernels(sub, backend="numpy").ntk
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def run(quick: bool, repeats: int):
    import cupy

    rows = []
    device = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
    print(f"# CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, {device}")
    print(HEADER, flush=True)
    fcn_n = 4000 if quick else 20000
    cnn = [("flatten", 64 if quick else 256), ("gap", 4 if quick else 16)]
    cases = [workloads.fcn("relu", 10, fcn_n, dtype) for dtype in ("float32", "float64")]
    cases += [workloads.cnn(readout, 21, 32, n, "float32") for readout, n in cnn]
    for w in cases:
        net = ntkdsl.loads(workloads.ntk_source(w), filename=f"{w['name']}.ntk")
        x = cupy.asarray(np.random.default_rng(0).standard_normal(workloads.input_shape(w)))
        seconds, peak = _time(lambda net=net, x=x, w=w: net.kernels(x, backend="cupy", dtype=w["dtype"]), repeats, cupy)
        entries = w["n"] ** 2
        row = {"workload": w["name"], "n": w["n"], "dtype": w["dtype"], "seconds": seconds,
               "ms_per_entry": 1e3 * seconds / entries, "peak_gib": peak / 2**30,
               "arrays_of_output": peak / (entries * np.dtype(w["dtype"]).itemsize),
               "rel_err_vs_numpy": _accuracy(net, x, w["dtype"], 200 if w["kind"] == "fcn" else 2)}
        readout = w.get("readout")
        if readout in NT_V100_MS_PER_ENTRY:
            row["nt_v100_ms_per_entry"] = NT_V100_MS_PER_ENTRY[readout]
            row["speedup_vs_nt_v100"] = NT_V100_MS_PER_ENTRY[readout] / row["ms_per_entry"]
        rows.append(row)
        print(_line(row), flush=True)
        del x
        cupy.get_default_memory_pool().free_all_blocks()
    return {"device": device, "cupy": cupy.__version__, "rows": rows}


HEADER = (f"{'workload':<22} {'N':>6} {'dtype':<8} {'seconds':>9} {'ms/entry':>10} {'peak GiB':>9} "
          f"{'x N² out':>8} {'rel.err':>8} {'NT V100':>8} {'speedup':>8}")


def _line(r) -> str:
    nt = f"{r['nt_v100_ms_per_entry']:>8.4g} {r['speedup_vs_nt_v100']:>7.1f}x" if "nt_v100_ms_per_entry" in r else f"{'':>8} {'':>8}"
    return (f"{r['workload']:<22} {r['n']:>6} {r['dtype']:<8} {r['seconds']:>9.4f} {r['ms_per_entry']:>10.3g} "
            f"{r['peak_gib']:>9.2f} {r['arrays_of_output']:>8.1f} {r['rel_err_vs_numpy']:>8.1e} {nt}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N (a minute in all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    result = run(args.quick, args.repeats)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
