"""The benchmark workloads, described once for both sides: ntkdsl's .ntk text and the
neural-tangents layer list are built from the same dict, so the two always compute the same kernel.

Kept free of ntkdsl and jax imports: ``nt_worker.py`` imports it inside neural-tangents' own
environment (numpy < 2, no ntkdsl).
"""

from __future__ import annotations

import math
from typing import Dict, List

W_STD = math.sqrt(2.0)
B_STD = 0.1
D = 784  # MNIST-sized inputs for the fully connected workloads


def fcn(act: str, depth: int, n: int, dtype: str) -> Dict:
    return {"name": f"fcn-{act}-d{depth}", "kind": "fcn", "act": act, "depth": depth, "n": n, "dtype": dtype,
            "input": [D]}


def cnn(readout: str, convs: int, hw: int, n: int, dtype: str = "float64", channels: int = 64) -> Dict:
    return {"name": f"cnn{convs}-{readout}-{hw}x{hw}", "kind": "cnn", "act": "relu", "depth": convs,
            "readout": readout, "n": n, "dtype": dtype, "input": [hw, hw, 3], "channels": channels}


def workloads(quick: bool) -> List[Dict]:
    """The issue's list; ``quick`` keeps one or two sizes of each kind (a few minutes in all)."""
    if quick:
        return [fcn("relu", 5, 1000, "float64"), fcn("relu", 5, 2000, "float64"), fcn("relu", 5, 2000, "float32"),
                fcn("relu", 20, 1000, "float64"), fcn("erf", 5, 1000, "float64"), fcn("gelu", 5, 1000, "float64"),
                cnn("gap", 2, 8, 64), cnn("flatten", 2, 8, 256)]
    out = [fcn("relu", 5, n, dtype) for n in (1000, 2000, 4000) for dtype in ("float64", "float32")]
    out += [fcn("relu", 20, 2000, "float64"), fcn("erf", 5, 2000, "float64"), fcn("gelu", 5, 2000, "float64")]
    out += [cnn("gap", 2, 8, n) for n in (64, 128)] + [cnn("flatten", 2, 8, 256)]
    # the 21-layer CNN on 32 x 32 x 3 (neural-tangents' published workload, float32): the largest N whose
    # run fits a few minutes on 2 cores (CNN-GAP: ~1.3 s per input pair for ntkdsl, 10^6 pixel pairs each;
    # flatten: neural-tangents ~5 s at N = 128)
    out += [cnn("flatten", 21, 32, n, "float32") for n in (64, 128)] + [cnn("gap", 21, 32, 2, "float32")]
    return out


def ntk_source(w: Dict) -> str:
    """The workload as a .ntk network (conv/pooling syntax)."""
    act = w["act"]
    lines = []
    if w["kind"] == "fcn":
        for _ in range(w["depth"]):
            lines += [f"dense(512, w_std = sqrt(2), b_std = {B_STD})", act]
        header = f"network {w['name'].replace('-', '_')}(input = {w['input'][0]})"
    else:
        for _ in range(w["depth"]):
            lines += [f"conv({w['channels']}, kernel = 3, padding = same, w_std = sqrt(2), b_std = {B_STD})", act]
        lines.append("global_avg_pool" if w["readout"] == "gap" else "flatten")
        h, wd, c = w["input"]
        header = f"network {w['name'].replace('-', '_')}(input = [{h}, {wd}, {c}])"
    lines.append(f"dense(1, w_std = sqrt(2), b_std = {B_STD})")
    return header + " {\n" + "".join(f"    {line}\n" for line in lines) + "}\n"


def input_shape(w: Dict):
    return (w["n"], *w["input"])


def steady_peak_mb(call):
    """Peak resident memory of one call above the resident memory just before it, in MiB (Linux:
    the high-water mark is reset through /proc/self/clear_refs). None where that is not available."""
    import gc

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _status_kb("VmRSS")
    result = call()
    peak = _status_kb("VmHWM")
    del result
    return (peak - before) / 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)
