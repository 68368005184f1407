"""The layer node interface: what every layer of the IR answers. Its kernel rule, forward and
backward rules and canonical text each layer must define; the rest defaults to a layer without
parameters or branches that keeps its input's shape and layout needs.

A layer kind is one module of :mod:`ntkdsl.layers` holding a frozen dataclass that subclasses
:class:`Layer` and overrides what differs, registered with its argument spec in
:data:`ntkdsl.layers.registry.LAYERS`. The verifier, printer, derivation and sampler call only these
methods (no isinstance chains), so a new layer touches no other file. Spans are excluded from
equality (``printer`` -> ``parse`` -> ``lower`` round-trips compare equal).
"""

from __future__ import annotations

from dataclasses import field, replace
from typing import Callable, ClassVar, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import sympy as sp

from ..algebra.state import KernelState
from ..errors import StructureSpecError

SPAN = dict(default=None, compare=False, repr=False)  # the ``span`` field of every layer dataclass


def span_field():
    """The ``span`` field of a layer dataclass: optional, not compared, not shown."""
    return field(**SPAN)


# verify's recursion: (layers, in shape, gaussian, why not gaussian) -> (out shape, gaussian, why)
SequenceCheck = Callable[[Sequence["Layer"], Tuple[int, ...], bool, str], Tuple[Tuple[int, ...], bool, str]]


