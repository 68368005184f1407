"""The layers: one module per layer kind, each holding side by side its argument spec, shape rule,
layout needs, kernel rule (on :mod:`ntkdsl.algebra`), the facts verification checks, canonical text and
finite-width rules, registered in :data:`.registry.LAYERS` (see :class:`ntkdsl.ir.layer.Layer`).

Importing this package registers every built-in layer.
"""

from .activation import Activation, CustomActivation
from .aggregate import Aggregate
from .attention import Attention
from .conv import Conv
from .conv_local import ConvLocal
from .conv_transpose import ConvTranspose
from .dense import Dense
from .dropout import Dropout
from .exp_normalized import ExpNormalized
from .flatten import Flatten
from .identity import Identity
from .index import Index
from .layer_norm import LayerNorm
from .parallel import Parallel
from .pool import GlobalPool, Pool
from .recurrent import Recurrent
from .registry import LAYERS, Call, LayerRule, register
from .residual import Residual
from .resize import Resize

__all__ = [
    "Activation", "Aggregate", "Attention", "Call", "Conv", "ConvLocal", "ConvTranspose", "CustomActivation", "Dense", "Dropout",
    "ExpNormalized", "Flatten", "GlobalPool", "Identity", "Index", "LAYERS", "LayerNorm", "LayerRule", "Parallel", "Pool",
    "Recurrent", "Residual", "Resize", "register",
]
