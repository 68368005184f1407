"""Finite-width networks built from the same IR (kernel-math.md §5).

    fnet = net.finite(width=1024, seed=0)        # one random draw, NTK or standard parameterization
                                                 # (every layer kind: dense, conv, pooling, flatten,
                                                 # layer norm, residual, parallel; backend="cupy" on a GPU)
    fnet.apply(x); fnet.ntk(x1, x2); fnet.nngp(x1, x2)
    record = fnet.train(x, y, steps=200)         # gradient descent; record.ntk_drift
    mc = monte_carlo(net, x1, width=1024, n_samples=100)   # means and standard errors over draws
"""

from .montecarlo import MonteCarloKernels, WidthStudy, loglog_slope, monte_carlo, width_study
from .network import FiniteNetwork, override_widths
from .training import TrainRecord, train

__all__ = ["FiniteNetwork", "MonteCarloKernels", "TrainRecord", "WidthStudy", "loglog_slope", "monte_carlo",
           "override_widths", "train", "width_study"]
