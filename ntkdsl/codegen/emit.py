"""KernelProgram -> the source of a standalone Python module that evaluates the kernels.

The module is written for humans: a provenance header (source file, its hash, the canonical
network text), one commented block per layer naming its source line, one statement per line,
readable SSA names. Per layer, parameter values are substituted exactly, ``angle`` is rewritten to
``atan2`` and common subexpressions are shared (sympy's CSE on that layer's few expressions).
The same text is what ``ntkdsl compile`` writes and what :mod:`.loader` executes.
"""

from __future__ import annotations

import hashlib
import re
from typing import Dict, List, Optional

import sympy as sp

from .._version import __version__
from ..ir.printer import format_network
from ..algebra.functions import GaussianExpectation, to_atan2
from ..symbolic.program import KernelProgram
from ..algebra.spatial import dual_arguments
from ..arraycode.sources import support_sources
from ..arraycode.backends import BACKENDS
from ..arraycode.printer import ArrayPrinter

_POINT_HELPERS = '''

def _as_points(x, name):
    """x as a float64 {array} of shape (N, {shape}){channels_last}; a clear ValueError otherwise."""
    x = xp.asarray(x, dtype=xp.float64)
    if x.ndim != {ndim} or tuple(x.shape[1:]) != {shape_tuple}:
        raise ValueError(f"{{name}} must have shape (N, {shape}) for this network, got {{tuple(x.shape)}}")
    return x


def _exact_diagonal(nngp, cov1):
    """Where x2 is x1, set Σ(x, x) to the variance cov1 itself, bit for bit (cov1 has shape (..., N1, 1), or is a constant)."""
    if xp.ndim(nngp) < 2:  # a constant kernel (after a constant activation): the same number for every pair
        return
    index = xp.arange(nngp.shape[-1])
    nngp[..., index, index] = cov1[..., 0] if xp.ndim(cov1) else cov1


def _per_pair(k, x1, x2):
    """k as an (N1, N2) array: a kernel that does not depend on the inputs (after a constant
    activation such as gaussian(b = 0)) comes out of the layers as a number or a (1, 1) array."""
    shape = (x1.shape[0], x2.shape[0])
    if getattr(k, "shape", ()) == shape:
        return k
    return xp.broadcast_to(xp.asarray(k, dtype=xp.float64), shape).copy()
'''


_PARAMETER_HELPER = '''

def _parameters(params):
    """The run-time parameters in the order of PARAMETERS: its values, overridden by params (name -> number)."""
    values = dict(PARAMETERS)
    for name, value in (params or {}).items():
        if name not in values:
            raise ValueError(f"unknown parameter {name!r}; this module's are: {', '.join(values) or 'none'}")
        values[name] = float(value)
    return tuple(values.values())
'''


def parameter_table(program: KernelProgram) -> str:
    """``PARAMETERS`` (name -> the spec's value) and ``_parameters`` of a generated module (every
    backend): the numbers it takes at run time (:attr:`KernelProgram.runtime_parameters`)."""
    values = program.runtime_parameters
    table = "".join(f"    {str(sym)!r}: {float(val)!r},\n" for sym, val in values.items())
    return ("\n\n# the run-time parameters and the spec's values; kernels(..., params={name: value}) overrides them\n"
            + ("PARAMETERS = {\n" + table + "}\n" if values else "PARAMETERS = {}\n") + _PARAMETER_HELPER)


def parameter_binding(program: KernelProgram, indent: str = "    ", source: str = "_parameters(params)") -> str:
    """The line that binds the run-time parameters to their names, from ``source`` (a tuple in
    the order of PARAMETERS)."""
    names = [str(sym) for sym in program.runtime_parameters]
    if not names:
        return f"{indent}{source}  # no run-time parameters: only checks params\n" if source.endswith("(params)") else ""
    return f"{indent}{', '.join(names)}{',' if len(names) == 1 else ''} = {source}\n"


# the first lines of kernels(x1, x2=None, dtype=...) of every backend that takes a dtype (a .format template)
POINTS_AND_DTYPE = '''    same = x2 is None
    dtype = xp.dtype(dtype)
    if dtype not in (xp.float64, xp.float32):
        raise ValueError(f"dtype must be float64 or float32, got {{dtype}}")
    x1 = _as_points(x1, "x1")
    x2 = x1 if same else _as_points(x2, "x2")
'''


def point_helpers(input_shape, array: str = "array") -> str:
    """``_as_points`` and ``_exact_diagonal`` of a generated module (every backend) for inputs of ``input_shape``."""
    return _POINT_HELPERS.format(array=array, shape=", ".join(map(str, input_shape)), ndim=len(input_shape) + 1,
                                 shape_tuple=tuple(input_shape),
                                 channels_last=" (channels last)" if len(input_shape) > 1 else "")


