"""IR -> KernelProgram: the kernel recursion as straight-line SSA code over sympy expressions.

Each layer contributes one assignment per quantity it changes, to fresh symbols named after the
quantity and the layer (``nngp_3``, ``ntk_3``, ``cov1_3``, ``nngp_dot_3``), so expressions stay
small however deep the network (never one nested expression of depth L). Layer parameters stay
symbols (``w_std_1``, ``b_std_1``, ``erf_a_4``) with a table of exact values, substituted only when
code is generated: the recursion can be differentiated with respect to them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Dict, Optional, Tuple

import sympy as sp

from ..activations import finiteness
from ..activations.dual import function_dual
from ..algebra.masking import mask_field, masked_derivation
from ..algebra.points import SAME_POINT
from ..algebra.spatial import DIAGONAL, FULL, to_layout
from ..algebra.state import KernelState, elementwise_kernel
from ..ir.layer import Layer, refuse_unmaskable
from ..ir.network import Network
from ..ir.printer import format_value
from .layout import needs_full_input, plan_sequence

FIELDS = ("cov1", "cov2", "nngp", "nngp_dot", "ntk")  # assignment order within a layer


@dataclass(frozen=True)
class Step:
    """One layer of the recursion.

    Attributes:
        index: the layer's position, 1-based (the input is step 0).
        layer: the IR node.
        assignments: (symbol, expression) pairs in evaluation order; expressions refer only to
            earlier symbols and to this layer's parameter symbols.
        state: the kernel state after the layer; each field a symbol, or a constant.
        parameters: this layer's (parameter symbol, exact value) pairs.
    """

    index: int
    layer: Optional[Layer]
    assignments: Tuple[Tuple[sp.Symbol, sp.Expr], ...]
    state: KernelState
    parameters: Tuple[Tuple[sp.Symbol, sp.Expr], ...]
    merged: Tuple[Layer, ...] = ()  # earlier activations composed into this one (σ_k ∘ … ∘ σ_1)
    input_state: Optional[KernelState] = None  # the state the layer read (in the layout it read it)
    context: str = ""  # where the layer sits when inside branches, e.g. "residual 5, branch 2"
    detail: str = ""  # for a branching layer: which steps its branches are

    @property
    def label(self) -> str:
        if self.layer is None:
            return "input"
        if self.layer.branching:
            return self.layer.header() + (f": {self.detail}" if self.detail else "")
        return " ∘ ".join(n.format() for n in (self.layer, *reversed(self.merged)))

    @property
    def note(self) -> str:
        """How an activation step's dual was obtained, and whether activations were composed."""
        if not self.state.note:
            return ""
        composed = f"composed {len(self.merged) + 1} activations into one elementwise function; " if self.merged else ""
        return composed + self.state.note

    def expressions(self) -> Dict[str, sp.Expr]:
        """This layer's update of each quantity it assigns, e.g. ``{'nngp': w_std_1**2*nngp_0 + ...}``."""
        by_symbol = dict(self.assignments)
        out = {}
        for name in FIELDS:
            value = getattr(self.state, name)
            if value in by_symbol:
                out[name] = by_symbol[value]
        return out


