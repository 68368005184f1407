"""KernelProgram -> the source of a standalone Python module that evaluates the kernels.

The module is written for humans: a provenance header (source file, its hash, the canonical
network text), one commented block per layer naming its source line, one statement per line,
readable SSA names. Per layer, parameter values are substituted exactly, ``angle`` is rewritten to
``atan2`` and common subexpressions are shared (sympy's CSE on that layer's few expressions).
The same text is what ``ntkdsl compile`` writes and what :mod:`.loader` executes.
"""

from __future__ import annotations

from typing import List, Optional

import sympy as sp

from ..algebra.functions import GaussianExpectation, to_atan2
from ..algebra.spatial import dual_arguments
from ..arraycode.backends import BACKENDS
from ..arraycode.printer import ArrayPrinter
from ..arraycode.sources import support_sources
from ..symbolic.program import KernelProgram
from . import spatial_output
from .prologue import (POINTS_AND_DTYPE, graph_binding, module_header, parameter_binding, parameter_table, point_helpers,
                       same_point_binding, side_fields, spatial_fields)
from .schedule import LayerSchedule, cse, free_after_last_use, hide_quadratures, layer_location, schedule

_PROLOGUE = '''

def kernels(x1, x2=None, params=None{side_params}):
    """The NNGP and NTK kernels of the network between two sets of inputs.

    Args:
        x1: inputs, shape (N1, {d}).
        x2: inputs, shape (N2, {d}); None means x1 (the kernel is then exactly symmetric).
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.
{side_doc}
    Returns:
        (nngp, ntk): float64 arrays of shape (N1, N2{result_shape}): Σ(x1, x2) and Θ(x1, x2).
    """
    same = x2 is None
    x1 = _as_points(x1, "x1")
    x2 = x1 if same else _as_points(x2, "x2")
{side_binding}    # input: Σ⁰(x, x') = x·x'/d, Θ⁰ = 0 (kernel-math.md §1); cov1 is a column, cov2 a row
    cov1_0 = xp.sum(x1 * x1, axis=1, keepdims=True) / {d}
    cov2_0 = cov1_0.T if same else xp.sum(x2 * x2, axis=1, keepdims=True).T / {d}
    nngp_0 = (x1 @ x2.T) / {d}
    if same:  # exact symmetry and diagonal: Σ(x, x) is cov1 bit for bit
        nngp_0 = (nngp_0 + nngp_0.T) / 2
        _exact_diagonal(nngp_0, cov1_0)
'''


_SPATIAL_PROLOGUE = '''

def kernels(x1, x2=None, params=None{side_params}):
    """The NNGP and NTK kernels of the network between two sets of inputs.

    Args:
        x1: inputs, shape (N1, {shape}) (channels last).
        x2: inputs, shape (N2, {shape}); None means x1 (the kernel is then exactly symmetric).
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.
{side_doc}
    Returns:
        (nngp, ntk): float64 arrays of shape (N1, N2{result_shape}): Σ(x1, x2) and Θ(x1, x2).
    """
    same = x2 is None
    x1 = _as_points(x1, "x1")
    x2 = x1 if same else _as_points(x2, "x2")
{side_binding}    # input: Σ⁰(x, x')(p, p') = x(p)·x'(p')/{channels}, Θ⁰ = 0 (kernel-math.md §1), in the {layout} layout:
    # pixel axes first, points last: nngp_0 of shape {array}, cov1_0 (..., N1, 1), cov2_0 (..., 1, N2)
    cov1_0, cov2_0, nngp_0 = input_covariances(x1, x2, same, full={full})
'''


