"""What the spec-error test files share: the golden-message check and two small text helpers.

Every mistake in a .ntk file is a :class:`ntkdsl.SpecError` whose ``str()`` is the one-screen
message the CLI prints: ``file:line:col: error: ...``, the source line, a caret line under the
span and optional notes. The golden texts in the test_errors_* files are what a user should read;
where ntkdsl prints something worse today a case keeps the better text and is marked
``xfail(strict=True)``.
"""

from __future__ import annotations

import pytest

import ntkdsl


def lines(*rows: str) -> str:
    """A multi-line text, one argument per line (keeps leading spaces visible and exact)."""
    return "\n".join(rows)


def error(text: str, network=None, filename="t.ntk") -> ntkdsl.SpecError:
    with pytest.raises(ntkdsl.SpecError) as info:
        ntkdsl.loads(text, network=network, filename=filename)
    return info.value


def xfail(reason: str):
    return pytest.mark.xfail(strict=True, reason=reason)


def check_message(text, network, cls, expected):
    """The spec's error is of class ``cls`` and prints exactly ``expected``."""
    exc = error(text, network)
    assert str(exc) == expected
    assert isinstance(exc, ntkdsl.SpecError)
    assert isinstance(exc, cls), type(exc).__name__
