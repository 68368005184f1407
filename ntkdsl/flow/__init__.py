"""Kernel-flow solver: training dynamics in function space (kernel-math.md §4).

    flow = KernelFlow(net, x_train, y_train)
    flow.predict(x_test, [0, 10, 100, inf])      # outputs over training time
    mean, cov = flow.ensemble(x_test, inf)       # over random initialisations
"""

from .inputs import TestKernels
from .krylov import KrylovOptions, NotConvergedError
from .losses import Loss, ODEOptions, cross_entropy, squared
from .solver import FlowEigen, KernelFlow
from .spectral import IllConditionedWarning

__all__ = ["FlowEigen", "IllConditionedWarning", "KernelFlow", "KrylovOptions", "Loss", "NotConvergedError", "ODEOptions", "TestKernels",
           "cross_entropy", "squared"]
