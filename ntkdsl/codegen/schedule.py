"""The KernelProgram scheduled for printing: what every code generator reads of the SSA program.

The program (:mod:`ntkdsl.symbolic.program`) is straight-line SSA, one step per layer. Every
generator (NumPy/CuPy array code :mod:`.emit`, the numba loops :mod:`.fused` and
:mod:`.fused_spatial`, the CUDA kernels :mod:`.cuda`) prints the same facts of it, computed here
once (:func:`schedule`):

* per layer, the state it read and its assignments with the fixed parameters substituted exactly
  (the run-time ones stay symbols) and every angle as ``atan2`` (:func:`to_atan2`), split into the
  per-point ones (the variances of x1 and x2, a column and a row: O(N) numbers) and the per-pair
  ones (Σ, Θ, K̇ and their temporaries: O(N1·N2));
* which of a layer's quantities a later layer or the outputs read (they outlive the layer: a row
  buffer, a grid of the pair loop, an output of a CUDA kernel);
* whether the layer sets Σ and the variance together (then Σ(x, x) is the variance, bit for bit),
  or both variances (then x2's are x1's when x2 is x1).

And the two operations every printer applies: common-subexpression elimination of a layer's
assignments (:func:`cse`, numerical duals kept whole) and freeing the arrays of printed statements
after their last use (:func:`free_after_last_use`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, FrozenSet, Iterable, List, Sequence, Tuple

import sympy as sp

from ..algebra.functions import GaussianExpectation, to_atan2
from ..algebra.state import KernelState
from ..symbolic.program import KernelProgram, Step

Assignments = Tuple[Tuple[sp.Symbol, sp.Expr], ...]


def inert(text: str) -> str:
    """``text`` (a file name: user data) made safe to paste into a comment or docstring of generated code:
    ASCII with backslash escapes, so no newline can start a line of code, and no quote can end a docstring."""
    return ascii(text)[1:-1].replace('"', '\\"')


def layer_location(layer) -> str:
    """``  (file:line:col)`` of a layer for a comment of generated code; "" without a span."""
    span = layer.span
    return f"  ({inert(span.file)}:{span.line}:{span.col})" if span else ""


@dataclass(frozen=True)
class LayerSchedule:
    """One layer of the program as the generators print it.

    Attributes:
        step: the program's step.
        before: the kernel state the layer read.
        assignments: all its assignments in program order, fixed parameters substituted, angles as atan2.
        points: those of per-point quantities (x1's and x2's variances), in program order.
        pairs: those of per-pair quantities, in program order.
        read_later: the layer's quantities that a later layer or the outputs read.
    """

    step: Step
    before: KernelState
    assignments: Assignments
    points: Assignments
    pairs: Assignments
    read_later: FrozenSet[sp.Symbol]

    @property
    def index(self) -> int:
        return self.step.index

    @property
    def label(self) -> str:
        return self.step.label

    @property
    def state(self) -> KernelState:
        return self.step.state

    @property
    def title(self) -> str:
        """``layer L: label  (file:line:col)``, the head of the layer's comment."""
        return f"layer {self.index}: {self.label}{layer_location(self.step.layer)}"

    @property
    def heading(self) -> str:
        """The title, and where the layer sits inside branches (``[residual 5, branch 2]``)."""
        return f"{self.title} [{self.step.context}]" if self.step.context else self.title

    @property
    def grid(self) -> str:
        """``kernel over pixels [h, w], <layout> layout`` of a spatial layer; "" of a vector one."""
        return f"kernel over pixels {list(self.state.shape)}, {self.state.layout} layout" if self.state.shape else ""

    @property
    def exact_diagonal(self) -> bool:
        """The layer sets Σ and x1's variance: where x2 is x1, Σ(x, x) is that variance, bit for bit."""
        assigned = {s for s, _ in self.assignments}
        return self.state.nngp in assigned and self.state.cov1 in assigned

    @property
    def both_variances(self) -> bool:
        """The layer sets the variances of x1 and of x2 (where x2 is x1, x2's are x1's, bit for bit:
        sympy may order the terms of the two formulas differently)."""
        assigned = {s for s, _ in self.points}
        return self.state.cov1 in assigned and self.state.cov2 in assigned


@dataclass(frozen=True)
class Schedule:
    """The program scheduled for printing: its layers (:class:`LayerSchedule`) and per-point symbols.

    Attributes:
        program: the program.
        rows: the per-point symbols of x1 (its variances: a column).
        cols: the per-point symbols of x2 (a row).
        layers: one per step after the input.
    """

    program: KernelProgram
    rows: FrozenSet[sp.Symbol]
    cols: FrozenSet[sp.Symbol]
    layers: Tuple[LayerSchedule, ...]

    @property
    def per_point(self) -> FrozenSet[sp.Symbol]:
        return self.rows | self.cols

    @property
    def values(self) -> Dict[sp.Symbol, sp.Expr]:
        """The fixed parameters' exact values (substituted; the run-time ones stay names)."""
        return self.program.fixed_parameters

    @property
    def input(self) -> KernelState:
        return self.program.steps[0].state

    @cached_property
    def kept(self) -> FrozenSet[sp.Symbol]:
        """Every per-pair quantity that outlives its layer."""
        return frozenset(s for layer in self.layers for s, _ in layer.pairs if s in layer.read_later)


