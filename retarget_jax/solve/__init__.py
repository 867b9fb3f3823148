"""Solve stage (jit): whole-trajectory Gauss-Newton / LM, batched over clips."""

from retarget_jax.solve.gauss_newton import SolveOutput, SolverOptions, solve

__all__ = ["SolveOutput", "SolverOptions", "solve"]
