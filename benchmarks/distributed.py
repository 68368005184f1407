"""Kernels on a local dask cluster against kernels_to_disk, and the Krylov flow against the dense one.

    python benchmarks/distributed.py                      # N = 20 000 kernels, N = 5 000 flow
    python benchmarks/distributed.py --n 4096 --n-flow 1000 --out /tmp/quick.json   # a quick look

1. Kernels of a depth-5 FCN (32 inputs, five dense(512) + relu layers) on N points, self-kernel,
   tiles of 2048 points, backend "auto" (the fused numba kernels at this size), float64:
   * ``kernels_to_disk`` in one process (memory-mapped .npy files; the fused kernels use every core);
   * ``ntkdsl.distributed.kernels`` on a LocalCluster of 1 and of 2 single-threaded worker processes
     (each worker's fused kernels also start one thread per core), into a zarr store.
   Time of the request (cluster start-up reported apart), peak resident memory of the process that
   evaluates (kernels_to_disk: its own process; dask: each worker, ``ru_maxrss``), and the largest
   difference between the two results (a sample of 4 tiles; the same tiles, so round-off only).
2. Kernel flow at t = ∞ and at a finite t on N_flow training points of the same network (500 test
   points, targets sin(x·w), diag_reg 1e-4, t = 10 and 1000): the dense solver (Cholesky at t = ∞,
   the eigendecomposition at finite t; its input checks timed apart) against the Krylov one on the kernel as a dask array of
   1250 x 1250 chunks (CG with the Nyström preconditioner, Lanczos), rtol 1e-12: time and relative
   error max|Krylov − dense| / max|dense|.

The machine is shared: the load average before and after is printed and stored with the results.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

# This file's name would shadow the dask.distributed package when run as a script: drop its folder.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

SPEC = "network fcn5(input = 32) {" + "".join(" dense(512, b_std = 0.1); relu;" for _ in range(5)) + " dense(1) }"
TILE = 2048


def inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 32))


def _peak_rss() -> int:
    """Peak resident memory of this process in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _to_disk(n: int, directory: str):
    """In a fresh process: kernels_to_disk of the benchmark network; (seconds, peak RSS)."""
    import ntkdsl

    net = ntkdsl.loads(SPEC)
    x = inputs(n)
    start = time.perf_counter()
    net.kernels_to_disk(x, None, directory, batch_size=TILE, progress=False)
    return time.perf_counter() - start, _peak_rss()


def disk_run(n: int, directory: str):
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(_to_disk, n, directory).result()


def cluster_run(n: int, workers: int, store: str):
    import ntkdsl
    from ntkdsl import distributed

    net = ntkdsl.loads(SPEC)
    x = inputs(n)
    start = time.perf_counter()
    client = distributed.local_client(workers, dashboard_address=":0")
    startup = time.perf_counter() - start
    try:
        start = time.perf_counter()
        distributed.kernels(net, x, None, store, client, tile=TILE, progress=False)
        seconds = time.perf_counter() - start
        peaks = sorted(client.run(_peak_rss).values())
    finally:
        client.close()
    return seconds, startup, peaks


def sample_difference(n: int, disk_dir: str, store: str) -> float:
    """max |zarr − npy| / max |npy| over 4 tiles (the diagonal and off-diagonal ones)."""
    import zarr

    disk = np.load(os.path.join(disk_dir, "ntk.npy"), mmap_mode="r")
    z = zarr.open_group(store, mode="r")["ntk"]
    worst, scale = 0.0, 0.0
    last = (n - 1) // TILE * TILE
    for i, j in ((0, 0), (0, last), (last, 0), (last, last)):
        a, b = slice(i, i + TILE), slice(j, j + TILE)
        want = np.asarray(disk[a, b])
        worst, scale = max(worst, float(np.max(np.abs(z[a, b] - want)))), max(scale, float(np.max(np.abs(want))))
    return worst / scale


