"""Canonical human joint vocabulary (host side).

Every motion source maps its own joint names onto these roles, so recipes are written
once per robot against roles, not against a source's spelling. Names are validated
once, on the host, with errors that list the valid choices.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from retarget_jax.errors import UnknownNameError


class HumanJoint(str, enum.Enum):
    """Canonical joint roles shared by every source skeleton."""

    PELVIS = "pelvis"
    LEFT_HIP = "left_hip"
    LEFT_KNEE = "left_knee"
    LEFT_ANKLE = "left_ankle"
    LEFT_TOE = "left_toe"
    RIGHT_HIP = "right_hip"
    RIGHT_KNEE = "right_knee"
    RIGHT_ANKLE = "right_ankle"
    RIGHT_TOE = "right_toe"
    SPINE_LOWER = "spine_lower"
    SPINE_MID = "spine_mid"
    SPINE_UPPER = "spine_upper"
    NECK = "neck"
    HEAD = "head"
    LEFT_COLLAR = "left_collar"
    LEFT_SHOULDER = "left_shoulder"
    LEFT_ELBOW = "left_elbow"
    LEFT_WRIST = "left_wrist"
    RIGHT_COLLAR = "right_collar"
    RIGHT_SHOULDER = "right_shoulder"
    RIGHT_ELBOW = "right_elbow"
    RIGHT_WRIST = "right_wrist"

    @classmethod
    def parse(cls, name: str | HumanJoint, *, where: str | None = None) -> HumanJoint:
        if isinstance(name, HumanJoint):
            return name
        try:
            return cls(str(name))
        except ValueError:
            raise UnknownNameError("human joint", str(name), [j.value for j in cls], where=where) from None

    def __str__(self) -> str:
        return self.value


# LAFAN1 BVH joint names -> roles. LAFAN1 has 22 joints; all map.
LAFAN1_JOINT_MAP: Mapping[str, HumanJoint] = {
    "Hips": HumanJoint.PELVIS,
    "LeftUpLeg": HumanJoint.LEFT_HIP,
    "LeftLeg": HumanJoint.LEFT_KNEE,
    "LeftFoot": HumanJoint.LEFT_ANKLE,
    "LeftToe": HumanJoint.LEFT_TOE,
    "RightUpLeg": HumanJoint.RIGHT_HIP,
    "RightLeg": HumanJoint.RIGHT_KNEE,
    "RightFoot": HumanJoint.RIGHT_ANKLE,
    "RightToe": HumanJoint.RIGHT_TOE,
    "Spine": HumanJoint.SPINE_LOWER,
    "Spine1": HumanJoint.SPINE_MID,
    "Spine2": HumanJoint.SPINE_UPPER,
    "Neck": HumanJoint.NECK,
    "Head": HumanJoint.HEAD,
    "LeftShoulder": HumanJoint.LEFT_COLLAR,
    "LeftArm": HumanJoint.LEFT_SHOULDER,
    "LeftForeArm": HumanJoint.LEFT_ELBOW,
    "LeftHand": HumanJoint.LEFT_WRIST,
    "RightShoulder": HumanJoint.RIGHT_COLLAR,
    "RightArm": HumanJoint.RIGHT_SHOULDER,
    "RightForeArm": HumanJoint.RIGHT_ELBOW,
    "RightHand": HumanJoint.RIGHT_WRIST,
}
