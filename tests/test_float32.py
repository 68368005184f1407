"""float32 on the fused FCN kernels (ntkdsl/codegen/fused.py): the loops compute in float32, within
the stated bounds of the float64 results and of independent closed forms (the arc-cosine kernel of
Cho & Saul 2009 for relu, Williams 1997 for erf, both written here with numpy.arccos/arcsin, not the
generated atan2 forms); float32 outputs, x2 given or None, exact symmetry, exact NNGP diagonal.

The bounds are normwise: |K32(x, x') − K64(x, x')| ≤ bound · sqrt(K(x, x)·K(x', x')), the scale of
an entry (an entry near 0, e.g. of an odd dual, carries the rounding of its neighbours' scale).
u = 2⁻²⁴ ≈ 6e-8 is float32's unit roundoff.
"""

import re

import numpy as np
import pytest
from shared import EVERY, needs_numba

import ntkdsl

W2, B2 = 1.5 ** 2, 0.1 ** 2
U32 = 2.0 ** -24
# inputs with |ρ| ≤ ~0.6: a few roundings per layer, three layers, plus the Gram matrix's sums of 64
# products: ~32 u (measured 2-4e-7 at N = 2000, benchmarks/float32.py)
RANDOM_BOUND = 32 * U32
# near-parallel pairs (1 − ρ down to 1e-12): θ = arccos ρ turns a rounding δρ ≈ 4u of Σ into
# δθ ≈ √(2δρ) ≈ 7e-4, and the rectifiers' NTK reads θ through K̇ = (π − θ)/(2π): measured 4.5e-4, the
# same as float64 arithmetic on the float32 Gram matrix (the float32 path before the loops ran in float32)
NEAR_PARALLEL_NTK_BOUND = 1e-3


def network(activation: str) -> str:
    layers = "".join(f"    dense(256, w_std = 1.5, b_std = 0.1)\n    {activation}\n" for _ in range(3))
    return f"network f32(input = 16, parameterization = ntk) {{\n{layers}    dense(1, w_std = 1.5, b_std = 0.1)\n}}\n"


def closed_form(x, y, dual):
    """NNGP and NTK of the depth-3 network of :func:`network` by a textbook dual, in float64 (y is x:
    θ = 0 on the diagonal, where arccos of a rounded ρ = 1 − ε would give √(2ε))."""
    def gram(a, b):
        return W2 * (a @ b.T) / a.shape[1] + B2

    s, q1, q2 = gram(x, y), np.einsum("ij,ij->i", x, x) * W2 / x.shape[1] + B2, np.einsum("ij,ij->i", y, y) * W2 / y.shape[1] + B2
    theta = s.copy()
    for _ in range(3):
        act, dot, q1, q2 = dual(s, q1, q2, y is x)
        s = W2 * act + B2
        theta = s + W2 * dot * theta
        q1, q2 = W2 * q1 + B2, W2 * q2 + B2
    return s, theta


def arccos_relu(s, q1, q2, same):
    """Cho & Saul 2009, eq. 6 (degree 1), halved for relu: √(qq')/(2π)(sin θ + (π − θ)cos θ); K̇ = (π − θ)/(2π)."""
    norm = np.sqrt(np.outer(q1, q2))
    t = np.arccos(np.clip(s / norm, -1, 1))
    if same:
        np.fill_diagonal(t, 0.0)
    return norm / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t)), (np.pi - t) / (2 * np.pi), q1 / 2, q2 / 2


def williams_erf(s, q1, q2, same):
    """Williams 1997: (2/π) arcsin(2Σ/√((1 + 2q)(1 + 2q'))); K̇ = (4/π)/√((1 + 2q)(1 + 2q') − 4Σ²)."""
    a = np.outer(1 + 2 * q1, 1 + 2 * q2)
    act = 2 / np.pi * np.arcsin(np.clip(2 * s / np.sqrt(a), -1, 1))
    var1, var2 = (2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)) for q in (q1, q2))
    return act, 4 / np.pi / np.sqrt(a - 4 * s * s), var1, var2


def normwise(actual, expected, diag1, diag2):
    return float(np.max(np.abs(actual.astype(np.float64) - expected) / np.sqrt(np.outer(diag1, diag2))))


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(3)
    return rng.standard_normal((70, 16)), rng.standard_normal((45, 16))


