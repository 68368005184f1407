"""A network in the IR: its input shape, default parameterization and layers (immutable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..errors import Span
from .arguments import PARAMETERIZATIONS
from .layer import Layer, span_field
from .shapes import sequence_shape

__all__ = ["Network", "PARAMETERIZATIONS", "READOUTS", "refuse_spatial_readout"]

READOUTS = ("vector", "none")  # a vector of outputs (the default), or the last layer's features as they are


@dataclass(frozen=True)
class Network:
    """A network: its input shape, default parameterization and layers (blocks and repeats expanded).

    ``readout``: "vector" (the network ends in a vector of outputs) or "none" (it ends in features
    [*S, C] of a spatial shape S: its kernels are per output pixel, (N1, N2, *S); kernel-math.md §1)."""

    name: str
    input_shape: Tuple[int, ...]
    parameterization: str
    layers: Tuple[Layer, ...]
    span: Optional[Span] = span_field()
    readout: str = "vector"

    @property
    def input_dim(self) -> int:
        return self.input_shape[-1]

    @property
    def output_shape(self) -> Tuple[int, ...]:
        """The features' shape after the last layer ((k,) for a network with k outputs).

        Raises:
            ShapeSpecError: layers whose shapes do not fit (see :func:`ntkdsl.ir.shapes.sequence_shape`).
        """
        return sequence_shape(self.layers, self.input_shape)

    @property
    def output_width(self) -> int:
        return self.output_shape[-1]


def refuse_spatial_readout(ir: Network, needs: str) -> None:
    """Refuse a network with ``readout = none`` where vector outputs are needed (``needs`` says what needs
    them): its kernels are per output pixel, (N1, N2, *S), and its outputs images or signals.

    Raises:
        ValueError: ``ir.readout`` is "none".
    """
    if ir.readout == "none":
        raise ValueError(f"network {ir.name} ends in an image or signal (readout = none): its kernels are per output "
                         f"pixel, (N1, N2, *S), but {needs}; end it with flatten or global_avg_pool and dense")


def all_layers(layers):
    """Every layer, those inside branches included (pre-order)."""
    for layer in layers:
        yield layer
        for branch in layer.branch_sequences():
            yield from all_layers(branch)
