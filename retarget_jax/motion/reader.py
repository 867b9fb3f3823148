"""One human-motion file in a named format -> HumanMotion (stage: motion, host).

:func:`read_motion` picks the reader a format name (:class:`~retarget_jax.formats.MotionFormat`)
stands for: :func:`~retarget_jax.motion.amass.read_amass` for the SMPL family,
:func:`~retarget_jax.motion.keypoints.read_keypoints`, or
:func:`~retarget_jax.motion.bvh.read_bvh_format` for the BVH formats. Robot-space formats
are not motion to retarget: :func:`retarget_jax.io.read_robot_motion` loads them.
"""

from __future__ import annotations

import os

from retarget_jax.errors import ConfigError
from retarget_jax.formats import MotionFormat
from retarget_jax.motion.amass import read_amass
from retarget_jax.motion.bvh import read_bvh_format
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.keypoints import read_keypoints

__all__ = ["read_motion"]


def read_motion(
    path: str | os.PathLike,
    fmt: str | MotionFormat,
    *,
    joint_map: str | os.PathLike | None = None,
    body_model_dir: str | os.PathLike | None = None,
    gender: str | None = None,
) -> HumanMotion:
    """Read one human-motion file in a named format (host).

    ``joint_map`` (a shipped map name or a YAML file) is required for ``bvh`` and
    optional for ``keypoints`` (detected from the joint names otherwise).
    ``body_model_dir`` switches the SMPL family from the built-in neutral skeletons to
    real model files (betas-aware).
    """
    f = MotionFormat.parse(fmt, where=os.fspath(path))
    if f.is_robot_space:
        raise ConfigError(
            f"format '{f.value}' is a robot-space trajectory, not human motion; "
            "load it with retarget_jax.io.read_robot_motion()"
        )
    if f.family == "smpl":
        return read_amass(path, f.value, body_model_dir=body_model_dir, gender=gender)
    if f == MotionFormat.KEYPOINTS:
        return read_keypoints(path, joint_map=joint_map)
    return read_bvh_format(path, f.value, joint_map=joint_map)
