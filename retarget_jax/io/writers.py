"""Writers for downstream trackers' motion formats (host, numpy).

Stage: writers, the last step of the pipeline (RetargetingResult -> files). Host code.

- ``npz``: the package's own pickle-free result archive (:mod:`retarget_jax.io.result_npz`).
- ``mjlab_npz``: the mjlab / BeyondMimic motion file, with finite-difference velocities.
- ``gmr_pkl``: GMR's pickle (root rotation in **xyzw**), readable by TWIST-style motion libs.

Every writer replaces its target atomically (temp file in the same directory, fsync,
``os.replace``) and creates parent directories.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

from retarget_jax.errors import UnknownNameError
from retarget_jax.files.atomic import atomic_write
from retarget_jax.io.result_npz import save_result, str_array
from retarget_jax.result import RetargetingResult
from retarget_jax.rotations import quat_conj, quat_log, quat_mul, quat_rotate

# --------------------------------------------------------------------------- velocities


def linear_velocity(x: np.ndarray, fps: float) -> np.ndarray:
    """d/dt of (T, ...) samples at ``fps``: central differences, one-sided at both ends.

    Exact for trajectories linear in time. A single frame has zero velocity.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 2:
        return np.zeros_like(x)
    return np.gradient(x, 1.0 / float(fps), axis=0)


