"""IR -> KernelProgram: the symbolic derivation of the NNGP, Σ̇ and NTK recursions."""
