"""KernelProgram -> source (:func:`emit_module`) -> callable (:func:`load_module`)."""

from ..arraycode.backends import BACKENDS
from .emit import emit_module
from ..arraycode.loader import load_module

__all__ = ["BACKENDS", "emit_module", "load_module"]