def angular_velocity_w(quat_wxyz: np.ndarray, fps: float) -> np.ndarray:
    """World-frame angular velocity (T, ..., 3) of orientations (T, ..., 4), wxyz.

    omega_t = log(q_{t+1} q_{t-1}^-1) / (2 dt) inside, and one-sided
    log(q_1 q_0^-1) / dt, log(q_{T-1} q_{T-2}^-1) / dt at the ends. ``q_next q_prev^-1``
    is the rotation between the two samples expressed in the world frame (left
    increment), so this is the spatial, not the body, angular velocity. ``quat_log``
    takes the shortest arc, so a q / -q sign flip between samples does not matter.
    Exact for a constant angular velocity whose rotation over 2 dt stays below pi.
    """
    q = np.asarray(quat_wxyz, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    T = q.shape[0]
    if T < 2:
        return np.zeros(q.shape[:-1] + (3,))
    dt = 1.0 / float(fps)
    omega = np.empty(q.shape[:-1] + (3,))
    omega[1:-1] = quat_log(quat_mul(q[2:], quat_conj(q[:-2]))) / (2.0 * dt)
    omega[0] = quat_log(quat_mul(q[1], quat_conj(q[0]))) / dt
    omega[-1] = quat_log(quat_mul(q[-1], quat_conj(q[-2]))) / dt
    return omega


# --------------------------------------------------------------------------- mjlab


def write_mjlab_npz(
    result: RetargetingResult, path: str | os.PathLike[str], *, dtype: np.dtype | type = np.float32
) -> Path:
    """Write the mjlab / BeyondMimic motion NPZ, pickle-free and atomically.

    Keys: ``joint_pos`` (T, n), ``joint_vel`` (T, n), ``body_pos_w`` (T, B, 3),
    ``body_quat_w`` (T, B, 4) **wxyz** (mjlab's convention too), ``body_lin_vel_w``
    (T, B, 3), ``body_ang_vel_w`` (T, B, 3), ``fps`` as a 1-element array like mjlab
    writes it, and ``joint_names`` (n,), ``body_names`` (B,) as unicode arrays (extra
    keys mjlab ignores). Velocities are finite differences of the result's poses in
    float64 (see :func:`linear_velocity`, :func:`angular_velocity_w`); the linear
    velocity is that of each body *origin*, consistent with ``body_pos_w``. Float arrays
    are cast to ``dtype`` at the end (float32 by default, what mjlab's own converter
    writes and what its loader casts to anyway). The status is not checked: callers
    decide whether a diverged clip should be written.
    """
    fps = float(result.fps)
    body_pos = np.asarray(result.body_pos_w, dtype=np.float64)
    body_quat = np.asarray(result.body_quat_w, dtype=np.float64)
    joint_pos = np.asarray(result.dof_pos, dtype=np.float64)
    arrays = {
        "fps": np.array([fps], dtype=np.float64),
        "joint_pos": joint_pos.astype(dtype),
        "joint_vel": linear_velocity(joint_pos, fps).astype(dtype),
        "body_pos_w": body_pos.astype(dtype),
        "body_quat_w": body_quat.astype(dtype),
        "body_lin_vel_w": linear_velocity(body_pos, fps).astype(dtype),
        "body_ang_vel_w": angular_velocity_w(body_quat, fps).astype(dtype),
        "joint_names": str_array(result.dof_names),
        "body_names": str_array(result.body_names),
    }
    path = Path(path)
    with atomic_write(path, suffix=".npz") as fh:
        np.savez(fh, **arrays)
    return path


# --------------------------------------------------------------------------- GMR


def wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    """Reorder quaternions (..., 4) from w, x, y, z to x, y, z, w."""
    return np.asarray(q)[..., [1, 2, 3, 0]]


def gmr_motion_dict(result: RetargetingResult) -> dict:
    """The dict GMR pickles, built from builtins and float64 numpy arrays only.

    ``root_rot`` is **xyzw** (GMR / Isaac Gym order), converted from the result's wxyz.
    ``local_body_pos`` is each body origin in the root frame: R_root^T (p_body - p_root).
    """
    root_pos = np.asarray(result.root_pos, dtype=np.float64)
    root_quat = np.asarray(result.root_quat_wxyz, dtype=np.float64)
    root_quat = root_quat / np.linalg.norm(root_quat, axis=-1, keepdims=True)
    body_pos = np.asarray(result.body_pos_w, dtype=np.float64)
    local = quat_rotate(quat_conj(root_quat)[:, None, :], body_pos - root_pos[:, None, :])
    return {
        "fps": float(result.fps),
        "root_pos": np.ascontiguousarray(root_pos),
        "root_rot": np.ascontiguousarray(wxyz_to_xyzw(root_quat)),
        "dof_pos": np.ascontiguousarray(np.asarray(result.dof_pos, dtype=np.float64)),
        "local_body_pos": np.ascontiguousarray(local),
        "link_body_list": [str(b) for b in result.body_names],
    }


def write_gmr_pkl(result: RetargetingResult, path: str | os.PathLike[str]) -> Path:
    """Write GMR's motion pickle (protocol 4), atomically.

    A plain dict: ``fps`` float, ``root_pos`` (T, 3), ``root_rot`` (T, 4) in **xyzw**
    order (converted from the result's wxyz), ``dof_pos`` (T, n), ``local_body_pos``
    (T, B, 3) = R_root^T (p_body - p_root), ``link_body_list`` list[str] of the B body
    names; arrays are float64. Nothing of this package is pickled, so the file loads
    without it and through :func:`retarget_jax.files.safe_pickle.restricted_load`.
    """
    data = gmr_motion_dict(result)
    path = Path(path)
    with atomic_write(path, suffix=".pkl") as fh:
        pickle.dump(data, fh, protocol=4)
    return path


# --------------------------------------------------------------------------- dispatch

WRITERS: dict[str, Callable[[RetargetingResult, str | os.PathLike[str]], Path]] = {
    "npz": save_result,
    "mjlab_npz": write_mjlab_npz,
    "gmr_pkl": write_gmr_pkl,
}


def write_result(result: RetargetingResult, path: str | os.PathLike[str], fmt: str) -> Path:
    """Write ``result`` to ``path`` in format ``fmt`` (one of :data:`WRITERS`)."""
    try:
        writer = WRITERS[fmt]
    except KeyError:
        raise UnknownNameError("output format", str(fmt), WRITERS, where=str(path)) from None
    return writer(result, path)
