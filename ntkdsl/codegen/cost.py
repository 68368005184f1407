"""A static cost model of a kernel request: memory and time from the derived program, nothing run.

For N x N points and each backend, the peak memory and an estimate of the time, in a fraction of a
second whatever the network and N (the program is walked once; no evaluator is imported, compiled or
run): what ``ntkdsl check --n N`` reports (:mod:`.report`) and the backend choice weighs (:mod:`.dispatch`).

Memory (NumPy evaluator): the generated module frees every kernel array after its last use
(``del``, :func:`ntkdsl.codegen.emit.free_after_last_use`), so its peak is the largest, over the
steps, of the kernel arrays alive across the step, those the step assigns, and the temporaries of
its expressions: one per array-sized common subexpression (sympy's ``cse``, as the emitter) plus
:data:`EXPRESSION_TEMPORARIES`. Each array holds, per input pair, the entries of its step's layout
(1; P pixels; P² pixel pairs). The fused numba kernels of vector networks hold about two N1 x N2
arrays (the Gram matrix overwritten in place); those of image networks the ``MEMORY_MODEL`` line
of their module (:func:`ntkdsl.codegen.fused_spatial.memory_terms`), read from its emitted text.

Time: operation counts times per-operation costs, documented constants fitted on real runs on the
development machine (2 cores, AVX2; ``python benchmarks/cost_model.py`` measures hot-loop costs and
compares the estimates with real runs on the machine it runs on): the input Gram matrix at
:data:`GEMM_FLOPS` (2·N1·N2·d flops); per entry of an array-sized operation :data:`NS_PER_OP`
nanoseconds for arithmetic, :data:`NS_PER_TRANSCENDENTAL` for a transcendental function (atan2,
sqrt, erf, exp, ...), :data:`NS_PER_TAP` per tap of a convolution or pooling window; numerical
duals :data:`NS_PER_QUADRATURE` per entry. The fused kernels run the same operations in cache, on
all cores: :data:`FUSED_SPEEDUP` (numerical duals :data:`FUSED_NUMERICAL_SPEEDUP`). Accuracy against real runs: :data:`ACCURACY_SHORT`
(benchmarks/cost_model.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, List, Tuple

import sympy as sp

from ..algebra.functions import GaussianExpectation
from ..symbolic.layout import entries_per_pair, largest_kernel
from ..algebra.spatial import conv_taps, flatten_mean, global_pool, pixel_variance, pool_window, spatial_diagonal
from ..tiling import MemoryModel
from .fused import NotFusable, emit_fused_module
from .fused_routines import cpu_threads
from .prologue import uses_same_point

EXPRESSION_TEMPORARIES = 2  # arrays NumPy allocates while evaluating one statement (a binary op's operands)
INPUT_PIXEL_ARRAYS = 8  # per point, image networks' input stage: pixel(-pair) Gram rows and variances (measured)
PAIR_FIELDS = ("nngp", "nngp_dot", "ntk")  # SSA names of per-pair arrays; cov1/cov2 are per point

# Effective per-operation costs, fitted on the real runs of benchmarks/cost_model.py on the 2-core
# development machine (float64, arrays far larger than the caches, fresh allocations, OpenBLAS).
GEMM_FLOPS = 2.0e10  # flop/s of the input Gram matrix (dgemm, 2 threads)
NS_PER_OP = 4.0  # one arithmetic pass (+, *, -, /) over an array, per entry
NS_PER_TRANSCENDENTAL = 12.0  # atan2/arccos, erf, exp, log, sin, cos, sqrt-of-expression, per entry
NS_PER_TAP = 2.0  # one tap of a convolution or pooling window, per output entry
# A numerical dual, per entry: tanh and SiLU through their Mehler series take 3–6 µs an entry; the
# 2-D quadrature that the series falls back to took 240–290 µs (the estimate is then ~60x low).
NS_PER_QUADRATURE = 4.0e3
FUSED_SPEEDUP = 4.0  # fused numba kernels against the NumPy evaluator, same operations (measured 2.5–6x)
# numerical duals in the fused kernels against NumPy's Mehler series: 1.9–3.3x measured (tanh, SiLU,
# softplus depth-3 networks at N = 500 and 2000, benchmarks/numerical_duals.py, README's table)
FUSED_NUMERICAL_SPEEDUP = 2.5
# per point and numerical dual, the fused kernels' Mehler stacks (codegen/mehler_fused.mehler_points):
# a_0 … a_64, the tails at the 7 degrees of the ladder and the diagonal value (73 float64s) per point
# of x1 (rows) and of x2 (columns), held per layer and again in the loops' concatenated copies
MEHLER_STACK_BYTES = 2 * 8.0 * 73
# per point, the transient coefficient integrals of one layer's group (σ and σ': a_ℓ and tails, ℓ ≤ 64)
MEHLER_TRANSIENT_BYTES = 2 * 2 * 8.0 * 65
# per thread of mehler_points: the Hermite table He_ℓ(z), ℓ ≤ 64, of a chunk of 16 points at up to
# ~640 nodes each, matmul's contiguous copy of it and the chunk's other arrays: 3 tables' worth
# (codegen/mehler.mehler_coefficients; measured 10–13 MB a thread at 2 threads, N = 400–2000)
MEHLER_SCRATCH_BYTES = 3 * 8.0 * 65 * 16 * 640
# per pair, the flag matrix (1 byte) and the refill of the flagged entries: ~240 bytes a flagged
# entry (index arrays, every layer's arrays on NumPy), 0.7% of the entries flagged on tanh/SiLU
# networks of random inputs (measured: 18.7 bytes per pair in all against 17 without the refill);
# 4 bytes leave room for ~1.7% flagged
FLAG_BYTES = 1.0 + 4.0
# benchmarks/cost_model.py on the development machine (2 cores shared with other jobs): the memory
# model over tracemalloc's peak 1.16–2.08 on 7 networks at N = 16–1000 (never below); measured over
# estimated time 0.37–1.38 on the NumPy evaluator, 0.11–7.8 on the fused kernels (their small
# requests are dominated by per-call overheads, their large ones by how much a layer fuses).
ACCURACY_SHORT = "against real runs: memory 1.2–2x over, time 0.4–1.4x NumPy, 0.1–8x numba"

_QUADRATURE = sp.Function("quadrature")  # a numerical dual's quadrature, by its arguments (q1, q2, c)


@dataclass(frozen=True)
class StepCost:
    """One step's array entries per input pair and its operations per entry."""

    entries: int
    arithmetic: float
    transcendental: float
    taps: float
    quadrature: float
    assigned: Tuple[Tuple[str, int], ...]  # (symbol, entries per pair) of the per-pair arrays it assigns
    temporaries: int  # array-sized common subexpressions


