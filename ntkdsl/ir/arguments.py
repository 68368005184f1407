"""Layer arguments: a parameter's :class:`Spec` (name, default, converter) and the converters.

A converter turns a lowered value (a sympy number, a tuple or a :class:`Word`) into what the IR node
stores, raising a SpecError with the argument's span otherwise. Its signature is
``(lowerer, value, span, name, env) -> value``; the lowerer evaluates numbers (``low.as_number``) and
knows the network's spatial rank (``low.rank``, for per-dimension arguments).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Callable, Optional, Sequence, Tuple

import sympy as sp

from ..errors import ArgumentSpecError, LimitSpecError, NameSpecError, did_you_mean
from ..frontend.limits import MAX_DEGREE, MAX_INPUT_SIZE

PARAMETERIZATIONS = ("ntk", "standard")
MAX_WIDTH = 10**9
MAX_SCALE = sp.Integer(10)**154  # squares of standard deviations and scales stay below the float64 maximum 1.8e308
REQUIRED = object()  # a parameter without default
FROM_NETWORK = object()  # the default is the network's (``parameterization``)


@dataclass(frozen=True)
class Word:
    """A bare name that resolved to nothing; meaningful only as an enumeration word."""

    name: str
    span: Optional[object]


@dataclass(frozen=True)
class WordCall:
    """``name(number)`` for a name of :data:`WORD_CALLS`: a word with a number, meaningful only as the value of an
    argument that takes it (``pos_emb_decay = linear(1/4)``), never a number."""

    name: str
    value: sp.Expr
    span: Optional[object]


WORD_CALLS = ("linear",)


@dataclass(frozen=True)
class Spec:
    """One parameter of a built-in: its name, default and converter (lowerer, value, span, name) -> IR value."""

    name: str
    default: object
    convert: Callable


def positive_int(low, v, span, name: str, env=()) -> int:
    n = low.as_number(v, span, env, f"{name} (a positive integer)")
    if not (n.is_integer and n > 0):
        raise ArgumentSpecError(f"{name} must be a positive integer, got {n}", span)
    if n > MAX_WIDTH:
        raise ArgumentSpecError(f"{name} {n} is too large (at most {MAX_WIDTH})", span)
    return int(n)


def natural(low, v, span, name: str, env=()) -> sp.Expr:
    n = low.as_number(v, span, env, f"'{name}' (an integer ≥ 0)")
    if not (n.is_integer and n >= 0):
        raise ArgumentSpecError(f"{name} must be an integer ≥ 0, got {n}", span)
    if n > MAX_DEGREE:  # a degree (monomial, hermite, rectified_monomial): the limit of polynomial activations
        raise LimitSpecError(f"{name} = {n} is too large (at most {MAX_DEGREE})", span)
    return n


def real(low, v, span, name: str, env=()) -> sp.Expr:
    return low.as_number(v, span, env, f"'{name}' (a number)")


def std(low, v, span, name: str, env=()) -> sp.Expr:
    x = real(low, v, span, name, env)
    if x.is_negative:
        raise ArgumentSpecError(f"{name} is a standard deviation and must be non-negative, got {x}", span)
    return scale(low, x, span, name, env)


def scale(low, v, span, name: str, env=()) -> sp.Expr:
    """A number the kernel rules square (a standard deviation, a residual scale): its square must be a float64."""
    x = real(low, v, span, name, env)
    if x.is_number and abs(x) > MAX_SCALE:
        raise LimitSpecError(f"{name} = {x.evalf(5)}: its square is beyond the float64 range (at most "
                             f"{float(MAX_SCALE):.4g} in magnitude)", span)
    return x


def std_or_none(low, v, span, name: str, env=()) -> Optional[sp.Expr]:
    if v is None or (isinstance(v, Word) and v.name == "none"):
        return None
    if isinstance(v, Word):
        raise NameSpecError(f"{name} must be a number or `none`, got undefined name '{v.name}'{did_you_mean(v.name, ['none'])}", v.span)
    return std(low, v, span, name, env)


def enum(words: Sequence[str]):
    def convert(low, v, span, name: str, env=()) -> str:
        if isinstance(v, str) and v in words:  # a default
            return v
        if isinstance(v, Word) and v.name in words:
            return v.name
        got = f"'{v.name}'" if isinstance(v, Word) else "a number" if not isinstance(v, tuple) else "a sequence"
        hint = did_you_mean(v.name, words) if isinstance(v, Word) else ""
        raise ArgumentSpecError(f"{name} must be one of {', '.join(words)}; got {got}{hint}", span)

    return convert


def input_shape(low, v, span, name: str, env=()) -> Tuple[int, ...]:
    """``D`` or ``[D]`` (a vector), ``[L, C]`` (a signal), ``[H, W, C]`` (an image), ...: channels last."""
    dims = v if isinstance(v, tuple) else (v,)
    if not dims:
        raise ArgumentSpecError("input needs at least one dimension", span)
    shape = tuple(positive_int(low, d, span, "each input dimension", env) for d in dims)
    if prod(shape) > MAX_INPUT_SIZE:
        raise LimitSpecError(f"an input of shape {list(shape)} has {prod(shape)} numbers per point "
                             f"(at most {MAX_INPUT_SIZE})", span)
    return shape


def check_rank(low, count: int, span, name: str, hint: str = "") -> None:
    """Refuse ``count`` entries of a per-dimension argument where the network's input has another number
    of spatial dimensions (``low.rank``; 0: not known), ``hint`` appended to the message."""
    rank = getattr(low, "rank", 0)
    if rank and count != rank:
        raise ArgumentSpecError(f"{name} has {count} entr{'y' if count == 1 else 'ies'}, but the network's input has "
                                f"{rank} spatial dimension{'s' if rank != 1 else ''}{hint}", span)


def per_dimension(low, v, span, name: str, env=()) -> Tuple[int, ...]:
    """A window size or stride: an int for every spatial dimension, or one entry per dimension."""
    if isinstance(v, tuple):
        values = tuple(positive_int(low, d, span, f"each entry of {name}", env) for d in v)
        check_rank(low, len(values), span, name, "; give one entry per dimension or a single integer")
        return values
    return (positive_int(low, v, span, name, env),) * max(getattr(low, "rank", 0), 1)



def none_or(convert):
    def wrapped(low, v, span, name: str, env=()):
        return None if v is None else convert(low, v, span, name, env)

    return wrapped


def positive_real(low, v, span, name: str, env=()) -> sp.Expr:
    x = real(low, v, span, name, env)
    if not x.is_positive:
        raise ArgumentSpecError(f"{name} must be positive, got {x}", span)
    return x


def is_positive_int(n) -> bool:
    """Whether ``n`` is a Python int > 0 (not a bool): a width, channel count or window entry."""
    return isinstance(n, int) and not isinstance(n, bool) and n > 0


BOOLEANS = ("false", "true")  # the words of a yes/no argument; BOOLEANS[flag] is its canonical text


def boolean(low, v, span, name: str, env=()) -> bool:
    """``true`` or ``false`` as a bool (a default given as a bool passes)."""
    if isinstance(v, bool):
        return v
    return enum(BOOLEANS)(low, v, span, name, env) == "true"
