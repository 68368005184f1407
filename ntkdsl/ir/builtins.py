"""Built-in layers and argument converters: how each built-in layer's arguments become IR values.

A layer's parameters are :class:`Spec` rows (name, default, converter); a converter turns a lowered
value (a sympy number, a tuple or a :class:`~ntkdsl.ir.lower.Word`) into what the IR node stores,
raising a SpecError with the argument's span otherwise. ``LAYERS`` maps a layer's name to the
function that builds its IR node from a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Callable, Optional, Sequence, Tuple

import sympy as sp

from ..errors import ArgumentSpecError, LimitSpecError, NameSpecError, StructureSpecError, did_you_mean
from ..frontend import ast
from ..frontend.limits import MAX_DEGREE, MAX_INPUT_SIZE
from . import nodes
from .spatial import PADDINGS

MAX_WIDTH = 10**9
MAX_SCALE = sp.Integer(10)**154  # squares of standard deviations and scales stay below the float64 maximum 1.8e308
REQUIRED = object()


@dataclass(frozen=True)
class Word:
    """A bare name that resolved to nothing; meaningful only as an enumeration word."""

    name: str
    span: Optional[object]


@dataclass(frozen=True)
class Spec:
    """One parameter of a built-in: its name, default and converter (lowerer, value, span, name) -> IR value."""

    name: str
    default: object
    convert: Callable


# ---------------------------------------------------------------- converters: (lowerer, value, span, name[, env])
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


def per_dimension(low, v, span, name: str, env=()) -> Tuple[int, ...]:
    """A window size or stride: an int for every spatial dimension, or one entry per dimension."""
    rank = getattr(low, "rank", 0)
    if isinstance(v, tuple):
        values = tuple(positive_int(low, d, span, f"each entry of {name}", env) for d in v)
        if rank and len(values) != rank:
            raise ArgumentSpecError(
                f"{name} has {len(values)} entries, but the network's input has {rank} spatial dimension"
                f"{'s' if rank != 1 else ''}; give one entry per dimension or a single integer", span)
        return values
    return (positive_int(low, v, span, name, env),) * max(rank, 1)


# ---------------------------------------------------------------- built-in structural layers
def _dense(low, st: ast.LayerCall, env, param: str) -> nodes.Dense:
    specs = [
        Spec("width", REQUIRED, positive_int),
        Spec("w_std", sp.S.One, std),
        Spec("b_std", None, std_or_none),
        Spec("parameterization", param, enum(nodes.PARAMETERIZATIONS)),
    ]
    v = _values(low, "dense", specs, st, env)
    return nodes.Dense(v["width"], v["w_std"], v["b_std"], v["parameterization"], st.span)


def _identity(low, st: ast.LayerCall, env, param: str) -> nodes.Identity:
    low.bind("identity", [], st.args, env, st.name_span)
    return nodes.Identity(st.span)


def _conv(low, st: ast.LayerCall, env, param: str):
    from .spatial import Conv

    specs = [
        Spec("channels", REQUIRED, positive_int),
        Spec("kernel", REQUIRED, per_dimension),
        Spec("stride", sp.S.One, per_dimension),
        Spec("padding", "valid", enum(PADDINGS)),
        Spec("w_std", sp.S.One, std),
        Spec("b_std", None, std_or_none),
        Spec("parameterization", param, enum(nodes.PARAMETERIZATIONS)),
    ]
    v = _values(low, "conv", specs, st, env)
    return Conv(v["channels"], v["kernel"], v["stride"], v["padding"], v["w_std"], v["b_std"],
                v["parameterization"], st.span)


def _pool(mode: str):
    def build(low, st: ast.LayerCall, env, param: str):
        from .spatial import Pool

        specs = [Spec("window", REQUIRED, per_dimension), Spec("stride", None, _none_or(per_dimension)),
                 Spec("padding", "valid", enum(PADDINGS))]
        v = _values(low, f"{mode}_pool", specs, st, env)
        return Pool(mode, v["window"], v["stride"] or v["window"], v["padding"], st.span)

    return build


def _global_pool(mode: str):
    def build(low, st: ast.LayerCall, env, param: str):
        from .spatial import GlobalPool

        low.bind(f"global_{mode}_pool", [], st.args, env, st.name_span)
        return GlobalPool(mode, st.span)

    return build


def _flatten(low, st: ast.LayerCall, env, param: str):
    from .spatial import Flatten

    low.bind("flatten", [], st.args, env, st.name_span)
    return Flatten(st.span)


def _layer_norm(low, st: ast.LayerCall, env, param: str):
    from .spatial import LayerNorm

    v = _values(low, "layer_norm", [Spec("eps", sp.Rational(1, 10**12), _positive_real)], st, env)
    return LayerNorm(v["eps"], st.span)


def _residual(low, st: ast.LayerCall, env, param: str):
    from .branches import Residual

    v = _values(low, "residual", [Spec("scale", sp.S.One, scale)], st, env)
    if len(st.bodies) != 1:
        where = st.bodies[1].span if len(st.bodies) > 1 else st.span
        raise StructureSpecError(f"residual takes exactly one {{ body }} (x + scale·f(x)), got {len(st.bodies)}", where)
    return Residual(tuple(low.body(st.bodies[0], env, param)), v["scale"], st.span)


def _parallel(low, st: ast.LayerCall, env, param: str):
    from .branches import MERGES, Parallel

    v = _values(low, "parallel", [Spec("merge", REQUIRED, enum(MERGES))], st, env)
    if len(st.bodies) < 2:
        raise StructureSpecError(
            f"parallel needs at least two branches, each in braces: parallel(merge = {v['merge']}) {{ ... }} {{ ... }}; "
            f"got {len(st.bodies)}", st.span)
    branches = tuple(tuple(low.body(b, env, param)) for b in st.bodies)
    return Parallel(v["merge"], branches, st.span, tuple(b.span for b in st.bodies))


def _values(low, what: str, specs, st: ast.LayerCall, env):
    args = low.bind(what, specs, st.args, env, st.name_span)
    return {s.name: s.convert(low, args[s.name].value, args[s.name].span, s.name, env) for s in specs}


def _none_or(convert):
    def wrapped(low, v, span, name: str, env=()):
        return None if v is None else convert(low, v, span, name, env)

    return wrapped


def _positive_real(low, v, span, name: str, env=()) -> sp.Expr:
    x = real(low, v, span, name, env)
    if not x.is_positive:
        raise ArgumentSpecError(f"{name} must be positive, got {x}", span)
    return x


LAYERS = {
    "dense": _dense,
    "identity": _identity,
    "conv": _conv,
    "avg_pool": _pool("avg"),
    "sum_pool": _pool("sum"),
    "global_avg_pool": _global_pool("avg"),
    "global_sum_pool": _global_pool("sum"),
    "flatten": _flatten,
    "layer_norm": _layer_norm,
    "residual": _residual,
    "parallel": _parallel,
}
BODY_LAYERS = ("residual", "parallel")  # the layers that take { } bodies
