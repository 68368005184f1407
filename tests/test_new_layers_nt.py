"""Layers beyond the first set, against neural-tangents 0.6.5 (tests/data/nt_new_layers.json, written by
benchmarks/neural_tangents_new_layers.py from stax layers, independently of ntkdsl's spec text), and
against their own closed forms.

neural-tangents computes in float64 with the same formulas up to the order of operations; 1e-12 of
the kernel's scale (the issue's bound) leaves room for a few hundred roundings through a network.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import ntkdsl

from shared import assert_agrees_with_neural_tangents, close_to_scale

DATA = json.loads((Path(__file__).resolve().parent / "data" / "nt_new_layers.json").read_text())["architectures"]

IMPLEMENTED = ["exp-normalized-mlp", "exp-normalized-cnn-gap", "layer-norm-channels-2d", "layer-norm-spatial-2d",
               "layer-norm-spatial-2d-flatten-standard", "layer-norm-1d", "conv-local-ntk", "conv-local-standard",
               "conv-local-circular-gap"] + [f"conv-transpose-{p}-s{s}-{m}" for p in ("valid", "same", "circular")
                                             for s in (1, 2) for m in ("ntk", "standard")] + ["conv-transpose-1d-gap"] + [
    f"resize-{m}-{w}" for m in ("linear", "nearest") for w in ("up", "down", "mixed")] + [
    "index-crop-stride-reverse", "index-gap-and-integer"] + ["dropout-mlp", "dropout-mlp-standard", "dropout-cnn-gap"] + [
    "conv-transpose-spatial-output"] + [
    f"attention-{m}" for m in ("softmax-linear", "identity-linear", "abs-linear", "relu-linear", "identity-sqrt-scaling",
                               "softmax-pos-emb-sum", "identity-sqrt-pos-emb-sum-values", "softmax-pos-emb-concat-decay",
                               "image-softmax")] + ["transformer-block"]
# Left out on purpose: "resize-linear-no-antialias-flatten". neural-tangents 0.6.5 resizes only the pixel
# diagonal when a flatten follows (its layout inference hands ImageResize a diagonal kernel), so its
# kernel is not that of the resized features. Measured on conv -> resize((-1, 7), linear, no antialias)
# -> flatten -> dense: Monte Carlo over 400 finite networks (width 64) agrees with ntkdsl's R·K·Rᵀ within
# 1.5 standard errors and misses neural-tangents' by ~30; test_sampler_architectures.py keeps a
# resize-then-flatten case under Monte Carlo ("resize-flatten").


# numba on the image networks of the new spatial maps: each compiles its own fused module (5-20 s cold).
# test_fused_new_ops.py compiles one per operation (REPRESENTATIVES, the same specs: shared by numba's disk
# cache); the others run here with --runslow.
_COMPILED_ELSEWHERE = {"conv-transpose-1d-gap", "conv-transpose-same-s2-ntk", "index-gap-and-integer",
                       "conv-local-circular-gap", "resize-linear-mixed", "layer-norm-spatial-2d", "dropout-cnn-gap"}
_FUSED_IMAGES = ("conv-transpose-", "conv-local-", "resize-", "index-", "layer-norm-", "dropout-cnn")
CASES = [(name, "numpy") for name in IMPLEMENTED] + [
    pytest.param(name, "numba", marks=pytest.mark.slow) if name.startswith(_FUSED_IMAGES)
    and name not in _COMPILED_ELSEWHERE and name != "conv-transpose-spatial-output" else (name, "numba")
    for name in IMPLEMENTED]


@pytest.mark.filterwarnings("ignore::UserWarning")  # numba on networks it cannot fuse: the stated NumPy fallback
@pytest.mark.parametrize("name, backend", CASES)
def test_agrees_with_neural_tangents(name, backend):
    if backend == "numba":
        pytest.importorskip("numba")
    ref = DATA[name]
    net = ntkdsl.loads(ref["spec"])
    x1, x2 = np.asarray(ref["x1"]), np.asarray(ref["x2"])
    self_kernels = net.kernels(x1, backend=backend) if "nngp_11" in ref else None
    assert_agrees_with_neural_tangents(net.kernels(x1, x2, backend=backend), self_kernels, ref)


def test_exp_normalized_matches_its_closed_form_after_one_dense_layer():
    """Σ¹ = σ_w²·x·x'/d + σ_b² (kernel-math.md §2), then Σ' = √(q1q2)·exp(γ(ρ + s)), Θ' = γ·Θ¹·exp(γ(ρ + s))
    with Θ¹ = Σ¹, and a readout dense(1): Σ = Σ', Θ = Σ' + Θ'. Written here in NumPy from the formula."""
    g, s, w, b = 0.7, -0.4, 1.3, 0.2
    net = ntkdsl.loads(f"network n(input = 4) {{ dense(16, w_std = {w}, b_std = {b}); "
                       f"exp_normalized(gamma = {g}, shift = {s}); dense(1) }}")
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)) * 3
    c = w**2 * x1 @ x2.T / 4 + b**2
    q1, q2 = w**2 * np.sum(x1**2, 1) / 4 + b**2, w**2 * np.sum(x2**2, 1) / 4 + b**2
    rho = c / np.sqrt(np.outer(q1, q2))
    e = np.exp(g * (rho + s))
    nngp = np.sqrt(np.outer(q1, q2)) * e
    k = net.kernels(x1, x2)
    close_to_scale(k.nngp, nngp, 1e-14)  # the same few operations in another order
    close_to_scale(k.ntk, nngp + g * c * e, 1e-14)
    diag = net.kernels(x1).nngp.diagonal()
    np.testing.assert_array_equal(diag, q1 * np.exp(g * (1 + s)))  # ρ = 1 exactly on the diagonal
    assert np.all(np.isfinite(net.kernels(np.zeros((2, 4)), x2).ntk))  # a zero-norm input: no 0/0


