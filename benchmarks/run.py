"""ntkdsl against neural-tangents: the same workloads, in the same run, on the same machine.

    python benchmarks/run.py --quick            # a few minutes: the main sizes of each kind
    python benchmarks/run.py                    # the full list (about 15 minutes on 2 cores)
    python benchmarks/run.py --backends numba,numpy --out results.json

Every workload runs in two fresh subprocesses, one per tool, so that neither shares memory, threads
or caches with the other: ntkdsl in this interpreter, neural-tangents in its own environment
(``--nt-python``, default ``.bench-nt/bin/python``; see benchmarks/README.md to create it). Both
sides: inputs from ``numpy.random.default_rng(0)``, one warm-up call (ntkdsl's numba compile or its
disk-cache load; jax.jit's compilation: reported as "first call"), then ``--repeat`` timed calls of
the full N x N NNGP and NTK of x with itself; the median is reported. neural-tangents runs jitted,
with ``jax_enable_x64`` for float64 workloads. Memory is the peak resident set (``ru_maxrss``) of the
worker minus its resident set after imports and inputs, also given in N x N arrays of the dtype.
The last column compares a 4 x 4 corner of both tools' kernels (relative difference of the NTK).

A workload that ntkdsl cannot compile is reported as skipped, with neural-tangents' figure still
measured in the full run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from workloads import input_shape, ntk_source, steady_peak_mb, workloads  # noqa: E402


def ntkdsl_worker(w: dict, repeat: int, backend: str) -> dict:
    """ntkdsl's side of one workload (runs in a subprocess: ``run.py --worker``)."""
    import resource

    import numpy as np

    import ntkdsl
    from ntkdsl.errors import SpecError

    try:
        net = ntkdsl.loads(ntk_source(w), filename=f"<benchmark {w['name']}>")
    except SpecError as exc:
        return {"skipped": "ntkdsl cannot compile this network yet: " + exc.format().splitlines()[0]}
    x = np.random.default_rng(0).standard_normal(input_shape(w))
    if w["dtype"] == "float32":
        x = x.astype(np.float32).astype(np.float64)  # the inputs neural-tangents sees
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    k = net.kernels(x, backend=backend, dtype=w["dtype"])
    first = time.perf_counter() - t
    times = []
    for _ in range(repeat):
        del k
        t = time.perf_counter()
        k = net.kernels(x, backend=backend, dtype=w["dtype"])
        times.append(time.perf_counter() - t)
    from ntkdsl.codegen.dispatch import resolve

    sample = {"nngp": k.nngp[:4, :4].tolist(), "ntk": k.ntk[:4, :4].tolist()}
    del k
    call_mb = steady_peak_mb(lambda: net.kernels(x, backend=backend, dtype=w["dtype"]))
    return {"times": times, "first_call_s": first, "call_peak_mb": call_mb, "dtype": w["dtype"],
            "backend": resolve(net.program, backend, w["n"] ** 2)[0],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "base_rss_mb": base / 1024,
            "sample": sample}


def _spawn(cmd, timeout, for_memory: bool = False) -> dict:
    # The memory run: large arrays from mmap, returned to the OS when freed, so that each call's peak
    # shows in the resident set (glibc otherwise raises its mmap threshold after the first free and
    # keeps freed arrays mapped). Timing runs keep glibc's default, which users have: a fixed 1 MiB
    # threshold makes every large temporary a fresh mmap with page faults (NumPy's CNN path ran up to
    # 2x slower under it; XLA's own allocator is not affected).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="1048576") if for_memory else dict(os.environ)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {out.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def _measure(cmd, repeat: int, timeout) -> dict:
    """Times from one worker under the default allocator, memory from a second one (``repeat`` 0)
    under a low mmap threshold (see :func:`_spawn`)."""
    r = _spawn(cmd + [str(repeat)], timeout)
    if "times" not in r:
        return r
    m = _spawn(cmd + ["0"], timeout, for_memory=True)
    r["timing_run"] = {k: r.get(k) for k in ("call_peak_mb", "peak_rss_mb", "base_rss_mb")}
    if "call_peak_mb" in m:
        r.update({k: m[k] for k in ("call_peak_mb", "peak_rss_mb", "base_rss_mb")})
    else:
        r["call_peak_mb"] = None
        r["memory_run_error"] = m.get("error") or m.get("skipped")
    return r


def _summary(r: dict, n: int, itemsize: int) -> dict:
    if "times" in r:
        r["median_s"] = statistics.median(r["times"])
        r["min_s"] = min(r["times"])
        r["extra_mb"] = r["peak_rss_mb"] - r["base_rss_mb"]  # includes compilation (numba, XLA)
        r["call_arrays"] = r["call_peak_mb"] * 2**20 / (n * n * itemsize) if r.get("call_peak_mb") is not None else None
    return r


def _agreement(a: dict, b: dict):
    import numpy as np

    if "sample" not in a or "sample" not in b:
        return None
    x, y = np.asarray(a["sample"]["ntk"]), np.asarray(b["sample"]["ntk"])
    off = ~np.eye(len(x), dtype=bool)  # neural-tangents' diagonal is not exact (arccos at ρ ≈ 1): compare off it
    return float(np.max(np.abs(x - y)[off] / np.abs(y)[off]))