@dataclass(frozen=True)
class KernelProgram:
    """The derived recursion of a network: input step, one step per layer, outputs."""

    network: Network
    steps: Tuple[Step, ...]
    masked: bool = False  # derived for per-input position masks (its modules take mask1/mask2; algebra.masking)

    @property
    def parameters(self) -> Dict[sp.Symbol, sp.Expr]:
        """Every parameter symbol and its exact value."""
        return {sym: val for step in self.steps for sym, val in step.parameters}

    @cached_property
    def runtime_parameters(self) -> Dict[sp.Symbol, sp.Expr]:
        """The parameters that generated code takes at run time (``kernels(..., params=)``), in order.

        Every real parameter (σ_w, σ_b, activation parameters, a residual's scale) enters the
        derivation as a symbol (the formulas never branch on its value), so one compiled module
        evaluates the network at any of its values. The exception stays compile-time
        (:attr:`fixed_parameters`): the parameters of a step with a numerical dual, whose σ is
        printed into the quadrature as a function with its numbers. Structural numbers (widths,
        window sizes, a monomial's degree, ``b_std`` absent or present) are not parameters at all.
        """
        fixed = self.fixed_parameters
        return {sym: val for sym, val in self.parameters.items() if sym not in fixed}

    @cached_property
    def fixed_parameters(self) -> Dict[sp.Symbol, sp.Expr]:
        """The parameters that generated code has as numbers (substituted exactly): those of steps
        with a numerical dual (a quadrature over σ)."""
        from ..algebra.functions import GaussianExpectation

        return {sym: val for step in self.steps if any(e.has(GaussianExpectation) for _, e in step.assignments)
                for sym, val in step.parameters}

    def same_structure(self, other: "KernelProgram") -> bool:
        """Whether ``other`` has the same recursion as this program, its run-time parameters' values
        aside: then one compiled module evaluates both."""
        if len(self.steps) != len(other.steps) or self.fixed_parameters != other.fixed_parameters:
            return False
        return self.output == other.output and all(
            a.assignments == b.assignments and a.state == b.state and [s for s, _ in a.parameters] == [s for s, _ in b.parameters]
            for a, b in zip(self.steps, other.steps))

    @cached_property
    def output(self) -> KernelState:
        """The state after the last layer (of a masked program with a spatial output: remasked)."""
        last = self.steps[-1]
        return _masked_output(last) if self.masked and last.state.shape else last.state

    def check(self) -> "KernelProgram":
        """Verify the SSA invariants: each symbol assigned once, and only used after assignment."""
        inputs = self.steps[0].state
        defined = set(self.parameters) | {inputs.cov1, inputs.cov2, inputs.nngp, SAME_POINT}  # δ(x, x′): every request's
        for step in self.steps:
            for sym, expr in step.assignments:
                unknown = expr.free_symbols - defined
                if unknown:
                    raise AssertionError(f"step {step.index}: {sym} uses undefined {sorted(map(str, unknown))}")
                if sym in defined:
                    raise AssertionError(f"step {step.index}: {sym} is assigned twice")
                defined.add(sym)
        for name in ("nngp", "ntk"):
            if getattr(self.output, name).free_symbols - defined:
                raise AssertionError(f"output {name} uses undefined symbols")
        return self

    def __str__(self) -> str:
        net = self.network
        shape = net.input_dim if len(net.input_shape) == 1 else list(net.input_shape)
        lines = [f"KernelProgram {net.name}: input {shape}, {net.parameterization} parameterization"]
        for step in self.steps:
            where = f"   [{step.layer.span.file}:{step.layer.span.line}]" if step.layer is not None and step.layer.span else ""
            inside = f"   (in {step.context})" if step.context else ""
            lines.append(f"step {step.index}: {step.label}{where}{inside}")
            for sym, val in step.parameters:
                lines.append(f"    {sym} := {format_value(val)}")
            for sym, expr in step.assignments:
                lines.append(f"    {sym} = {expr}")
        out = self.output
        lines.append(f"output: nngp = {out.nngp}, ntk = {out.ntk}")
        return "\n".join(lines)


def input_state(d: int, shape: Tuple[int, ...] = (), layout: str = DIAGONAL) -> Tuple[Step, KernelState]:
    """Step 0: Σ⁰(x, x') = x·x'/d and Θ⁰ = 0 (kernel-math.md §1); evaluated by the code generator.

    For images, d is the channel count and x·x' the product of the pixels' channel vectors, at
    every pixel pair of the layout (``shape`` the spatial shape).
    """
    cov1, cov2 = sp.symbols("cov1_0 cov2_0", nonnegative=True)  # variances
    nngp = sp.Symbol("nngp_0", real=True)
    state = KernelState(cov1, cov2, nngp, sp.S.Zero, gaussian=False, width=d, shape=tuple(shape), layout=layout)
    return Step(0, None, (), state, ()), state


