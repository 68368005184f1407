"""``recurrent(width, w_std = 1, u_std = 1, b_std = none, activation = relu, readout = last | mean)``: a
vanilla RNN over the time axis of a ``[T, C]`` signal, NTK parameterization (Alemohammad et al. 2021,
"The Recurrent Neural Tangent Kernel", arXiv:2006.10246, §3):

    g_t = (σ_w/√n)·W·h_{t−1} + (σ_u/√C)·U·x_t + σ_b·b,   h_t = φ(g_t),   h_0 = 0,   W, U, b ~ N(0, 1)

with output h_T (``last``) or (1/T)·Σ_t h_t (``mean``), a vector of ``width`` features.

Kernel (kernel-math.md §2, recurrent): over the time pairs (t, t′) of the input state,
Σ_{t,t′} = σ_w²·shift[K_φ(Σ)]_{t,t′} + σ_u²·Σ⁰_{t,t′} + σ_b² and
Θ_{t,t′} = Σ_{t,t′} + σ_u²·Θ⁰_{t,t′} + σ_w²·shift[K̇_φ(Σ)·Θ]_{t,t′}, shift moving (t − 1, t′ − 1) to
(t, t′) with zeros at t = 1 or t′ = 1 (:class:`ntkdsl.algebra.spatial.time_shift`). Stage 1 is the
drive σ_u²Σ⁰ + σ_b²; stage k + 1 makes every pair with min(t, t′) ≤ k + 1 exact, so T stages give the
recursion (each stage a step of its own: no expression nests T deep). The readout is the activation's
dual at (T, T) (``last``) or its mean over all pairs (``mean``, which needs the full layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import sympy as sp

from ..activations import REGISTRY
from ..activations.dual import row_dual
from ..algebra import spatial as ops
from ..algebra.state import KernelState, elementwise_kernel
from ..errors import ArgumentSpecError, LimitSpecError, NameSpecError, Span, StructureSpecError
from ..ir.arguments import FROM_NETWORK, PARAMETERIZATIONS, REQUIRED, Spec, Word, enum, is_positive_int, positive_int
from ..ir.arguments import std, std_or_none
from ..ir.layer import Layer, span_field
from ..ir.printer import format_value
from .activation import Activation, elementwise_backward, elementwise_forward
from .arrays import namespace
from .registry import LayerRule, register
from .windows import spatial_input

MAX_STEPS = 256  # the derivation has one step per time step: beyond this the program gets too large
READOUTS = ("last", "mean")


@dataclass(frozen=True)
class Recurrent(Layer):
    """A vanilla RNN of ``width`` units with a registry activation (its default parameters), read out at
    the last step or averaged over time; ``b_std = None`` means no bias."""

    width: int
    w_std: sp.Expr = sp.S.One
    u_std: sp.Expr = sp.S.One
    b_std: Optional[sp.Expr] = None
    activation: str = "relu"
    readout: str = "last"
    span: Optional[Span] = span_field()

    keyword = "recurrent"

    def parameters(self) -> Dict[str, sp.Expr]:
        out = {"w_std": self.w_std, "u_std": self.u_std}
        if self.b_std is not None:
            out["b_std"] = self.b_std
        return out

    @cached_property
    def phi(self) -> Activation:
        """φ as an activation node with its row's default parameters."""
        row = REGISTRY.get(self.activation)
        return Activation(row.name, tuple((q.name, q.default) for q in row.params))

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        (steps,) = spatial_input("recurrent", tuple(in_shape), 1, self.span)
        if steps > MAX_STEPS:
            raise LimitSpecError(f"recurrent: the sequence has {steps} time steps, more than {MAX_STEPS} (the kernel "
                                 "program has one step per time step)", self.span)
        return (self.width,)

    def needs_full_input(self, full_output: bool) -> bool:
        return self.readout == "mean"  # the mean reads every pair (t, t′); last only (T, T)

    def spatial_rank_after(self, rank: int) -> int:
        return 0

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """The whole recursion as one state (for callers outside the derivation; nests T deep)."""
        stages = self.kernel_stages(s, p)
        state = next(stages)
        while True:
            try:
                state = stages.send(state)
            except StopIteration as done:
                return done.value

    def kernel_stages(self, s: KernelState, p: Mapping[str, sp.Symbol]):
        """Generator of the recursion's stages (module docstring); sent back each stage with fresh symbols,
        it returns the state after the readout."""
        w2, u2 = p["w_std"] ** 2, p["u_std"] ** 2
        b2 = p["b_std"] ** 2 if "b_std" in p else sp.S.Zero
        steps = s.shape[0]
        inputs = u2 * s.nngp + b2  # the input drive U·x_t + b of the pre-activations
        drive = yield KernelState(u2 * s.cov1 + b2, u2 * s.cov2 + b2, inputs, inputs + u2 * s.ntk,
                                  gaussian=True, width=self.width, shape=s.shape, layout=s.layout)
        state = drive

        def shift(k):  # σ_w²·K(t − 1, t′ − 1): the recurrent weights' share
            return w2 * ops.shift(k, s.shape, s.layout)

        for _ in range(steps - 1):
            e = self._dual(state)
            nngp = drive.nngp + shift(e.nngp)
            state = yield KernelState(drive.cov1 + shift(e.cov1), drive.cov2 + shift(e.cov2), nngp,
                                      nngp + u2 * s.ntk + shift(e.ntk), gaussian=True, width=self.width,
                                      shape=s.shape, layout=s.layout)
        e = self._dual(state)
        if self.readout == "mean":
            read = lambda k: ops.global_mean(k, s.shape, "avg")  # noqa: E731
        else:
            last = ((steps - 1,),)
            read = lambda k: ops.index(k, s.shape, last, (1,), s.layout)  # noqa: E731
        return KernelState(read(e.cov1), read(e.cov2), read(e.nngp), read(e.ntk), gaussian=False, width=self.width,
                           note=e.note)

    def _dual(self, state: KernelState) -> KernelState:
        """kernel-math.md §3: K_φ, K̇_φ·Θ at every time pair, φ's dual from the activation registry."""
        phi = self.phi
        params = phi.row_arguments(phi.parameters())
        return elementwise_kernel(state, lambda q1, q2, c: row_dual(phi.row, params, q1, q2, c))

    def check(self) -> None:
        if not is_positive_int(self.width):
            raise ArgumentSpecError(f"width must be a positive integer, got {self.width}", self.span)
        if self.activation not in REGISTRY:
            raise StructureSpecError(f"unknown activation '{self.activation}'", self.span)
        if self.readout not in READOUTS:
            raise ArgumentSpecError(f"readout must be one of {', '.join(READOUTS)}", self.span)

    def verified(self, shape, gaussian, why, check):
        return False, "the output of recurrent (activated features h, not Gaussian; a dense layer after it is)"

    def format(self, indent: str = "") -> str:
        b = "none" if self.b_std is None else format_value(self.b_std)
        return (f"recurrent({self.width}, w_std = {format_value(self.w_std)}, u_std = {format_value(self.u_std)}, "
                f"b_std = {b}, activation = {self.activation}, readout = {self.readout})")

    # --- finite width: forward over time, backward through time
    def _scales(self, channels: int) -> Tuple[float, float, float]:
        """(σ_w/√n, σ_u/√C, σ_b): the NTK parameterization's multipliers of W, U, b."""
        b = float(self.b_std) if self.b_std is not None else 0.0
        return float(self.w_std) / np.sqrt(self.width), float(self.u_std) / np.sqrt(channels), b

    def init_params(self, rng, in_shape):
        n, c = self.width, in_shape[-1]
        params = {"w": rng.standard_normal((n, n)), "u": rng.standard_normal((c, n))}
        if self.b_std is not None:
            params["b"] = rng.standard_normal(n)
        return params, self.out_shape(tuple(in_shape))

    def forward(self, params, x):
        """h_t = φ(s_w·h_{t−1}·W + s_u·x_t·U + s_b·b) for t = 1..T (x of shape (N, T, C)); the cache
        holds x, the pre-activations g_t and the states h_0..h_T."""
        xp = namespace(x)
        s_w, s_u, s_b = self._scales(x.shape[-1])
        h = xp.zeros((x.shape[0], self.width))
        zs, hs = [], [h]
        for t in range(x.shape[1]):
            z = s_w * (h @ params["w"]) + s_u * (x[:, t] @ params["u"])
            if "b" in params:
                z = z + s_b * params["b"]
            h, _ = elementwise_forward(self.phi, z)
            zs.append(z)
            hs.append(h)
        y = hs[-1] if self.readout == "last" else sum(hs[1:]) / len(zs)
        return y, (x, zs, hs)

    def _through_time(self, params, cache, g):
        """Backpropagation through time of cotangents g (N, m, width): ([∂/∂g_t], ∂/∂x (N, m, T, C))."""
        x, zs, _ = cache
        s_w, s_u, _ = self._scales(x.shape[-1])
        steps = len(zs)
        xp = namespace(g)
        dx = xp.zeros((x.shape[0], g.shape[1]) + x.shape[1:])
        dzs = [None] * steps
        dh = g if self.readout == "last" else g / steps
        for t in range(steps - 1, -1, -1):
            dz = elementwise_backward(self.phi, zs[t], dh)
            dzs[t] = dz
            dx[:, :, t] = s_u * (dz @ params["u"].T)
            dh = s_w * (dz @ params["w"].T)
            if self.readout == "mean":
                dh = dh + g / steps
        return dzs, dx

    def backward(self, params, cache, g):
        return self._through_time(params, cache, g)[1]

    def param_grads(self, params, cache, g, per_example=False):
        """∂/∂W = s_w·Σ_t h_{t−1}ᵀ·δ_t, ∂/∂U = s_u·Σ_t x_tᵀ·δ_t, ∂/∂b = s_b·Σ_t δ_t (δ_t = ∂/∂g_t)."""
        x, _, hs = cache
        s_w, s_u, s_b = self._scales(x.shape[-1])
        dzs, _ = self._through_time(params, cache, g)
        xp = namespace(g)
        if per_example:
            out = {"w": s_w * sum(xp.einsum("ni,nmj->nmij", hs[t], d) for t, d in enumerate(dzs)),
                   "u": s_u * sum(xp.einsum("ni,nmj->nmij", x[:, t], d) for t, d in enumerate(dzs))}
            if "b" in params:
                out["b"] = s_b * sum(dzs)
            return out
        sums = [d.sum(axis=1) for d in dzs]
        out = {"w": s_w * sum(hs[t].T @ d for t, d in enumerate(sums)),
               "u": s_u * sum(x[:, t].T @ d for t, d in enumerate(sums))}
        if "b" in params:
            out["b"] = s_b * sum(d.sum(axis=0) for d in sums)
        return out

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        """Σ_{t,t′} [s_w²·(h_{t−1}·h′_{t′−1}) + s_u²·(x_t·x′_{t′}) + s_b²] ⊙ (δ_t·δ′_{t′}): the shared W, U,
        b summed over both times (kernel-math.md §5), O(T²·N1·N2·(width + C + m·width))."""
        x1, _, h1 = cache1
        x2, _, h2 = cache2
        s_w, s_u, s_b = self._scales(x1.shape[-1])
        d1, _ = self._through_time(params, cache1, g1)
        d2 = d1 if (cache2 is cache1 and g2 is g1) else self._through_time(params, cache2, g2)[0]
        xp = namespace(g1)
        n1, n2 = g1.shape[0], g2.shape[0]
        h2s, x2s = xp.stack(h2[:len(d2)]), xp.moveaxis(x2, 1, 0)  # (T, N2, width), (T, N2, C): all times u at once
        b = xp.stack([d.reshape(n2, -1) if trace else d for d in d2])
        total = 0.0
        for t, a in enumerate(d1):
            share = (s_w**2 * xp.einsum("ai,ubi->uab", h1[t], h2s) + s_u**2 * xp.einsum("ac,ubc->uab", x1[:, t], x2s)
                     + s_b**2)  # (T, N1, N2): the weights' shared inner products at (t, u) for every u
            if trace:
                total = total + xp.einsum("uab,aj,ubj->ab", share, a.reshape(n1, -1), b, optimize=True)
            else:
                total = total + xp.einsum("uab,aij,ubkj->abik", share, a, b, optimize=True)
        return total