def _symbol_entries(program) -> Dict[sp.Symbol, Tuple[bool, int]]:
    """Each assigned symbol: (per pair?, entries per pair or per point)."""
    out = {}
    for step in program.steps:
        e = entries_per_pair(step.state.shape, step.state.layout)
        for sym, _ in step.assignments:
            out[sym] = (sym.name.rsplit("_", 1)[0] in PAIR_FIELDS, e)
    first = program.steps[0].state
    e0 = entries_per_pair(first.shape, first.layout)
    out[first.nngp] = (True, e0)
    for sym in (first.cov1, first.cov2):
        out[sym] = (False, e0)
    return out


def _count(expr, sizes, entries: int) -> Tuple[float, float, float, float]:
    """(arithmetic, transcendental, taps, quadrature) operations per entry of ``expr``."""
    arithmetic = transcendental = taps = quadrature = 0.0
    for node in sp.preorder_traversal(expr):
        if node.is_Atom:
            continue
        if isinstance(node, (sp.Add, sp.Mul)):
            arithmetic += len(node.args) - 1
        elif isinstance(node, sp.Pow):
            arithmetic += 1 if node.exp.is_Integer else 0
            transcendental += 0 if node.exp.is_Integer else 1
        elif node.func == _QUADRATURE:
            quadrature += 1
        elif isinstance(node, (conv_taps, pool_window)):
            taps += math.prod(int(v) for v in node.args[2]) ** (2 if isinstance(node, pool_window) else 1)
        elif isinstance(node, (global_pool, flatten_mean, pixel_variance, spatial_diagonal)):
            arithmetic += 1
        elif isinstance(node, sp.Function):  # angle, perp, erf, exp, owens_t_angle, ...: transcendental
            transcendental += 1
    return arithmetic, transcendental, taps, quadrature


def step_costs(program) -> Tuple[StepCost, ...]:
    """The cost of every step after the input (cached per program)."""
    sizes = _symbol_entries(program)
    out: List[StepCost] = []
    for step in program.steps[1:]:
        e = entries_per_pair(step.state.shape, step.state.layout)
        pair = [(sym, expr.replace(GaussianExpectation, lambda *a: _QUADRATURE(*a[2:5])))  # cse stays out of
                for sym, expr in step.assignments if sizes[sym][0]]                         # its Lambdas
        replacements, reduced = sp.cse([expr for _, expr in pair]) if pair else ([], [])
        counts = [_count(x, sizes, e) for x in [r for _, r in replacements] + list(reduced)]
        totals = [sum(c[i] for c in counts) for i in range(4)]
        assigned = tuple((sym.name, sizes[sym][1]) for sym, _ in pair)
        out.append(StepCost(e, *totals, assigned, len(replacements)))
    return tuple(out)


