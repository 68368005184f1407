"""AST -> IR: names resolved, constants evaluated exactly, arguments bound by each layer's spec in
:data:`ntkdsl.layers.LAYERS` (activations by the activation registry), blocks and repeats expanded."""

from .lower import lower, lower_all, select_network

__all__ = ["lower", "lower_all", "select_network"]
