"""Input format names, the same in configs and on the command line (host).

Human-motion formats are read into a :class:`~retarget_jax.motion.HumanMotion` and then
retargeted; robot-space formats (trajectories another tool already made for a robot) are
loaded straight into a :class:`~retarget_jax.result.RetargetingResult`, without a solve.

==================  =====================================================================
name                what
==================  =====================================================================
``amass``           AMASS npz; SMPL, SMPL-H or SMPL-X detected from the keys
``smpl``            AMASS-style SMPL npz (``poses`` (T, 72))
``smplh``           AMASS SMPL-H npz (``poses`` (T, 156))
``smplx``           AMASS SMPL-X npz (``pose_body`` + ``root_orient``, or ``poses`` (T, 165))
``bvh_lafan1``      LAFAN1 BVH (cm, Y-up, toe ``LeftToe``)
``bvh_nokov``       NOKOV BVH (toe ``LeftToeBase``)
``bvh_hc_mocap``    HC mocap BVH (metres, ``hc_``-prefixed names)
``bvh``             any BVH, with a joint map (``--joint-map mixamo`` or a YAML file)
``keypoints``       npz of ``positions`` (T, J, 3), ``joint_names``, ``fps``
``gmr_pkl``         GMR robot-motion pickle (robot space)
``mjlab_npz``       mjlab / BeyondMimic motion npz (robot space)
``seed_csv``        BONES-SEED G1 CSV (robot space)
==================  =====================================================================
"""

from __future__ import annotations

import enum
import os

from retarget_jax.errors import ConfigError, UnknownNameError
from retarget_jax.motion.amass import read_amass
from retarget_jax.motion.bvh import read_bvh_format
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.keypoints import read_keypoints


class MotionFormat(str, enum.Enum):
    AMASS = "amass"
    SMPL = "smpl"
    SMPLH = "smplh"
    SMPLX = "smplx"
    BVH_LAFAN1 = "bvh_lafan1"
    BVH_NOKOV = "bvh_nokov"
    BVH_HC_MOCAP = "bvh_hc_mocap"
    BVH = "bvh"
    KEYPOINTS = "keypoints"
    GMR_PKL = "gmr_pkl"
    MJLAB_NPZ = "mjlab_npz"
    SEED_CSV = "seed_csv"

    @classmethod
    def parse(cls, name: str | MotionFormat, *, where: str | None = None) -> MotionFormat:
        if isinstance(name, MotionFormat):
            return name
        try:
            return cls(str(name))
        except ValueError:
            raise UnknownNameError("motion format", str(name), [f.value for f in cls], where=where) from None

    @property
    def is_robot_space(self) -> bool:
        return self in ROBOT_FORMATS

    @property
    def family(self) -> str:
        """The recipe family of a human format: ``smpl``, ``lafan1`` (BVH) or ``keypoints``."""
        if self in (MotionFormat.AMASS, MotionFormat.SMPL, MotionFormat.SMPLH, MotionFormat.SMPLX):
            return "smpl"
        if self == MotionFormat.KEYPOINTS:
            return "keypoints"
        if self.value.startswith("bvh"):
            return "lafan1"
        raise ConfigError(f"format '{self.value}' is robot-space; it has no recipe family")

    def __str__(self) -> str:
        return self.value


ROBOT_FORMATS = frozenset({MotionFormat.GMR_PKL, MotionFormat.MJLAB_NPZ, MotionFormat.SEED_CSV})
HUMAN_FORMATS = tuple(f for f in MotionFormat if f not in ROBOT_FORMATS)

#: Short robot names used in shipped recipe names (``<family>_<short>``).
ROBOT_SHORT_NAMES = {"unitree_g1": "g1", "unitree_h1": "h1", "booster_t1": "t1"}

#: Default file pattern per format when the input is a directory.
DEFAULT_PATTERNS = {
    "amass": "**/*.npz", "smpl": "**/*.npz", "smplh": "**/*.npz", "smplx": "**/*.npz",
    "bvh_lafan1": "**/*.bvh", "bvh_nokov": "**/*.bvh", "bvh_hc_mocap": "**/*.bvh", "bvh": "**/*.bvh",
    "keypoints": "**/*.npz", "gmr_pkl": "**/*.pkl", "mjlab_npz": "**/*.npz", "seed_csv": "**/*.csv",
}


def default_recipe(fmt: str | MotionFormat, robot: str, motion: HumanMotion | None = None) -> str:
    """The shipped recipe for a human format and a built-in robot, e.g. ``smpl_g1``.

    A motion whose joint frames are unknown (no orientations, or a skeleton whose zero
    pose is not a known T-pose, such as ``bvh`` with the ``mocapbank_19`` map) gets the
    ``keypoints`` family: positions only, with the hips and shoulders weighted to set the
    pelvis and torso heading that orientation targets would otherwise set.
    """
    f = MotionFormat.parse(fmt)
    if robot not in ROBOT_SHORT_NAMES:
        raise ConfigError(f"no shipped recipe for robot '{robot}'; write one (see docs/robots.md, "
                          f"'Adding a robot') and pass it with --recipe / recipe=")
    family = f.family
    if motion is not None and (motion.orientations is None or motion.conventions is None):
        family = "keypoints"
    return f"{family}_{ROBOT_SHORT_NAMES[robot]}"


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
        raise ConfigError(f"format '{f.value}' is a robot-space trajectory, not human motion; "
                          "load it with retarget_jax.io.read_robot_motion()")
    if f.family == "smpl":
        return read_amass(path, f.value, body_model_dir=body_model_dir, gender=gender)
    if f == MotionFormat.KEYPOINTS:
        return read_keypoints(path, joint_map=joint_map)
    return read_bvh_format(path, f.value, joint_map=joint_map)
