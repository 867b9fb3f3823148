"""Robots: MJCF -> RobotSpec (host) and kinematics (jit)."""

from retarget_jax.robots.kinematics import (
    BodyFrames,
    body_frames,
    body_poses,
    integrate,
    point_jacobians,
)
from retarget_jax.robots.spec import BUILTIN_ROBOTS, KinematicTree, RobotSpec, load_robot

__all__ = [
    "BUILTIN_ROBOTS",
    "BodyFrames",
    "KinematicTree",
    "RobotSpec",
    "load_robot",
    "body_frames",
    "body_poses",
    "integrate",
    "point_jacobians",
]
