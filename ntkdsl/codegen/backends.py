"""Array backends: the modules that the generated code's ``xp`` and ``xps`` names are bound to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict


@dataclass(frozen=True)
class Backend:
    """An array module and its special-function module, as import lines of the generated code."""

    name: str
    array_module: str  # bound to `xp`
    special_module: str  # bound to `xps`

    def imports(self, used: set) -> str:
        lines = [f"import {self.array_module} as xp"]
        if "xps" in used:
            lines.append(f"import {self.special_module} as xps")
        return "\n".join(lines)


BACKENDS: Dict[str, Backend] = {
    "numpy": Backend("numpy", "numpy", "scipy.special"),
}
