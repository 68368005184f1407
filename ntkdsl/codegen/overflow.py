"""Kernels that are not finite are refused, naming the layer whose variance overflowed.

Weights such as ``dense(4, w_std = 1e100)`` repeated, or huge inputs, make a layer's variance
Σ(x, x) exceed the float64 range; every kernel after it is then inf or NaN. Rather than check each
entry inside the evaluators (per-entry work in their hot loops), a result is checked once after
evaluation (:func:`refuse_nonfinite`: a sum over each output, one pass without temporaries; a sum
is finite iff every entry is, unless the sum itself overflows, which the exact test then settles).
When an entry is not finite, the per-point chain of the two points of the first such entry is
re-run with the NumPy module (two points: O(1) work) while its local variables are watched: the
first layer whose variance ``cov1_k`` (or diagonal NNGP/NTK) stops being finite is the one named,
with its location in the spec, the generated modules' ``# layer k: ... (file:line:col)``.
"""

from __future__ import annotations

import math
import re
import sys

import numpy as np

from .dispatch import module_for, runtime_values
from .emit import layer_location

_QUANTITY = re.compile(r"(cov1|nngp|ntk)_(\d+)$")  # the generated modules' names of each layer's results
_WHAT = {"cov1": "the variance Σ(x, x)", "nngp": "the NNGP kernel Σ", "ntk": "the NTK Θ(x, x)"}


class KernelOverflowError(FloatingPointError):
    """A kernel that is not finite at these inputs: a layer's variance overflowed float64.

    ``args``: (message, its template with ``{pair}`` for the points, the two offending points, and
    whether they came from a self-kernel), so that a tiled request can name its own row indices
    (:meth:`relocated`) and the error survives pickling (dask workers).
    """

    def __str__(self) -> str:
        return str(self.args[0])

    def relocated(self, x1, x2=None) -> "KernelOverflowError":
        """The same error naming the points by their rows in the whole request ``x1``, ``x2``."""
        if len(self.args) < 5:
            return self
        template, (a, b), _, which = self.args[1:5]
        i, j = _row(x1, a), _row(x1 if x2 is None else x2, b)
        return KernelOverflowError(template.format(pair=_pair(i, j, x2 is None, which)), *self.args[1:])


def _row(x, point) -> int:
    rows = np.asarray(_to_numpy(x)).reshape(len(x), -1)
    hits = np.flatnonzero((rows == np.asarray(point).reshape(1, -1)).all(axis=1))
    return int(hits[0]) if hits.size else -1


def _pair(i: int, j: int, same: bool, which: str = "both") -> str:
    """The points named: x1[i] ("a"), x1[j] or x2[j] ("b"), or both."""
    second = f"{'x1' if same else 'x2'}[{j}]"
    if which == "a" or (same and i == j):
        return f"x1[{i}]"
    return second if which == "b" else f"x1[{i}] and {second}"


