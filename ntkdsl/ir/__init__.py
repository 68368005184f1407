"""The IR: immutable layer nodes (:mod:`.nodes`), lowering from the AST, verification, printing."""

from .lower import lower, lower_all, select_network
from .nodes import Activation, Dense, Identity, KernelState, Network
from .printer import format_network
from .verify import verify

__all__ = [
    "Activation", "Dense", "Identity", "KernelState", "Network",
    "format_network", "lower", "lower_all", "select_network", "verify",
]
