"""Array backends: the modules that the generated code's ``xp`` and ``xps`` names are bound to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict


@dataclass(frozen=True)
class Backend:
    """An array module and its special-function module, as import lines of the generated code.

    ``fused`` backends print the elementwise layers as one compiled loop (:mod:`.fused`) instead of
    one array operation per step; ``cuda`` backends print each run of elementwise layers as one
    CUDA kernel (:mod:`.cuda`); ``requires`` is the module that must be importable to run them.
    """

    name: str
    array_module: str  # bound to `xp`
    special_module: str  # bound to `xps`
    fused: bool = False
    requires: str = ""
    extra: str = ""  # the pip extra that installs `requires`
    cuda: bool = False

    def imports(self, used: set) -> str:
        lines = [f"import {self.array_module} as xp"]
        if "xps" in used:
            lines.append(f"import {self.special_module} as xps")
        return "\n".join(lines)


BACKENDS: Dict[str, Backend] = {
    "numpy": Backend("numpy", "numpy", "scipy.special"),
    "numba": Backend("numba", "numpy", "scipy.special", fused=True, requires="numba", extra="fast"),
    "cupy": Backend("cupy", "cupy", "cupyx.scipy.special", requires="cupy", extra="gpu", cuda=True),
}
