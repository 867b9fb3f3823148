"""retarget_jax: GPU-batched, differentiable motion retargeting in JAX.

The whole path, stage by stage (see :func:`retarget_jax.pipeline.retarget_motions`)::

    motion file -> HumanMotion -> RetargetingProblem -> compile_problem() -> CompiledProblem
      -> solve_many() (bucketed jit + vmap) -> RetargetingResult -> metrics -> writers
"""

__version__ = "0.1.0"
