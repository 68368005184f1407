"""Resource limits of the .ntk language, checked before any work that could grow with them.

Each limit is documented in docs/language.md ("Limits"); going beyond one is a
:class:`~ntkdsl.errors.LimitSpecError` at the offending text. The values are chosen so that any
spec within them compiles in seconds and no pass (lowering, sympy, code generation) runs out of
Python stack; they are far above what a network needs.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction
from typing import Optional

from ..errors import LimitSpecError, Span
from . import ast

MAX_SOURCE_BYTES = 128 << 10  # a spec file: 128 KiB (parsing takes ~40 µs a byte at worst)
MAX_NESTING = 64  # levels of expressions, calls, sequences and { } bodies, including through blocks and lets
MAX_ACTIVATION_NESTING = 8  # the same levels inside a custom activation's body (its dual is derived symbolically)
MAX_DIGITS = 400  # an exact number's numerator and denominator each below 10**400
MAX_LAYERS = 1_000  # layers of a network once repeats and blocks are expanded (bodies count their layers)
MAX_DEGREE = 16  # degree of a polynomial activation (custom, `polynomial`), and of a composed run of them
MAX_INPUT_SIZE = 10**7  # numbers per input point (the product of the input dimensions)

_BOUND = 10**MAX_DIGITS
_LITERAL = re.compile(r"(?P<int>\d*)(?:\.(?P<frac>\d*))?(?:[eE](?P<exp>[+-]?\d+))?")


def check_source_size(text: str, filename: str) -> None:
    """A LimitSpecError for a source longer than :data:`MAX_SOURCE_BYTES` (UTF-8)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        _too_large(str(size), filename)


def read_source(path) -> str:
    """The UTF-8 text of the spec file at ``path``, refused after reading at most
    :data:`MAX_SOURCE_BYTES` + 1 characters (a larger file, a device or an endless pipe is never
    read whole).

    Raises:
        LimitSpecError: the file is longer than :data:`MAX_SOURCE_BYTES` bytes.
        OSError, UnicodeDecodeError: as :func:`open` and its read.
    """
    filename = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        size = os.fstat(f.fileno()).st_size  # 0 for pipes and devices: the bounded read decides
        if size > 4 * (MAX_SOURCE_BYTES + 1):  # more bytes than MAX_SOURCE_BYTES characters can take
            _too_large(f"{size}", filename)
        text = f.read(MAX_SOURCE_BYTES + 1)
    if len(text) > MAX_SOURCE_BYTES:  # more characters than the limit allows bytes
        _too_large(f"{size}" if size > MAX_SOURCE_BYTES else f"more than {MAX_SOURCE_BYTES}", filename)
    check_source_size(text, filename)
    return text


def _too_large(size: str, filename: str) -> None:
    raise LimitSpecError(f"the file has {size} bytes; a spec may have at most {MAX_SOURCE_BYTES} "
                         f"({MAX_SOURCE_BYTES >> 10} KiB)", Span(filename, 0, 0, 0, 0, ""))


def literal(text: str, span: Optional[Span]) -> Fraction:
    """The exact value of a NUMBER token, refused before it is built when it has too many digits."""
    m = _LITERAL.fullmatch(text)
    digits = len((m["int"] or "").lstrip("0")) + len(m["frac"] or "")
    exp_text = (m["exp"] or "0").lstrip("+-").lstrip("0")
    if digits > MAX_DIGITS or len(exp_text) > len(str(MAX_DIGITS)) or (exp_text and int(exp_text) > MAX_DIGITS):
        raise LimitSpecError(f"the number {_short(text)} is too long or too large "
                             f"(at most {MAX_DIGITS} digits and an exponent of at most ±{MAX_DIGITS})", span)
    value = Fraction(text)
    check_exact(value.numerator, value.denominator, span, _short(text))
    return value


def check_exact(numerator: int, denominator: int, span: Optional[Span], what: str = "the value") -> None:
    """A LimitSpecError when an exact rational needs :data:`MAX_DIGITS` digits or more."""
    if abs(numerator) >= _BOUND or denominator >= _BOUND:
        raise LimitSpecError(f"{what} needs more than {MAX_DIGITS} digits (exact numbers are limited to "
                             f"{MAX_DIGITS} digits above and below the decimal point)", span)


def power_too_large(base_bits: int, exponent: int) -> bool:
    """Whether an integer of ``base_bits`` bits raised to ``exponent`` surely exceeds the digit limit."""
    return base_bits > 1 and (base_bits - 1) * abs(exponent) > MAX_DIGITS * 3.33 + 8  # log2(10) > 3.32


def check_nesting(module: ast.Module) -> None:
    """A LimitSpecError at the first node nested deeper than :data:`MAX_NESTING` levels.

    Walks the tree with an explicit stack, so it works at any depth; everything after it may recurse.
    """
    stack = [(item, 0) for item in module.items]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise LimitSpecError(nesting_message(), _first_span(node))
        children = _children(node)
        if isinstance(node, ast.BinOp) and same_level(node, node.left):  # a + b + c: one level (lowered iteratively)
            stack.append((node.left, depth))
            children = children[1:]
        stack.extend((child, depth + 1) for child in children)


def nesting_message(limit: int = MAX_NESTING, where: str = "") -> str:
    return (f"nesting deeper than {limit} levels{where} (calls, operators other than a chain of + - or * /, "
            "sequences, { } bodies, block calls and lets referring to lets all count)")


_LEVELS = {"+": 0, "-": 0, "*": 1, "/": 1}


def same_level(parent: ast.BinOp, left) -> bool:
    """Whether ``left`` continues the left-associative chain of ``parent`` (``+ -`` or ``* /``)."""
    return (isinstance(left, ast.BinOp) and left.op in _LEVELS and parent.op in _LEVELS
            and _LEVELS[left.op] == _LEVELS[parent.op])


def _children(node):
    if isinstance(node, ast.BinOp):
        return (node.left, node.right)
    if isinstance(node, ast.Neg):
        return (node.operand,)
    if isinstance(node, (ast.Call, ast.NetworkDef)):
        return tuple(a.value if isinstance(a, ast.Keyword) else a for a in node.args) + (
            (node.body,) if isinstance(node, ast.NetworkDef) else ())
    if isinstance(node, ast.Sequence):
        return node.items
    if isinstance(node, ast.LayerCall):
        return tuple(a.value if isinstance(a, ast.Keyword) else a for a in node.args) + node.bodies + (node.subscript or ())
    if isinstance(node, ast.Slice):
        return tuple(e for e in (node.start, node.stop, node.step) if e is not None)
    if isinstance(node, ast.Body):
        return node.statements
    if isinstance(node, ast.Repeat):
        return (node.count, node.body)
    if isinstance(node, (ast.BlockDef, ast.ActivationDef)):
        defaults = tuple(p.default for p in node.params if p.default is not None)
        return defaults + (node.body,)
    if isinstance(node, ast.LetDef):
        return (node.value,)
    return ()


def _first_span(node) -> Optional[Span]:
    """The node's span, or the first span below it (an operator node's span starts at its left operand)."""
    while getattr(node, "span", None) is None and _children(node):
        node = _children(node)[0]
    return getattr(node, "span", None)


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:10]}…{text[-10:]} ({len(text)} characters)"
