"""The front end: .ntk text -> AST (:func:`parse`)."""

from .parser import parse

__all__ = ["parse"]
