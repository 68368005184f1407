"""The command line: ``ntkdsl eval | compile | check | activations | flow | sample`` (``main``), what
the commands read (:mod:`.inputs`), and the flow and sample commands (:mod:`.flow`, :mod:`.sample`).
A user's mistake exits with status 2 and a one-screen message, never a traceback."""

from .main import main

__all__ = ["main"]
