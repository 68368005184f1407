"""The abstract syntax tree of a .ntk file: what was written, before names are resolved.

Class names line up with grammar rules (``layer_call`` -> :class:`LayerCall`). Spans are excluded
from equality so that two parses of equivalent text compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional, Tuple, Union

from ..errors import Span

_span = dict(default=None, compare=False, repr=False)


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Number:
    value: Fraction  # exact: "0.1" is 1/10
    text: str
    span: Optional[Span] = field(**_span)


@dataclass(frozen=True)
class Name:
    id: str
    span: Optional[Span] = field(**_span)


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / **
    left: "Expr"
    right: "Expr"
    span: Optional[Span] = field(**_span)


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    span: Optional[Span] = field(**_span)


@dataclass(frozen=True)
class Call:
    func: str
    args: Tuple["Argument", ...]
    span: Optional[Span] = field(**_span)
    func_span: Optional[Span] = field(**_span)


@dataclass(frozen=True)
class Sequence:
    items: Tuple["Expr", ...]
    span: Optional[Span] = field(**_span)


Expr = Union[Number, Name, BinOp, Neg, Call, Sequence]


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    span: Optional[Span] = field(**_span)  # the keyword's name


Argument = Union[Expr, Keyword]


@dataclass(frozen=True)
class Slice:
    """``start:stop:step`` in a subscript (``index[1:5, ::-1]``); a missing part is None."""

    start: Optional[Expr]
    stop: Optional[Expr]
    step: Optional[Expr]
    span: Optional[Span] = field(**_span)


# ---------------------------------------------------------------- statements
@dataclass(frozen=True)
class Body:
    statements: Tuple["Statement", ...]
    span: Optional[Span] = field(**_span)


@dataclass(frozen=True)
class LayerCall:
    name: str
    args: Tuple[Argument, ...]
    bodies: Tuple[Body, ...]
    span: Optional[Span] = field(**_span)  # the whole call
    name_span: Optional[Span] = field(**_span)
    subscript: Optional[Tuple[Union[Expr, Slice], ...]] = None  # ``index[...]``: one entry per spatial axis


@dataclass(frozen=True)
class Repeat:
    count: Expr
    body: Body
    span: Optional[Span] = field(**_span)


Statement = Union[LayerCall, Repeat]


# ---------------------------------------------------------------- top level
@dataclass(frozen=True)
class LetDef:
    name: str
    value: Expr
    span: Optional[Span] = field(**_span)  # the name


@dataclass(frozen=True)
class Param:
    name: str
    default: Optional[Expr]
    span: Optional[Span] = field(**_span)


@dataclass(frozen=True)
class BlockDef:
    name: str
    params: Tuple[Param, ...]
    body: Body
    span: Optional[Span] = field(**_span)  # the name


@dataclass(frozen=True)
class ActivationDef:
    name: str
    params: Tuple[Param, ...]  # the first is the variable
    body: Expr
    span: Optional[Span] = field(**_span)  # the name


@dataclass(frozen=True)
class NetworkDef:
    name: str
    args: Tuple[Argument, ...]
    body: Body
    span: Optional[Span] = field(**_span)  # the name


Item = Union[LetDef, BlockDef, ActivationDef, NetworkDef]


@dataclass(frozen=True)
class Module:
    items: Tuple[Item, ...]
    filename: str = field(default="<string>", compare=False)
    text: str = field(default="", compare=False, repr=False)