def derive(net: Network, layout: str = "auto", masked: bool = False) -> KernelProgram:
    """Derive the kernel recursion of a verified network.

    Args:
        net: a network accepted by :func:`ntkdsl.ir.verify`.
        layout: "auto" (the cheapest layout each state needs, :mod:`.layout`) or "full" (every
            spatial state full: the same kernels at a higher cost, for comparisons).
        masked: the program of inputs with position masks (kernel-math.md §2, masks): each layer's
            masked rule, and after every layer whose ``masking`` is "remask" the entries touching a
            masked position zeroed. A layer that cannot take masks is a located StructureSpecError.

    Returns:
        The checked :class:`KernelProgram`.
    """
    if layout not in ("auto", FULL):
        raise ValueError(f"layout must be 'auto' or 'full', not {layout!r}")
    force = layout == FULL
    spatial = tuple(net.input_shape[:-1])
    full_in, _ = plan_sequence(net.layers, False, force)
    first, state = input_state(net.input_dim, spatial, FULL if spatial and full_in else DIAGONAL)
    if masked:
        refuse_unmaskable(net)
    deriver = _Deriver(force, [first], masked)
    with masked_derivation(masked):
        deriver.sequence(net.layers, state, False, "")
    program = KernelProgram(net, tuple(deriver.steps), masked).check()
    finiteness.verify(program)  # a numerical dual whose expectation is infinite: a located error
    return program


