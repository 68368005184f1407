"""Invariants of the IR, checked between lowering and derivation, reported at source positions."""

from __future__ import annotations

from typing import Sequence, Tuple

from ..activations import REGISTRY
from ..errors import ArgumentSpecError, LimitSpecError, ShapeSpecError, StructureSpecError
from ..frontend.limits import MAX_DEGREE
from . import nodes
from .branches import MERGES, Parallel, Residual
from .checks import activation_degree
from .printer import format_header
from .spatial import PADDINGS, POOL_MODES, Conv, Flatten, GlobalPool, LayerNorm, Pool

_INPUT = "the network input itself, whose kernel is x·x'/d, not a Gaussian process"


def verify(net: nodes.Network) -> nodes.Network:
    """Check that ``net`` is a network whose kernel ntkdsl can derive; return it unchanged.

    Invariants: positive integer widths, channels, windows and input shape; known
    parameterizations, paddings and activations; shapes that fit from layer to layer (each node's
    ``out_shape``) and a vector at the end; sums and products of uncorrelated branches only
    (kernel-math.md §2); every activation and layer norm applied to a Gaussian input (kernel-math.md
    §1: the dual kernel E[σ(u)σ(v)] assumes (u, v) jointly Gaussian, which holds after an affine
    layer; activations in a row are composed into one elementwise function by the symbolic stage).

    Raises:
        SpecError: the first violated invariant, at the offending layer's span.
    """
    if net.parameterization not in nodes.PARAMETERIZATIONS:
        raise ArgumentSpecError(f"unknown parameterization '{net.parameterization}'", net.span)
    if not net.input_shape or not all(_positive_int(n) for n in net.input_shape):
        raise StructureSpecError(f"the input shape must be positive integers, got {net.input_shape}", net.span)
    shape, _, _ = _sequence(net.layers, tuple(net.input_shape), False, _INPUT)
    if len(shape) != 1:
        last = net.layers[-1] if net.layers else None
        raise ShapeSpecError(
            f"network '{net.name}' ends with features of shape {list(shape)}, not a vector of outputs; end it with "
            "flatten or global_avg_pool (usually followed by dense)", getattr(last, "span", None) or net.span)
    return net


def _sequence(layers: Sequence, shape: Tuple[int, ...], gaussian: bool, why: str):
    """Check ``layers`` from features of ``shape``; return (shape, gaussian, why not gaussian)."""
    composing = False  # the previous layer (identities skipped) was an activation with Gaussian input
    run_degree = 1  # the structural degree of the composition σₖ∘…∘σ₁ so far
    for layer in layers:
        shape_in = shape
        _check_arguments(layer)
        if isinstance(layer, nodes.ELEMENTWISE):
            if not (gaussian or composing):
                raise StructureSpecError(
                    f"activation '{layer.name}' needs a Gaussian input (an affine layer such as dense before it), but "
                    f"its input is {why}", layer.span)
            run_degree = activation_degree(layer) * (run_degree if composing else 1)
            if run_degree > MAX_DEGREE:
                raise LimitSpecError(f"the activations composed up to '{layer.name}' have degree {run_degree} "
                                     f"(at most {MAX_DEGREE}; a dense or conv layer between them ends a composition)",
                                     layer.span)
            gaussian, why, composing = False, f"the output of activation '{layer.name}'", True
            shape = layer.out_shape(shape)
            continue
        if isinstance(layer, nodes.Identity):
            continue
        composing = False
        if isinstance(layer, LayerNorm) and not gaussian:
            raise StructureSpecError(
                "layer_norm needs a Gaussian input (kernel-math.md §1: put it right after dense or conv), but its "
                f"input is {why}", layer.span)
        if isinstance(layer, Residual):
            layer.check_branches()
            _, body_gaussian, _ = _sequence(layer.body, shape_in, gaussian, why)
            gaussian = gaussian and body_gaussian
            why = "a residual sum whose skip input is not Gaussian" if not gaussian else why
        elif isinstance(layer, Parallel):
            if len(layer.branches) < 2:
                raise StructureSpecError("parallel needs at least two branches", layer.span)
            layer.check_branches()
            results = [_sequence(b, shape_in, gaussian, why) for b in layer.branches]
            gaussian = layer.merge == "sum" and all(g for _, g, _ in results)
            why = {"sum": "a sum of branches that are not all Gaussian",
                   "concat": "a concatenation of branches (channels with different kernels, not one Gaussian "
                             "process; add dense or conv after it)",
                   "prod": "a product of branches (not Gaussian)"}[layer.merge]
        elif isinstance(layer, (nodes.Dense, Conv)):
            gaussian, why = True, ""
        elif isinstance(layer, Flatten):
            gaussian = False
            why = ("the output of flatten, whose features each have their own pixel's kernel (not one Gaussian process; "
                   "elementwise layers commute with flatten: put the activation before it)")
        elif not isinstance(layer, (Pool, GlobalPool, LayerNorm)):
            raise StructureSpecError(f"unsupported layer {type(layer).__name__}", getattr(layer, "span", None))
        shape = layer.out_shape(shape_in)
    return shape, gaussian, why


def _check_arguments(layer) -> None:
    """Values the lowering already checks, re-checked for IR built in Python."""
    if isinstance(layer, nodes.Dense) and not _positive_int(layer.width):
        raise ArgumentSpecError(f"width must be a positive integer, got {layer.width}", layer.span)
    if isinstance(layer, Conv) and not _positive_int(layer.channels):
        raise ArgumentSpecError(f"channels must be a positive integer, got {layer.channels}", layer.span)
    if isinstance(layer, (nodes.Dense, Conv)) and layer.parameterization not in nodes.PARAMETERIZATIONS:
        raise ArgumentSpecError(f"unknown parameterization '{layer.parameterization}'", layer.span)
    if isinstance(layer, (Conv, Pool)):
        window = layer.kernel_size if isinstance(layer, Conv) else layer.window
        if layer.padding not in PADDINGS:
            raise ArgumentSpecError(f"unknown padding '{layer.padding}' (one of {', '.join(PADDINGS)})", layer.span)
        if not window or len(window) != len(layer.stride) or not all(map(_positive_int, window + layer.stride)):
            raise ArgumentSpecError(f"{format_header(layer)}: window and strides must be positive integers, one per "
                                    "spatial dimension", layer.span)
    if isinstance(layer, (Pool, GlobalPool)) and layer.mode not in POOL_MODES:
        raise ArgumentSpecError(f"unknown pooling mode '{layer.mode}'", layer.span)
    if isinstance(layer, Parallel) and layer.merge not in MERGES:
        raise ArgumentSpecError(f"unknown merge '{layer.merge}' (one of {', '.join(MERGES)})", layer.span)
    if isinstance(layer, nodes.Activation) and layer.name not in REGISTRY:
        raise StructureSpecError(f"unknown activation '{layer.name}'", layer.span)


def _positive_int(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n > 0
