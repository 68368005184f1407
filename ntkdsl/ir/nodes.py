"""The intermediate representation: a network as an immutable sequence of layer nodes.

Each node carries its kernel rule (kernel-math.md §2–3) as a method, so a layer's meaning lives in
one place; the finite-width forward rule joins it there. Values are exact sympy numbers; spans are
excluded from equality (``printer`` -> ``parse`` -> ``lower`` round-trips compare equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Mapping, Optional, Tuple

import sympy as sp

from ..activations import REGISTRY, ActivationRow
from ..errors import Span

_span = dict(default=None, compare=False, repr=False)

PARAMETERIZATIONS = ("ntk", "standard")


@dataclass(frozen=True)
class KernelState:
    """The kernel state between layers (kernel-math.md §1), as sympy expressions.

    ``cov1``/``cov2`` are the variances Σ(x, x) of the two input sets, ``nngp`` the covariance
    Σ(x, x'), ``ntk`` Θ(x, x'); ``gaussian`` says whether an affine layer came last, and ``width``
    is the current feature count (the next layer's n_in).
    """

    cov1: sp.Expr
    cov2: sp.Expr
    nngp: sp.Expr
    ntk: sp.Expr
    gaussian: bool
    width: int
    nngp_dot: Optional[sp.Expr] = None  # Σ̇ = K̇_σ of an activation layer, which Θ then multiplies
    note: str = ""  # how an activation's dual was obtained (closed form, exact, numerical)
    shape: Tuple[int, ...] = ()  # spatial shape of the features ((): a vector of ``width`` features)
    layout: str = "diagonal"  # with a spatial shape: "diagonal" (pixel pairs (p, p)) or "full" (all (p, p'))


class _NoParameters:
    """Finite-width rules of a layer without parameters; numerics in :mod:`ntkdsl.sampler.layers`,
    which documents the interface every node implements (init_params, forward, backward,
    param_grads, ntk_terms)."""

    def init_params(self, rng, in_shape):
        return {}, tuple(in_shape)

    def param_grads(self, params, cache, g, per_example=False):
        return {}

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        return None


class SamplerRules:
    """Finite-width rules (kernel-math.md §5) kept as functions ``{kind}_{method}`` of a module of
    :mod:`ntkdsl.sampler`, named by the class attribute ``_finite = "module.kind"`` (e.g.
    ``"spatial_layers.conv"``); :mod:`ntkdsl.sampler.layers` documents the interface. A module
    without ``{kind}_param_grads`` / ``{kind}_ntk_terms`` means a layer without parameters."""

    _finite = ""

    def _rule(self, method: str):
        from importlib import import_module

        module, kind = self._finite.rsplit(".", 1)
        return getattr(import_module(f"ntkdsl.sampler.{module}"), f"{kind}_{method}", None)

    def init_params(self, rng, in_shape):
        return self._rule("init")(self, rng, in_shape)

    def forward(self, params, x):
        return self._rule("forward")(self, params, x)

    def backward(self, params, cache, g):
        return self._rule("backward")(self, params, cache, g)

    def param_grads(self, params, cache, g, per_example=False):
        rule = self._rule("param_grads")
        return {} if rule is None else rule(self, params, cache, g, per_example)

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        rule = self._rule("ntk_terms")
        return None if rule is None else rule(self, params, cache1, g1, cache2, g2, trace)


class _ElementwiseRules(_NoParameters):
    """Finite-width σ (kernel-math.md §5): y = σ(z), backward g·σ'(z) with σ' = 0 at jumps (§3)."""

    def forward(self, params, x):
        from ..sampler.layers import elementwise_forward

        return elementwise_forward(self, x)

    def backward(self, params, cache, g):
        from ..sampler.layers import elementwise_backward

        return elementwise_backward(self, cache, g)


def weight_parameters(w_std: sp.Expr, b_std: Optional[sp.Expr]) -> Dict[str, sp.Expr]:
    """The parameters of an affine layer (dense, conv): ``w_std``, and ``b_std`` unless it has no bias."""
    return {"w_std": w_std} if b_std is None else {"w_std": w_std, "b_std": b_std}


def affine_kernel(s: KernelState, p: Mapping[str, sp.Symbol], parameterization: str, fan_in,
                  taps=lambda k: k) -> Tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]:
    """kernel-math.md §2, shared by dense and conv (``taps`` the conv's filter mean C, identity for dense).

    Σ' = σ_w²·C[Σ] + σ_b²; Θ' = Σ' + σ_w²·C[Θ] (NTK) or fan_in·C[Σ] + σ_w²·C[Θ] + 1{bias} (standard,
    Σ before the layer; Sohl-Dickstein et al. 2020). Returns (cov1, cov2, nngp, ntk)."""
    w2 = p["w_std"] ** 2
    b2 = p["b_std"] ** 2 if "b_std" in p else sp.S.Zero
    cov1, cov2, nngp = (w2 * taps(k) + b2 for k in (s.cov1, s.cov2, s.nngp))
    if parameterization == "ntk":
        ntk = nngp + w2 * taps(s.ntk)
    else:
        ntk = fan_in * taps(s.nngp) + w2 * taps(s.ntk) + (1 if "b_std" in p else 0)
    return cov1, cov2, nngp, ntk


@dataclass(frozen=True)
class Dense:
    """A fully connected layer of ``width`` outputs.

    NTK parameterization: z = (σ_w/√n_in)·W·x + σ_b·b; standard: W ~ N(0, σ_w²/n_in), b ~ N(0, σ_b²);
    ``b_std = None`` means no bias.
    """

    width: int
    w_std: sp.Expr = sp.S.One
    b_std: Optional[sp.Expr] = None
    parameterization: str = "ntk"
    span: Optional[Span] = field(**_span)

    def parameters(self) -> Dict[str, sp.Expr]:
        return weight_parameters(self.w_std, self.b_std)

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """(width,) from a vector input; an image input is an error (flatten or pool it first)."""
        if len(in_shape) > 1:
            from ..errors import ShapeSpecError

            raise ShapeSpecError(
                f"dense needs a vector input, but its input has shape {list(in_shape)} (an image or signal "
                "with channels last); add flatten or global_avg_pool before it", self.span)
        return (self.width,)

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2 (neural-tangents' Dense): affine map of Σ, then Θ."""
        cov1, cov2, nngp, ntk = affine_kernel(s, p, self.parameterization, fan_in=s.width)
        return KernelState(cov1, cov2, nngp, ntk, gaussian=True, width=self.width)

    # finite-width rules (kernel-math.md §5); numerics and the interface: ntkdsl/sampler/layers.py
    def init_params(self, rng, in_shape):
        from ..sampler import layers

        return layers.dense_init(self, rng, in_shape)

    def forward(self, params, x):
        from ..sampler import layers

        return layers.dense_forward(self, params, x)

    def backward(self, params, cache, g):
        from ..sampler import layers

        return layers.dense_backward(self, params, cache, g)

    def param_grads(self, params, cache, g, per_example=False):
        from ..sampler import layers

        return layers.dense_param_grads(self, params, cache, g, per_example)

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        from ..sampler import layers

        return layers.dense_ntk_terms(self, params, cache1, g1, cache2, g2, trace)


@dataclass(frozen=True)
class Identity(_NoParameters):
    """The no-op layer."""

    span: Optional[Span] = field(**_span)

    def parameters(self) -> Dict[str, sp.Expr]:
        return {}

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(in_shape)

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        return replace(s, nngp_dot=None)

    def forward(self, params, x):
        return x, None

    def backward(self, params, cache, g):
        return g


@dataclass(frozen=True)
class Activation(_ElementwiseRules):
    """An elementwise nonlinearity σ from the activation registry, with its parameter values.

    ``args`` holds every parameter of the row in order: a sympy number, or for a variadic
    parameter (``polynomial(c0, c1, ...)``) a tuple of them.
    """

    name: str
    args: Tuple[Tuple[str, object], ...] = ()
    span: Optional[Span] = field(**_span)

    @property
    def row(self) -> ActivationRow:
        return REGISTRY.rows[self.name]

    def parameters(self) -> Dict[str, sp.Expr]:
        """The real parameters, which the symbolic program keeps as symbols (variadic ones numbered)."""
        kinds = {p.name: p.kind for p in self.row.params}
        out: Dict[str, sp.Expr] = {}
        for name, value in self.args:
            if isinstance(value, tuple):
                out.update({f"{name}{i}": v for i, v in enumerate(value)})
            elif kinds.get(name, "real") == "real":
                out[name] = value
        return out

    def row_arguments(self, p: Mapping[str, sp.Symbol]) -> Dict[str, object]:
        """The keyword arguments of the row's formulas: symbols for real parameters, ints for natural ones."""
        kinds = {q.name: q.kind for q in self.row.params}
        out: Dict[str, object] = {}
        for name, value in self.args:
            if isinstance(value, tuple):
                out[name] = tuple(p[f"{name}{i}"] for i in range(len(value)))
            elif kinds.get(name, "real") == "real":
                out[name] = p[name]
            else:
                out[name] = int(value)
        return out

    def elementwise(self, p: Mapping[str, sp.Symbol]) -> sp.Lambda:
        """σ as a one-variable Lambda, parameters as the given symbols."""
        x = sp.Symbol("x", real=True)
        return sp.Lambda(x, self.row.fn(x, **self.row_arguments(p)))

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(in_shape)  # elementwise

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §3: Σ' = K_σ(q1, q2, c), Θ' = Θ·K̇_σ(q1, q2, c); diagonals at c = q."""
        from ..activations.dual import row_dual

        params = self.row_arguments(p)
        return elementwise_kernel(s, lambda q1, q2, c: row_dual(self.row, params, q1, q2, c))


@dataclass(frozen=True)
class CustomActivation(_ElementwiseRules):
    """A user-defined elementwise σ: ``activation NAME(x, p = ...) = EXPR`` applied with values for p.

    ``body`` is a sympy expression over real symbols named ``variable`` and each parameter.
    """

    name: str
    variable: str
    body: sp.Expr
    args: Tuple[Tuple[str, sp.Expr], ...] = ()
    span: Optional[Span] = field(**_span)

    def parameters(self) -> Dict[str, sp.Expr]:
        return dict(self.args)

    def elementwise(self, p: Mapping[str, sp.Symbol]) -> sp.Lambda:
        x = sp.Symbol("x", real=True)
        swap = {sp.Symbol(self.variable, real=True): x}
        swap.update({sp.Symbol(name, real=True): p[name] for name, _ in self.args})
        return sp.Lambda(x, self.body.xreplace(swap))

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(in_shape)  # elementwise

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """The dual of σ: exact when ntkdsl can derive it, numerical otherwise (activations/dual.py)."""
        from ..activations.dual import function_dual

        fn = self.elementwise(p)
        return elementwise_kernel(s, lambda q1, q2, c: function_dual(fn, q1, q2, c))


def elementwise_kernel(s: KernelState, dual_at) -> KernelState:
    """kernel-math.md §3 for any elementwise σ given ``dual_at(q1, q2, c) -> Dual``: Σ' = K_σ,
    Θ' = Θ·K̇_σ, and the variances by the same dual on the diagonal (c = q, so θ = 0 exactly).

    Spatial states: per pixel pair, at the arguments of :func:`ntkdsl.symbolic.spatial.dual_arguments`
    (in the full layout Σ(x, x) at p and Σ(x', x') at p')."""
    from ..symbolic.spatial import dual_arguments

    at = dual_arguments(s)
    dual = dual_at(*at["nngp"])
    cov1 = dual_at(*at["cov1"]).nngp
    cov2 = dual_at(*at["cov2"]).nngp
    return KernelState(cov1, cov2, dual.nngp, s.ntk * dual.nngp_dot, gaussian=False, width=s.width,
                       nngp_dot=dual.nngp_dot, note=dual.method, shape=s.shape, layout=s.layout)


Layer = Dense | Identity | Activation | CustomActivation
ELEMENTWISE = (Activation, CustomActivation)


@dataclass(frozen=True)
class Network:
    """A network: its input shape, default parameterization and layers (blocks and repeats expanded)."""

    name: str
    input_shape: Tuple[int, ...]
    parameterization: str
    layers: Tuple[Layer, ...]
    span: Optional[Span] = field(**_span)

    @property
    def input_dim(self) -> int:
        return self.input_shape[-1]

    @property
    def output_shape(self) -> Tuple[int, ...]:
        """The features' shape after the last layer ((k,) for a network with k outputs).

        Raises:
            ShapeSpecError: layers whose shapes do not fit (see :func:`ntkdsl.ir.shapes.sequence_shape`).
        """
        from .shapes import sequence_shape

        return sequence_shape(self.layers, self.input_shape)

    @property
    def output_width(self) -> int:
        return self.output_shape[-1]
