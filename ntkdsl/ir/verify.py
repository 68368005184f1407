"""Invariants of the IR, checked between lowering and derivation, reported at source positions."""

from __future__ import annotations

from functools import partial
from typing import Sequence, Tuple

from ..errors import ArgumentSpecError, LimitSpecError, ShapeSpecError, StructureSpecError
from ..frontend.limits import MAX_DEGREE
from .arguments import PARAMETERIZATIONS, is_positive_int
from .network import READOUTS, Network

_INPUT = "the network input itself, whose kernel is x·x'/d, not a Gaussian process"


def verify(net: Network) -> Network:
    """Check that ``net`` is a network whose kernel ntkdsl can derive; return it unchanged.

    Invariants: positive integer widths, channels, windows and input shape; known
    parameterizations, paddings and activations; shapes that fit from layer to layer (each node's
    ``out_shape``) and a vector at the end (features [*S, C] with ``readout = none``); sums and products of uncorrelated branches only
    (kernel-math.md §2); every activation and layer norm applied to a Gaussian input (kernel-math.md
    §1: the dual kernel E[σ(u)σ(v)] assumes (u, v) jointly Gaussian, which holds after an affine
    layer; activations in a row are composed into one elementwise function by the symbolic stage).

    Raises:
        SpecError: the first violated invariant, at the offending layer's span.
    """
    if net.parameterization not in PARAMETERIZATIONS:
        raise ArgumentSpecError(f"unknown parameterization '{net.parameterization}'", net.span)
    if not net.input_shape or not all(is_positive_int(n) for n in net.input_shape):
        raise StructureSpecError(f"the input shape must be positive integers, got {net.input_shape}", net.span)
    if net.readout not in READOUTS:
        raise ArgumentSpecError(f"readout must be one of {', '.join(READOUTS)}", net.span)
    shape, _, _ = _sequence(net.layers, tuple(net.input_shape), False, _INPUT, tuple(net.input_shape))
    last = net.layers[-1] if net.layers else None
    where = getattr(last, "span", None) or net.span
    if len(shape) != 1 and net.readout == "vector":
        raise ShapeSpecError(
            f"network '{net.name}' ends with features of shape {list(shape)}, not a vector of outputs; end it with "
            "flatten or global_avg_pool (usually followed by dense), or declare `readout = none` in its header "
            "for kernels per output pixel", where)
    if len(shape) == 1 and net.readout == "none":
        raise ShapeSpecError(f"network '{net.name}' declares `readout = none` but ends in a vector of {shape[0]} "
                             "features; `readout = none` is for a network that ends in an image or signal", where)
    return net


def _sequence(layers: Sequence, shape: Tuple[int, ...], gaussian: bool, why: str, network_input: Tuple[int, ...]):
    """Check ``layers`` from features of ``shape`` in a network whose input has shape ``network_input``;
    return (shape, gaussian, why not gaussian).

    Each layer states its own facts (:class:`ntkdsl.ir.layer.Layer`): whether it needs a Gaussian
    input, whether its output is one, and for branches the check of each branch (this function)."""
    check = partial(_sequence, network_input=network_input)  # a branch's layers, in the same network
    composing = False  # the previous layer (identities skipped) was an activation with Gaussian input
    run_degree = 1  # the structural degree of the composition σₖ∘…∘σ₁ so far
    for layer in layers:
        layer.check()
        if layer.transparent:
            continue
        needed = layer.gaussian_input_needed()
        if needed and not (gaussian or (composing and layer.elementwise)):
            raise StructureSpecError(f"{needed}, but its input is {why}", layer.span)
        if layer.elementwise:
            run_degree = layer.structural_degree() * (run_degree if composing else 1)
            if run_degree > MAX_DEGREE:
                raise LimitSpecError(f"the activations composed up to '{layer.name}' have degree {run_degree} "
                                     f"(at most {MAX_DEGREE}; a dense or conv layer between them ends a composition)",
                                     layer.span)
        layer.fits_input(shape, network_input)
        gaussian_out, why_out = layer.verified(shape, gaussian, why, check)
        composing = layer.elementwise
        shape = layer.out_shape(shape)
        gaussian, why = gaussian_out, why_out
    return shape, gaussian, why