def schedule(program: KernelProgram) -> Schedule:
    """The program's :class:`Schedule`."""
    rows = frozenset(s.state.cov1 for s in program.steps if isinstance(s.state.cov1, sp.Symbol))
    cols = frozenset(s.state.cov2 for s in program.steps if isinstance(s.state.cov2, sp.Symbol))
    values = program.fixed_parameters
    out = program.output
    read = {s for e in (out.nngp, out.ntk) for s in e.free_symbols}  # what the steps after the current one read
    layers: List[LayerSchedule] = []
    for prev, step in reversed(list(zip(program.steps, program.steps[1:]))):
        assignments = tuple((s, to_atan2(e.xreplace(values))) for s, e in step.assignments)
        layers.append(LayerSchedule(
            step=step, before=step.input_state if step.input_state is not None else prev.state,
            assignments=assignments,
            points=tuple((s, e) for s, e in assignments if s in rows or s in cols),
            pairs=tuple((s, e) for s, e in assignments if s not in rows and s not in cols),
            read_later=frozenset(s for s, _ in assignments if s in read)))
        read |= {s for _, e in step.assignments for s in e.free_symbols}
    return Schedule(program, rows, cols, tuple(reversed(layers)))


def hide_quadratures(exprs):
    """Stand-ins for numerical duals so that CSE shares their (q1, q2, c) arguments but never
    takes their σ Lambdas apart; ``restore`` puts them back."""
    originals = {}

    def hide(ge):
        key = (ge.args[0], ge.args[1], ge.args[5])
        if key not in originals:
            originals[key] = sp.Function(f"_quadrature{len(originals)}")
        return originals[key](*ge.args[2:5])

    hidden = [e.replace(GaussianExpectation, lambda *a: hide(GaussianExpectation(*a))) for e in exprs]
    by_func = {func: key for key, func in originals.items()}

    def restore(e):
        return e.replace(lambda n: getattr(n, "func", None) in by_func,
                         lambda n: GaussianExpectation(by_func[n.func][0], by_func[n.func][1], *n.args, by_func[n.func][2]))

    return hidden, restore


def cse(assignments: Sequence[Tuple[sp.Symbol, sp.Expr]], prefix: str):
    """sympy's CSE of a layer's assignments (temporaries ``prefix0``, ``prefix1``, ...; numerical
    duals kept whole, their arguments shared): (temporaries, the assignments in terms of them)."""
    if not assignments:
        return [], []
    hidden, restore = hide_quadratures([e for _, e in assignments])
    shared, reduced = sp.cse(hidden, symbols=sp.numbered_symbols(prefix), order="none")
    return ([(s, restore(e)) for s, e in shared],
            [(target, restore(e)) for (target, _), e in zip(assignments, reduced)])


def cse_lines(assignments, printer, prefix: str, indent: str) -> List[str]:
    """One statement per line: the shared subexpressions of ``assignments``, then the assignments
    (targets printed by ``printer`` too: a loop's buffer prints as ``name[j]``)."""
    shared, reduced = cse(assignments, prefix)
    lines = [f"{indent}{s} = {printer.doprint(e)}" for s, e in shared]
    return lines + [f"{indent}{printer.doprint(s)} = {printer.doprint(e)}" for s, e in reduced]


def last_uses(uses: Iterable[Iterable[str]]) -> Dict[str, int]:
    """Liveness of straight-line code: name -> the index of the last statement that uses it, from
    the names each statement uses (``uses``, in order)."""
    return {name: i for i, names in enumerate(uses) for name in names}


# SSA names of generated array code (kernel fields and CSE temporaries), freed after their last use
SSA_NAMES = re.compile(r"\b(?:(?:cov1|cov2|nngp_dot|nngp|ntk)_\d+|t\d+_\d+)\b")


def free_after_last_use(statements: List[List[str]], names: re.Pattern = SSA_NAMES) -> List[str]:
    """The statements' lines with ``del`` of every SSA array (``names``) after the statement that uses
    it last (comments do not count), so that the evaluation holds a few kernel arrays at a time."""
    last = last_uses({name for line in statement for name in names.findall(line.split("#")[0])} for statement in statements)
    dead: Dict[int, List[str]] = {}
    for name, i in last.items():
        dead.setdefault(i, []).append(name)
    out: List[str] = []
    for i, statement in enumerate(statements):
        out += statement
        if i in dead and i < len(statements) - 1:
            out.append(f"    del {', '.join(sorted(dead[i], key=_ssa_order))}")
    return out


def _ssa_order(name: str):
    stem, _, number = name.rpartition("_")
    return (int(number) if number.isdigit() else 0, stem)


__all__ = ["LayerSchedule", "Schedule", "cse", "cse_lines", "free_after_last_use", "hide_quadratures", "inert",
           "last_uses", "layer_location", "schedule"]
