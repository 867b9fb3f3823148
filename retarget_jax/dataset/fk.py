"""check-fk: do a clip's stored body poses follow from its joint positions? (host, MuJoCo C)

Stage: dataset. Recomputes every body pose from the root pose and joint positions with
MuJoCo C (:func:`~retarget_jax.robots.kinematics.host_body_poses`) and compares
them with the stored ``body_pos_w`` / ``body_quat_w``:

- ``pos_max``: the largest body position error over all frames and bodies, metres;
- ``quat_mean`` / ``quat_p95``: mean and 95th percentile of the rotation angle between
  stored and recomputed body orientations, radians (sign-invariant: q and -q agree).

A clip passes when ``pos_max < 1e-3`` m, ``quat_mean < 0.05`` rad and ``quat_p95 < 0.10``
rad (:data:`FK_THRESHOLDS`): far above float32 rounding of correct data (about 1e-6),
far below what a wrong joint order, a wrong robot or a stale body array gives.

:func:`check_fk_file` reads a dataset shard (every clip in it), our result npz or an
mjlab npz.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from retarget_jax.dataset.shards import check_shard_arrays, is_shard, read_npz
from retarget_jax.errors import ConfigError, MotionFormatError
from retarget_jax.io import load_result
from retarget_jax.robots import load_robot
from retarget_jax.robots.kinematics import host_body_poses

#: pass bounds: strictly below each figure
FK_THRESHOLDS = {"pos_max": 1e-3, "quat_mean": 0.05, "quat_p95": 0.10}


@dataclasses.dataclass(frozen=True)
class FkFigures:
    """Agreement of stored body poses with MuJoCo FK (see the module docstring)."""

    pos_max: float
    quat_mean: float
    quat_p95: float

    @property
    def passed(self) -> bool:
        return all(np.isfinite(getattr(self, k)) and getattr(self, k) < v for k, v in FK_THRESHOLDS.items())

    def failures(self) -> list[str]:
        """The figures over their bound, as ``pos_max 0.012 >= 0.001`` strings."""
        return [
            f"{k} {getattr(self, k):.3g} >= {v:g}"
            for k, v in FK_THRESHOLDS.items()
            if not (np.isfinite(getattr(self, k)) and getattr(self, k) < v)
        ]

    def as_dict(self) -> dict[str, Any]:
        return {"pos_max": self.pos_max, "quat_mean": self.quat_mean, "quat_p95": self.quat_p95, "passed": self.passed}


def rotation_angle(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Angle (radians) of the rotation between unit quaternions (..., 4) wxyz, q ~ -q.

    Taken as 2 asin |vec(q1^-1 q2)|, which stays accurate for small angles where
    2 acos |<q1, q2>| loses half the digits.
    """
    q1 = np.asarray(q1, np.float64)
    q2 = np.asarray(q2, np.float64)
    q1 = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    q2 = q2 / np.linalg.norm(q2, axis=-1, keepdims=True)
    w1, v1 = q1[..., :1], q1[..., 1:]
    w2, v2 = q2[..., :1], q2[..., 1:]
    vec = w1 * v2 - w2 * v1 - np.cross(v1, v2)
    return 2.0 * np.arcsin(np.clip(np.linalg.norm(vec, axis=-1), 0.0, 1.0))


def fk_figures(
    robot,
    root_pos: np.ndarray,
    root_quat_wxyz: np.ndarray,
    joint_pos: np.ndarray,
    body_pos_w: np.ndarray,
    body_quat_w: np.ndarray,
) -> FkFigures:
    """Compare stored body poses (T, B, 3) / (T, B, 4) with MuJoCo FK of the qpos."""
    qpos = np.concatenate(
        [np.asarray(root_pos, np.float64), np.asarray(root_quat_wxyz, np.float64), np.asarray(joint_pos, np.float64)],
        axis=-1,
    )
    xpos, xquat = host_body_poses(robot, qpos)
    if xpos.shape != np.shape(body_pos_w) or xquat.shape != np.shape(body_quat_w):
        raise MotionFormatError(
            "<clip>",
            f"body arrays of shape {np.shape(body_pos_w)} / {np.shape(body_quat_w)} "
            f"do not match the robot's {xpos.shape} / {xquat.shape}",
            field="body_pos_w",
        )
    if qpos.shape[0] == 0:
        return FkFigures(0.0, 0.0, 0.0)
    dpos = np.linalg.norm(xpos - np.asarray(body_pos_w, np.float64), axis=-1)
    ang = rotation_angle(xquat, body_quat_w)
    return FkFigures(float(dpos.max()), float(ang.mean()), float(np.percentile(ang, 95)))


def check_fk_file(path: str | os.PathLike, robot: str | None = None) -> list[tuple[str, FkFigures]]:
    """check-fk of every clip in a shard, a result npz or an mjlab npz: ``(clip id, figures)``.

    ``robot`` (a name or MJCF path) is required for an mjlab npz; for a shard or a result
    it defaults to the robot the file names.
    """
    path = Path(path)
    arrays = read_npz(path)
    if is_shard(arrays):
        check_shard_arrays(arrays, path)
        rb = _robot(robot or str(arrays["robot"]), arrays, path)
        out = []
        starts, lengths = arrays["clip_starts"], arrays["clip_lengths"]
        for i, cid in enumerate(arrays["clip_ids"].tolist()):
            s = slice(int(starts[i]), int(starts[i]) + int(lengths[i]))
            out.append(
                (
                    cid,
                    fk_figures(
                        rb,
                        arrays["root_pos"][s],
                        arrays["root_quat_wxyz"][s],
                        arrays["joint_pos"][s],
                        arrays["body_pos_w"][s],
                        arrays["body_quat_w"][s],
                    ),
                )
            )
        return out
    if "schema_version" in arrays:
        res = load_result(path)
        rb = load_robot(robot or res.robot)
        return [
            (path.name, fk_figures(rb, res.root_pos, res.root_quat_wxyz, res.dof_pos, res.body_pos_w, res.body_quat_w))
        ]
    if "joint_pos" in arrays and "body_pos_w" in arrays:
        if robot is None:
            raise ConfigError(f"{path}: an mjlab npz does not name its robot; pass --robot")
        rb = load_robot(robot)
        bp, bq = np.asarray(arrays["body_pos_w"]), np.asarray(arrays["body_quat_w"])
        return [(path.name, fk_figures(rb, bp[:, 0], bq[:, 0], arrays["joint_pos"], bp, bq))]
    raise MotionFormatError(
        path,
        "neither a dataset shard (clip_starts), a result npz (schema_version) nor an mjlab npz (joint_pos, body_pos_w)",
    )


def _robot(name: str, arrays, path: Path):
    rb = load_robot(name)
    names = tuple(arrays["joint_names"].tolist())
    if names != rb.dof_names:
        raise MotionFormatError(
            path,
            f"the shard's joints are not robot '{rb.name}''s ({len(names)} vs {rb.num_dof} joints, or another order)",
            field="joint_names",
        )
    if tuple(arrays["body_names"].tolist()) != rb.body_names:
        raise MotionFormatError(path, f"the shard's bodies are not robot '{rb.name}''s", field="body_names")
    return rb
