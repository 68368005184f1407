"""The table of layer kinds: a language keyword -> its argument spec and the builder of its IR node.

Each module of :mod:`ntkdsl.layers` registers its rows at import; the lowering looks a call up here
(no isinstance chains, no per-layer code elsewhere). A row outside the package (a test, a user's
extension) registers the same way and is as much a layer as the built-in ones: parsed, verified,
printed, derived, compiled for every backend and sampled at finite width through the methods of its
node (:class:`ntkdsl.ir.layer.Layer`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from ..errors import Span
from ..ir.arguments import Spec
from ..ir.layer import Layer


@dataclass(frozen=True)
class Call:
    """What a builder gets beside the argument values: where the call is, and its lowered bodies."""

    span: Optional[Span]
    name_span: Optional[Span]
    bodies: Tuple[Tuple[Layer, ...], ...] = ()
    body_spans: Tuple[Optional[Span], ...] = ()
    subscript: Optional[Tuple[object, ...]] = None  # ``index[...]``: an int or (start, stop, step) per entry
    subscript_spans: Tuple[Optional[Span], ...] = ()


@dataclass(frozen=True)
class LayerRule:
    """One layer kind of the language.

    Attributes:
        name: the keyword (``conv``, ``avg_pool``).
        specs: its parameters in positional order (a default of ``FROM_NETWORK`` takes the network's).
        build: (argument values by name, :class:`Call`) -> the IR node; raises SpecErrors at spans.
        bodies: whether the call takes ``{ ... }`` bodies (residual, parallel).
        subscript: whether the call is written with a subscript, ``index[1:5, ::-1]`` (then it takes
            no parenthesised arguments).
    """

    name: str
    specs: Tuple[Spec, ...]
    build: Callable[[Mapping[str, object], Call], Layer]
    bodies: bool = False
    subscript: bool = False


class LayerTable:
    """Layer kinds by keyword; refuses a keyword registered twice."""

    def __init__(self) -> None:
        self.rules: Dict[str, LayerRule] = {}

    def register(self, rule: LayerRule) -> LayerRule:
        if rule.name in self.rules:
            raise ValueError(f"layer '{rule.name}' is already registered")
        self.rules[rule.name] = rule
        return rule

    def remove(self, name: str) -> None:
        del self.rules[name]

    @contextmanager
    def registered(self, rule: LayerRule) -> Iterator[LayerRule]:
        """``rule`` in the table for the ``with`` block (extensions in tests and notebooks)."""
        self.register(rule)
        try:
            yield rule
        finally:
            self.remove(rule.name)

    def get(self, name: str) -> Optional[LayerRule]:
        return self.rules.get(name)

    def names(self) -> List[str]:
        return list(self.rules)

    def __contains__(self, name: str) -> bool:
        return name in self.rules


LAYERS = LayerTable()
register = LAYERS.register