def spatial_fields(program: KernelProgram) -> Dict[str, object]:
    """The fields of a spatial prologue: input shape, channels, the first layout and its array shape."""
    net, first = program.network, program.steps[0].state
    dims = ", ".join(map(str, first.shape * (2 if first.layout == "full" else 1)))
    return dict(shape=", ".join(map(str, net.input_shape)), channels=net.input_dim, layout=first.layout,
                full=first.layout == "full", array=f"({dims}, N1, N2)")


_PROLOGUE = '''

def kernels(x1, x2=None, params=None):
    """The NNGP and NTK kernels of the network between two sets of inputs.

    Args:
        x1: inputs, shape (N1, {d}).
        x2: inputs, shape (N2, {d}); None means x1 (the kernel is then exactly symmetric).
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.

    Returns:
        (nngp, ntk): float64 arrays of shape (N1, N2): Σ(x1, x2) and Θ(x1, x2).
    """
    same = x2 is None
    x1 = _as_points(x1, "x1")
    x2 = x1 if same else _as_points(x2, "x2")
    # input: Σ⁰(x, x') = x·x'/d, Θ⁰ = 0 (kernel-math.md §1); cov1 is a column, cov2 a row
    cov1_0 = xp.sum(x1 * x1, axis=1, keepdims=True) / {d}
    cov2_0 = cov1_0.T if same else xp.sum(x2 * x2, axis=1, keepdims=True).T / {d}
    nngp_0 = (x1 @ x2.T) / {d}
    if same:  # exact symmetry and diagonal: Σ(x, x) is cov1 bit for bit
        nngp_0 = (nngp_0 + nngp_0.T) / 2
        _exact_diagonal(nngp_0, cov1_0)
'''


_SPATIAL_PROLOGUE = '''

def kernels(x1, x2=None, params=None):
    """The NNGP and NTK kernels of the network between two sets of inputs.

    Args:
        x1: inputs, shape (N1, {shape}) (channels last).
        x2: inputs, shape (N2, {shape}); None means x1 (the kernel is then exactly symmetric).
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.

    Returns:
        (nngp, ntk): float64 arrays of shape (N1, N2): Σ(x1, x2) and Θ(x1, x2).
    """
    same = x2 is None
    x1 = _as_points(x1, "x1")
    x2 = x1 if same else _as_points(x2, "x2")
    # input: Σ⁰(x, x')(p, p') = x(p)·x'(p')/{channels}, Θ⁰ = 0 (kernel-math.md §1), in the {layout} layout:
    # pixel axes first, points last: nngp_0 of shape {array}, cov1_0 (..., N1, 1), cov2_0 (..., 1, N2)
    cov1_0, cov2_0, nngp_0 = input_covariances(x1, x2, same, full={full})
'''

# SSA names of the generated code (kernel fields and CSE temporaries), freed after their last use
_NAME = re.compile(r"\b(?:(?:cov1|cov2|nngp_dot|nngp|ntk)_\d+|t\d+_\d+)\b")


def inert(text: str) -> str:
    """``text`` (a file name: user data) made safe to paste into a comment or docstring of generated code:
    ASCII with backslash escapes, so no newline can start a line of code, and no quote can end a docstring."""
    return ascii(text)[1:-1].replace('"', '\\"')


def layer_location(layer) -> str:
    """``  (file:line:col)`` of a layer for a comment of generated code; "" without a span."""
    span = layer.span
    return f"  ({inert(span.file)}:{span.line}:{span.col})" if span else ""


