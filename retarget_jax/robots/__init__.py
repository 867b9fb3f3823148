"""Robots: MJCF -> RobotSpec (host) and kinematics (jit)."""

from retarget_jax.robots.kinematics import (
           body_poses,
           forward_kinematics,
           integrate,
           point_jacobians,
)
from retarget_jax.robots.spec import BUILTIN_ROBOTS, KinematicTree, RobotSpec, load_robot

__all__ = ["BUILTIN_ROBOTS", "KinematicTree", "RobotSpec", "load_robot", "forward_kinematics",
           "integrate", "point_jacobians", "body_poses"]
