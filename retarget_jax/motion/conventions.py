"""Source conventions: each joint's frame in a source's reference T-pose (host, numpy).

An orientation target needs the constant rotation between a human joint frame and the
robot body it drives. Both are known in one shared reference pose, a T-pose in a Z-up
world with the figure facing +X (arms along +-Y, palms down): the human joint's frame
there is ``C_j`` (3x3, columns = the joint's axes in that world) and the robot's is its
body frame at the recipe's ``robot_reference_pose``. See
:mod:`retarget_jax.problem.compile`.

Readers attach the table of their source to :class:`~retarget_jax.motion.HumanMotion`
(``conventions``). Named tables:

* ``lafan1``: LAFAN1 (and the demo walk), measured on LAFAN1's own T-pose.
* ``smpl``: the SMPL family (SMPL, SMPL-H, SMPL-X). With zero pose every joint frame is
  the body's canonical frame, Y-up, Z-forward, X to the body's left; facing +X in a Z-up
  world that is x -> +Y, y -> +Z, z -> +X for every joint.
* ``world_tpose_z_forward``: BVH skeletons whose zero pose is a T-pose with every joint
  frame equal to the file's (Y-up) world and the figure facing +Z (Mixamo and many
  vendor exports); after the reader's Y-up -> Z-up rotation, turned to face +X.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from retarget_jax.errors import UnknownNameError
from retarget_jax.motion.demo import CONVENTIONS
from retarget_jax.motion.skeleton import HumanJoint

__all__ = ["SMPL_FRAME", "WORLD_TPOSE_Z_FORWARD_FRAME", "uniform", "get_conventions", "NAMES"]

#: SMPL canonical body frame (x left, y up, z forward) as seen facing +X in a Z-up world.
SMPL_FRAME = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

#: A Y-up, +Z-facing world frame after the BVH reader's +90 deg turn about X (y -> z,
#: z -> -y, so the figure faces -Y) and a +90 deg turn about Z to face +X.
WORLD_TPOSE_Z_FORWARD_FRAME = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
    [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]
)


def uniform(frame: np.ndarray) -> Mapping[HumanJoint, np.ndarray]:
    """The same reference frame for every joint role."""
    f = np.asarray(frame, dtype=np.float64)
    return {j: f.copy() for j in HumanJoint}


def _lafan1() -> Mapping[HumanJoint, np.ndarray]:
    return CONVENTIONS


_TABLES = {
    "lafan1": _lafan1,
    "smpl": lambda: uniform(SMPL_FRAME),
    "world_tpose_z_forward": lambda: uniform(WORLD_TPOSE_Z_FORWARD_FRAME),
}
NAMES = tuple(_TABLES)


def get_conventions(name: str) -> Mapping[HumanJoint, np.ndarray]:
    """A named conventions table (errors list the valid names)."""
    if name not in _TABLES:
        raise UnknownNameError("source convention", name, list(_TABLES))
    return _TABLES[name]()
