"""Layout inference: which kernel states must hold all pixel pairs (p, p') and which only (p, p).

kernel-math.md §1: average, sum and global pooling need the full (p, p') covariance of their input;
conv, layer norm, identity and activations need of their input what their output needs; flatten
needs only the diagonal; a branching layer needs what any of its branches needs. One backward pass
per sequence of layers gives, for the state after each layer, whether a later layer needs it
full — the cheapest layout the whole network needs, decided per state (full up to the last
pooling layer, diagonal after it), as neural-tangents decides it per layer.
"""

from __future__ import annotations

from math import prod
from typing import List, Sequence, Tuple


def needs_full_input(layer, full_output: bool, force_full: bool = False) -> bool:
    """Whether ``layer`` needs its input in the full layout, given what its output must be."""
    if force_full:
        return True
    if layer.branching:
        return any(plan_sequence(b, full_output)[0] for b in layer.branch_sequences())
    return layer.needs_full_input(full_output)


def plan_sequence(layers: Sequence, full_output: bool, force_full: bool = False) -> Tuple[bool, List[bool]]:
    """(whether the input of ``layers`` must be full, [whether the state after layer i must be full]).

    Args:
        layers: a sequence of IR nodes (a network's or a branch's).
        full_output: whether the state after the last layer must be full.
        force_full: every state full (for tests and comparisons: the full layout gives the same kernel).
    """
    after: List[bool] = [False] * len(layers)
    need = full_output or force_full
    for i in range(len(layers) - 1, -1, -1):
        after[i] = need
        need = needs_full_input(layers[i], need, force_full)
    return need, after


def entries_per_pair(shape: Tuple[int, ...], layout: str) -> int:
    """Array entries per input pair of a kernel of spatial ``shape``: 1, P (diagonal) or P² (full)."""
    p = prod(shape)
    return p * p if shape and layout == "full" else p


def largest_kernel(program) -> int:
    """Entries per input pair of the program's largest kernel arrays (over every step's state)."""
    return max(entries_per_pair(step.state.shape, step.state.layout) for step in program.steps)


def _ranges(indices: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> '0–2, 5'."""
    out, start, prev = [], None, None
    for i in sorted(indices):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}–{prev}" if prev > start else f"{start}")
            start = prev = i
    if start is not None:
        out.append(f"{start}–{prev}" if prev > start else f"{start}")
    return ", ".join(out)


def layout_report(program) -> List[str]:
    """Lines for ``ntkdsl check``: which steps hold which layout, why, and the largest kernel array."""
    from ..tiling import format_bytes

    steps = [s for s in program.steps if s.state.shape]
    if not steps:
        return []
    full = [s.index for s in steps if s.state.layout == "full"]
    diagonal = [s.index for s in steps if s.state.layout != "full"]
    needers = [s for s in program.steps[1:] if s.layer.needs_full_input(False)]
    needers = list({id(s.layer): s for s in needers}.values())  # a recurrent layer's stages: named once
    lines = []
    if full:
        why = ", ".join(f"{s.layer.header()} at {s.layer.span.line}:{s.layer.span.col}" if s.layer.span
                        else s.layer.header() for s in needers)
        lines.append(f"  layout: full (all pixel pairs (p, p')) after steps {_ranges(full)}"
                     + (f", for {why}" if why else " (forced)"))
    if diagonal:
        lines.append(f"  layout: diagonal (pixel pairs (p, p) only) after steps {_ranges(diagonal)}")
    entries = largest_kernel(program)
    big = next(s for s in steps if entries_per_pair(s.state.shape, s.state.layout) == entries)
    dims = big.state.shape * (2 if big.state.layout == "full" else 1)
    lines.append(f"  largest kernel arrays: ({', '.join(map(str, dims))}, N1, N2) after step {big.index}, "
                 f"{format_bytes(8 * entries)} per input pair each")
    return lines
