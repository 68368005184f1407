"""The report of ``ntkdsl check --n N``: memory and time of N x N points on each backend, from the
static cost model (:mod:`.cost`), with whether the fused kernels can evaluate the network
(:func:`.fused.fusable`) and numba is installed; nothing is run.
"""

from __future__ import annotations

from typing import List

from ..tiling import MemoryBudgetError, format_bytes, plan
from .cost import ACCURACY_SHORT, fused_memory, numpy_memory, seconds, step_costs
from .dispatch import module_available
from .fused import fusable


def format_seconds(t: float) -> str:
    """A duration for messages: ms, s, min, h or days."""
    if t < 1:
        return f"{t * 1000:.3g} ms"
    if t < 120:
        return f"{t:.3g} s"
    if t < 7200:
        return f"{t / 60:.3g} min"
    return f"{t / 3600:.3g} h" if t < 172800 else f"{t / 86400:.3g} days"


def report(program, n: int, budget: int) -> List[str]:
    """Lines for ``ntkdsl check``: memory and time of n x n points on each backend, nothing run."""
    costs = step_costs(program)
    model = numpy_memory(program, costs)
    try:
        tile = plan(n, n, model, budget)
    except MemoryBudgetError:
        tile = "over"
    where = (f", more than the budget of {format_bytes(budget)} even in tiles" if tile == "over" else
             f", tiles of {tile[0]} x {tile[1]} under the budget of {format_bytes(budget)}" if tile else "")
    lines = [f"  cost of {n} x {n} points (a static model, nothing is run; {ACCURACY_SHORT}):",
             f"  numpy evaluator: memory {format_bytes(model.per_pair)} per input pair + "
             f"{format_bytes(model.per_point)} per point; {format_bytes(model.peak(n, n))} in one piece{where}; "
             f"time about {format_seconds(seconds(program, n, n, 'numpy', costs))}"]
    head = "  fused CPU kernels (backend numba): "
    reason = fusable(program)
    if reason:
        lines.append(head + f"no, the NumPy evaluator runs: {reason}")
    else:
        fused = fused_memory(program)
        installed = "" if module_available("numba") else " (numba is not installed: pip install 'ntkdsl[fast]')"
        lines.append(head + f"yes{installed}; memory {format_bytes(fused.per_pair)} per input pair + "
                     f"{format_bytes(fused.per_point)} per point; {n} x {n} points: {format_bytes(fused.peak(n, n))}; "
                     f"time about {format_seconds(seconds(program, n, n, 'numba', costs))} after a compile of "
                     "seconds (once per machine, cached)")
    lines.append(f"  cupy (GPU): the NumPy evaluator's arrays in device memory, about {format_bytes(model.peak(n, n))} "
                 "in one piece; time not estimated (no GPU measurements yet)")
    return lines
