"""Limbs: pairs of mapped joints whose direction the robot should share with the human.

A retarget can track scaled joint positions to a few centimetres and still point a limb
elsewhere than the human's (a robot shoulder that sits lower than the scaled human's
tilts the whole upper arm). A limb is a human bone, proximal -> distal joint, and the
robot segment between the points that the recipe's targets attach those two joints to.

- the metric (:mod:`retarget_jax.metrics.batch`): per frame, the cosine between the robot
  segment and the *unscaled* human bone (a scale changes lengths, never directions);
- the cost (:mod:`retarget_jax.solve.costs`): the difference of their unit vectors, a
  scale-free residual with one traced weight per limb.

Host code: :func:`recipe_limbs` resolves names once; :func:`limb_cosines` and
:func:`unit` work on numpy or jax arrays alike.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from retarget_jax.motion.skeleton import LIMBS, HumanJoint, Limb
from retarget_jax.problem.recipe import Recipe, TargetSpec

__all__ = ["LIMBS", "Limb", "RecipeLimb", "limb_cosines", "recipe_limbs", "unit"]


@dataclasses.dataclass(frozen=True)
class RecipeLimb:
    """A limb with the robot points its two joints are attached to by a recipe."""

    limb: Limb
    body_a: str
    offset_a: tuple[float, float, float]
    body_b: str
    offset_b: tuple[float, float, float]
    weight: float  # multiplies CostWeights.direction


def attachment(recipe: Recipe, joint: HumanJoint) -> TargetSpec | None:
    """The recipe's target for ``joint``: its position target if it has one (that is the
    point the robot is asked to put where the human's joint is), else any target."""
    own = [t for t in recipe.targets if t.human == joint]
    pos = [t for t in own if t.position_weight > 0]
    return (pos or own or [None])[0]


def recipe_limbs(recipe: Recipe) -> tuple[RecipeLimb, ...]:
    """The limbs of :data:`LIMBS` whose two joints the recipe attaches to the robot, with
    their weight (``recipe.limb_weights``, else the limb's default ``weight``). Limbs a recipe does not map are left
    out: they have no robot segment to compare."""
    out = []
    for limb in LIMBS:
        a, b = attachment(recipe, limb.proximal), attachment(recipe, limb.distal)
        if a is None or b is None or a.body == b.body:
            continue
        out.append(
            RecipeLimb(limb, a.body, a.offset, b.body, b.offset, float(recipe.limb_weights.get(limb.name, limb.weight)))
        )
    return tuple(out)


def unit(v, eps: float = 1e-9):
    """v / |v| along the last axis (numpy or jax); 0 for a zero vector."""
    xp = np if isinstance(v, np.ndarray) else jnp
    n = xp.sqrt(xp.sum(v * v, axis=-1, keepdims=True))
    return v / xp.maximum(n, eps)


def limb_cosines(robot_a, robot_b, human_a, human_b):
    """Cosine between the robot segments a -> b and the human bones a -> b (..., 3) -> (...)."""
    xp = np if isinstance(robot_a, np.ndarray) else jnp
    return xp.sum(unit(robot_b - robot_a) * unit(human_b - human_a), axis=-1)
