"""Feature shapes through a sequence of layers (each node's ``out_shape`` rule, in order)."""

from __future__ import annotations

from typing import Sequence, Tuple


def sequence_shape(layers: Sequence, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The shape after ``layers`` of features of shape ``in_shape`` (channels last).

    Raises:
        ShapeSpecError: the first layer whose input shape does not fit, at its span.
    """
    shape = tuple(in_shape)
    for layer in layers:
        shape = tuple(layer.out_shape(shape))
    return shape
