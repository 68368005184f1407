"""The IR: a network as an immutable sequence of layer nodes (:class:`.layer.Layer`; the layer kinds
live in :mod:`ntkdsl.layers`), the arguments layers take, verification and canonical printing."""

from .layer import Layer
from .network import Network
from .printer import format_network
from .verify import verify

__all__ = ["Layer", "Network", "format_network", "verify"]
