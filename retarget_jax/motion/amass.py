"""AMASS / SMPL-family reader: motion .npz -> HumanMotion (stage 1, host code; FK in JAX).

Two layers, as for BVH:

* :func:`parse_amass` reads the arrays of one ``.npz`` (``allow_pickle=False``) into an
  :class:`AmassClip` (family, (T, 22, 3) body pose, trans, betas, fps, gender) and checks
  them, naming the file and the field of anything malformed.
* :func:`read_amass` poses the 22 body joints on a rest skeleton and returns a
  :class:`HumanMotion` (world Z-up, metres, wxyz).

Layouts (fps from ``mocap_framerate`` or ``mocap_frame_rate``, whichever is there):

=========  ==========================================================================
family     pose fields
=========  ==========================================================================
smpl       ``poses`` (T, 72): root, 21 body joints, 2 hand joints
smplh      ``poses`` (T, 156): root, 21 body joints, 2 x 15 finger joints
smplx      ``poses`` (T, 165): root, body, jaw, 2 eyes, 2 x 15 fingers; or
           ``root_orient`` (T, 3) + ``pose_body`` (T, 63)
=========  ==========================================================================

with ``trans`` (T, 3), ``betas`` (B,) and ``gender``. ``fmt="amass"`` picks the family
from the width of ``poses`` (72 / 156 / 165), or, for the ``root_orient`` + ``pose_body``
layout, from ``surface_model_type`` when the file has it, else SMPL-X.

The AMASS world is Z-up, metres. Pose rotations are axis-angle in the SMPL canonical
body frame (Y-up, Z-forward, X-left); the root orientation already carries that frame
into the Z-up world, so joint positions need no further axis change. Each joint's
orientation is its global rotation ``G_j`` (see :mod:`retarget_jax.body_models.fk`):
in the zero pose turned to face +X it is ``SMPL_FRAME`` for every joint, which is the
``smpl`` conventions table attached to the motion.

Rest joints come from the built-in neutral figure (default; betas ignored with a
warning) or, with ``body_model_dir``, from the user's model files for the clip's family
and gender (``gender=`` overrides the file's; see :mod:`retarget_jax.body_models.model_files`).

A file that does not exist raises :class:`FileNotFoundError`; everything else that
cannot be read as motion (an AMASS ``*_stagei.npz`` shape file, a missing field, a
wrong shape, NaN, a corrupt or non-npz file) raises
:class:`~retarget_jax.errors.MotionFormatError`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping

import numpy as np

from retarget_jax.body_models import topology
from retarget_jax.body_models.fk import smpl_joint_poses
from retarget_jax.body_models.model_files import model_skeleton
from retarget_jax.body_models.neutral import neutral_skeleton
from retarget_jax.errors import MotionFormatError, UnknownNameError
from retarget_jax.files.npz import read_npz
from retarget_jax.motion.conventions import get_conventions
from retarget_jax.motion.human_motion import HumanMotion, fps_problem
from retarget_jax.motion.skeleton import HumanJoint

__all__ = ["FORMATS", "POSE_WIDTH", "FPS_KEYS", "SMPL_JOINT_MAP", "AmassClip", "parse_amass", "read_amass"]

#: Accepted ``fmt`` values: "amass" detects the family from the file.
FORMATS = ("amass", *topology.FAMILIES)
#: Width of ``poses`` per family.
POSE_WIDTH = {"smpl": 72, "smplh": 156, "smplx": 165}
#: Frame-rate keys, either accepted for any family.
FPS_KEYS = ("mocap_framerate", "mocap_frame_rate")

#: SMPL body joint name -> role. All 22 body joints map.
SMPL_JOINT_MAP: Mapping[str, HumanJoint] = {
    "pelvis": HumanJoint.PELVIS,
    "left_hip": HumanJoint.LEFT_HIP,
    "right_hip": HumanJoint.RIGHT_HIP,
    "spine1": HumanJoint.SPINE_LOWER,
    "left_knee": HumanJoint.LEFT_KNEE,
    "right_knee": HumanJoint.RIGHT_KNEE,
    "spine2": HumanJoint.SPINE_MID,
    "left_ankle": HumanJoint.LEFT_ANKLE,
    "right_ankle": HumanJoint.RIGHT_ANKLE,
    "spine3": HumanJoint.SPINE_UPPER,
    "left_foot": HumanJoint.LEFT_TOE,
    "right_foot": HumanJoint.RIGHT_TOE,
    "neck": HumanJoint.NECK,
    "left_collar": HumanJoint.LEFT_COLLAR,
    "right_collar": HumanJoint.RIGHT_COLLAR,
    "head": HumanJoint.HEAD,
    "left_shoulder": HumanJoint.LEFT_SHOULDER,
    "right_shoulder": HumanJoint.RIGHT_SHOULDER,
    "left_elbow": HumanJoint.LEFT_ELBOW,
    "right_elbow": HumanJoint.RIGHT_ELBOW,
    "left_wrist": HumanJoint.LEFT_WRIST,
    "right_wrist": HumanJoint.RIGHT_WRIST,
}


@dataclasses.dataclass(frozen=True)
class AmassClip:
    """Checked arrays of an SMPL-family motion file (no kinematics applied).

    Attributes:
        path: the file read.
        family: "smpl", "smplh" or "smplx".
        pose: (T, 22, 3) axis-angle, root orientation then the 21 body joints.
        trans: (T, 3) root translation, metres, Z-up world.
        betas: (B,) shape coefficients (empty when the file has none).
        fps: frames per second (> 0).
        gender: the file's gender, lower case, or None when it has none.
    """

    path: str
    family: str
    pose: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    fps: float
    gender: str | None

    @property
    def num_frames(self) -> int:
        return int(self.pose.shape[0])


# ---------------------------------------------------------------------------------------
# Parsing


def _need(path: str, fields: dict, unreadable: dict, key: str) -> np.ndarray:
    if key in unreadable:
        raise MotionFormatError(path, unreadable[key], field=key)
    if key not in fields:
        raise MotionFormatError(path, f"missing field '{key}'; fields: {', '.join(sorted(fields))}", field=key)
    return fields[key]


def _finite(path: str, key: str, a: np.ndarray, shape: tuple[int | None, ...]) -> np.ndarray:
    """Float64 copy of a numeric array of the given shape (None: any size), all finite."""
    if a.dtype.kind not in "biuf":
        raise MotionFormatError(path, f"expected numbers, found dtype {a.dtype}", field=key)
    want = "(" + ", ".join("N" if n is None else str(n) for n in shape) + ")"
    if a.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, a.shape, strict=False)):
        raise MotionFormatError(path, f"expected shape {want}, found {a.shape}", field=key)
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"frame {first[0]}" if a.ndim == 2 and key not in ("betas",) else f"index {first}"
        raise MotionFormatError(
            path, f"NaN or infinite value at {where} ({int(bad.sum())} bad values in all)", field=key
        )
    return a


def _string(a: np.ndarray) -> str | None:
    if a.size != 1 or a.dtype.kind not in "US":
        return None
    v = a.reshape(-1)[0]
    return (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)).strip().lower()


def _not_motion(path: str, fields: dict) -> MotionFormatError:
    msg = "not a motion file: no 'poses' field (nor 'root_orient' + 'pose_body')"
    if "betas" in fields:
        msg += (
            "; it holds body shape fields only, like an AMASS *_stagei.npz shape file "
            f"(fields: {', '.join(sorted(fields))})"
        )
    return MotionFormatError(path, msg, field="poses")


def parse_amass(path: str | os.PathLike, fmt: str = "amass") -> AmassClip:
    """Read and check an SMPL-family motion ``.npz`` without any kinematics.

    Raises:
        FileNotFoundError: the file does not exist.
        UnknownNameError: ``fmt`` is not one of :data:`FORMATS`.
        MotionFormatError: not a motion file, or a field is missing, malformed or not finite.
    """
    path = os.fspath(path)
    if fmt not in FORMATS:
        raise UnknownNameError("SMPL motion format", fmt, FORMATS, where=path)
    fields, unreadable = read_npz(path)

    if "poses" in fields or "poses" in unreadable:
        raw = _need(path, fields, unreadable, "poses")
        width = raw.shape[1] if raw.ndim == 2 else None
        by_width = {w: f for f, w in POSE_WIDTH.items()}
        if fmt == "amass":
            if width not in by_width:
                raise MotionFormatError(
                    path,
                    f"expected shape (T, 72), (T, 156) or (T, 165) (SMPL, SMPL-H, SMPL-X), found {raw.shape}",
                    field="poses",
                )
            family = by_width[width]
        else:
            family = fmt
            if width != POSE_WIDTH[fmt]:
                hint = f"; that width is {by_width[width]}'s (fmt='amass' detects it)" if width in by_width else ""
                raise MotionFormatError(
                    path, f"expected shape (T, {POSE_WIDTH[fmt]}) for {fmt}, found {raw.shape}" + hint, field="poses"
                )
        poses = _finite(path, "poses", raw, (None, POSE_WIDTH[family]))
        pose = poses[:, : 3 * topology.NUM_BODY_JOINTS]
    elif any(k in fields or k in unreadable for k in ("root_orient", "pose_body")):
        root = _finite(path, "root_orient", _need(path, fields, unreadable, "root_orient"), (None, 3))
        body = _finite(path, "pose_body", _need(path, fields, unreadable, "pose_body"), (root.shape[0], 63))
        pose = np.concatenate([root, body], axis=1)
        if fmt != "amass":
            family = fmt
        else:
            smt = _string(fields["surface_model_type"]) if "surface_model_type" in fields else None
            family = smt if smt in topology.FAMILIES else "smplx"
    else:
        raise _not_motion(path, fields)

    T = pose.shape[0]
    if T < 1:
        raise MotionFormatError(path, "the clip has zero frames", field="poses" if "poses" in fields else "root_orient")
    trans = _finite(path, "trans", _need(path, fields, unreadable, "trans"), (T, 3))

    fps_key = next((k for k in FPS_KEYS if k in fields or k in unreadable), None)
    if fps_key is None:
        raise MotionFormatError(
            path, f"missing frame rate: no '{FPS_KEYS[0]}' or '{FPS_KEYS[1]}' field", field=FPS_KEYS[0]
        )
    fps_arr = _need(path, fields, unreadable, fps_key)
    if fps_arr.size != 1 or fps_arr.dtype.kind not in "biuf":
        raise MotionFormatError(
            path, f"expected one number, found dtype {fps_arr.dtype} shape {fps_arr.shape}", field=fps_key
        )
    fps = float(fps_arr.reshape(-1)[0])
    bad_fps = fps_problem(fps)
    if bad_fps:
        raise MotionFormatError(path, f"frame rate {bad_fps}", field=fps_key)

    if "betas" in fields or "betas" in unreadable:
        b = _need(path, fields, unreadable, "betas")
        if b.ndim == 2 and b.shape[0] == 1:
            b = b[0]
        betas = _finite(path, "betas", b, (None,))
    else:
        betas = np.zeros(0)

    gender = None
    if "gender" in fields:
        gender = _string(fields["gender"])
        if gender is None:
            warnings.warn(
                f"{path}: field 'gender' is not a string ({fields['gender'].dtype}, "
                f"shape {fields['gender'].shape}); ignored",
                stacklevel=2,
            )
    elif "gender" in unreadable:
        warnings.warn(f"{path}: field 'gender' {unreadable['gender']}; ignored", stacklevel=2)

    return AmassClip(
        path=path,
        family=family,
        pose=np.ascontiguousarray(pose.reshape(T, topology.NUM_BODY_JOINTS, 3)),
        trans=trans,
        betas=betas,
        fps=fps,
        gender=gender,
    )


# ---------------------------------------------------------------------------------------
# Kinematics


def _skeleton(clip: AmassClip, body_model_dir: str | os.PathLike | None, gender: str | None) -> topology.BodySkeleton:
    if body_model_dir is None:
        if np.any(clip.betas != 0):
            warnings.warn(
                f"{clip.path}: betas are ignored by the built-in neutral {clip.family} "
                "skeleton; pass body_model_dir= for shape-aware joints",
                stacklevel=3,
            )
        return neutral_skeleton(clip.family)
    if gender is None:
        if clip.gender is None:
            warnings.warn(
                f"{clip.path}: no gender in the file; using the neutral model (pass gender= to choose)", stacklevel=3
            )
            gender = "neutral"
        elif clip.gender not in topology.GENDERS:
            raise MotionFormatError(
                clip.path,
                f"expected one of {', '.join(topology.GENDERS)}, found '{clip.gender}' (pass gender= to choose)",
                field="gender",
            )
        else:
            gender = clip.gender
    if clip.betas.size == 0:
        warnings.warn(f"{clip.path}: no betas in the file; using the model's mean shape", stacklevel=3)
    return model_skeleton(body_model_dir, clip.family, gender, clip.betas)


def read_amass(
    path: str | os.PathLike,
    fmt: str = "amass",
    *,
    body_model_dir: str | os.PathLike | None = None,
    gender: str | None = None,
) -> HumanMotion:
    """Read an SMPL / SMPL-H / SMPL-X motion ``.npz`` into a :class:`HumanMotion`.

    Args:
        path: the ``.npz`` file.
        fmt: "amass" (detect the family from the fields), "smpl", "smplh" or "smplx".
        body_model_dir: folder of the user's model files (or one model file); None uses
            the built-in neutral skeleton and ignores betas.
        gender: "neutral", "male" or "female": overrides the file's gender when choosing
            a model file.

    Returns:
        The 22 body joints as canonical roles: positions (T, 22, 3) Z-up metres,
        orientations (T, 22, 4) wxyz global joint rotations, ``conventions`` "smpl",
        ``source_format`` the family.

    Raises:
        FileNotFoundError: the motion file, the model folder or a model file is missing.
        UnknownNameError: unknown ``fmt`` or ``gender``.
        MotionFormatError: the motion or model file cannot be used (file and field named).
    """
    path = os.fspath(path)
    if gender is not None and gender not in topology.GENDERS:
        raise UnknownNameError("gender", str(gender), topology.GENDERS, where=path)
    clip = parse_amass(path, fmt)
    skel = _skeleton(clip, body_model_dir, gender)
    pos, quat = smpl_joint_poses(skel.rest_joints, clip.pose, clip.trans)
    T = clip.num_frames
    return HumanMotion(
        joint_names=tuple(SMPL_JOINT_MAP[n] for n in topology.SMPL_BODY_JOINT_NAMES),
        parents=np.asarray(topology.SMPL_BODY_PARENTS, dtype=np.int64),
        positions=pos,
        orientations=quat,
        fps=clip.fps,
        source_path=path,
        source_format=clip.family,
        source_joint_names=topology.SMPL_BODY_JOINT_NAMES,
        timestamps=np.arange(T, dtype=np.float64) / clip.fps,
        conventions=get_conventions("smpl"),
    )
