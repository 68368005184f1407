"""Kernel-flow solver: training dynamics in function space (kernel-math.md §4)."""