_DIAGONAL_PROLOGUE = '''

def kernels_diagonal(x, params=None{side_params}):
    """Σ(x, x) and Θ(x, x) of each input with itself, in O(N) time and memory (neural-tangents' diagonal_batch).

    The layers of kernels() on the N pairs (x_i, x_i) alone: the points are a column (..., N, 1) in
    every array, Σ⁰ = cov1_0 = cov2_0 is each input's own variance, so every step acts on the pairs
    elementwise and no (N, N) array exists. Σ(x_i, x_i) and Θ(x_i, x_i) are those of kernels(x)'s
    diagonal: the same statements on the same numbers.

    Args:
        x: inputs, shape (N, {shape}){channels_last}.
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.

    Returns:
        (nngp, ntk): float64 arrays of shape (N,{pixel_axes}).
    """
    x = _as_points(x, "x")
{side_binding}    {variances}
    cov2_0 = nngp_0 = cov1_0  # the pair (x_i, x_i): both variances and the covariance are x_i's variance
'''

_PER_POINT = '''

def _per_point(k, x):
    """k (a column (N, 1), or a number or (1, 1) array for a kernel that does not depend on the
    inputs) as a new float64 array of shape (N,)."""
    k = xp.asarray(k, dtype=xp.float64).reshape(-1)
    return xp.broadcast_to(k, (x.shape[0],)).copy()


def _variance_pairs(nngp, cov1):
    """Σ of the pairs (x_i, x_i) of kernels_diagonal(): the variance cov1 itself, bit for bit (what
    _exact_diagonal puts on kernels()' diagonal; a constant kernel stays as it is)."""
    if xp.ndim(nngp) < 2:
        return nngp
    return cov1 if xp.shape(cov1) == xp.shape(nngp) else xp.broadcast_to(cov1, xp.shape(nngp))
'''


def emit_module(program: KernelProgram, backend: str = "numpy", source: Optional[str] = None, filename: str = "<string>") -> str:
    """The Python source of a module defining ``kernels(x1, x2=None) -> (nngp, ntk)`` and
    ``kernels_diagonal(x) -> (nngp, ntk)`` (the self-kernels' diagonals only, arrays of shape (N,)).

    Args:
        program: the derived recursion.
        backend: a key of :data:`BACKENDS` (the module bound to ``xp``).
        source: the .ntk text it came from (hashed into the header).
        filename: where that text came from.

    Returns:
        The module's source text.
    """
    printer = ArrayPrinter()
    body: List[List[str]] = []  # statements (an `if` with its body is one), each a list of lines
    duals: List[str] = []  # module-level dual functions of the activation layers
    net = program.network
    spatial = len(net.input_shape) > 1
    scheduled = schedule(program)
    diagonal_body: List[List[str]] = []  # the same for kernels_diagonal
    for layer in scheduled.layers:
        heading = [[f"    # {layer.heading}"] + ([f"    #   {layer.grid}"] if layer.grid else [])]
        statements = step_statements(layer, scheduled.values, printer, duals)
        body += heading + statements
        diagonal_body += heading + [_for_diagonal(statement, layer) for statement in statements]
    out = program.output
    lines = free_after_last_use(body + result_statements(program, printer)) + ["    return nngp, ntk"]
    diagonal = spatial_output.diagonal_statements(program, printer) if out.shape else [
        [f"    nngp = _per_point({printer.doprint(out.nngp)}, x)"], [f"    ntk = _per_point({printer.doprint(out.ntk)}, x)"]]
    diagonal_lines = free_after_last_use(diagonal_body + diagonal) + ["    return nngp, ntk"]

    header = module_header(net, source, filename, backend)
    fields = spatial_fields(program) if spatial else dict(shape=net.input_dim, channels_last="")
    result_shape, side = spatial_output.result_shape(program), side_fields(program)  # readout = none's pixels; graphs, masks
    if spatial:
        prologue = _SPATIAL_PROLOGUE.format(**fields, **side, result_shape=result_shape)
        printer.functions.setdefault("input_covariances", "")
        variances = f"cov1_0 = input_variances(x, full={fields['full']})  # (..., N, 1): Σ⁰(x, x)(p, p') = x(p)·x(p')/{net.input_dim}"
        fields["channels_last"] = " (channels last)"
    else:
        prologue = _PROLOGUE.format(d=net.input_dim, **side, result_shape=result_shape)
        variances = f"cov1_0 = xp.sum(x * x, axis=1, keepdims=True) / {net.input_dim}  # (N, 1): Σ⁰(x, x) = x·x/d"
    binding = parameter_binding(program)
    diagonal_prologue = _DIAGONAL_PROLOGUE.format(shape=fields["shape"], channels_last=fields["channels_last"],
                                                  variances=variances, pixel_axes=result_shape[1:],
                                                  **side_fields(program, diagonal=True))
    prologue = (point_helpers(net.input_shape) + _PER_POINT + parameter_table(program) + prologue + binding
                + same_point_binding(program) + graph_binding(program))
    diagonal_prologue += binding + same_point_binding(program, True) + graph_binding(program, True)
    imports = BACKENDS[backend].imports(printer.modules_used | {"xp"})
    return (header + imports + "\n" + support_sources(printer.functions) + "".join("\n\n" + d for d in duals)
            + prologue + "\n".join(lines) + "\n" + diagonal_prologue + "\n".join(diagonal_lines) + "\n")


