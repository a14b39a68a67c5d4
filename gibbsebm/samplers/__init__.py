"""Batched MCMC kernels (``init``/``step`` over a state with chains on the leading dim)."""
