"""Source positions and the errors a user can cause.

Every mistake in a ``.ntk`` file becomes a :class:`SpecError` carrying a :class:`Span`; its
``str()`` is the one-screen message the CLI prints::

    examples/bad.ntk:4:5: error: unknown layer 'dence'; did you mean 'dense'?
        dence(10)
        ^^^^^
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Optional


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns start at 1, ``end_col`` is exclusive.
    Line 0 means the file as a whole (an error about what the file lacks, not about any of its text)."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int
    text: str = ""  # the whole source, so a message can quote its line

    def __repr__(self) -> str:  # keep IR reprs short: the source text is not part of a span's identity
        return f"Span({self.file}:{self.line}:{self.col}-{self.end_line}:{self.end_col})"

    def source_line(self) -> str:
        """The source line the span starts on, without its newline ('' when unknown)."""
        lines = self.text.splitlines()
        return lines[self.line - 1] if 0 < self.line <= len(lines) else ""


class NtkdslError(Exception):
    """Base class of every error ntkdsl raises on purpose."""


class UserError(NtkdslError):
    """A mistake on the command line (not in a spec): a missing file, a malformed array, a bad option."""


class SpecError(NtkdslError):
    """A mistake in a network specification, located in its source.

    Attributes:
        message: what is wrong and, where possible, what was expected.
        span: where it is; None only for errors about the file as a whole without a position.
        notes: further lines printed under the caret (e.g. where a name was first defined).
    """

    def __init__(self, message: str, span: Optional[Span] = None, notes: Iterable[str] = ()):
        self.message = message
        self.span = span
        self.notes = tuple(notes)
        super().__init__(self.format())

    def __str__(self) -> str:  # notes may be added on the way out (e.g. which block call supplied a value)
        return self.format()

    def format(self) -> str:
        """``file:line:col: error: message``, the source line and a caret under the span."""
        if self.span is None:
            return "\n".join([f"error: {self.message}", *self.notes])
        s = self.span
        if s.line == 0:  # the file as a whole: no position to quote
            return "\n".join([f"{s.file}: error: {self.message}", *self.notes])
        out = [f"{s.file}:{s.line}:{s.col}: error: {self.message}"]
        line = s.source_line()
        if line:
            width = (s.end_col - s.col) if s.end_line == s.line else len(line) - s.col + 1
            out.append("    " + line.replace("\t", " "))
            out.append("    " + " " * (s.col - 1) + "^" * max(1, width))
        out.extend(self.notes)
        return "\n".join(out)


class SyntaxSpecError(SpecError):
    """The text does not follow the grammar."""


class NameSpecError(SpecError):
    """An undefined, unknown or duplicated name."""


class ArgumentSpecError(SpecError):
    """Wrong number, type or value of arguments."""


class StructureSpecError(SpecError):
    """A well-formed network whose layers do not fit together (e.g. a non-Gaussian activation input)."""


class ShapeSpecError(StructureSpecError):
    """Feature shapes that do not fit: a window larger than its input, dense on an image, branches
    of different shapes, a network that does not end in a vector."""


class LimitSpecError(SpecError):
    """A spec beyond one of the documented resource limits (docs/language.md, "Limits"): file size,
    nesting depth, number size, layer count, polynomial degree, window or input size."""


class BranchSpecError(StructureSpecError):
    """Branches whose sum or product has no simple kernel: correlated outputs (kernel-math.md §2)."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A "; did you mean 'x'?" suffix for the closest candidate, or '' when none is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