def kernels_part(n: int, workdir: str) -> dict:
    import ntkdsl

    ntkdsl.loads(SPEC).kernels(inputs(TILE), backend="numba")  # the fused kernels compiled into numba's disk cache
    out = {"n": n, "tile": TILE}
    disk_dir = os.path.join(workdir, "disk")
    out["kernels_to_disk_s"], out["kernels_to_disk_peak_bytes"] = disk_run(n, disk_dir)
    print(f"kernels_to_disk: {out['kernels_to_disk_s']:.1f} s, peak {out['kernels_to_disk_peak_bytes'] / 2**20:.0f} MiB",
          flush=True)
    for workers in (1, 2):
        store = os.path.join(workdir, f"k{workers}.zarr")
        seconds, startup, peaks = cluster_run(n, workers, store)
        out[f"dask_{workers}_s"], out[f"dask_{workers}_startup_s"] = seconds, startup
        out[f"dask_{workers}_worker_peak_bytes"] = peaks
        out[f"dask_{workers}_max_relative_difference"] = sample_difference(n, disk_dir, store)
        print(f"dask, {workers} worker(s): {seconds:.1f} s (+ {startup:.1f} s start-up), worker peaks "
              f"{[round(p / 2**20) for p in peaks]} MiB, difference {out[f'dask_{workers}_max_relative_difference']:.1e}",
              flush=True)
        shutil.rmtree(store)
    shutil.rmtree(disk_dir)
    return out


def flow_part(n: int) -> dict:
    import dask
    import dask.array as da

    import ntkdsl
    from ntkdsl.flow import KernelFlow, KrylovOptions

    net = ntkdsl.loads(SPEC)
    x, xs = inputs(n, 1), inputs(500, 2)
    y = np.sin(x @ np.random.default_rng(3).standard_normal(32) / np.sqrt(32))[:, None]
    k, kx = net.kernels(x).ntk, net.kernels(xs, x).ntk
    times = [10.0, 1000.0]
    out = {"n": n, "n_test": 500, "diag_reg": 1e-4, "t_finite": times}
    start = time.perf_counter()
    dense = KernelFlow.from_kernels(k, y, diag_reg=1e-4)
    out["dense_setup_s"] = time.perf_counter() - start  # input checks of the dense flow (symmetry, spectrum)
    start = time.perf_counter()
    dense_inf = dense.predict(kx, np.inf)
    out["cholesky_s"] = time.perf_counter() - start
    start = time.perf_counter()
    dense_t = dense.predict(kx, times)
    out["eigh_s"] = time.perf_counter() - start
    values = dense.eigen().values
    out["condition_number"] = float(values[0] / values[-1])
    with dask.config.set(scheduler="threads"):
        lazy = da.from_array(k, chunks=1250)
        options = KrylovOptions(rtol=1e-12)
        start = time.perf_counter()
        flow = KernelFlow.from_kernels(lazy, y, diag_reg=1e-4, krylov=options)
        krylov_inf = flow.predict(kx, np.inf)
        out["cg_s"], out["cg_products"] = time.perf_counter() - start, flow.operator.products
        start = time.perf_counter()
        flow = KernelFlow.from_kernels(lazy, y, diag_reg=1e-4, krylov=options)
        krylov_t = flow.predict(kx, times)
        out["lanczos_s"], out["lanczos_products"] = time.perf_counter() - start, flow.operator.products
    out["cg_relative_error"] = float(np.max(np.abs(krylov_inf - dense_inf)) / np.max(np.abs(dense_inf)))
    out["lanczos_relative_error"] = float(np.max(np.abs(krylov_t - dense_t)) / np.max(np.abs(dense_t)))
    print(f"flow N = {n}: dense checks {out['dense_setup_s']:.1f} s; Cholesky {out['cholesky_s']:.1f} s vs CG "
          f"{out['cg_s']:.1f} s ({out['cg_products']} products), error {out['cg_relative_error']:.1e}; eigh "
          f"{out['eigh_s']:.1f} s vs Lanczos {out['lanczos_s']:.1f} s ({out['lanczos_products']} products, t = {times}), "
          f"error {out['lanczos_relative_error']:.1e}; cond {out['condition_number']:.2e}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000, help="points of the kernel benchmark")
    p.add_argument("--n-flow", type=int, default=5_000, help="training points of the flow benchmark")
    p.add_argument("--skip-kernels", action="store_true")
    p.add_argument("--skip-flow", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "distributed.json"))
    args = p.parse_args()
    result = {"cores": len(os.sched_getaffinity(0)), "load_before": os.getloadavg()}
    if args.skip_kernels and Path(args.out).exists():  # keep the kernel rows of an earlier run
        result["kernels"] = json.loads(Path(args.out).read_text()).get("kernels")
    print(f"load average before: {result['load_before']}", flush=True)
    if not args.skip_kernels:
        with tempfile.TemporaryDirectory(prefix="ntkdsl-bench-") as workdir:
            result["kernels"] = kernels_part(args.n, workdir)
    if not args.skip_flow:
        result["flow"] = flow_part(args.n_flow)
    result["load_after"] = os.getloadavg()
    print(f"load average after: {result['load_after']}")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
