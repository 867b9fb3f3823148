"""Canonical human joint vocabulary (host side).

Every motion source maps its own joint names onto these roles, so recipes are written
once per robot against roles, not against a source's spelling. Names are validated
once, on the host, with errors that list the valid choices.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence

import numpy as np

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


@dataclasses.dataclass(frozen=True)
class Limb:
    """A human bone from ``proximal`` to ``distal``, named for the report: the direction
    metric and cost (:mod:`retarget_jax.problem.limbs`) compare it with the robot's.
    ``weight``: its default multiplier of the direction cost (a recipe's ``limbs`` overrides)."""

    name: str
    proximal: HumanJoint
    distal: HumanJoint
    weight: float = 1.0


#: The limbs the metric reports and the direction cost follows, in report order. The
#: forearms are reported but not weighted by default: their direction is already fixed by
#: the elbow and wrist positions every recipe tracks, and weighting it too drew the G1's
#: hands 6.7 cm into each other on the LAFAN1 test clip (benchmarks/limb_direction.py).
LIMBS: tuple[Limb, ...] = (
    Limb("left_thigh", HumanJoint.LEFT_HIP, HumanJoint.LEFT_KNEE),
    Limb("right_thigh", HumanJoint.RIGHT_HIP, HumanJoint.RIGHT_KNEE),
    Limb("left_shin", HumanJoint.LEFT_KNEE, HumanJoint.LEFT_ANKLE),
    Limb("right_shin", HumanJoint.RIGHT_KNEE, HumanJoint.RIGHT_ANKLE),
    Limb("left_upper_arm", HumanJoint.LEFT_SHOULDER, HumanJoint.LEFT_ELBOW),
    Limb("right_upper_arm", HumanJoint.RIGHT_SHOULDER, HumanJoint.RIGHT_ELBOW),
    Limb("left_forearm", HumanJoint.LEFT_ELBOW, HumanJoint.LEFT_WRIST, weight=0.0),
    Limb("right_forearm", HumanJoint.RIGHT_ELBOW, HumanJoint.RIGHT_WRIST, weight=0.0),
    Limb("trunk", HumanJoint.PELVIS, HumanJoint.SPINE_UPPER),
)

LIMB_NAMES: tuple[str, ...] = tuple(limb.name for limb in LIMBS)


# LAFAN1 BVH joint names -> roles. LAFAN1 has 22 joints; all map. The same table as the
# shipped joint map configs/joint_maps/lafan1.yaml (tests/test_joint_maps.py keeps them equal).
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


_J = HumanJoint

#: The canonical role tree: role -> parent role (None for the root, the pelvis). Sources
#: whose files carry no hierarchy (keypoint sequences) take their parents from it.
CANONICAL_PARENT: Mapping[HumanJoint, HumanJoint | None] = {
    _J.PELVIS: None,
    _J.LEFT_HIP: _J.PELVIS,
    _J.LEFT_KNEE: _J.LEFT_HIP,
    _J.LEFT_ANKLE: _J.LEFT_KNEE,
    _J.LEFT_TOE: _J.LEFT_ANKLE,
    _J.RIGHT_HIP: _J.PELVIS,
    _J.RIGHT_KNEE: _J.RIGHT_HIP,
    _J.RIGHT_ANKLE: _J.RIGHT_KNEE,
    _J.RIGHT_TOE: _J.RIGHT_ANKLE,
    _J.SPINE_LOWER: _J.PELVIS,
    _J.SPINE_MID: _J.SPINE_LOWER,
    _J.SPINE_UPPER: _J.SPINE_MID,
    _J.NECK: _J.SPINE_UPPER,
    _J.HEAD: _J.NECK,
    _J.LEFT_COLLAR: _J.SPINE_UPPER,
    _J.LEFT_SHOULDER: _J.LEFT_COLLAR,
    _J.LEFT_ELBOW: _J.LEFT_SHOULDER,
    _J.LEFT_WRIST: _J.LEFT_ELBOW,
    _J.RIGHT_COLLAR: _J.SPINE_UPPER,
    _J.RIGHT_SHOULDER: _J.RIGHT_COLLAR,
    _J.RIGHT_ELBOW: _J.RIGHT_SHOULDER,
    _J.RIGHT_WRIST: _J.RIGHT_ELBOW,
}


def canonical_parents(roles: Sequence[HumanJoint | str]) -> np.ndarray:
    """(J,) parent index of each role within ``roles`` on the canonical role tree.

    A role whose canonical parent is absent from ``roles`` hangs from its nearest present
    ancestor; a role with no present ancestor gets -1 (the pelvis always does).
    """
    parsed = [HumanJoint.parse(r) for r in roles]
    index = {r: i for i, r in enumerate(parsed)}
    out = np.full(len(parsed), -1, dtype=np.int64)
    for i, role in enumerate(parsed):
        p = CANONICAL_PARENT[role]
        while p is not None and p not in index:
            p = CANONICAL_PARENT[p]
        if p is not None:
            out[i] = index[p]
    return out
