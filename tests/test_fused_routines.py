"""The fused modules' run-time routines as plain Python (ntkdsl/codegen/fused_routines.py and
fused_spatial_routines.py; numba compiles the same text in generated modules) against the math
library, exact rational arithmetic and the NumPy path's spatial routines. No numba needed.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from ntkdsl.algebra.geometry import window_geometry
from ntkdsl.arraycode import spatial_support
from ntkdsl.codegen import fused_routines as fr
from ntkdsl.codegen import fused_spatial_routines as fsr

# Cephes' atan is documented at relative error ≈ 2e-16 (Moshier, atan.c); the reduction and the
# quadrant corrections add a rounding or two: 4 ulps of the result.
ULPS = 4


def _close(got, want):
    return abs(got - want) <= ULPS * math.ulp(want) or got == want


GRID = [0.0, 1e-300, 1e-8, 0.3, 0.41421356237309503, 0.5, 1.0, 2.0, 2.414213562373095, 7.0, 1e8, 1e300]


@pytest.mark.parametrize("y", GRID + [-v for v in GRID[1:]])
def test_atan2_agrees_with_the_math_library(y):
    for x in GRID + [-v for v in GRID[1:]]:
        assert _close(fr.atan2(y, x), math.atan2(y, x)), (y, x)


def test_asin_agrees_with_the_math_library_and_clips():
    for x in np.linspace(-1.0, 1.0, 2001):
        assert _close(fr.asin(float(x)), math.asin(float(x))), x
    assert fr.asin(1.5) == math.asin(1.0) and fr.asin(-1.5) == math.asin(-1.0)  # clipped to [−1, 1]


def test_hypot_does_not_overflow():
    for a, b in [(3.0, 4.0), (1e300, 1e300), (-1e-300, 2e-300), (0.0, 0.0), (5.0, -0.0)]:
        assert _close(fr.hypot(a, b), math.hypot(a, b)), (a, b)


@pytest.mark.parametrize("q1, q2, rho", [(1.0, 2.0, 0.3), (1e200, 3e200, -0.7), (2e-200, 5e-201, 0.999), (4.0, 9.0, 1.0)])
def test_perp_scaled_matches_exact_arithmetic_without_overflow(q1, q2, rho):
    c = rho * math.sqrt(q1) * math.sqrt(q2)
    e1, e2 = fr.pow2_scale(q1), fr.pow2_scale(q2)
    got = fr.perp_scaled(c, q1, q2, e1, e2, 1 / e1, 1 / e2)
    assert math.isfinite(got) and got >= 0
    exact = max(Fraction(q1) * Fraction(q2) - Fraction(c) ** 2, Fraction(0))  # q1·q2 − c² in rationals
    # the scales are powers of two (exact); before the root, three roundings of numbers ≤ q1·q2 (2^-53
    # of it each), then the root's (2^-52 of perp²): |perp² − (q1·q2 − c²)| ≤ 2^-50·q1·q2
    assert abs(Fraction(got) ** 2 - exact) <= Fraction(q1) * Fraction(q2) / 2**50


def test_perp_scaled_is_exactly_zero_on_the_diagonal():
    for q in (1e-300, 0.7, 3.0, 1e300):
        e = fr.pow2_scale(q)
        assert fr.perp_scaled(q, q, q, e, e, 1 / e, 1 / e) == 0.0


def test_pow2_scales_are_exact_powers_of_two_in_range():
    for q in (1e-310, 1e-200, 0.3, 1.0, 5.0, 1e200):
        s = fr.pow2_scale(q)
        assert math.frexp(s)[0] == 0.5 and 1.0 <= q * s * s < 4.0
        assert fr._pow2_scale(np.array([q]))[0] == s  # the per-point NumPy version: the same scale
    assert fr.pow2_scale(0.0) == 1.0


def test_gram_and_mirror():
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((7, 3)), rng.standard_normal((5, 3))
    assert np.allclose(fr._gram(x1, x2, np.float64), x1 @ x2.T / 3, rtol=1e-15, atol=0)  # one GEMM, then /d
    upper = np.triu(fr._gram(x1, None, np.float64))  # syrk fills the upper triangle only
    assert np.allclose(upper, np.triu(x1 @ x1.T / 3), rtol=1e-14, atol=1e-15)  # syrk's own summation order
    a, b = upper.copy(), 2 * upper
    for first in range(3):  # three threads' shares
        fr._mirror_upper(first, 3, a, b)
    assert np.array_equal(a, a.T) and np.array_equal(b, 2 * a)


@pytest.mark.parametrize("same", [True, False])
def test_pair_blocks_cover_each_pair_once(same):
    n1, n2, seen = 5, 5 if same else 7, []
    for first in range(3):
        for i, j0, j1, diagonal in fsr._pair_blocks(n1, n2, same, 2, first, 3):
            assert j1 - j0 <= 2 and (diagonal == i - j0 if j0 <= i < j1 and same else diagonal == -1)
            seen += [(i, j) for j in range(j0, j1)]
    want = [(i, j) for i in range(n1) for j in range(i if same else 0, n2)]
    assert sorted(seen) == want


@pytest.mark.parametrize("n, window, stride, padding, circular",
                         [(6, 3, 1, "valid", False), (7, 3, 2, "same", False), (5, 2, 1, "same", True)])
def test_window_pass_is_the_numpy_window_sum(n, window, stride, padding, circular):
    """One axis of a separable window sum, against spatial_support._window_sum (the NumPy path), bit for bit."""
    src = np.random.default_rng(1).standard_normal((2, n, 3))
    mode = "circular" if circular else padding
    pad_lo, pad_hi, size = window_geometry(n, window, stride, mode)
    want = spatial_support._window_sum(src, (1,), size, window, stride, mode, pad_lo, pad_hi)
    for inner, arr in ((3, src), (1, np.ascontiguousarray(np.moveaxis(src, 2, 1)))):
        dst = np.empty(2 * size * 3)
        fsr._window_pass(arr.ravel(), dst, 2 * (3 if inner == 1 else 1), n, inner, size, window, stride, pad_lo, circular)
        got = dst.reshape(2, size, 3) if inner == 3 else np.moveaxis(dst.reshape(2, 3, size), 1, 2)
        assert np.array_equal(got, want)
