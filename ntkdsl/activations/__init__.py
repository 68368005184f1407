"""Activation functions and their dual kernels: one registry, one module per family."""

from . import elu, erf, exp, gelu, numerical, polynomial, relu, trig  # noqa: F401 - importing a family registers its rows
from .registry import REGISTRY, ActivationParam, ActivationRow

__all__ = ["REGISTRY", "ActivationParam", "ActivationRow"]
