"""Motion sources -> HumanMotion (host side).

Readers: :func:`read_bvh_format` (BVH with a joint map), :func:`read_amass` (SMPL family),
:func:`read_keypoints`, and one entry point for all of them, :func:`read_motion`, by the
format names of :mod:`retarget_jax.formats`; :func:`resample` puts any motion on exact
times at a target fps.
"""

from retarget_jax.motion.amass import read_amass
from retarget_jax.motion.bvh import read_bvh, read_bvh_format
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.joint_maps import load_joint_map
from retarget_jax.motion.keypoints import read_keypoints
from retarget_jax.motion.reader import read_motion
from retarget_jax.motion.resample import resample
from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP, HumanJoint

__all__ = [
    "HumanMotion",
    "HumanJoint",
    "LAFAN1_JOINT_MAP",
    "load_joint_map",
    "read_amass",
    "read_bvh",
    "read_bvh_format",
    "read_keypoints",
    "read_motion",
    "resample",
]