class _Deriver:
    """Walks the layers in evaluation order (branches before the layer that merges them), numbering
    every layer (1, 2, ...) and appending one :class:`Step` per layer or group of activations."""

    def __init__(self, force_full: bool, steps, masked: bool = False):
        self.force_full = force_full
        self.steps = steps
        self.count = 0
        self.masked = masked

    def _next(self) -> int:
        self.count += 1
        return self.count

    def sequence(self, layers, state: KernelState, full_output: bool, context: str) -> KernelState:
        """Derive ``layers`` from ``state``; return the state after them."""
        _, after = plan_sequence(layers, full_output, self.force_full)
        i = 0
        while i < len(layers):
            layer = layers[i]
            if state.layout == FULL and not needs_full_input(layer, after[i], self.force_full):
                state = to_layout(state, DIAGONAL)  # nothing downstream needs the pairs (p, p') any more
            if layer.branching:
                index, params, new, detail = self._branching(layer, state, after[i], context)
                group, i = [(index, layer)], i + 1
            else:
                group, i = self._group(layers, i)
                index, layer = group[-1]
                params = {j: _symbols(j, node) for j, node in group}
                if len(group) == 1 and hasattr(layer, "kernel_stages"):
                    index, state, new = self._stages(layer, index, params, state, context)
                elif len(group) == 1:
                    new = layer.kernel(state, params[index])
                else:  # σ_k ∘ … ∘ σ_1: the input of σ_2 is not Gaussian, so take the dual of the composition
                    fn = None
                    for j, node in group:
                        f = node.elementwise(params[j])
                        fn = f if fn is None else sp.Lambda(fn.variables, f(fn.expr))
                    new = elementwise_kernel(state, lambda q1, q2, c: function_dual(fn, q1, q2, c))
                detail = ""
                if new.shape and new.layout == FULL and not after[i - 1] and not layer.elementwise:
                    new = to_layout(new, DIAGONAL)  # e.g. pooling whose output only flatten or conv read
            state = self._append(index, layer, group, params, state, new, context, detail)
        return state

    def _branching(self, layer, state: KernelState, full_output: bool, context: str):
        """Derive every branch of ``layer`` from ``state``, then merge them (:meth:`combine`);
        returns (index, parameter symbols, merged state, step detail naming the branches' steps)."""
        where = f"{layer.header()} at line {layer.span.line}" if layer.span else layer.header()
        inner = f"{context}, " if context else ""
        names = layer.branch_names()
        states, ranges = [], []
        for b, branch in enumerate(layer.branch_sequences(), start=1):
            start = self.count + 1
            name = names[b - 1] if names else f"branch {b}"
            states.append(self.sequence(branch, state, full_output, f"{inner}{where}, {name}"))
            ranges.append(f"steps {start}–{self.count}" if self.count >= start else "the input")
        target = FULL if full_output else DIAGONAL
        index = self._next()
        params = {index: _symbols(index, layer)}
        new = layer.combine([to_layout(s, target) for s in states], params[index])
        detail = f"x + f(x), f = {ranges[1]}" if names else "branches = " + " | ".join(ranges)
        return index, params, new, detail

    def _stages(self, layer, index, params, state: KernelState, context: str):
        """A layer whose kernel is a recursion (``recurrent``: one stage per time step): its generator
        ``kernel_stages(state, p)`` yields each stage's state and is sent back that state with fresh
        symbols, so every stage is a step of its own and no expression nests the recursion's depth.
        Returns (the final step's index, the last stage's state, the final state for the caller to append)."""
        stages = layer.kernel_stages(state, params[index])
        new, count = next(stages), 0
        while True:
            count += 1
            where = f"{context}, " if context else ""
            state = self._append(self._next(), layer, [], {}, state, new, f"{where}stage {count}", "")
            try:
                new = stages.send(state)
            except StopIteration as done:
                return self._next(), state, done.value

    def _group(self, layers, i):
        """The layer at ``i`` with fresh indices: alone, or with the run of activations it starts
        (identities between them dropped); returns (group, next position)."""
        layer = layers[i]
        group, i = [(self._next(), layer)], i + 1
        if layer.elementwise:
            pending = []  # identities seen since the last activation of the run
            while i < len(layers) and (layers[i].transparent or layers[i].elementwise):
                if layers[i].elementwise:
                    for _ in pending:
                        self._next()
                    pending = []
                    group.append((self._next(), layers[i]))
                    i += 1
                else:
                    pending.append(layers[i])
                    i += 1
            i -= len(pending)  # trailing identities are layers of their own
        return group, i

    def _append(self, index, layer, group, params, before, new, context, detail) -> KernelState:
        """Assign every changed field of ``new`` to a fresh symbol; record the step."""
        assignments, fields = [], {}
        pending = {name: getattr(new, name) for name in FIELDS}
        remasks = self.masked and layer is not None and layer.masking == "remask"
        for name in FIELDS:
            expr = pending[name]
            if expr is None or expr.is_Symbol or (expr.is_number and not (remasks and new.shape and expr != 0)):
                fields[name] = expr  # unchanged or constant: no assignment
                continue
            sym = sp.Symbol(f"{name}_{index}", **({"nonnegative": True} if name.startswith("cov") else {"real": True}))
            assignments.append((sym, mask_field(expr, name, new) if remasks else expr))
            fields[name] = sym
            if name == "nngp" and pending["ntk"] is not None:  # Θ' = Σ' + σ_w²Θ reads the new Σ'
                pending["ntk"] = pending["ntk"].subs(expr, sym)
        state = KernelState(gaussian=new.gaussian, width=new.width, note=new.note, shape=new.shape,
                                  layout=new.layout, **fields)
        parameters = tuple((sym, node.parameters()[name]) for j, node in group for name, sym in params[j].items())
        merged = tuple(node for _, node in group[:-1])
        self.steps.append(Step(index, layer, tuple(assignments), state, parameters, merged, before, context, detail))
        return state


def _masked_output(step: Step) -> KernelState:
    """The output state of a masked program whose last step is ``step`` (a spatial output): its fields
    remasked, for the result statements (an activation may leave σ(0)² at masked positions); a layer that
    remasks already is left alone."""
    s = step.state
    if step.layer is None or step.layer.masking == "remask":
        return s
    return replace(s, **{name: mask_field(getattr(s, name), name, s) for name in ("cov1", "cov2", "nngp", "ntk")})


def _symbols(index: int, layer: Layer) -> Dict[str, sp.Symbol]:
    """Fresh symbols for a layer's parameters: w_std_3, b_std_3, erf_a_4, ..."""
    prefix = layer.parameter_prefix()
    return {name: sp.Symbol(f"{prefix}{name}_{index}", real=True) for name in layer.parameters()}