def _cell(r: dict, key: str, fmt: str) -> str:
    if "skipped" in r:
        return "skipped"
    if "error" in r:
        return "error"
    return format(r[key], fmt)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the short list (a few minutes)")
    p.add_argument("--repeat", type=int, default=None, help="timed calls per workload (default 5, quick 3)")
    p.add_argument("--backends", default="numba", help="ntkdsl backends to time, comma-separated (numba, numpy, auto)")
    p.add_argument("--only", default="", help="run only workloads whose name contains this")
    p.add_argument("--nt-python", default=str(ROOT / ".bench-nt" / "bin" / "python"))
    p.add_argument("--skip-nt", action="store_true", help="time ntkdsl only")
    p.add_argument("--timeout", type=int, default=900, help="seconds per worker")
    p.add_argument("--out", default=None, help="JSON results (default benchmarks/results/latest[-quick].json)")
    p.add_argument("--worker", nargs=3, metavar=("WORKLOAD", "BACKEND", "REPEAT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(ntkdsl_worker(json.loads(args.worker[0]), int(args.worker[2]), args.worker[1])))
        return 0

    repeat = args.repeat or (3 if args.quick else 5)
    started = time.perf_counter()
    backends = [b for b in args.backends.split(",") if b]
    have_nt = Path(args.nt_python).exists() and not args.skip_nt
    if not have_nt and not args.skip_nt:
        print(f"note: no neural-tangents environment at {args.nt_python} (see benchmarks/README.md); ntkdsl only")
    rows = []
    header = (f"{'workload':24s} {'N':>5s} {'dtype':7s} {'backend':7s} {'ntkdsl s':>9s} {'NT s':>8s} {'NT/ntkdsl':>9s} "
              f"{'ntkdsl MB (arrays)':>19s} {'NT MB (arrays)':>16s} {'rel diff':>9s}")
    legend = ("MB: peak resident memory of one call above the memory before it; arrays: that peak in N x N "
              "arrays of the dtype; rel diff: NTK of both tools, off the diagonal of a 4 x 4 corner")
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"median of {repeat} after a warm-up call")
    print(legend)
    print(header)
    for w in workloads(args.quick):
        if args.only and args.only not in w["name"]:
            continue
        itemsize = 8 if w["dtype"] == "float64" else 4
        results = {}
        load = os.getloadavg()[0]
        for backend in backends:
            cmd = [sys.executable, str(HERE / "run.py"), "--worker", json.dumps(w), backend]
            results[backend] = _summary(_measure(cmd, repeat, args.timeout), w["n"], itemsize)
        skipped = all("skipped" in r for r in results.values())
        nt = {"skipped": "no neural-tangents environment"} if not have_nt else (
            {"skipped": "ntkdsl skipped it (quick run)"} if skipped and args.quick else
            _summary(_measure([args.nt_python, str(HERE / "nt_worker.py"), json.dumps(w)], repeat, args.timeout),
                     w["n"], itemsize))
        for backend, r in results.items():
            ratio = nt["median_s"] / r["median_s"] if "median_s" in r and "median_s" in nt else None
            agree = _agreement(r, nt)
            mem = lambda s: "skipped" if "skipped" in s else ("error" if "error" in s else (  # noqa: E731
                f"{s['call_peak_mb']:.0f} ({s['call_arrays']:.1f})" if s.get("call_peak_mb") is not None else "-"))
            print(f"{w['name']:24s} {w['n']:5d} {w['dtype']:7s} {r.get('backend', backend):7s} "
                  f"{_cell(r, 'median_s', '9.3f'):>9s} {_cell(nt, 'median_s', '8.3f'):>8s} "
                  f"{(f'{ratio:.2f}x' if ratio else '-'):>9s} {mem(r):>19s} {mem(nt):>16s} "
                  f"{(f'{agree:.1e}' if agree is not None else '-'):>9s}", flush=True)
            for side, res in (("ntkdsl", r), ("neural-tangents", nt)):
                if "skipped" in res or "error" in res:
                    print(f"    {side}: {res.get('skipped') or res.get('error')}")
            rows.append({"workload": w, "requested_backend": backend, "ntkdsl": r, "neural_tangents": nt,
                         "ratio_nt_over_ntkdsl": ratio, "ntk_relative_difference": agree,
                         "load_average_1min_before": load, "load_average_1min_after": os.getloadavg()[0]})
    out = Path(args.out) if args.out else HERE / "results" / ("latest-quick.json" if args.quick else "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "repeat": repeat, "quick": args.quick,
            "command": " ".join([Path(sys.argv[0]).name] + list(argv if argv is not None else sys.argv[1:])),
            "wall_s": time.perf_counter() - started, "load_average_at_end": os.getloadavg(),
            "timing": "default glibc malloc; memory from a second worker with MALLOC_MMAP_THRESHOLD_=1048576"}
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
