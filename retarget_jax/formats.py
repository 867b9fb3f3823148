"""Format names, the same in configs and on the command line (stage: base, host).

Every decision by format name or file suffix goes through this module: the input
formats below (:class:`MotionFormat`; :func:`retarget_jax.motion.read_motion` and
:func:`retarget_jax.io.read_robot_motion` read them), and the output formats a retarget
writes (:data:`OUTPUT_SUFFIXES`, :func:`output_format_of`, :func:`result_stem`;
:func:`retarget_jax.io.write_result` writes them). Nothing here imports a stage.

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

Output formats: ``npz`` (the package's own result, ``.npz``), ``mjlab_npz``
(``.mjlab.npz``) and ``gmr_pkl`` (``.gmr.pkl``; any ``.pkl`` file name asks for it).
"""

from __future__ import annotations

import enum
import os
from pathlib import PurePath
from typing import TYPE_CHECKING

from retarget_jax.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:  # annotation only: the names here are below every stage
    from retarget_jax.motion.human_motion import HumanMotion


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
    "amass": "**/*.npz",
    "smpl": "**/*.npz",
    "smplh": "**/*.npz",
    "smplx": "**/*.npz",
    "bvh_lafan1": "**/*.bvh",
    "bvh_nokov": "**/*.bvh",
    "bvh_hc_mocap": "**/*.bvh",
    "bvh": "**/*.bvh",
    "keypoints": "**/*.npz",
    "gmr_pkl": "**/*.pkl",
    "mjlab_npz": "**/*.npz",
    "seed_csv": "**/*.csv",
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
        raise ConfigError(
            f"no shipped recipe for robot '{robot}'; write one (see docs/robots.md, "
            f"'Adding a robot') and pass it with --recipe / recipe="
        )
    family = f.family
    if motion is not None and (motion.orientations is None or motion.conventions is None):
        family = "keypoints"
    return f"{family}_{ROBOT_SHORT_NAMES[robot]}"


#: Output formats a retarget writes (``output.formats``, ``--output-format``) -> file
#: suffix; ``npz`` is the package's own result (:func:`retarget_jax.io.save_result`).
OUTPUT_SUFFIXES: dict[str, str] = {"npz": ".npz", "mjlab_npz": ".mjlab.npz", "gmr_pkl": ".gmr.pkl"}
OUTPUT_FORMATS: tuple[str, ...] = tuple(OUTPUT_SUFFIXES)
#: Formats a result file is read back in: the package's own, and the robot-space ones.
RESULT_FORMATS: tuple[str, ...] = ("npz", *sorted(f.value for f in ROBOT_FORMATS))

#: Suffixes a robot trajectory file ends with (the outputs', then the robot-space inputs'),
#: longest first so that ``walk.mjlab.npz`` loses ``.mjlab.npz``, not ``.npz``.
TRAJECTORY_SUFFIXES: tuple[str, ...] = tuple(
    sorted(
        {*OUTPUT_SUFFIXES.values(), *(PurePath(DEFAULT_PATTERNS[f.value]).suffix for f in ROBOT_FORMATS)},
        key=lambda s: (-len(s), s),
    )
)


def output_suffix(fmt: str) -> str:
    """The file suffix of an output format (``.<fmt>`` for a name the table does not know)."""
    return OUTPUT_SUFFIXES.get(fmt, "." + fmt)


def output_format_of(path: str | os.PathLike) -> str:
    """The output format a file name asks for: the format of the longest output suffix it
    ends with, ``gmr_pkl`` for any other ``.pkl``, else ``npz`` (case-insensitive)."""
    name = PurePath(path).name.lower()
    for fmt, suffix in sorted(OUTPUT_SUFFIXES.items(), key=lambda kv: -len(kv[1])):
        if name.endswith(suffix):
            return fmt
    return "gmr_pkl" if name.endswith(".pkl") else "npz"


def result_stem(path: str | os.PathLike) -> str:
    """A trajectory file's name without its suffix (:data:`TRAJECTORY_SUFFIXES`):
    ``walk.npz``, ``walk.mjlab.npz``, ``walk.gmr.pkl`` -> ``walk``; ``take.v2.npz`` ->
    ``take.v2``. Renders of a result are named after it (``<stem>.mp4``)."""
    name = PurePath(path).name
    for suffix in TRAJECTORY_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return PurePath(name).stem or name