def _exact_diagonal_lines(layer: LayerSchedule, diagonal: bool = False) -> List[str]:
    """The lines after a layer's Σ that make its diagonal Σ(x, x) the variance bit for bit:
    ``if same: _exact_diagonal(nngp_L, cov1_L)`` in ``kernels``; in ``kernels_diagonal`` (``diagonal``,
    the pairs (x_i, x_i) as a column) ``nngp_L = _variance_pairs(nngp_L, cov1_L)``, the same numbers
    (so a dual after it sees ρ = 1 exactly)."""
    nngp, cov1 = layer.state.nngp, layer.state.cov1
    return [f"    {nngp} = _variance_pairs({nngp}, {cov1})"] if diagonal else [
        "    if same:", f"        _exact_diagonal({nngp}, {cov1})"]


def _for_diagonal(statement: List[str], layer: LayerSchedule) -> List[str]:
    """A statement of :func:`step_statements` as it reads in ``kernels_diagonal``."""
    tail = _exact_diagonal_lines(layer)
    if len(statement) > len(tail) and statement[-len(tail):] == tail:
        return statement[:-len(tail)] + _exact_diagonal_lines(layer, diagonal=True)
    return statement


def step_statements(layer: LayerSchedule, values, printer, duals: List[str]) -> List[List[str]]:
    """One layer's statements of the array program (each a list of lines); an activation's dual
    function is appended to ``duals``. ``values``: the fixed parameters. Shared with the CuPy
    backend (:mod:`.cuda`), whose layers that cannot be printed as CUDA run as these statements."""
    if not layer.assignments:
        return [["    # (leaves the kernel unchanged)"]]
    if layer.state.note:  # an activation: one dual function for the variances and the covariances
        definition, statements = _elementwise_step(layer.before, layer.step, values, printer)
        duals.append(definition)
        return statements
    shared, reduced = cse(layer.assignments, f"t{layer.index}_")
    body = [[f"    {sym} = {printer.doprint(expr)}"] for sym, expr in shared]
    for sym, expr in reduced:
        body.append([f"    {sym} = {printer.doprint(expr)}"])
        if sym == layer.state.nngp and layer.exact_diagonal:
            body[-1] += _exact_diagonal_lines(layer)
    return body


def result_statements(program: KernelProgram, printer) -> List[List[str]]:
    """The last statements of an array module: nngp and ntk as (N1, N2) arrays, exactly symmetric
    for a self-kernel ((N1, N2, *S) for a network with ``readout = none``: :mod:`.spatial_output`)."""
    out = program.output
    if out.shape:
        return spatial_output.result_statements(program, printer)
    if out.ntk == out.nngp and not out.ntk.is_number:  # a single dense layer: Θ = Σ; two arrays, not one twice
        ntk = f"_per_pair({printer.doprint(out.ntk)}, x1, x2).copy()"
    else:  # a number (e.g. no affine layer: Θ = 0) becomes a full array too
        ntk = f"_per_pair({printer.doprint(out.ntk)}, x1, x2)"
    return [["    nngp = " + f"_per_pair({printer.doprint(out.nngp)}, x1, x2)"], ["    ntk = " + ntk],
            # exact symmetry (the diagonal is unchanged: (a + a)/2 = a): floating-point sums such as
            # c + q1/2 + q2/2 in a dual, or pooling's sums over pixel pairs, round differently for (x, x') and (x', x)
            ["    if same:  # exact symmetry", "        nngp = nngp + nngp.T", "        nngp *= 0.5",
             "        ntk = ntk + ntk.T", "        ntk *= 0.5"]]


