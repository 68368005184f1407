"""matplotlib for the CLI's --plot options (an optional extra: pip install 'ntkdsl[plot]')."""

from __future__ import annotations

import os
from typing import Optional

from ._files import atomic_open
from .errors import UserError


def _format(path: str) -> str:
    """The image format named by ``path``'s extension (png without one)."""
    return os.path.splitext(path)[1].lstrip(".").lower() or "png"


def pyplot(path: Optional[str] = None):
    """matplotlib.pyplot on the Agg backend; a UserError if matplotlib is missing or cannot write ``path``'s format."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'ntkdsl[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if path is not None:
        supported = plt.figure().canvas.get_supported_filetypes()
        plt.close("all")
        fmt = _format(path)
        if fmt not in supported:
            raise UserError(f"--plot: cannot write {fmt!r} files; use one of {', '.join(sorted(supported))}")
    return plt


def save_figure(plt, fig, path: str) -> None:
    """Write ``fig`` to ``path`` atomically in the format of its extension, then close it.

    Raises:
        UserError: ``path`` cannot be written.
    """
    try:
        with atomic_open(path) as f:
            fig.savefig(f, format=_format(path))
    except OSError as exc:
        raise UserError(f"cannot write {path!r}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
