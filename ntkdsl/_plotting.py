"""matplotlib for the CLI's --plot options (an optional extra: pip install 'ntkdsl[plot]')."""

from __future__ import annotations

import os
from typing import Optional

from .errors import UserError


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
        fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
        if fmt not in supported:
            raise UserError(f"--plot: cannot write {fmt!r} files; use one of {', '.join(sorted(supported))}")
    return plt