def _elementwise_step(before, step, values, printer):
    """An activation layer as ``def dual_L(q1, q2, c) -> (K, K̇)`` plus the statements that call it
    (each a list of lines).

    The variances go through the very same code as the covariances (at q1 = q2 = c = q), so
    Σ(x, x) and Σ(x, x') of two identical inputs agree bit for bit, and θ = 0 exactly there.
    ``before`` is the state the layer read; its arguments per field come from
    :func:`ntkdsl.algebra.spatial.dual_arguments` (in the full layout, pixel variances).
    """
    q1, q2, c = sp.symbols("q1 q2 c", real=True)
    at = dual_arguments(before)
    rename = dict(zip(at["nngp"], (q1, q2, c)))
    exprs = dict(step.assignments)
    k = exprs[step.state.nngp].xreplace(values).xreplace(rename)
    kdot = step.state.nngp_dot
    kdot = exprs[kdot].xreplace(values).xreplace(rename) if kdot in exprs else (kdot if kdot is not None else sp.S.Zero)
    extra = "".join(f", {p}" for p in sorted(map(str, (k.free_symbols | kdot.free_symbols) - {q1, q2, c})))  # run-time parameters
    hidden, restore = hide_quadratures([to_atan2(k), to_atan2(kdot)])
    shared, (k, kdot) = sp.cse(hidden, symbols=sp.numbered_symbols("t"), order="none")
    name = f"dual_{step.index}"
    lines = [f"def {name}(q1, q2, c{extra}):",
             f'    """{step.label}: K = E[σ(u)σ(v)] and K̇ = E[σ\'(u)σ\'(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]])."""']
    lines += [f"    {sym} = {printer.doprint(restore(e))}" for sym, e in shared]
    k, kdot = restore(k), restore(kdot)
    if isinstance(k, GaussianExpectation) and isinstance(kdot, GaussianExpectation) and k.args[2:] == kdot.args[2:]:
        lines += [f"    return {printer.expectations(k, kdot)}"]  # one set of quadrature nodes for both
    else:
        lines += [f"    return {printer.doprint(k)}, {printer.doprint(kdot)}"]
    state = step.state
    call = []
    for target, args in ((state.cov1, at["cov1"]), (state.cov2, at["cov2"]), (state.nngp, at["nngp"])):
        if target not in exprs:  # a constant (e.g. the variance 1/2 of step): nothing to compute
            continue
        dot = state.nngp_dot if target == state.nngp and state.nngp_dot in exprs else "_"
        arguments = ", ".join(printer.doprint(a) for a in args)
        call.append([f"    {target}, {dot} = {name}({arguments}{extra})"])
    if state.ntk in exprs:
        ntk = exprs[state.ntk]
        if state.nngp_dot in exprs:  # Θ·K̇ reads K̇ from the dual's result instead of computing θ again
            kdot = exprs[state.nngp_dot]
            ratio = ntk / kdot  # Θ_prev (times constants) when Θ = Θ_prev·K̇; then no division remains
            if kdot.free_symbols and ratio.free_symbols.isdisjoint(kdot.free_symbols):
                ntk = ratio * state.nngp_dot
            else:
                ntk = ntk.xreplace({kdot: state.nngp_dot})
        call.append([f"    {state.ntk} = {printer.doprint(ntk.xreplace(values))}"])
    return "\n".join(lines) + "\n", call


# POINTS_AND_DTYPE and layer_location are imported from here by other generators' support modules
__all__ = ["POINTS_AND_DTYPE", "emit_module", "layer_location", "result_statements", "step_statements"]
