"""SMPL-family body models: rest skeletons and forward kinematics of the 22 body joints.

Two sources of rest joints, both giving a :class:`BodySkeleton` in the SMPL canonical
frame (Y-up, Z-forward, X-left):

- :func:`neutral_skeleton`: built-in beta = 0 figures (vendored, no licensed files);
- :func:`model_skeleton`: the user's SMPL / SMPL-H / SMPL-X model files, shape-aware.

:func:`smpl_joint_poses` poses either (host wrapper around the jit-able :func:`body_fk`).
The AMASS reader, :func:`retarget_jax.motion.amass.read_amass`, puts these together.
"""

from retarget_jax.body_models.fk import body_fk, smpl_joint_poses
from retarget_jax.body_models.model_files import (
    BodyModel,
    find_model_file,
    load_body_model,
    model_skeleton,
)
from retarget_jax.body_models.neutral import neutral_skeleton
from retarget_jax.body_models.topology import (
    FAMILIES,
    GENDERS,
    NUM_BODY_JOINTS,
    SMPL_BODY_JOINT_NAMES,
    SMPL_BODY_PARENTS,
    BodySkeleton,
)

__all__ = [
    "FAMILIES",
    "GENDERS",
    "NUM_BODY_JOINTS",
    "SMPL_BODY_JOINT_NAMES",
    "SMPL_BODY_PARENTS",
    "BodyModel",
    "BodySkeleton",
    "body_fk",
    "find_model_file",
    "smpl_joint_poses",
    "load_body_model",
    "model_skeleton",
    "neutral_skeleton",
]
