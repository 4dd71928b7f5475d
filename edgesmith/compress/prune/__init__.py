"""Pruning passes: structured channels (the graph shrinks), unstructured and N:M sparsity, TEDDY's ℓ0
projection, each able to recover accuracy through the distillation engine while its zeros stay zero."""
