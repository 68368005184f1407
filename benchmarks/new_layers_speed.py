"""ntkdsl against neural-tangents 0.6.5 on the layers of the "new layers" issue: speed and memory of the
full N x N NNGP and NTK, measured in the same run and reported as ratios against neural-tangents.

    python benchmarks/new_layers_speed.py                 # every row (a few minutes on 2 cores)
    python benchmarks/new_layers_speed.py --only gnn --repeat 3

Rows (``ROWS``) are dicts of a ``kind`` and its sizes; each kind (``KINDS``) gives the .ntk text, the
neural-tangents ``stax`` layers and the side inputs (graphs, masks) of a row, all from the same dict,
so both tools compute the same kernel. A new layer is one more entry of ``KINDS`` and rows of it.

- ``aggregate``: a GNN on N graphs of V nodes and C = 8 features: ``depth`` times (node-wise dense of
  64 channels, aggregate, relu), global average pool over nodes, dense(1); adjacencies random
  symmetric 0/1 (edge probability 0.3) with self loops, normalised D^(-1/2)(A + I)D^(-1/2)
  (neural-tangents' ``Aggregate(implementation='DENSE')`` with ``pattern=(A, A)``).
- ``attention``: a transformer encoder block on N sequences of L steps and C = 8 features: node-wise
  dense of 64 channels, residual self-attention (64 channels, ``heads`` heads, softmax, linear scaling:
  neural-tangents' ``GlobalSelfAttention`` defaults), layer norm, residual position-wise ReLU MLP, layer
  norm, average pool over steps, dense(1).

Each row runs in fresh subprocesses per tool, as ``run.py``'s workloads (its ``_measure``: times from
one worker under glibc's default allocator, the memory from a second under a 1 MiB mmap threshold):
inputs from ``numpy.random.default_rng(0)``, one warm-up call (numba's compile or cache load; jax.jit's
compilation), then the median of ``--repeat`` timed calls; neural-tangents jitted with
``jax_enable_x64``. Memory is the peak resident set of one steady-state call above the resident set
before it. ``rel diff``: the largest relative difference of the two tools' NTKs off the diagonal of a
4 x 4 corner (both float64). Results: ``benchmarks/results/new_layers_speed.json``.

This file runs in both environments (``--worker``: ntkdsl, ``--nt-worker``: ``.bench-nt/bin/python``),
so it imports only the standard library, NumPy and the benchmark helpers at the top.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from workloads import B_STD, W_STD, steady_peak_mb  # noqa: E402

CHANNELS, FEATURES = 64, 8


# ---------------------------------------------------------------- the kinds of rows

def gnn_text(row: dict) -> str:
    block = f"conv({CHANNELS}, kernel = 1, w_std = sqrt(2), b_std = {B_STD}); aggregate; relu\n    "
    return (f"network gnn(input = [{row['nodes']}, {FEATURES}]) {{\n    " + block * row["depth"]
            + f"global_avg_pool\n    dense(1, w_std = sqrt(2), b_std = {B_STD})\n}}\n")


def gnn_layers(row: dict, stax) -> list:
    block = [stax.Dense(CHANNELS, W_std=W_STD, b_std=B_STD), stax.Aggregate(implementation="DENSE"), stax.Relu()]
    return block * row["depth"] + [stax.GlobalAvgPool(), stax.Dense(1, W_std=W_STD, b_std=B_STD)]


def gnn_inputs(row: dict):
    """(x (N, V, C), {"graph": normalised adjacencies (N, V, V)}) from default_rng(0)."""
    import numpy as np

    rng = np.random.default_rng(0)
    n, v = row["n"], row["nodes"]
    x = rng.standard_normal((n, v, FEATURES))
    upper = np.triu(rng.random((n, v, v)) < 0.3, 1)
    a = (upper | upper.transpose(0, 2, 1)) + np.eye(v)
    degree = a.sum(axis=2)
    return x, {"graph": a / np.sqrt(degree[:, :, None] * degree[:, None, :])}


def transformer_text(row: dict) -> str:
    dense = f"conv({CHANNELS}, kernel = 1, w_std = sqrt(2), b_std = {B_STD})"
    return (f"network transformer(input = [{row['length']}, {FEATURES}]) {{\n    {dense}\n"
            f"    residual {{ attention({CHANNELS}, heads = {row['heads']}) }}\n    layer_norm\n"
            f"    residual {{ {dense}; relu; {dense} }}\n    layer_norm\n"
            f"    global_avg_pool\n    dense(1, w_std = sqrt(2), b_std = {B_STD})\n}}\n")


def transformer_layers(row: dict, stax) -> list:
    def residual(*body):
        return [stax.FanOut(2), stax.parallel(stax.Identity(), stax.serial(*body)), stax.FanInSum()]

    def dense():
        return stax.Dense(CHANNELS, W_std=W_STD, b_std=B_STD)

    attention = stax.GlobalSelfAttention(CHANNELS, CHANNELS, CHANNELS, row["heads"])
    return ([dense()] + residual(attention) + [stax.LayerNorm()] + residual(dense(), stax.Relu(), dense())
            + [stax.LayerNorm(), stax.GlobalAvgPool(), stax.Dense(1, W_std=W_STD, b_std=B_STD)])


def sequence_inputs(row: dict):
    """(x (N, L, C), no side inputs) from default_rng(0)."""
    import numpy as np

    return np.random.default_rng(0).standard_normal((row["n"], row["length"], FEATURES)), {}


# kind: (.ntk text, stax layers, inputs, ntkdsl's kernels keywords from the side inputs, neural-tangents' ones)
KINDS = {
    "aggregate": (gnn_text, gnn_layers, gnn_inputs,
                  lambda side: {"graph1": side["graph"]},
                  lambda side: {"pattern": (side["graph"], side["graph"])}),
    "attention": (transformer_text, transformer_layers, sequence_inputs, lambda side: {}, lambda side: {}),
}


def gnn(n: int, nodes: int, depth: int = 2, whole: bool = False) -> dict:
    """``whole``: ntkdsl evaluates the request in one piece (batch_size = N) instead of the cache-sized
    tiles it picks for image-like networks by default (``ntkdsl.tiling.preferred_peak``)."""
    return {"name": f"gnn{depth}-{nodes}nodes" + ("-whole" if whole else ""), "kind": "aggregate", "n": n,
            "nodes": nodes, "depth": depth, "backend": "numpy",  # numba falls back to NumPy for per-point graphs
            "batch_size": n if whole else None}


def transformer(n: int, length: int, heads: int = 4) -> dict:
    return {"name": f"transformer-{length}steps", "kind": "attention", "n": n, "length": length, "heads": heads,
            "backend": "auto"}


ROWS = [gnn(64, 16), gnn(128, 16), gnn(256, 16), gnn(64, 32), gnn(128, 32), gnn(128, 16, whole=True),
        gnn(256, 16, whole=True), gnn(128, 32, whole=True),
        transformer(64, 16), transformer(128, 16), transformer(64, 32)]


# ---------------------------------------------------------------- the two workers

def ntkdsl_worker(row: dict, repeat: int) -> dict:
    import resource

    import ntkdsl

    text, _, inputs, ours, _ = KINDS[row["kind"]]
    net = ntkdsl.loads(text(row), filename=f"<benchmark {row['name']}>")
    x, side = inputs(row)
    kwargs = dict(backend=row["backend"], batch_size=row.get("batch_size"), **ours(side))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    k = net.kernels(x, **kwargs)
    first = time.perf_counter() - t
    times = []
    for _ in range(repeat):
        del k
        t = time.perf_counter()
        k = net.kernels(x, **kwargs)
        times.append(time.perf_counter() - t)
    sample = {"nngp": k.nngp[:4, :4].tolist(), "ntk": k.ntk[:4, :4].tolist()}
    del k
    return {"times": times, "first_call_s": first, "call_peak_mb": steady_peak_mb(lambda: net.kernels(x, **kwargs)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "base_rss_mb": base / 1024,
            "sample": sample, "dtype": "float64"}


def nt_worker(row: dict, repeat: int) -> dict:
    import resource
    import warnings

    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from neural_tangents import stax

    warnings.simplefilter("ignore")
    _, layers, inputs, _, theirs = KINDS[row["kind"]]
    _, _, kernel_fn = stax.serial(*layers(row, stax))
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")
    x, side = inputs(row)
    x, kwargs = jax.numpy.asarray(x), {k: jax.tree_util.tree_map(jax.numpy.asarray, v) for k, v in theirs(side).items()}

    def call():
        k = kernel_fn(x, None, ("nngp", "ntk"), **kwargs)
        k.nngp.block_until_ready()
        k.ntk.block_until_ready()
        return k

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    k = call()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        k = call()
        times.append(time.perf_counter() - t)
    sample = {"nngp": np.asarray(k.nngp)[:4, :4].tolist(), "ntk": np.asarray(k.ntk)[:4, :4].tolist()}
    del k
    return {"times": times, "first_call_s": first, "call_peak_mb": steady_peak_mb(call),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "base_rss_mb": base / 1024,
            "sample": sample, "dtype": "float64",
            "versions": {"neural_tangents": __import__("neural_tangents").__version__, "jax": jax.__version__}}


# ---------------------------------------------------------------- the run

def _ratio(a: dict, b: dict, key: str):
    return a[key] / b[key] if a.get(key) and b.get(key) else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="run only rows whose name contains this")
    p.add_argument("--repeat", type=int, default=3, help="timed calls per row and tool (default %(default)s)")
    p.add_argument("--nt-python", default=str(ROOT / ".bench-nt" / "bin" / "python"))
    p.add_argument("--timeout", type=int, default=900, help="seconds per worker")
    p.add_argument("--out", default=str(HERE / "results" / "new_layers_speed.json"))
    p.add_argument("--worker", nargs=2, metavar=("ROW", "REPEAT"), help=argparse.SUPPRESS)
    p.add_argument("--nt-worker", nargs=2, metavar=("ROW", "REPEAT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for option, worker in ((args.worker, ntkdsl_worker), (args.nt_worker, nt_worker)):
        if option:
            print(json.dumps(worker(json.loads(option[0]), int(option[1]))))
            return 0
    from run import _agreement, _measure, _summary

    if not Path(args.nt_python).exists():
        print(f"no neural-tangents environment at {args.nt_python} (benchmarks/README.md says how to make one)")
        return 1
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"median of {args.repeat} calls after a warm-up, float64")
    print("time and memory ratios: ntkdsl / neural-tangents (below 1: ntkdsl faster or smaller); MB: peak resident "
          "memory of one call above the memory before it")
    print(f"{'row':22s} {'N':>4s} {'ntkdsl s':>9s} {'NT s':>8s} {'time ratio':>10s} {'ntkdsl MB':>10s} {'NT MB':>8s} "
          f"{'memory ratio':>12s} {'rel diff':>9s}")
    rows = []
    for row in ROWS:
        if args.only not in row["name"]:
            continue
        load = os.getloadavg()[0]
        item = 8 * row["n"] ** 2
        ours = _summary(_measure([sys.executable, __file__, "--worker", json.dumps(row)], args.repeat, args.timeout),
                        row["n"], 8)
        nt = _summary(_measure([args.nt_python, __file__, "--nt-worker", json.dumps(row)], args.repeat, args.timeout),
                      row["n"], 8)
        time_ratio, memory_ratio = _ratio(ours, nt, "median_s"), _ratio(ours, nt, "call_peak_mb")
        agree = _agreement(ours, nt)
        cell = lambda r, k, f: format(r[k], f) if r.get(k) is not None else "error"  # noqa: E731
        print(f"{row['name']:22s} {row['n']:4d} {cell(ours, 'median_s', '9.3f'):>9s} {cell(nt, 'median_s', '8.3f'):>8s} "
              f"{(f'{time_ratio:.2f}' if time_ratio else '-'):>10s} {cell(ours, 'call_peak_mb', '10.0f'):>10s} "
              f"{cell(nt, 'call_peak_mb', '8.0f'):>8s} {(f'{memory_ratio:.2f}' if memory_ratio else '-'):>12s} "
              f"{(f'{agree:.1e}' if agree is not None else '-'):>9s}", flush=True)
        for side, r in (("ntkdsl", ours), ("neural-tangents", nt)):
            if "error" in r:
                print(f"    {side}: {r['error']}")
        rows.append({"row": row, "ntkdsl": ours, "neural_tangents": nt, "time_ratio_ntkdsl_over_nt": time_ratio,
                     "memory_ratio_ntkdsl_over_nt": memory_ratio, "ntk_relative_difference": agree,
                     "output_bytes": 2 * item, "load_average_1min_before": load,
                     "load_average_1min_after": os.getloadavg()[0]})
    meta = {"machine": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "repeat": args.repeat,
            "command": " ".join(["benchmarks/new_layers_speed.py"] + list(argv if argv is not None else sys.argv[1:]))}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