def activation_name(low, v, span, name: str, env=()) -> str:
    """A registry activation used with its default parameters (``relu``, ``tanh``, ``gelu``)."""
    if isinstance(v, str):  # the default
        return v
    if not isinstance(v, Word):
        raise ArgumentSpecError(f"{name} must be the name of an activation (relu, tanh, ...)", span)
    row = REGISTRY.get(v.name)
    if row is None:
        raise NameSpecError(f"recurrent: unknown activation '{v.name}'{REGISTRY.suggestion(v.name)}", v.span)
    if row.variadic is not None or any(q.default is None for q in row.params):
        raise ArgumentSpecError(f"recurrent: activation '{row.name}' needs parameter values; recurrent takes "
                                "an activation with defaults for all its parameters", v.span)
    return row.name


def _build(v, call) -> Recurrent:
    if v["parameterization"] == "standard":
        raise ArgumentSpecError(
            "recurrent supports only parameterization = ntk: the recurrent NTK (Alemohammad et al. 2021) is "
            "derived in the NTK parameterization, and ntkdsl has no checked standard-parameterization rule for it",
            call.span)
    return Recurrent(v["width"], v["w_std"], v["u_std"], v["b_std"], v["activation"], v["readout"], call.span)


register(LayerRule("recurrent", (
    Spec("width", REQUIRED, positive_int),
    Spec("w_std", sp.S.One, std),
    Spec("u_std", sp.S.One, std),
    Spec("b_std", None, std_or_none),
    Spec("activation", "relu", activation_name),
    Spec("readout", "last", enum(READOUTS)),
    Spec("parameterization", FROM_NETWORK, enum(PARAMETERIZATIONS)),
), _build))