class Layer:
    """One layer of a network (kernel-math.md §2–5): structure, kernel rule, facts, text, finite rules."""

    span = None  # dataclasses override it with ``span_field()``

    elementwise: ClassVar[bool] = False  # σ per feature: needs a Gaussian input, composes with neighbours (§3)
    transparent: ClassVar[bool] = False  # changes nothing at all (identity): skipped by composition and checks
    entrywise: ClassVar[bool] = False  # on vectors, each (x, x') entry from its own entry and variances only:
    # a vector network of such layers fuses into one loop over input pairs (codegen.fused)
    branching: ClassVar[bool] = False  # runs branches of layers and merges them (residual, parallel)
    # with per-input position masks (kernel-math.md §2, masks): "remask" (every covariance entry touching a
    # masked position zeroed after the layer, neural-tangents' remask_kernel), "keep" (zeros stay zeros), or
    # None: the layer refuses masks
    masking: ClassVar[Optional[str]] = None

    # --- structure -------------------------------------------------------------------------------
    def parameters(self) -> Dict[str, sp.Expr]:
        """The real parameters the symbolic program keeps as symbols, by name, with their values."""
        return {}

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """The features' shape after the layer (channels last); a ShapeSpecError at its span if it does not fit."""
        return tuple(in_shape)

    def needs_full_input(self, full_output: bool) -> bool:
        """Whether the layer needs all pixel pairs (p, p') of its input, given what its output needs (§1)."""
        return full_output

    def spatial_rank_after(self, rank: int) -> int:
        """The number of spatial axes after the layer, given those before (for the per-dimension
        arguments of later layers: a window written as one integer covers every spatial axis)."""
        return rank

    def branch_sequences(self) -> Tuple[Tuple["Layer", ...], ...]:
        """The branches the derivation runs from the layer's input (a branching layer's)."""
        return ()

    # --- kernel rule (kernel-math.md §2–3) ----------------------------------------------------------
    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """The state after the layer from the state ``s`` before it; ``p`` its parameter symbols."""
        raise NotImplementedError(f"{type(self).__name__} defines no kernel rule")

    def combine(self, states: Sequence[KernelState], p: Mapping[str, sp.Symbol]) -> KernelState:
        """A branching layer's rule: the merged state from the states at the ends of its branches."""
        raise TypeError(f"{type(self).__name__} has no branches")

    # --- facts the verifier checks (kernel-math.md §1–2) --------------------------------------------
    def check(self) -> None:
        """Re-check argument values (the lowering checks them; IR can also be built in Python)."""

    def gaussian_input_needed(self) -> Optional[str]:
        """What to say when the input is not a Gaussian process, e.g. "layer_norm needs a Gaussian
        input (...)"; None when any input will do."""
        return None

    def fits_input(self, shape: Tuple[int, ...], network_input: Tuple[int, ...]) -> None:
        """Raise a located SpecError when the layer's input ``shape`` conflicts with the network's input
        shape (e.g. aggregate: the graphs given at evaluation are over the input's nodes). Default: fits."""

    def verified(self, shape: Tuple[int, ...], gaussian: bool, why: str, check: SequenceCheck) -> Tuple[bool, str]:
        """(whether the output is a Gaussian process, why not) from the same facts of the input;
        ``check`` verifies a sequence of layers (for branches). Default: as the input."""
        return gaussian, why

    def ends_fresh(self) -> Optional[bool]:
        """Whether the layer's output is a fresh zero-mean affine output, uncorrelated with anything
        else in the limit (True: dense, conv); None when a parameter-free linear layer leaves that to
        the layers below it; False otherwise (kernel-math.md §2, branches)."""
        return False

    # --- text ------------------------------------------------------------------------------------
    def format(self, indent: str = "") -> str:
        """The canonical .ntk text of the layer (a branching layer's bodies at ``indent`` + 4)."""
        raise NotImplementedError(f"{type(self).__name__} defines no canonical text")

    def header(self) -> str:
        """One line naming the layer (a branching layer: the part before its bodies)."""
        return self.format()

    def definitions(self) -> Iterable[str]:
        """Top-level definitions the layer's text needs (a custom activation's ``activation`` line)."""
        return ()

    # --- hyperparameters --------------------------------------------------------------------------
    def parameter_prefix(self) -> str:
        """How the layer's parameters are named across a network (``erf_a`` for erf's ``a``)."""
        return ""

    def with_parameters(self, values: Mapping[str, sp.Expr]) -> "Layer":
        """The layer with some of its real parameters (own names) set to exact values."""
        return replace(self, **values)

    def with_branches(self, branches: Sequence[Tuple["Layer", ...]]) -> "Layer":
        """A branching layer with new branches (in the order of :meth:`finite_sequences`)."""
        raise TypeError(f"{type(self).__name__} has no branches")

    # --- finite-width rules (kernel-math.md §5; the interface: ntkdsl.layers.finite) --------------
    def init_params(self, rng, in_shape):
        return {}, self.out_shape(tuple(in_shape))

    def forward(self, params, x):
        """(y, cache) for x of shape (N, *in_shape)."""
        raise NotImplementedError(f"{type(self).__name__} defines no finite-width forward rule")

    def backward(self, params, cache, g):
        """Cotangents g of shape (N, m, *out_shape) pulled back to (N, m, *in_shape)."""
        raise NotImplementedError(f"{type(self).__name__} defines no finite-width backward rule")

    def param_grads(self, params, cache, g, per_example=False):
        return {}

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        return None


def refuse_unmaskable(net) -> None:
    """A StructureSpecError at the first layer of the network ``net`` (in evaluation order, branches included)
    that cannot take position masks (``masking`` None), or for a network without spatial axes to mask."""
    if len(net.input_shape) < 2:
        raise StructureSpecError(f"network {net.name} has a vector input: position masks (mask1/mask2) mark the "
                                 "positions of [L, C] or [H, W, C] inputs", net.span)

    def walk(layers):
        for layer in layers:
            if layer.masking is None:
                raise StructureSpecError(
                    f"{layer.header()} cannot take position masks (mask1/mask2): masks pass only through per-position "
                    "layers (conv with kernel 1 and stride 1, dense, activations, layer_norm, dropout, identity, "
                    "residual, parallel, attention, flatten, global pools; kernel-math.md §2, masks)", layer.span)
            if layer.branching:
                for branch in layer.branch_sequences():
                    walk(branch)

    walk(net.layers)
