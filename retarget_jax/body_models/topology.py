"""SMPL-family body tree and rest skeletons (host constants, numpy).

SMPL (24 joints), SMPL-H (52) and SMPL-X (55) share their first 22 joints, the body,
with the same names, order and parents; hands, jaw and eyes hang off them. A joint's
position depends only on its ancestors, so these 22 joints are all this package poses.

A :class:`BodySkeleton` holds the 22 rest joint positions of one body in the SMPL
canonical frame (Y-up, Z-forward, X to the body's left, metres), in the layout the
model's regressor gives them: ``rest_joints[0]`` is the pelvis position ``J_0``, and a
posed pelvis sits at ``trans + J_0`` (the root rotates about ``J_0``, see
:mod:`retarget_jax.body_models.fk`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Model families, lower case as used in format names.
FAMILIES = ("smpl", "smplh", "smplx")
#: Genders of the official model files.
GENDERS = ("neutral", "male", "female")
NUM_BODY_JOINTS = 22

#: The 22 body joints in model order (the smplx package's spelling).
SMPL_BODY_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)  # fmt: skip
#: Parent of each body joint in :data:`SMPL_BODY_JOINT_NAMES` (-1 for the pelvis).
SMPL_BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)


@dataclasses.dataclass(frozen=True)
class BodySkeleton:
    """Rest joints of one SMPL-family body.

    Attributes:
        family: "smpl", "smplh" or "smplx".
        rest_joints: (22, 3) rest joint positions, SMPL canonical frame, metres.
        source: where they came from (a model file, or the built-in neutral figure).
        gender: "neutral", "male" or "female".
    """

    family: str
    rest_joints: np.ndarray
    source: str
    gender: str = "neutral"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if np.shape(self.rest_joints) != (NUM_BODY_JOINTS, 3):
            raise ValueError(f"rest_joints must be (22, 3), got {np.shape(self.rest_joints)}")

    @property
    def parents(self) -> np.ndarray:
        return np.asarray(SMPL_BODY_PARENTS, dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """(22, 3) each joint minus its parent (the pelvis keeps ``J_0``), canonical frame."""
        J = np.asarray(self.rest_joints, dtype=np.float64)
        out = J.copy()
        out[1:] -= J[list(SMPL_BODY_PARENTS[1:])]
        return out