@needs_numba
@pytest.mark.parametrize("activation, dual", [("relu", arccos_relu), ("erf", williams_erf)])
@pytest.mark.parametrize("pair", [False, True], ids=["x2-None", "x2-given"])
def test_float32_within_bound_of_float64_and_of_the_closed_form(points, activation, dual, pair):
    net = ntkdsl.loads(network(activation))
    x, y = points
    other = y if pair else x  # the same object when x2 is None (closed_form: θ = 0 on the diagonal)
    single = net.kernels(x, y if pair else None, backend="numba", dtype="float32")
    double = net.kernels(x, y if pair else None, backend="numba")
    oracle = closed_form(x, other, dual)
    diag = [closed_form(p, p, dual) for p in (x, other)]
    for k, (a, b, c) in enumerate(zip(single, double, oracle)):
        assert a.dtype == np.float32 and a.shape == (len(x), len(other))
        d1, d2 = np.diag(diag[0][k]), np.diag(diag[1][k])
        assert normwise(a, b, d1, d2) <= RANDOM_BOUND
        assert normwise(a, c, d1, d2) <= RANDOM_BOUND
        assert normwise(b, c, d1, d2) <= 1e-13  # the float64 kernels themselves: a few hundred float64 roundings


@needs_numba
def test_float32_self_kernel_is_exactly_symmetric_with_the_float64_variances_rounded_on_the_diagonal(points):
    net = ntkdsl.loads(EVERY)
    x, _ = points
    x = x[:, :3]
    single, double = net.kernels(x, backend="numba", dtype="float32"), net.kernels(x, backend="numba")
    for a in single:
        assert a.dtype == np.float32 and np.array_equal(a, a.T)
    # the variances are computed in float64 (per point, outside the loops) and rounded once
    assert np.array_equal(np.diag(single.nngp), np.diag(double.nngp).astype(np.float32))
    for a, b in zip(single, double):  # every closed-form dual stacked (17 layers): 1e-5 ≈ 170 u
        assert normwise(a, b, np.diag(b), np.diag(b)) <= 1e-5


@needs_numba
def test_near_parallel_inputs_keep_the_stated_bound():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((6, 16))
    x = np.concatenate([base] + [s * base + d * rng.standard_normal((6, 16)) for d in (1e-2, 1e-4, 1e-6) for s in (1, -1)])
    net = ntkdsl.loads(network("relu"))
    single, double = net.kernels(x, backend="numba", dtype="float32"), net.kernels(x, backend="numba")
    oracle = closed_form(x, x, arccos_relu)
    d = [np.diag(o) for o in oracle]
    assert normwise(single.nngp, oracle[0], d[0], d[0]) <= RANDOM_BOUND  # K is flat in θ at 0 and π
    assert normwise(single.ntk, double.ntk, d[1], d[1]) <= NEAR_PARALLEL_NTK_BOUND
    assert normwise(single.ntk, oracle[1], d[1], d[1]) <= NEAR_PARALLEL_NTK_BOUND
    assert np.all(np.isfinite(single.ntk))


@needs_numba
def test_the_float32_specialisation_computes_in_float32(points, tmp_path, monkeypatch):
    """Every named local of the float32 loops is float32 (numba's type annotation): no constant or
    parameter promotes the arithmetic to float64. (perp and the ELU wedge integrals compute in
    float64 inside their helpers, which the annotation does not list.)"""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cold disk cache: numba compiles, so it annotates
    net = ntkdsl.loads(network("erf"))
    net.kernels(points[0], backend="numba", dtype="float32")
    layers = net._modules["numba"]._fused_layers
    (single,) = [ov for sig, ov in layers.overloads.items() if "float32" in str(sig[-1])]
    text = str(single.type_annotation)
    typed = dict(re.findall(r"^\s*#\s+([A-Za-z_]\w*)(?:\.\d+)? = .*::\s*(\S+)\s*$", text, re.MULTILINE))
    floats = {name: t for name, t in typed.items() if t.startswith("float")}
    assert floats and all(t == "float32" for t in floats.values()), floats
