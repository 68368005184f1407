"""Constant expressions of a spec, evaluated exactly: names, arithmetic and function calls.

A mixin of the lowering (:mod:`.lower`): values are exact sympy numbers, tuples (sequences)
or :class:`~ntkdsl.ir.arguments.Word`. Chains of ``+ -`` and ``* /`` are evaluated iteratively; any
other nesting counts towards :data:`~ntkdsl.frontend.limits.MAX_NESTING`; every intermediate
number must lie in the float64 range (:func:`ntkdsl.ir.checks.in_float_range`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import sympy as sp

from ..errors import ArgumentSpecError, LimitSpecError, NameSpecError, Span, did_you_mean
from ..frontend import ast
from ..frontend.limits import MAX_DIGITS, MAX_NESTING, nesting_message, power_too_large, same_level
from ..ir.arguments import WORD_CALLS, Word, WordCall
from ..ir.checks import in_float_range

MAX_EXPONENT = 1_024  # keeps `10**10**10` from hanging exact arithmetic

FUNCTIONS: Dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "sqrt": sp.sqrt,
    "exp": sp.exp,
    "log": sp.log,
    "sin": sp.sin,
    "cos": sp.cos,
}
_CONSTANTS = {"pi": sp.pi}

# Functions an activation body may call besides the above, each built from sympy constructors.
ACTIVATION_FUNCTIONS: Dict[str, Callable[..., sp.Expr]] = {
    **FUNCTIONS,
    "tanh": sp.tanh,
    "erf": sp.erf,
    "abs": sp.Abs,
    "sign": sp.sign,
    "sigmoid": lambda a: 1 / (1 + sp.exp(-a)),
    "softplus": lambda a: sp.log(1 + sp.exp(a)),
    "relu": lambda a: sp.Max(a, 0),
    "step": sp.Heaviside,
    "max": sp.Max,
    "min": sp.Min,
    "Phi": lambda a: (1 + sp.erf(a / sp.sqrt(2))) / 2,  # the standard normal CDF
}
_ARITY = {"max": 2, "min": 2}


Value = Union[sp.Expr, Tuple["Value", ...], Word, WordCall]


class Expressions:
    """Evaluation of expressions; the host class provides ``lets``, ``let_values``, ``visiting``,
    ``functions``, ``depth`` and ``max_depth``."""

    def let_value(self, name: str) -> sp.Expr:
        if name in self.let_values:
            return self.let_values[name]
        let = self.lets[name]
        if name in self.visiting:
            cycle = self.visiting[self.visiting.index(name):] + [name]
            raise NameSpecError(f"the let '{name}' depends on itself ({' -> '.join(cycle)})", let.span)
        self.visiting.append(name)
        try:
            with self.deeper(let.span):
                value = self.number(let.value, {}, "a number")
        finally:
            self.visiting.pop()
        self.let_values[name] = value
        return value

    def evaluate(self, e: ast.Expr, env: Mapping[str, Value]) -> Value:
        if isinstance(e, ast.Number):
            return in_float_range(sp.Rational(e.value.numerator, e.value.denominator), e.span, "the number")
        if isinstance(e, ast.Name):
            if e.id in env:
                return env[e.id]
            if e.id in self.lets:
                return self.let_value(e.id)
            if e.id in _CONSTANTS:
                return _CONSTANTS[e.id]
            return Word(e.id, e.span)
        with self.deeper(e.span):
            if isinstance(e, ast.Sequence):
                return tuple(self.evaluate(i, env) for i in e.items)
            if isinstance(e, ast.Neg):
                return self._finite(-self.number(e.operand, env), e.span)
            if isinstance(e, ast.BinOp):
                return self._chain(e, env)
            if isinstance(e, ast.Call):
                return self._call(e, env)
        raise TypeError(f"not an expression: {e!r}")  # pragma: no cover - the parser builds only the above

    @contextmanager
    def deeper(self, span: Optional[Span]):
        """One more level of nesting (expressions, bodies, block calls, lets): a LimitSpecError past the limit."""
        self.depth += 1
        try:
            if self.depth > self.max_depth:
                inside = self.max_depth != MAX_NESTING
                raise LimitSpecError(nesting_message(self.max_depth, " in an activation body" if inside else ""), span)
            yield
        finally:
            self.depth -= 1

    def _chain(self, e: ast.BinOp, env: Mapping[str, Value]) -> sp.Expr:
        """``a + b - c ...`` or ``a * b / c ...`` left to right without recursing down the chain."""
        spine = [e]
        while same_level(spine[-1], spine[-1].left):
            spine.append(spine[-1].left)
        value = self.number(spine[-1].left, env)
        for node in reversed(spine):
            value = self._binop(node, value, self.number(node.right, env))
        return value

    def _binop(self, e: ast.BinOp, left: sp.Expr, right: sp.Expr) -> sp.Expr:
        if e.op == "**" and right.is_number:
            if abs(right) > MAX_EXPONENT:
                raise ArgumentSpecError(f"exponent {right} is too large (at most {MAX_EXPONENT})", e.right.span)
            if left.is_Rational and right.is_Integer and power_too_large(max(abs(left.p), left.q).bit_length(), right):
                raise LimitSpecError(f"{left}**{right} needs more than {MAX_DIGITS} digits", e.span)
        if e.op == "/" and right == 0:
            raise ArgumentSpecError("division by zero", e.span)
        ops = {"+": sp.Add, "-": lambda a, b: a - b, "*": sp.Mul, "/": lambda a, b: a / b, "**": sp.Pow}
        return self._finite(ops[e.op](left, right), e.span)

    def _call(self, e: ast.Call, env: Mapping[str, Value]) -> sp.Expr:
        if e.func in WORD_CALLS and self.functions is FUNCTIONS and e.func not in self.functions:
            if len(e.args) != 1 or isinstance(e.args[0], ast.Keyword):
                raise ArgumentSpecError(f"{e.func} takes exactly one positional argument", e.span)
            return WordCall(e.func, self.number(e.args[0], env), e.span)
        if e.func not in self.functions:
            where = "activation bodies" if self.functions is ACTIVATION_FUNCTIONS else "expressions"
            raise NameSpecError(
                f"unknown function '{e.func}'{did_you_mean(e.func, self.functions)} ({where} may call "
                + ", ".join(self.functions) + ")",
                e.func_span,
            )
        arity = _ARITY.get(e.func, 1)
        if len(e.args) != arity or any(isinstance(a, ast.Keyword) for a in e.args):
            count = "one positional argument" if arity == 1 else f"{arity} positional arguments"
            raise ArgumentSpecError(f"{e.func} takes exactly {count}", e.span)
        return self._finite(self.functions[e.func](*(self.number(a, env) for a in e.args)), e.span)

    def number(self, e: ast.Expr, env: Mapping[str, Value], what: str = "a number") -> sp.Expr:
        """Evaluate ``e`` and insist on a real, finite number."""
        return self.as_number(self.evaluate(e, env), e.span, env, what)

    def as_number(self, v: Value, span: Optional[Span], env: Mapping[str, Value] = (),
                  what: str = "a number") -> sp.Expr:
        if isinstance(v, Word):
            visible = list(env) + list(self.lets) + list(_CONSTANTS)
            raise NameSpecError(f"undefined name '{v.name}'{did_you_mean(v.name, visible)}", v.span)
        if isinstance(v, tuple):
            raise ArgumentSpecError(f"expected {what}, got a sequence", span)
        if isinstance(v, WordCall):
            raise ArgumentSpecError(f"expected {what}, got {v.name}(...) (a setting of attention's pos_emb_decay)", v.span)
        return v

    def _finite(self, v: sp.Expr, span: Optional[Span]) -> sp.Expr:
        if v.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
            raise ArgumentSpecError("the expression is not a finite number", span)
        if v.is_real is False or v.has(sp.I):
            raise ArgumentSpecError("the expression is not a real number", span)
        return in_float_range(v, span)
