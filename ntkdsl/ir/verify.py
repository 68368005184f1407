"""Invariants of the IR, checked between lowering and derivation, reported at source positions."""

from __future__ import annotations

from ..activations import REGISTRY
from ..errors import ArgumentSpecError, StructureSpecError
from . import nodes


def verify(net: nodes.Network) -> nodes.Network:
    """Check that ``net`` is a network whose kernel ntkdsl can derive; return it unchanged.

    Invariants: positive integer widths and input dimension, known parameterizations and
    activations, and every activation applied to a Gaussian input (kernel-math.md §1: the dual
    kernel E[σ(u)σ(v)] assumes (u, v) jointly Gaussian, which holds after an affine layer; activations
    in a row are composed into one elementwise function by the symbolic stage).

    Raises:
        SpecError: the first violated invariant, at the offending layer's span.
    """
    if net.parameterization not in nodes.PARAMETERIZATIONS:
        raise ArgumentSpecError(f"unknown parameterization '{net.parameterization}'", net.span)
    if len(net.input_shape) != 1 or not _positive_int(net.input_shape[0]):
        raise StructureSpecError(f"the input must be a vector of positive dimension, got {net.input_shape}", net.span)
    previous = None  # the last layer that changed the Gaussian-ness of the features
    for layer in net.layers:
        if isinstance(layer, nodes.Dense):
            if not _positive_int(layer.width):
                raise ArgumentSpecError(f"width must be a positive integer, got {layer.width}", layer.span)
            if layer.parameterization not in nodes.PARAMETERIZATIONS:
                raise ArgumentSpecError(f"unknown parameterization '{layer.parameterization}'", layer.span)
            previous = layer
        elif isinstance(layer, nodes.ELEMENTWISE):
            if isinstance(layer, nodes.Activation) and layer.name not in REGISTRY:
                raise StructureSpecError(f"unknown activation '{layer.name}'", layer.span)
            if previous is None:
                raise StructureSpecError(
                    f"activation '{layer.name}' needs a Gaussian input (an affine layer such as dense before it), "
                    "but its input is the network input itself, whose kernel is x·x'/d, not a Gaussian process",
                    layer.span,
                )
            # after another activation: the two compose into one elementwise function (kernel-math.md §3)
            previous = layer
        elif not isinstance(layer, nodes.Identity):
            raise StructureSpecError(f"unsupported layer {type(layer).__name__}", getattr(layer, "span", None))
    return net


def _positive_int(n) -> bool:
    return isinstance(n, int) and n > 0