def numpy_memory(program, costs=None) -> MemoryModel:
    """Peak bytes of the NumPy evaluator (module docstring): kernel arrays alive across each step,
    those it assigns and its temporaries; per point the variances (the larger of two steps' worth),
    and the input stage (the inputs, their squares and the first layout's variances)."""
    sizes = _symbol_entries(program)
    last_use: Dict[sp.Symbol, int] = {}
    for index, step in enumerate(program.steps):
        for _, expr in step.assignments:
            for sym in expr.free_symbols:
                last_use[sym] = index
    out = program.output
    for sym in (out.nngp, out.ntk):
        for s in getattr(sym, "free_symbols", ()):
            last_use[s] = len(program.steps)
    defined: Dict[sp.Symbol, int] = {program.steps[0].state.nngp: 0}
    for index, step in enumerate(program.steps):
        for sym, _ in step.assignments:
            defined[sym] = index
    costs = costs or step_costs(program)
    peak_pair, peak_point = 0.0, 0.0
    for index, cost in enumerate(costs, start=1):
        alive = sum(sizes[s][1] for s, d in defined.items() if sizes[s][0] and d < index <= last_use.get(s, -1))
        new = sum(e for _, e in cost.assigned)
        peak_pair = max(peak_pair, alive + max(new, (cost.temporaries + EXPRESSION_TEMPORARIES) * cost.entries))
        points = sum(sizes[s][1] for s, d in defined.items() if not sizes[s][0] and d <= index <= last_use.get(s, -1))
        peak_point = max(peak_point, points)
    first = program.steps[0].state
    size = math.prod(program.network.input_shape)
    e0 = entries_per_pair(first.shape, first.layout)
    pixel_arrays = INPUT_PIXEL_ARRAYS * e0 if first.shape else 0
    identity = 1 if uses_same_point(program) else 0  # δ(x, x′) of a self request: an (N1, N2) array for the whole call
    # readout = none: the last state's two arrays, their (N1, N2, *S) copies and a self-kernel's symmetrisation
    result = 4 * entries_per_pair(out.shape, out.layout) if out.shape else 0
    return MemoryModel(8.0 * (max(peak_pair, 2 * largest_kernel(program), result) + identity), 4.0 * peak_point, 2.0**20,
                       8.0 * (size + 1 + pixel_arrays), 2.0**20)


_MEMORY_LINE = re.compile(r"^MEMORY_MODEL = \(([\d.]+), ([\d.]+), THREADS \* ([\d.]+) \+ ([\d.]+)\)$", re.M)


def fused_memory(program) -> MemoryModel:
    """Peak bytes of the fused numba kernels. Vector networks: the two outputs (the Gram matrix is
    overwritten in place) and the inputs. Image networks: the ``MEMORY_MODEL`` line of their
    module's text (:func:`ntkdsl.codegen.fused_spatial.memory_terms`: outputs, per-point stacks,
    per-thread scratch grids), emitted but neither imported nor compiled. Numerical duals add their
    flag matrix and refill (:data:`FLAG_BYTES` per pair), per-point Mehler stacks
    (:data:`MEHLER_STACK_BYTES` a dual) and the coefficient integrals' scratch per thread."""
    size = math.prod(program.network.input_shape)
    if len(program.network.input_shape) == 1:
        duals = numerical_duals(program)
        if not duals:
            return MemoryModel(16.0, 8.0 * (size + 4), 2.0**20)
        return MemoryModel(16.0 + FLAG_BYTES, 8.0 * (size + 4) + duals * MEHLER_STACK_BYTES + MEHLER_TRANSIENT_BYTES,
                           2.0**20 + threads() * MEHLER_SCRATCH_BYTES)
    try:
        found = _MEMORY_LINE.search(emit_fused_module(program))
    except NotFusable:
        found = None
    if found is None:
        raise RuntimeError("the fused image module has no MEMORY_MODEL line of the expected form")
    per_pair, per_point, per_thread, fixed = map(float, found.groups())
    return MemoryModel(per_pair, per_point, threads() * per_thread + fixed)


def numerical_duals(program) -> int:
    """The distinct numerical duals (GaussianExpectation) of pairs in the program's steps: K and K̇ of
    each numerical layer (the variances' duals, q1 = q2 = c, reuse the stacks' diagonal values)."""
    return sum(len({ge for _, expr in step.assignments for ge in expr.atoms(GaussianExpectation)
                    if not ge.args[2] == ge.args[3] == ge.args[4]}) for step in program.steps)


def threads() -> int:
    """The CPU threads the fused kernels use (their THREADS: the cores this process may run on)."""
    return cpu_threads()


def seconds(program, n1: int, n2: int, backend: str = "numpy", costs=None) -> float:
    """Estimated seconds of one evaluation of n1 x n2 points (module docstring; no compile time)."""
    pairs = float(n1) * float(n2)
    first = program.steps[0].state
    d = program.network.input_dim
    gram = 2.0 * pairs * entries_per_pair(first.shape, first.layout) * d / GEMM_FLOPS
    ns = numerical = 0.0
    for c in costs or step_costs(program):
        ns += c.entries * (c.arithmetic * NS_PER_OP + c.transcendental * NS_PER_TRANSCENDENTAL + c.taps * NS_PER_TAP)
        numerical += c.entries * c.quadrature * NS_PER_QUADRATURE
    if backend == "numba":
        ns, numerical = ns / FUSED_SPEEDUP, numerical / FUSED_NUMERICAL_SPEEDUP
    return gram + pairs * (ns + numerical) * 1e-9
