"""Text -> AST: the Lark LALR parser (built once), its transformer and labelled syntax errors.

Nothing outside this module ever sees a ``lark.Tree``.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.visitors import Transformer_NonRecursive

from ..errors import SpecError, Span, SyntaxSpecError
from . import ast, limits

_OPEN = {"LPAR", "LSQB"}
_CLOSE = {"RPAR", "RSQB"}


class _BracketPostLex:
    """Drops newlines inside ( ) and [ ], where they are insignificant."""

    always_accept = ("_NL",)  # the contextual lexer must produce _NL everywhere so we can drop it

    def process(self, stream):
        depth = 0
        for tok in stream:
            if tok.type in _OPEN:
                depth += 1
            elif tok.type in _CLOSE:
                depth = max(0, depth - 1)
            elif tok.type == "_NL" and depth > 0:
                continue
            yield tok


def grammar_text() -> str:
    """The text of ``ntk.lark``, from the installed package data (wheel or editable install)."""
    try:
        return resources.files("ntkdsl.grammar").joinpath("ntk.lark").read_text(encoding="utf-8")
    except ModuleNotFoundError:  # running from a source checkout that was never installed
        return (Path(__file__).resolve().parents[2] / "grammar" / "ntk.lark").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def _parser() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        postlex=_BracketPostLex(),
        propagate_positions=True,
        maybe_placeholders=True,
    )


def parse(text: str, filename: str = "<string>") -> ast.Module:
    """Parse .ntk source into an AST.

    Args:
        text: the source.
        filename: used in error messages.

    Returns:
        The :class:`ast.Module`.

    Raises:
        SyntaxSpecError: the text does not follow the grammar; the message names what was expected.
        LimitSpecError: a file, a number or a nesting beyond the limits of :mod:`ntkdsl.frontend.limits`.
    """
    limits.check_source_size(text, filename)
    if not text.endswith("\n"):
        text += "\n"
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, filename) from None
    try:
        items = _ToAst(filename, text).transform(tree)  # iterative: any depth
    except VisitError as exc:
        if isinstance(exc.orig_exc, SpecError):
            raise exc.orig_exc from None
        raise
    module = ast.Module(tuple(items), filename=filename, text=text)
    limits.check_nesting(module)
    return module


# ---------------------------------------------------------------- syntax errors
def _describe_terminal(name: str) -> str:
    special = {"NAME": "a name", "NUMBER": "a number", "_NL": "a newline", "$END": "end of file"}
    if name in special:
        return special[name]
    for term in _parser().terminals:
        if term.name == name:
            if isinstance(term.pattern, lark.lexer.PatternStr):
                return f"'{term.pattern.value}'"
            return name.lower()
    return name


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "newline"
    return f"'{tok.value}'"


def _parser_accepts(state) -> set:
    """The terminals the parser would accept next in ``state``, by replaying each one on a copy (the
    contextual lexer's ``allowed`` set merges the lookaheads of several parser states)."""
    accepted = set()
    for name in state.parse_conf.states[state.position]:
        if name.isupper() or name == "$END":
            trial = state.copy()
            try:
                trial.feed_token(Token(name, ""), name == "$END")
            except UnexpectedInput:
                continue
            accepted.add(name)
    return accepted


def _syntax_error(exc: UnexpectedInput, text: str, filename: str) -> SyntaxSpecError:
    notes = []
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        msg = f"unexpected character {char!r}"
        span = Span(filename, exc.line, exc.column, exc.line, exc.column + 1, text)
        expected = _parser_accepts(exc.state) if exc.state is not None else set(exc.allowed or ()) - {"_NL", "COMMENT"}
    else:
        tok = exc.token if isinstance(exc, UnexpectedToken) else None
        # `accepts` replays the parser per terminal: exact, unlike LALR's merged lookahead sets
        expected = set(getattr(exc, "accepts", None) or exc.expected or ())
        if tok is None or tok.type == "$END" or isinstance(exc, UnexpectedEOF):
            lines = text.rstrip("\n").splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
            msg = "unexpected end of file"
            span = Span(filename, line, col, line, col + 1, text)
        else:
            msg = f"unexpected {_describe_token(tok)}"
            end_col = tok.end_column if tok.end_line == tok.line and tok.end_column else tok.column + 1
            span = Span(filename, tok.line, tok.column, tok.line, max(end_col, tok.column + 1), text)
            if tok.type == "_NL" and "LBRACE" in expected:
                notes.append("note: a '{' opens on the line of its header")
    if expected:
        names = sorted({_describe_terminal(e) for e in expected})
        if len(names) > 10:
            names = names[:10] + ["..."]
        msg += "; expected " + (names[0] if len(names) == 1 else "one of " + ", ".join(names))
    return SyntaxSpecError(msg, span, notes)


# ---------------------------------------------------------------- tree -> AST
@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    def __init__(self, filename: str, text: str):
        super().__init__()
        self.filename = filename
        self.text = text

    def _span(self, meta) -> Span:
        return Span(self.filename, meta.line, meta.column, meta.end_line, meta.end_column, self.text)

    def _tok(self, tok: Token) -> Span:
        return Span(self.filename, tok.line, tok.column, tok.end_line, tok.end_column, self.text)

    # top level
    def start(self, meta, children):
        return [c for c in children if c is not None]

    def let_def(self, meta, children):
        name, value = children
        return ast.LetDef(str(name), value, self._tok(name))

    def block_def(self, meta, children):
        name, *params, body = children
        return ast.BlockDef(str(name), tuple(p for p in params if p is not None), body, self._tok(name))

    def activation_def(self, meta, children):
        name, *params, body = children
        return ast.ActivationDef(str(name), tuple(p for p in params if p is not None), body, self._tok(name))

    def param(self, meta, children):
        name, default = children
        return ast.Param(str(name), default, self._tok(name))

    def network_def(self, meta, children):
        name, args, body = children
        return ast.NetworkDef(str(name), tuple(args or ()), body, self._tok(name))

    def body(self, meta, children):
        return ast.Body(tuple(c for c in children if c is not None), self._span(meta))

    # statements
    def layer_call(self, meta, children):
        name, args, *bodies = children
        return ast.LayerCall(str(name), tuple(args or ()), tuple(bodies), self._span(meta), self._tok(name))

    def subscript_call(self, meta, children):
        name, *entries = children
        entries = tuple(e for e in entries if e is not None)
        return ast.LayerCall(str(name), (), (), self._span(meta), self._tok(name), subscript=entries)

    def slice(self, meta, children):
        start, stop, step = (list(children) + [None, None, None])[:3]
        return ast.Slice(start, stop, step, self._span(meta))

    def repeat(self, meta, children):
        count, body = children
        return ast.Repeat(count, body, self._span(meta))

    def arguments(self, meta, children):
        return [c for c in children if c is not None]

    def keyword(self, meta, children):
        name, value = children
        return ast.Keyword(str(name), value, self._tok(name))

    # expressions
    def number(self, meta, children):
        (tok,) = children
        span = self._tok(tok)
        return ast.Number(limits.literal(str(tok), span), str(tok), span)

    def name(self, meta, children):
        (tok,) = children
        return ast.Name(str(tok), self._tok(tok))

    def call(self, meta, children):
        name, args = children
        return ast.Call(str(name), tuple(args or ()), self._span(meta), self._tok(name))

    def sequence(self, meta, children):
        return ast.Sequence(tuple(c for c in children if c is not None), self._span(meta))

    def _binop(op):  # noqa: N805 - a factory used while building the class
        def method(self, meta, children):
            left, right = children
            return ast.BinOp(op, left, right, self._span(meta))

        return method

    add, sub, mul, div, pow = _binop("+"), _binop("-"), _binop("*"), _binop("/"), _binop("**")
    del _binop

    def neg(self, meta, children):
        (operand,) = children
        return ast.Neg(operand, self._span(meta))
