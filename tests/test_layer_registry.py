"""A layer is a local change: a layer kind registered from this file, touching no file of the package,
is parsed, verified, printed, derived, compiled for NumPy and numba, and sampled at finite width.

The layer, ``scale(factor)``, multiplies its input by a fixed number a: y = a·x. Its kernel rule
(kernel-math.md §2, a linear map) multiplies every field of the state by a²; its finite-width rules are
y = a·x and g_in = a·g. The oracle is an identity of the kernel algebra that involves no code of the
layer: in the NTK parameterization, dense(n, w_std = w, b_std = b) followed by scale(a) has the same
NNGP and NTK as dense(n, w_std = a·w, b_std = a·b) (Σ' = a²(w²Σ + b²) = (aw)²Σ + (ab)², and
Θ' = a²(Σ_dense + w²Θ) = Σ' + (aw)²Θ). At finite width the same identity holds draw by draw: the
parameters are the same arrays (scale draws none), so outputs and empirical NTKs agree to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional

import numpy as np
import pytest
import sympy as sp

import ntkdsl
from ntkdsl.algebra.state import KernelState
from ntkdsl.errors import Span
from ntkdsl.ir.arguments import Spec, real
from ntkdsl.ir.layer import Layer, span_field
from ntkdsl.ir.printer import format_value
from ntkdsl.layers import LAYERS, LayerRule

from shared import needs_numba


@dataclass(frozen=True)
class Scale(Layer):
    """y = factor·x: a parameter-free linear layer (the factor is a hyperparameter, not trained)."""

    factor: sp.Expr = sp.S.One
    span: Optional[Span] = span_field()

    entrywise = True  # each kernel entry from its own entry: vector networks fuse

    def parameters(self) -> Dict[str, sp.Expr]:
        return {"factor": self.factor}

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        a2 = p["factor"] ** 2
        return KernelState(a2 * s.cov1, a2 * s.cov2, a2 * s.nngp, a2 * s.ntk, gaussian=s.gaussian, width=s.width,
                           shape=s.shape, layout=s.layout)

    def ends_fresh(self) -> Optional[bool]:
        return None  # linear and parameter-free: as fresh as its input

    def format(self, indent: str = "") -> str:
        return f"scale(factor = {format_value(self.factor)})"

    def forward(self, params, x):
        return float(self.factor) * x, None

    def backward(self, params, cache, g):
        return float(self.factor) * g


RULE = LayerRule("scale", (Spec("factor", sp.S.One, real),), lambda v, call: Scale(v["factor"], call.span))

SPEC = """network n(input = 3) {{
    dense(16, w_std = {w}, b_std = {b}); {scale}erf; dense(16, w_std = 1.3); {scale}relu; dense(1)
}}"""


@pytest.fixture
def scale_layer():
    with LAYERS.registered(RULE):
        yield


def _pair(a=sp.Rational(3, 2), w=sp.Rational(6, 5), b=sp.Rational(1, 5)):
    """(network with scale layers, the same network with the dense layers before them scaled instead)."""
    with_scale = ntkdsl.loads(SPEC.format(w=w, b=b, scale=f"scale(factor = {a}); "))
    folded = ntkdsl.loads(SPEC.format(w=w, b=b, scale="").replace(f"w_std = {w}, b_std = {b}", f"w_std = {a * w}, b_std = {a * b}")
                          .replace("w_std = 1.3", f"w_std = {a * sp.Rational(13, 10)}"))
    return with_scale, folded


def _x(n=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3))


def test_registered_layer_evaluates_like_the_folded_network_on_numpy(scale_layer):
    net, folded = _pair()
    for got, want in zip(net.kernels(_x(), _x(4, 1), backend="numpy"), folded.kernels(_x(), _x(4, 1), backend="numpy")):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)  # the same formulas up to the order of a few products


@needs_numba
def test_registered_layer_fuses_on_numba(scale_layer):
    from ntkdsl.codegen.fused import fusable

    net, folded = _pair()
    assert fusable(net.program) is None  # entrywise: the layer joins the fused loop over pairs
    for got, want in zip(net.kernels(_x(), backend="numba"), folded.kernels(_x(), backend="numpy")):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)  # fused arithmetic order differs from NumPy's


def test_registered_layer_samples_at_finite_width(scale_layer):
    net, folded = _pair()
    f1, f2 = net.finite(width=64, seed=3), folded.finite(width=64, seed=3)
    x = _x(6)
    np.testing.assert_allclose(f1.apply(x), f2.apply(x), rtol=1e-12, atol=1e-14)  # same draws, a·(s_w W x) vs (a s_w) W x
    np.testing.assert_allclose(f1.ntk(x), f2.ntk(x), rtol=1e-11, atol=1e-14)  # backward through scale: a·g


def test_registered_layer_prints_parses_and_takes_hyperparameters(scale_layer):
    net, _ = _pair()
    again = ntkdsl.loads(net.to_ntk())
    assert again.ir == net.ir  # the canonical text round-trips through the layer's own format
    assert "scale(factor = 3/2)" in net.to_ntk()
    other = net.with_hyperparameters(factor=2)  # a real parameter of the new layer is a hyperparameter kind
    want, _ = _pair(a=sp.Integer(2))
    for got, ref in zip(other.kernels(_x()), want.kernels(_x())):
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0)


def test_registered_layer_gets_located_argument_errors(scale_layer):
    with pytest.raises(ntkdsl.SpecError) as info:
        ntkdsl.loads("network n(input = 3) { dense(4); scale(factr = 2); dense(1) }", filename="s.ntk")
    text = str(info.value)
    assert "s.ntk:1:40" in text and "did you mean 'factor'" in text and "^" in text


def test_unregistered_layer_is_an_unknown_name():
    assert "scale" not in LAYERS
    with pytest.raises(ntkdsl.SpecError, match="unknown layer or activation 'scale'"):
        ntkdsl.loads("network n(input = 3) { dense(4); scale(factor = 2); dense(1) }")


def test_a_keyword_registers_once(scale_layer):
    with pytest.raises(ValueError, match="already registered"):
        LAYERS.register(RULE)
