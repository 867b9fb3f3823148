"""Keypoint sequences (npz) -> HumanMotion (stage 1, host code, numpy only).

A keypoint file is a pickle-free ``.npz`` of world joint positions, the output of
markerless capture, SMPL(-H/-X) forward kinematics or another retargeter:

==============  =========  ==========================================================
key             shape      meaning
==============  =========  ==========================================================
``positions``   (T, J, 3)  world joint positions, metres, Z-up; NaN = not observed
``joint_names`` (J,)       strings, the source's joint names
``fps``         ()         frames per second (a number > 0)
``valid``       (T, J)     optional bool; ``mask`` is accepted as its other name
``timestamps``  (T,)       optional sample times in seconds, strictly increasing
==============  =========  ==========================================================

Other keys are ignored. Joint names become roles through a joint map
(:mod:`retarget_jax.motion.joint_maps`; only its ``joints`` apply, the units and axes are
the format's), detected from the names when none is given. A joint or frame whose
position is not finite is marked invalid (``valid`` False) instead of failing the clip;
a clip whose pelvis is never valid cannot be placed and is an error. Keypoints carry no
orientations: the motion has ``orientations=None`` and ``conventions=None`` (position
tracking only). Joints come out in canonical role order with parents from the canonical
role tree (:data:`retarget_jax.motion.skeleton.CANONICAL_PARENT`).

The file is read with ``allow_pickle=False``: an object array is refused, never run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from retarget_jax.errors import MotionFormatError
from retarget_jax.files.npz import load_npz
from retarget_jax.motion.human_motion import HumanMotion, fps_problem
from retarget_jax.motion.joint_maps import JointMap, load_joint_map, shipped_joint_maps
from retarget_jax.motion.skeleton import HumanJoint, canonical_parents

__all__ = ["KEYPOINTS_FORMAT", "detect_joint_map", "read_keypoints"]

KEYPOINTS_FORMAT = "keypoints"

# Shipped maps tried first when detecting (ties go to the earlier one).
_DETECT_FIRST = ("smpl_phc", "smpl", "lafan1")


def _as_names(path: str, raw: np.ndarray) -> tuple[str, ...]:
    if raw.ndim != 1 or raw.dtype.kind not in "US":
        raise MotionFormatError(
            path,
            f"expected a 1-D array of strings, found dtype {raw.dtype} with shape {raw.shape}",
            field="joint_names",
        )
    names = tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw.tolist())
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MotionFormatError(path, f"duplicated joint names: {', '.join(dup)}", field="joint_names")
    return names


def detect_joint_map(names: tuple[str, ...] | list[str], *, where: str = "") -> JointMap:
    """The shipped joint map that knows most of ``names`` (must include the pelvis).

    Raises:
        MotionFormatError: no shipped map maps the pelvis among ``names`` (lists the
            shipped maps and the names found).
    """
    shipped = shipped_joint_maps()
    order = [n for n in _DETECT_FIRST if n in shipped] + [n for n in shipped if n not in _DETECT_FIRST]
    best, best_count = None, 0
    for name in order:
        jm = load_joint_map(name)
        hits = jm.matched(names)
        if not any(jm.joints[h] is HumanJoint.PELVIS for h in hits):
            continue
        if len(hits) > best_count:
            best, best_count = jm, len(hits)
    if best is None:
        shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
        raise MotionFormatError(
            where or "<keypoints>",
            f"no shipped joint map matches these joint names (none maps a pelvis among them); "
            f"shipped maps: {', '.join(shipped)}; joint names: {shown}; "
            "pass joint_map= (a shipped name or a YAML file)",
            field="joint_names",
        )
    return best


def _scalar_fps(path: str, raw: np.ndarray) -> float:
    if raw.size != 1 or raw.dtype.kind not in "iuf":
        raise MotionFormatError(
            path, f"expected one number, found dtype {raw.dtype} with shape {raw.shape}", field="fps"
        )
    fps = float(raw.reshape(()))
    bad = fps_problem(fps)
    if bad:
        raise MotionFormatError(path, bad, field="fps")
    return fps


def read_keypoints(
    path: str | os.PathLike,
    joint_map: str | os.PathLike | JointMap | Mapping[str, HumanJoint | str] | None = None,
) -> HumanMotion:
    """Read a keypoint-sequence npz into a position-only :class:`HumanMotion`.

    Args:
        path: the ``.npz`` file (see the module docstring for its keys).
        joint_map: source joint name -> role: a shipped map's name, a YAML file, a
            :class:`~retarget_jax.motion.joint_maps.JointMap` or a plain mapping; None
            detects a shipped map from ``joint_names``.

    Raises:
        FileNotFoundError: the file does not exist.
        MotionFormatError: corrupt archive, missing key, wrong shape or dtype, non-numeric
            or non-positive fps, ``joint_names`` not matching ``positions``, no joint map
            for the names, no pelvis or a pelvis never valid; names the file and field.
        UnknownNameError, ConfigError: a bad ``joint_map`` argument.
    """
    path = os.fspath(path)
    data = load_npz(path)
    missing = [k for k in ("positions", "joint_names", "fps") if k not in data]
    if missing:
        raise MotionFormatError(
            path,
            f"missing required array '{missing[0]}'; the file has: {', '.join(sorted(data)) or 'nothing'}",
            field=missing[0],
        )

    pos = data["positions"]
    if pos.dtype.kind not in "iuf":
        raise MotionFormatError(path, f"expected a float array, found dtype {pos.dtype}", field="positions")
    if pos.ndim != 3 or pos.shape[2] != 3 or pos.shape[0] < 1 or pos.shape[1] < 1:
        raise MotionFormatError(path, f"expected shape (T, J, 3) with T, J >= 1, found {pos.shape}", field="positions")
    T, J = pos.shape[:2]
    names = _as_names(path, data["joint_names"])
    if len(names) != J:
        raise MotionFormatError(
            path, f"{len(names)} names for {J} joints in positions {pos.shape}", field="joint_names"
        )
    fps = _scalar_fps(path, data["fps"])

    if "valid" in data and "mask" in data:
        raise MotionFormatError(path, "both 'valid' and 'mask' given; keep one", field="mask")
    vkey = "valid" if "valid" in data else "mask" if "mask" in data else None
    given_valid = np.ones((T, J), dtype=bool)
    if vkey is not None:
        v = data[vkey]
        if v.shape != (T, J):
            raise MotionFormatError(path, f"expected shape ({T}, {J}), found {v.shape}", field=vkey)
        if v.dtype.kind == "b":
            given_valid = v.astype(bool)
        elif v.dtype.kind in "iu" and np.isin(v, (0, 1)).all():
            given_valid = v.astype(bool)
        else:
            raise MotionFormatError(path, f"expected a bool array, found dtype {v.dtype}", field=vkey)

    timestamps = None
    if "timestamps" in data:
        ts = data["timestamps"]
        if ts.dtype.kind not in "iuf" or ts.shape != (T,):
            raise MotionFormatError(
                path, f"expected ({T},) numbers, found dtype {ts.dtype} with shape {ts.shape}", field="timestamps"
            )
        ts = ts.astype(np.float64)
        if not np.isfinite(ts).all() or (T > 1 and not (np.diff(ts) > 0).all()):
            raise MotionFormatError(path, "must be finite and strictly increasing", field="timestamps")
        timestamps = ts

    if joint_map is None:
        jm_joints: Mapping[str, HumanJoint | str] = detect_joint_map(names, where=path).joints
    elif isinstance(joint_map, Mapping):
        jm_joints = joint_map
    else:
        jm_joints = load_joint_map(joint_map).joints
    roles = {n: HumanJoint.parse(jm_joints[n], where=f"{path}: joint_map[{n!r}]") for n in names if n in jm_joints}
    if not roles:
        raise MotionFormatError(
            path,
            f"no joint name is in the joint map; joint names: {', '.join(names)}; "
            f"map expects: {', '.join(sorted(jm_joints))}",
            field="joint_names",
        )
    if len(set(roles.values())) != len(roles):
        raise MotionFormatError(path, "the joint map gives two joints the same role", field="joint_names")
    by_role = {r: names.index(n) for n, r in roles.items()}
    kept = [r for r in HumanJoint if r in by_role]  # canonical order: parents first
    cols = [by_role[r] for r in kept]

    p = np.ascontiguousarray(pos[:, cols], dtype=np.float64)
    valid = given_valid[:, cols] & np.isfinite(p).all(axis=-1)
    if HumanJoint.PELVIS not in by_role:
        raise MotionFormatError(
            path,
            "no joint maps to the pelvis (the root); mapped: "
            + ", ".join(f"{names[by_role[r]]} -> {r.value}" for r in kept),
            field="joint_names",
        )
    if not valid[:, 0].any():
        raise MotionFormatError(
            path,
            f"the root joint '{names[by_role[HumanJoint.PELVIS]]}' (pelvis) is never valid "
            "(non-finite or masked in every frame)",
            field="positions",
        )

    return HumanMotion(
        joint_names=tuple(kept),
        parents=canonical_parents(kept),
        positions=p,
        orientations=None,
        fps=fps,
        source_path=path,
        source_format=KEYPOINTS_FORMAT,
        source_joint_names=tuple(names[c] for c in cols),
        timestamps=timestamps if timestamps is not None else np.arange(T, dtype=np.float64) / fps,
        valid=None if valid.all() else valid,
        conventions=None,
    )
