"""IR -> KernelProgram: the kernel recursion as straight-line SSA code over sympy expressions.

Each layer contributes one assignment per quantity it changes, to fresh symbols named after the
quantity and the layer (``nngp_3``, ``ntk_3``, ``cov1_3``, ``nngp_dot_3``), so expressions stay
small however deep the network (never one nested expression of depth L). Layer parameters stay
symbols (``w_std_1``, ``b_std_1``, ``erf_a_4``) with a table of exact values, substituted only when
code is generated: the recursion can be differentiated with respect to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import sympy as sp

from ..activations.dual import function_dual
from ..ir import nodes
from ..ir.printer import format_layer, format_value

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
    layer: Optional[nodes.Layer]
    assignments: Tuple[Tuple[sp.Symbol, sp.Expr], ...]
    state: nodes.KernelState
    parameters: Tuple[Tuple[sp.Symbol, sp.Expr], ...]
    merged: Tuple[nodes.Layer, ...] = ()  # earlier activations composed into this one (σ_k ∘ … ∘ σ_1)

    @property
    def label(self) -> str:
        if self.layer is None:
            return "input"
        return " ∘ ".join(format_layer(n) for n in (self.layer, *reversed(self.merged)))

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

    network: nodes.Network
    steps: Tuple[Step, ...]

    @property
    def parameters(self) -> Dict[sp.Symbol, sp.Expr]:
        """Every parameter symbol and its exact value."""
        return {sym: val for step in self.steps for sym, val in step.parameters}

    @property
    def output(self) -> nodes.KernelState:
        return self.steps[-1].state

    def check(self) -> "KernelProgram":
        """Verify the SSA invariants: each symbol assigned once, and only used after assignment."""
        inputs = self.steps[0].state
        defined = set(self.parameters) | {inputs.cov1, inputs.cov2, inputs.nngp}
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
        lines = [f"KernelProgram {net.name}: input {net.input_dim}, {net.parameterization} parameterization"]
        for step in self.steps:
            where = f"   [{step.layer.span.file}:{step.layer.span.line}]" if step.layer is not None and step.layer.span else ""
            lines.append(f"step {step.index}: {step.label}{where}")
            for sym, val in step.parameters:
                lines.append(f"    {sym} := {format_value(val)}")
            for sym, expr in step.assignments:
                lines.append(f"    {sym} = {expr}")
        out = self.output
        lines.append(f"output: nngp = {out.nngp}, ntk = {out.ntk}")
        return "\n".join(lines)


def input_state(d: int) -> Tuple[Step, nodes.KernelState]:
    """Step 0: Σ⁰(x, x') = x·x'/d and Θ⁰ = 0 (kernel-math.md §1); evaluated by the code generator."""
    cov1, cov2 = sp.symbols("cov1_0 cov2_0", nonnegative=True)  # variances
    nngp = sp.Symbol("nngp_0", real=True)
    state = nodes.KernelState(cov1, cov2, nngp, sp.S.Zero, gaussian=False, width=d)
    return Step(0, None, (), state, ()), state


def derive(net: nodes.Network) -> KernelProgram:
    """Derive the kernel recursion of a verified network.

    Args:
        net: a network accepted by :func:`ntkdsl.ir.verify`.

    Returns:
        The checked :class:`KernelProgram`.
    """
    first, state = input_state(net.input_dim)
    steps = [first]
    for group in _groups(net.layers):
        index, layer = group[-1]
        params = {i: _symbols(i, node) for i, node in group}
        if len(group) == 1:
            new = layer.kernel(state, params[index])
        else:  # σ_k ∘ … ∘ σ_1: the input of σ_2 is not Gaussian, so take the dual of the composition
            fn = None
            for i, node in group:
                f = node.elementwise(params[i])
                fn = f if fn is None else sp.Lambda(fn.variables, f(fn.expr))
            new = nodes.elementwise_kernel(state, lambda q1, q2, c: function_dual(fn, q1, q2, c))
        assignments, fields = [], {}
        pending = {name: getattr(new, name) for name in FIELDS}
        for name in FIELDS:
            expr = pending[name]
            if expr is None or expr.is_Symbol or expr.is_number:
                fields[name] = expr  # unchanged or constant: no assignment
                continue
            sym = sp.Symbol(f"{name}_{index}", **({"nonnegative": True} if name.startswith("cov") else {"real": True}))
            assignments.append((sym, expr))
            fields[name] = sym
            for later in FIELDS[FIELDS.index(name) + 1:]:  # e.g. Θ' = Σ' + σ_w²Θ reads the new Σ'
                if pending[later] is not None:
                    pending[later] = pending[later].subs(expr, sym)
        state = nodes.KernelState(gaussian=new.gaussian, width=new.width, note=new.note, **fields)
        parameters = tuple((sym, node.parameters()[name]) for i, node in group for name, sym in params[i].items())
        merged = tuple(node for _, node in group[:-1])
        steps.append(Step(index, layer, tuple(assignments), state, parameters, merged))
    return KernelProgram(net, tuple(steps)).check()


def _symbols(index: int, layer: nodes.Layer) -> Dict[str, sp.Symbol]:
    """Fresh symbols for a layer's parameters: w_std_3, b_std_3, erf_a_4, ..."""
    prefix = f"{layer.name}_" if isinstance(layer, nodes.ELEMENTWISE) else ""
    return {name: sp.Symbol(f"{prefix}{name}_{index}", real=True) for name in layer.parameters()}


def _groups(layers):
    """Layers as (index, node) groups: each run of activations (identities between them dropped)
    is one group, every other layer its own."""
    out, i = [], 0
    numbered = list(enumerate(layers, start=1))
    while i < len(numbered):
        index, layer = numbered[i]
        group, i = [(index, layer)], i + 1
        if isinstance(layer, nodes.ELEMENTWISE):
            j = i
            while j < len(numbered) and isinstance(numbered[j][1], (nodes.Identity, *nodes.ELEMENTWISE)):
                if isinstance(numbered[j][1], nodes.ELEMENTWISE):
                    group.append(numbered[j])
                    i = j + 1
                j += 1
        out.append(group)
    return out
