"""The IR: immutable layer nodes (:mod:`.nodes`, :mod:`.spatial`, :mod:`.branches`), lowering from
the AST, verification, printing."""

from .branches import Parallel, Residual
from .lower import lower, lower_all, select_network
from .nodes import Activation, Dense, Identity, KernelState, Network
from .printer import format_network
from .spatial import Conv, Flatten, GlobalPool, LayerNorm, Pool
from .verify import verify

__all__ = [
    "Activation", "Conv", "Dense", "Flatten", "GlobalPool", "Identity", "KernelState", "LayerNorm", "Network",
    "Parallel", "Pool", "Residual", "format_network", "lower", "lower_all", "select_network", "verify",
]
