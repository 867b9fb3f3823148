"""Small inputs several test modules build (imported as ``inputs``: pytest puts tests/ on
sys.path)."""

from __future__ import annotations

import numpy as np

from retarget_jax.result import RetargetingResult, SolveStatus
from retarget_jax.robots.kinematics import host_body_poses

#: a two-joint, two-frame BVH (LAFAN1 channel order), the base the bad-input corpus and
#: the BVH fuzzer mutate
TINY_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT LeftUpLeg
  {
    OFFSET 10 0 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 -40 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.033333
0 90 0 0 0 0 0 0 0
0 90 0 0 0 0 0 0 0
"""


def result_of(robot, root, quat, dof, *, fps: float = 30.0, **fields):
    """A RetargetingResult of ``robot`` from a trajectory, its body poses by MuJoCo C
    forward kinematics; ``fields`` set the rest (status, targets, contacts, ...)."""
    pos, rot = host_body_poses(robot, np.concatenate([root, quat, dof], axis=-1))
    base = dict(status=SolveStatus.CONVERGED, final_cost=0.0, iterations=0)
    return RetargetingResult(
        fps=fps,
        root_pos=root,
        root_quat_wxyz=quat,
        dof_pos=dof,
        dof_names=robot.dof_names,
        body_names=robot.body_names,
        body_pos_w=pos,
        body_quat_w=rot,
        robot=robot.name,
        **{**base, **fields},
    )


def synthetic_trajectory(robot, frames: int, seed: int, yaw_end: float | None = None):
    """A 50 fps RetargetingResult of ``robot`` walking 0.5 m while turning to ``yaw_end``
    (drawn from the seed when None), joints in range, body poses from MuJoCo FK."""
    T = frames
    rng = np.random.default_rng(seed)
    lo, hi = robot.dof_ranges[:, 0], robot.dof_ranges[:, 1]
    dof = lo + (hi - lo) * rng.uniform(0.2, 0.8, size=(T, robot.num_dof))
    root = np.c_[np.linspace(0, 0.5, T), np.zeros(T), np.full(T, 0.78)]
    yaw = np.linspace(0, rng.uniform(0.1, 1.0) if yaw_end is None else yaw_end, T)
    quat = np.c_[np.cos(yaw / 2), np.zeros(T), np.zeros(T), np.sin(yaw / 2)]
    return result_of(robot, root, quat, dof, fps=50.0)
