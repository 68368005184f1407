"""The parts of a generated module that every backend shares: the provenance header, the table of
run-time parameters and the line that binds them, and the checks of the input points."""

from __future__ import annotations

import hashlib
import weakref
from typing import Dict, Optional

import sympy as sp

from .._version import __version__
from ..algebra.points import SAME_POINT
from ..ir.printer import format_network
from ..symbolic.program import KernelProgram
from .schedule import inert

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


def program_reads(program: KernelProgram, atom) -> bool:
    """Whether any step of the program (or its output) contains ``atom`` (a symbol or a function class);
    remembered per program and atom (every request asks, and sympy's walk allocates)."""
    seen = _READS.setdefault(program, {})
    if atom not in seen:
        out = program.output
        exprs = [e for step in program.steps for _, e in step.assignments] + [out.nngp, out.ntk]
        seen[atom] = any(isinstance(e, sp.Basic) and e.has(atom) for e in exprs)
    return seen[atom]


_READS: "weakref.WeakKeyDictionary[KernelProgram, dict]" = weakref.WeakKeyDictionary()


def uses_same_point(program: KernelProgram) -> bool:
    """Whether the program reads the same-point indicator δ(x, x′) (:mod:`ntkdsl.algebra.points`)."""
    return program_reads(program, SAME_POINT)


def same_point_binding(program: KernelProgram, diagonal: bool = False, indent: str = "    ") -> str:
    """The line of an array module that defines ``same_point`` (δ(x, x′) per pair), or "" if no step reads
    it: in kernels() an (N1, N2) identity where x2 is None (the pairs (i, i) of a self request) and 0 for a
    cross request, even one whose rows repeat x1's; in kernels_diagonal() 1 (every pair is (x_i, x_i))."""
    if not uses_same_point(program):
        return ""
    if diagonal:
        return f"{indent}same_point = 1.0  # δ(x, x') of the pairs (x_i, x_i): each point with itself\n"
    return (f"{indent}# δ(x, x'), by index: 1 on the pairs (i, i) of a self request (x2 None), 0 in a cross request\n"
            f"{indent}same_point = xp.eye(x1.shape[0]) if same else 0.0\n")


def uses_graphs(program: KernelProgram) -> bool:
    """Whether the program reads per-point adjacencies (``aggregate``: :class:`ntkdsl.algebra.spatial.graph_aggregate`),
    so its modules take ``graph1``/``graph2`` (``graph`` in kernels_diagonal)."""
    from ..algebra.spatial import graph_aggregate

    return program_reads(program, graph_aggregate)


def graph_binding(program: KernelProgram, diagonal: bool = False, indent: str = "    ") -> str:
    """The lines of an array module that bind the adjacencies the ``graph_aggregate`` calls read, or "":
    kernels() takes graph1 (N1, V, V) and graph2 (N2, V, V) (None: graph1, for a self request), checked
    and converted by the caller (:func:`ntkdsl.graphs.as_graphs`); kernels_diagonal() one ``graph``."""
    if not uses_graphs(program):
        return ""
    if diagonal:
        return (f"{indent}if graph is None:\n{indent}    raise ValueError('this network aggregates over graphs: pass graph=')\n"
                f"{indent}graph1, graph2 = xp.asarray(graph, dtype=xp.float64), None  # each point's own graph on both sides\n")
    return (f"{indent}if graph1 is None or (graph2 is None and not same):\n"
            f"{indent}    raise ValueError('this network aggregates over graphs: pass graph1= (and graph2= with x2)')\n"
            f"{indent}graph1 = xp.asarray(graph1, dtype=xp.float64)  # (N1, V, V): A[i, j] the weight of the edge i -> j\n"
            f"{indent}graph2 = graph1 if same else xp.asarray(graph2, dtype=xp.float64)  # (N2, V, V)\n")


def mask_binding(program: KernelProgram, diagonal: bool = False, indent: str = "    ") -> str:
    """The lines of an array module that turn the masks into ``keep1``/``keep2`` (1 − mask as floats, (N, P))
    and zero the masked positions of the inputs (neural-tangents' MaskedArray), or "": kernels() takes
    mask1 (N1, *S) and mask2 (N2, *S) (None: mask1, for a self request), checked by the caller
    (:func:`ntkdsl.masks.as_masks`); kernels_diagonal() one ``mask``."""
    if not program.masked:  # derived without position masks (:mod:`ntkdsl.algebra.masking`)
        return ""
    keep = "1.0 - xp.asarray({m}, dtype=xp.float64).reshape({x}.shape[0], -1)"
    zero = "{x} = {x} * {k}.reshape({x}.shape[:-1] + (1,))"
    if diagonal:
        return (f"{indent}if mask is None:\n{indent}    raise ValueError('this network is masked: pass mask=')\n"
                f"{indent}keep1, keep2 = {keep.format(m='mask', x='x')}, None  # (N, P): 1 where a position counts\n"
                f"{indent}{zero.format(x='x', k='keep1')}  # masked positions zeroed\n")
    return (f"{indent}if mask1 is None or (mask2 is None and not same):\n"
            f"{indent}    raise ValueError('this network is masked: pass mask1= (and mask2= with x2)')\n"
            f"{indent}keep1 = {keep.format(m='mask1', x='x1')}  # (N1, P): 1 where a position counts\n"
            f"{indent}keep2 = keep1 if same else {keep.format(m='mask2', x='x2')}  # (N2, P)\n"
            f"{indent}{zero.format(x='x1', k='keep1')}  # masked positions zeroed (neural-tangents' MaskedArray)\n"
            f"{indent}x2 = x1 if same else {zero.format(x='x2', k='keep2')[5:]}\n")


def side_fields(program: KernelProgram, diagonal: bool = False) -> Dict[str, str]:
    """The fields of an array module's prologue for its per-point side data (graphs, masks): ``side_params``
    (the signature's extra arguments), ``side_doc`` (their Args lines) and ``side_binding`` (the lines
    after the points' checks: :func:`mask_binding`; the graphs are bound after the parameters,
    :func:`graph_binding`). All "" for a network without side data."""
    graphs, masks = uses_graphs(program), program.masked
    if diagonal:
        params = ", graph=None" * graphs + ", mask=None" * masks
        doc = ""
    else:
        params = ", graph1=None, graph2=None" * graphs + ", mask1=None, mask2=None" * masks
        doc = "        mask1, mask2: position masks (N1, *S), (N2, *S), True = masked; mask2 None with x2 None.\n" * masks
    return dict(side_params=params, side_doc=doc, side_binding=mask_binding(program, diagonal))


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
