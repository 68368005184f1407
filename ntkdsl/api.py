"""The Python API: load a spec, get a compiled network, evaluate its kernels."""

from __future__ import annotations

import os
from functools import cached_property
from typing import NamedTuple, Optional

import numpy as np

from .codegen import emit_module, load_module
from .frontend import parse
from .ir import format_network, lower, verify
from .ir.nodes import Network
from .symbolic.latex import program_to_latex
from .symbolic.program import KernelProgram, derive


class Kernels(NamedTuple):
    """The NNGP kernel Σ(x1, x2) and the neural tangent kernel Θ(x1, x2), each (N1, N2) float64."""

    nngp: np.ndarray
    ntk: np.ndarray


class CompiledNetwork:
    """A network compiled from a .ntk spec: its IR, symbolic program and generated evaluator.

    Attributes:
        ir: the verified :class:`ntkdsl.ir.Network`.
        program: the symbolic :class:`KernelProgram` (``str()`` prints it).
        source: the .ntk text it came from; ``filename`` where from.
    """

    def __init__(self, ir: Network, source: str = "", filename: str = "<string>"):
        self.ir = verify(ir)
        self.source = source
        self.filename = filename
        self.program: KernelProgram = derive(self.ir)

    @property
    def name(self) -> str:
        return self.ir.name

    def __repr__(self) -> str:
        return f"<CompiledNetwork {self.name}: input {self.ir.input_dim}, {len(self.ir.layers)} layers>"

    @cached_property
    def _module(self):
        return load_module(self.to_python(), self.name)

    def kernels(self, x1, x2=None) -> Kernels:
        """Σ and Θ between the rows of ``x1`` and of ``x2`` (None: ``x1`` itself).

        Args:
            x1: array-like of shape (N1, d).
            x2: array-like of shape (N2, d), or None.

        Returns:
            :class:`Kernels` of float64 arrays of shape (N1, N2).

        Raises:
            ValueError: an input whose shape does not match the network's input dimension.
        """
        return Kernels(*self._module.kernels(x1, x2))

    def nngp(self, x1, x2=None) -> np.ndarray:
        """The NNGP kernel Σ(x1, x2) (see :meth:`kernels`)."""
        return self.kernels(x1, x2).nngp

    def ntk(self, x1, x2=None) -> np.ndarray:
        """The neural tangent kernel Θ(x1, x2) (see :meth:`kernels`)."""
        return self.kernels(x1, x2).ntk

    def to_python(self, backend: str = "numpy") -> str:
        """The source of a standalone module defining ``kernels(x1, x2=None) -> (nngp, ntk)``."""
        return emit_module(self.program, backend=backend, source=self.source, filename=self.filename)

    def to_latex(self) -> str:
        """The derived recursion, layer by layer, as a LaTeX ``align*`` environment."""
        return program_to_latex(self.program)

    def to_ntk(self) -> str:
        """The canonical .ntk text of the IR (blocks and repeats expanded); parses back to the same IR."""
        return format_network(self.ir)


def loads(text: str, network: Optional[str] = None, filename: str = "<string>") -> CompiledNetwork:
    """Compile a network from .ntk source text.

    Args:
        text: the source.
        network: which network, when the text defines several.
        filename: shown in error messages.

    Raises:
        SpecError: any mistake in the text, with ``file:line:col`` and a caret.
    """
    module = parse(text, filename)
    return CompiledNetwork(lower(module, network), text, filename)


def load(path, network: Optional[str] = None) -> CompiledNetwork:
    """Compile a network from a .ntk file (see :func:`loads`).

    Raises:
        SpecError: any mistake in the file.
        OSError: the file cannot be read.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return loads(text, network, os.fspath(path))
