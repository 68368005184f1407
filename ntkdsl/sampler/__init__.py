"""Finite-width networks built from the same IR (kernel-math.md §5)."""