def _to_numpy(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def _finite(a) -> bool:
    with np.errstate(all="ignore"):
        total = float(a.sum())
    if math.isfinite(total):
        return True
    return bool(np.isfinite(_to_numpy(a)).all())  # the sum overflowed, or an entry is not finite


def refuse_nonfinite(modules: dict, program, x1, x2, nngp, ntk, *, dtype=None, source=None,
                     filename: str = "<string>", name: str = "network") -> None:
    """Raise :class:`KernelOverflowError` unless every entry of ``nngp`` and ``ntk`` is finite.

    Args:
        modules: the network's loaded modules (the NumPy module is loaded there if needed).
        program: the network's :class:`~ntkdsl.symbolic.program.KernelProgram`.
        x1, x2: the request's inputs (x2 None for a self-kernel); NumPy or CuPy arrays.
        nngp, ntk: its results.
        dtype: the results' dtype (float32 results may overflow where float64 would not).
    """
    if _finite(nngp) and _finite(ntk):
        return
    bad = ~(np.isfinite(_to_numpy(nngp)) & np.isfinite(_to_numpy(ntk)))
    i, j = (int(v) for v in np.argwhere(bad)[0][:2])  # a spatial output's pixel axes follow the pair's
    a, b = _to_numpy(x1)[i], _to_numpy(x1 if x2 is None else x2)[j]
    points = np.stack([a, b]) if (x2 is not None or i != j) else a[None]
    found = _first_nonfinite(modules, program, points, source, filename, name)
    if found is None:
        hint = ("; the float64 kernels are finite there: ask for dtype float64"
                if np.dtype(dtype or np.float64) == np.float32 else
                "; every layer of the NumPy evaluator is finite for these points: backend='numpy' may evaluate them")
        template, which = "the kernels of {pair} are not finite" + hint, "both"
    elif found[0] == 0:
        template, which = ("the input variance Σ⁰(x, x) = x·x/d of {pair} overflows float64 (the inputs' squares "
                           "are summed in float64); scale the inputs down"), found[4]
    else:
        index, quantity, value, before, which = found
        step = next(s for s in program.steps if s.index == index)
        where, text, quote = (part.replace("{", "{{").replace("}", "}}") for part in _located(step))  # spec text
        previous = f" (the largest variance entering it is {before:.3g})" if before is not None else ""
        template = (f"{where}the kernels overflow float64 at layer {index} ({text}): {_WHAT[quantity]} of {{pair}} "
                    f"is {value} there{previous}; scale the inputs or this layer's weights down{quote}")
    raise KernelOverflowError(template.format(pair=_pair(i, j, x2 is None, which)), template, (a, b), x2 is None, which)


def _located(step):
    """(``file:line:col: `` or "", the layer's source text or label, its source line with a caret or "")."""
    span = getattr(step.layer, "span", None)
    if span is None or span.line == 0:
        return "", step.label, ""
    line = span.source_line()
    width = span.end_col - span.col if span.end_line == span.line else len(line) - span.col + 1
    text = line[span.col - 1:span.col - 1 + width] if line else step.label
    where = layer_location(step.layer).strip()[1:-1]  # the generated modules' "(file:line:col)"
    quote = f"\n    {line}\n    {' ' * (span.col - 1)}{'^' * max(1, width)}" if line else ""
    return f"{where}: ", text, quote


def largest_variance(net, x) -> float:
    """max over the layers and the points of ``x`` of the variance Σ(x, x) (cov1), inputs included: the
    V of the PSD bound (README, Reliability). The NumPy module's self-kernel of ``x`` under a trace, so
    O(N²) like the kernels: meant for diagnostics and tests, not for every request."""
    module = module_for(net._modules, net.program, "numpy", net.source, net.filename, net.name)
    largest = [0.0]

    def watch(frame, event, arg):
        for var, value in list(frame.f_locals.items()):
            if var.startswith("cov1_") and var[5:].isdigit():
                largest[0] = max(largest[0], float(np.max(np.abs(value))))
        return watch

    _traced(module, watch, np.asarray(x, dtype=np.float64), runtime_values(net.program))
    return largest[0]


def _traced(module, watch, points, params) -> None:
    """Run ``module.kernels(points)`` with ``watch`` as the local trace of its own frame."""
    code = module.kernels.__code__

    def calls(frame, event, arg):
        return watch if frame.f_code is code else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        with np.errstate(all="ignore"):
            module.kernels(points, None, params=params)
    finally:
        sys.settrace(previous)


def _first_nonfinite(modules, program, points, source, filename, name):
    """(layer index, quantity, a non-finite value, largest finite variance before, which point) of the first layer
    whose result is not finite for the self-kernel of ``points``, or None; the NumPy module runs
    once under a trace of its own frame (a few points: milliseconds)."""
    module = module_for(modules, program, "numpy", source, filename, name)
    seen, found, largest = set(), [], {}

    def watch(frame, event, arg):
        for var, value in list(frame.f_locals.items()):
            m = _QUANTITY.match(var)
            if not m or var in seen or found:
                continue
            seen.add(var)
            v = np.asarray(value, dtype=np.float64)
            if not np.isfinite(v).all():
                before = max((q for k, q in largest.items() if k < int(m[2])), default=None)
                found.append((int(m[2]), m[1], v[~np.isfinite(v)].flat[0], before, _which(m[1], v, len(points))))
            elif m[1] == "cov1" and v.size:
                largest[int(m[2])] = float(np.abs(v).max())
        return watch

    try:
        _traced(module, watch, points, runtime_values(program))
    except (ArithmeticError, ValueError):  # a numerical dual refusing the variance: reported below as not located
        pass
    return found[0] if found else None


def _which(quantity: str, value: np.ndarray, n: int) -> str:
    """Which of the n ≤ 2 points a per-point variance (a column, per pixel for images) is not finite for."""
    if quantity != "cov1" or n != 2 or value.ndim == 0 or value.shape[0] != 2:
        return "both"
    bad = ~np.isfinite(value.reshape(2, -1)).all(axis=1)
    return "a" if bad[0] and not bad[1] else "b" if bad[1] and not bad[0] else "both"