def test_exp_normalized_prints_parses_and_sweeps():
    net = ntkdsl.loads("network n(input = 3) { dense(8); exp_normalized(gamma = 2, do_clip = true); dense(1) }")
    assert "exp_normalized(gamma = 2, shift = -1, do_clip = true)" in net.to_ntk()
    assert ntkdsl.loads(net.to_ntk()).ir == net.ir
    x = np.random.default_rng(0).standard_normal((4, 3))
    swept = net.with_hyperparameters(gamma=sp.Rational(1, 2)).kernels(x)
    direct = ntkdsl.loads("network n(input = 3) { dense(8); exp_normalized(gamma = 1/2); dense(1) }").kernels(x)
    np.testing.assert_allclose(swept.ntk, direct.ntk, rtol=1e-15, atol=0)  # same module, other run-time value


def test_exp_normalized_needs_gaussian_input_and_refuses_finite_width(tmp_path):
    with pytest.raises(ntkdsl.SpecError, match="exp_normalized needs a Gaussian input"):
        ntkdsl.loads("network n(input = 3) { dense(8); relu; exp_normalized; dense(1) }")
    net = ntkdsl.loads("network n(input = 3) {\n  dense(8)\n  exp_normalized\n  dense(1)\n}", filename="e.ntk")
    with pytest.raises(ntkdsl.SpecError) as info:
        net.finite(width=16)
    assert "e.ntk:3:3" in str(info.value) and "no finite-width network" in str(info.value)
    spec = tmp_path / "e.ntk"
    spec.write_text("network n(input = 3) {\n  dense(8)\n  exp_normalized\n  dense(1)\n}\n")
    from ntkdsl.cli import main

    assert main(["sample", str(spec), "--widths", "8", "--samples", "2", "-o", str(tmp_path / "out.npz")]) == 2
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("bad, where, message", [
    ("index[1:1]", "1:53", "the slice 1:1 of spatial axis 1 (size 4) selects no pixel"),
    ("index[7]", "1:53", "7 is out of range for spatial axis 1 of size 4"),
    ("index[0, 0, 0]", "1:53", "index has 3 entries, but its input has 2 spatial dimensions"),
    ("index[::0]", "1:61", "a slice step cannot be 0"),
    ("index[1.5]", "1:59", "an index must be an integer, got 3/2"),
    ("index", "1:53", "index is written with a subscript"),
    ("dense[2]", "1:53", "'dense' takes no [ ] subscript"),
])
def test_index_mistakes_are_located(bad, where, message):
    with pytest.raises(ntkdsl.SpecError) as info:
        ntkdsl.loads(f"network n(input = [5, 4, 2]) {{ conv(3, kernel = 2); {bad}; flatten; dense(1) }}", filename="t.ntk")
    assert f"t.ntk:{where}: error:" in str(info.value) and message in str(info.value) and "^" in str(info.value)


def test_an_integer_window_after_a_dropped_axis_covers_the_remaining_ones():
    net = ntkdsl.loads("network n(input = [5, 4, 2]) { conv(3, kernel = 2); index[-1]; conv(2, kernel = 2); flatten; dense(1) }")
    assert net.ir.layers[2].kernel_size == (2,)
    assert ntkdsl.loads(net.to_ntk()).ir == net.ir
