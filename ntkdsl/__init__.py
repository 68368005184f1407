"""ntkdsl: infinite-width kernels (NNGP, NTK) of networks written in a small language.

    import ntkdsl
    net = ntkdsl.load("examples/mlp.ntk")
    nngp, ntk = net.kernels(x1, x2)
"""

from ._version import __version__
from .api import CompiledNetwork, Kernels, load, loads
from .errors import SpecError, Span
from .flow import KernelFlow
from .sampler import MonteCarloKernels, monte_carlo
from .tiling import MemoryBudgetError, set_memory_budget

__all__ = ["CompiledNetwork", "KernelFlow", "Kernels", "MemoryBudgetError", "MonteCarloKernels", "SpecError", "Span",
           "__version__", "load", "loads", "monte_carlo", "set_memory_budget"]
