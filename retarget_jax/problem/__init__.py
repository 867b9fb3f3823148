"""Problem stage: recipe + robot + motion -> CompiledProblem (host side)."""

from retarget_jax.problem.compile import (
    ClipArrays,
    CompiledProblem,
    CostWeights,
    JointVelocityLimits,
    RetargetingProblem,
    RobotArrays,
    compile_problem,
)
from retarget_jax.problem.recipe import (
    Recipe,
    ScaleGroup,
    TargetSpec,
    load_recipe,
    recipe_from_dict,
)

__all__ = [
    "ClipArrays",
    "CompiledProblem",
    "CostWeights",
    "JointVelocityLimits",
    "RetargetingProblem",
    "RobotArrays",
    "compile_problem",
    "Recipe",
    "ScaleGroup",
    "TargetSpec",
    "load_recipe",
    "recipe_from_dict",
]