def emit_module(program: KernelProgram, backend: str = "numpy", source: Optional[str] = None, filename: str = "<string>") -> str:
    """The Python source of a module defining ``kernels(x1, x2=None) -> (nngp, ntk)``.

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
    values = program.fixed_parameters  # the run-time ones stay names, bound from params in kernels()
    net = program.network
    spatial = len(net.input_shape) > 1
    for prev, step in zip(program.steps, program.steps[1:]):
        before = step.input_state if step.input_state is not None else prev.state
        where = layer_location(step.layer)
        inside = f" [{step.context}]" if step.context else ""
        body.append([f"    # layer {step.index}: {step.label}{where}{inside}"])
        if step.state.shape:
            body.append([f"    #   kernel over pixels {list(step.state.shape)}, {step.state.layout} layout"])
        body += step_statements(before, step, values, printer, duals)
    body += result_statements(program, printer)
    lines = free_after_last_use(body) + ["    return nngp, ntk"]

    header = module_header(net, source, filename, backend)
    if spatial:
        prologue = _SPATIAL_PROLOGUE.format(**spatial_fields(program))
        printer.functions.setdefault("input_covariances", "")
    else:
        prologue = _PROLOGUE.format(d=net.input_dim)
    prologue = point_helpers(net.input_shape) + parameter_table(program) + prologue + parameter_binding(program)
    imports = BACKENDS[backend].imports(printer.modules_used | {"xp"})
    return (header + imports + "\n" + support_sources(printer.functions) + "".join("\n\n" + d for d in duals)
            + prologue + "\n".join(lines) + "\n")


def module_header(net, source: Optional[str], filename: str, backend: str, about: str = "") -> str:
    """The provenance docstring of every generated module: the network, its source file and hash,
    the backend, the conventions, ``about`` (how this backend evaluates), the canonical network."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16] if source is not None else "n/a"
    canonical = "\n".join("    " + line for line in format_network(net).rstrip("\n").splitlines())
    about = about.rstrip("\n") + "\n" if about else ""
    return f'''"""NNGP and NTK kernels of the network `{net.name}`, generated by ntkdsl {__version__}.

Source: {inert(filename)} (sha256 {digest}); backend: {backend}.
Conventions: kernel-math.md (neural-tangents'): Σ⁰ = x·x'/d, Θ⁰ = 0, {net.parameterization} parameterization
by default, the scalar kernel K of K ⊗ I_k for k outputs. Regenerate with `ntkdsl compile`; do not edit.
{about}
Network (canonical form):

{canonical}
"""
'''


def step_statements(before, step, values, printer, duals: List[str]) -> List[List[str]]:
    """One layer's statements of the array program (each a list of lines); an activation's dual
    function is appended to ``duals``. Shared with the CuPy backend (:mod:`.cuda`), whose layers
    that cannot be printed as CUDA run as these statements."""
    if not step.assignments:
        return [["    # (leaves the kernel unchanged)"]]
    if step.state.note:  # an activation: one dual function for the variances and the covariances
        definition, statements = _elementwise_step(before, step, values, printer)
        duals.append(definition)
        return statements
    body: List[List[str]] = []
    targets = [sym for sym, _ in step.assignments]
    exprs = [to_atan2(expr.xreplace(values)) for _, expr in step.assignments]
    names = sp.numbered_symbols(f"t{step.index}_")
    exprs, restore = _hide_quadratures(exprs)
    shared, reduced = sp.cse(exprs, symbols=names, order="none")
    shared, reduced = [(s, restore(e)) for s, e in shared], [restore(e) for e in reduced]
    for sym, expr in shared:
        body.append([f"    {sym} = {printer.doprint(expr)}"])
    for sym, expr in zip(targets, reduced):
        body.append([f"    {sym} = {printer.doprint(expr)}"])
        if sym == step.state.nngp and step.state.cov1 in targets:
            body[-1] += ["    if same:", f"        _exact_diagonal({sym}, {step.state.cov1})"]
    return body


def result_statements(program: KernelProgram, printer) -> List[List[str]]:
    """The last statements of an array module: nngp and ntk as (N1, N2) arrays, exactly symmetric
    for a self-kernel."""
    out = program.output
    if out.ntk == out.nngp and not out.ntk.is_number:  # a single dense layer: Θ = Σ; two arrays, not one twice
        ntk = f"_per_pair({printer.doprint(out.ntk)}, x1, x2).copy()"
    else:  # a number (e.g. no affine layer: Θ = 0) becomes a full array too
        ntk = f"_per_pair({printer.doprint(out.ntk)}, x1, x2)"
    return [["    nngp = " + f"_per_pair({printer.doprint(out.nngp)}, x1, x2)"], ["    ntk = " + ntk],
            # exact symmetry (the diagonal is unchanged: (a + a)/2 = a): floating-point sums such as
            # c + q1/2 + q2/2 in a dual, or pooling's sums over pixel pairs, round differently for (x, x') and (x', x)
            ["    if same:  # exact symmetry", "        nngp = nngp + nngp.T", "        nngp *= 0.5",
             "        ntk = ntk + ntk.T", "        ntk *= 0.5"]]


def free_after_last_use(statements: List[List[str]], names: re.Pattern = _NAME) -> List[str]:
    """The statements' lines with ``del`` of every SSA array (``names``) after the statement that uses
    it last (comments do not count), so that the evaluation holds a few kernel arrays at a time."""
    last = {}
    for i, statement in enumerate(statements):
        for line in statement:
            for name in names.findall(line.split("#")[0]):
                last[name] = i
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
    hidden, restore = _hide_quadratures([to_atan2(k), to_atan2(kdot)])
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


def _hide_quadratures(exprs):
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
