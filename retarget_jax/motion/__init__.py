"""Motion sources -> HumanMotion (host side)."""

from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP, HumanJoint

__all__ = ["HumanMotion", "HumanJoint", "LAFAN1_JOINT_MAP"]
