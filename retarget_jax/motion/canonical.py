"""The canonical human skeleton every motion is laid out on before compiling (host, numpy).

Sources have different joint sets (22 LAFAN1 joints, 19 in some vendor BVH, 52 SMPL-H
keypoints mapped to roles). The solver's skeleton is static (it fixes shapes and loops),
so every motion is put on one layout, all :class:`HumanJoint` roles in enum order with the
parent table below; a role the source lacks is filled with its nearest present ancestor
(a zero-length bone) and marked invalid, so one compiled solver serves every source.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from retarget_jax.errors import InvalidMotionError
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.skeleton import CANONICAL_PARENT, HumanJoint
from retarget_jax.rotations import array_namespace

#: Every role, in enum order (parents before children).
CANONICAL_JOINTS: tuple[HumanJoint, ...] = tuple(HumanJoint)

#: Parent indices of :data:`CANONICAL_JOINTS` (-1 for the root).
CANONICAL_PARENTS: tuple[int, ...] = tuple(
    -1 if CANONICAL_PARENT[j] is None else CANONICAL_JOINTS.index(CANONICAL_PARENT[j])  # type: ignore[arg-type]
    for j in CANONICAL_JOINTS
)


def canonical_index(role: HumanJoint) -> int:
    return CANONICAL_JOINTS.index(role)


LEFT_HIP = canonical_index(HumanJoint.LEFT_HIP)
RIGHT_HIP = canonical_index(HumanJoint.RIGHT_HIP)


def hip_axis(pos):
    """(T, 3) unit left-hip-minus-right-hip direction of canonical positions (T, J, 3);
    numpy or jax, like its input."""
    xp = array_namespace(pos)
    axis = pos[:, LEFT_HIP] - pos[:, RIGHT_HIP]
    return axis / xp.maximum(xp.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)


def hip_heading(pos):
    """(T, 4) yaw-only quaternion (wxyz) facing where the hips face: forward is the
    left-hip direction turned -90 degrees about world z. Numpy or jax, like its input."""
    xp = array_namespace(pos)
    left = pos[:, LEFT_HIP] - pos[:, RIGHT_HIP]
    yaw = xp.arctan2(-left[:, 0], left[:, 1])
    z = xp.zeros_like(yaw)
    return xp.stack([xp.cos(yaw / 2), z, z, xp.sin(yaw / 2)], axis=-1)


def _fill_in_time(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Fill frames where ``ok`` is False by linear interpolation over time (held at the ends)."""
    if ok.all():
        return x
    t = np.arange(x.shape[0], dtype=np.float64)
    out = x.copy()
    for k in range(x.shape[1]):
        out[~ok, k] = np.interp(t[~ok], t[ok], x[ok, k])
    return out


def masked_samples(motion: HumanMotion) -> dict[str, Any]:
    """What :func:`canonicalize` fills in a motion: its samples marked invalid in
    ``valid`` (NaN read from a file, an occluded keypoint, a dropped frame), counted so
    that a result can say so (nothing is filled silently).

    Returns a JSON-able dict: ``masked_frames``, the frames with any masked sample;
    ``masked_joints``, the motion's joints with any masked sample; ``masked_per_joint``,
    role -> masked frames of each such joint. All zero / empty when nothing is masked.
    A role the source does not have at all is not counted: it is absent, not masked.
    """
    invalid = ~motion.valid_mask
    per_joint = invalid.sum(axis=0)
    return {
        "masked_frames": int(invalid.any(axis=1).sum()),
        "masked_joints": int(np.count_nonzero(per_joint)),
        "masked_per_joint": {j.value: int(n) for j, n in zip(motion.joint_names, per_joint, strict=True) if n},
    }


def canonicalize(motion: HumanMotion) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Lay a motion out on the canonical skeleton.

    Returns positions (T, 22, 3), orientations (T, 22, 4) or None, valid (T, 22) bool.
    Invalid samples of a present joint are interpolated over time from its valid frames
    (they only keep the scaled figure continuous; their targets stay masked); a role the
    motion lacks copies its canonical parent. Non-finite values in samples marked valid
    are kept: the solve reports such a clip ``invalid_input``.
    """
    T = motion.num_frames
    where = motion.source_path or "<motion>"
    pos = np.zeros((T, len(CANONICAL_JOINTS), 3))
    quat = None if motion.orientations is None else np.zeros((T, len(CANONICAL_JOINTS), 4))
    valid = np.zeros((T, len(CANONICAL_JOINTS)), dtype=bool)
    src_valid = motion.valid_mask
    present = {role: i for i, role in enumerate(motion.joint_names)}
    for c, role in enumerate(CANONICAL_JOINTS):
        i = present.get(role)
        ok = None if i is None else src_valid[:, i]
        if i is not None and ok.any():
            pos[:, c] = _fill_in_time(np.asarray(motion.positions[:, i], np.float64), ok)
            if quat is not None:
                q = np.asarray(motion.orientations[:, i], np.float64)  # type: ignore[index]
                # hold the last valid orientation (no interpolation needed: these are masked)
                idx = np.maximum.accumulate(np.where(ok, np.arange(T), -1))
                idx[idx < 0] = int(np.argmax(ok))
                quat[:, c] = q[idx]
            valid[:, c] = ok
        else:
            par = CANONICAL_PARENTS[c]
            if par < 0:
                raise InvalidMotionError(
                    f"{where}: the motion has no valid '{role.value}' (the root joint); "
                    f"joints present: {[j.value for j in motion.joint_names]}"
                )
            pos[:, c] = pos[:, par]
            if quat is not None:
                quat[:, c] = quat[:, par]
    return pos, quat, valid
