"""The kernel algebra: the kernel state between layers, the symbolic functions kernel rules are
written with (angles, Owen's T, Gaussian expectations, overflow-safe forms), the structural operations
on spatial kernels (convolution taps, pooling windows, layouts) and window geometry.

It imports nothing of ntkdsl above it: layers, activations, the derivation and the code generators
build on it."""

from .state import KernelState, affine_kernel, elementwise_kernel

__all__ = ["KernelState", "affine_kernel", "elementwise_kernel"]
