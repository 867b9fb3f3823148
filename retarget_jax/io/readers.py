"""Readers of robot-space motion files: a robot trajectory -> RetargetingResult, no solve.

Stage: readers (host, numpy + MuJoCo C). Files that already hold a robot's joint
trajectory (another retargeter's output, a tracker's reference motion, a dataset's robot
clips) are loaded into the package's result format, so metrics, writers and later stages
treat them like our own solves. Every body pose in the result is recomputed by MuJoCo C
forward kinematics (``mujoco.mj_kinematics`` on ``robot.mj_model``) from the qpos read.

Formats (T frames, n = ``robot.num_dof`` hinge joints in MJCF order, B bodies):

``gmr_pkl`` -- GMR (General Motion Retargeting) output pickle, read only through
    :func:`retarget_jax.files.safe_pickle.restricted_load` (an allowlist unpickler: a
    pickle that names ``os.system`` or any other non-data class is refused, never run).
    A dict with ``fps`` (number), ``root_pos`` (T, 3) metres, ``root_rot`` (T, 4) unit
    quaternion in **xyzw** order (converted to our wxyz), ``dof_pos`` (T, n) radians in
    the robot's MJCF joint order; optionally ``local_body_pos`` (T, L, 3), each body
    origin in the root frame, R_root^T (p_body - p_root), and ``link_body_list`` (L
    body names). GMR writes ``None`` for the two optional keys; ``None`` means absent.
    GMR's robot models carry extra bodies (toe links, IMU frames), so names of
    ``link_body_list`` that the robot lacks are skipped; those it has are checked
    against FK (``local_body_pos`` within ``pos_tol``), and a list naming none of the
    robot's bodies is refused as a file for another robot.

``mjlab_npz`` -- mjlab / BeyondMimic motion NPZ, read with ``allow_pickle=False``:
    ``fps`` (scalar or 1-element array), ``joint_pos`` (T, n) radians, ``joint_vel``
    (T, n), ``body_pos_w`` (T, B, 3) metres, ``body_quat_w`` (T, B, 4) **wxyz**,
    ``body_lin_vel_w`` (T, B, 3), ``body_ang_vel_w`` (T, B, 3), all world frame, all
    required (mjlab's loader needs them). Optional ``joint_names`` (n,) and
    ``body_names`` (B,) (our :func:`~retarget_jax.io.writers.write_mjlab_npz` writes
    both). The floating base is body 0 of the file: root position / orientation are
    ``body_pos_w[:, 0]`` / ``body_quat_w[:, 0]``. With ``joint_names`` the joints are
    matched by name (any order; the set must be exactly the robot's); without, they are
    taken to be in MJCF order. With ``body_names`` the file's bodies are matched by name
    (each must exist on the robot, body 0 must be the robot's root); without, the file
    must hold the robot's B bodies in MJCF order. Then every file body pose is compared
    with MuJoCo FK of the qpos read: beyond ``pos_tol`` metres / ``rot_tol`` radians the
    file is refused (a file made for another robot, or with another joint order). The
    velocities are shape- and finiteness-checked but not used.

``seed_csv`` -- BONES-SEED retargeted Unitree G1 CSV, 120 fps (the file has no fps; pass
    ``fps=`` for other rates). Header row, then one row per frame: ``Frame`` (integer
    index, +1 per row), ``root_translateX/Y/Z`` in **centimetres**,
    ``root_rotateX/Y/Z`` root orientation as **extrinsic XYZ** Euler angles in
    **degrees** (about world X, then world Y, then world Z: R = Rz @ Ry @ Rx), and one
    ``<joint>_dof`` column per robot joint in **degrees**, where ``<joint>`` is the MJCF
    joint name including its ``_joint`` suffix (``left_hip_pitch_joint_dof``; the
    spelling used by public BONES-SEED converters). The spelling without the suffix
    (``left_hip_pitch_dof``) is accepted too. Columns are matched by name; a ``_dof``
    column that names no robot joint, or a missing joint, is refused. Other extra
    columns are ignored (listed in the provenance). Parsed with the ``csv`` module.

Every problem with a file raises :class:`~retarget_jax.errors.MotionFormatError` naming
the file, the field (key or column) and, for CSV, the line, with what was expected and
what was found: missing keys / columns, wrong shapes, wrong DoF count or names (a file
for another robot), NaN / inf, non-unit quaternions, unparsable numbers, non-increasing
``Frame``, an empty file, a refused pickle. A missing file raises FileNotFoundError.

The result: ``status=SolveStatus.CONVERGED``, ``final_cost=nan``, ``iterations=0``,
``dof_names`` / ``body_names`` of the robot, body poses from FK, no targets, and a
JSON-able provenance with ``source_path``, ``source_format``, ``solved: False``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import retarget_jax
from retarget_jax.errors import MotionFormatError, UnknownNameError
from retarget_jax.files.npz import load_npz
from retarget_jax.files.safe_pickle import restricted_load
from retarget_jax.result import RetargetingResult, SolveStatus
from retarget_jax.robots.kinematics import host_body_poses
from retarget_jax.robots.spec import RobotSpec, load_robot
from retarget_jax.rotations import euler_to_quat, quat_conj, quat_mul, quat_rotate

PathLike = str | os.PathLike[str]

#: Frame rate of BONES-SEED G1 CSVs (the files do not store it).
SEED_CSV_FPS = 120.0
SEED_ROOT_COLUMNS = (
    "Frame",
    "root_translateX",
    "root_translateY",
    "root_translateZ",
    "root_rotateX",
    "root_rotateY",
    "root_rotateZ",
)
#: Default agreement required between a file's own body poses and MuJoCo FK.
FK_POS_TOL = 5e-3  # metres
FK_ROT_TOL = 2e-2  # radians (about 1.1 deg)
#: A stored quaternion whose norm is further than this from 1 is refused, not normalised.
QUAT_NORM_TOL = 0.05


# --------------------------------------------------------------------------- public API


def read_robot_motion(path: PathLike, fmt: str, robot: RobotSpec | str, **options: Any) -> RetargetingResult:
    """Read a robot-space motion file in format ``fmt`` (one of :data:`ROBOT_MOTION_READERS`,
    by name or as a :class:`~retarget_jax.formats.MotionFormat`).

    ``robot`` is a :class:`~retarget_jax.robots.RobotSpec` (or a name / MJCF path for
    :func:`~retarget_jax.robots.load_robot`). ``options`` go to the format's reader
    (``fps`` for ``seed_csv``, ``pos_tol`` / ``rot_tol`` for the FK checks).
    """
    try:
        reader = ROBOT_MOTION_READERS[str(fmt)]
    except KeyError:
        raise UnknownNameError("robot motion format", str(fmt), ROBOT_MOTION_READERS, where=str(path)) from None
    return reader(path, robot, **options)


def read_gmr_pkl(
    path: PathLike,
    robot: RobotSpec | str,
    *,
    pos_tol: float = FK_POS_TOL,
) -> RetargetingResult:
    """Read a GMR motion pickle (root rotation **xyzw**) through the restricted unpickler."""
    robot = _robot(robot)
    path = Path(path)
    _check_not_empty(path)
    data = restricted_load(path)  # MotionFormatError for refused globals / bad pickles
    if not isinstance(data, Mapping):
        raise MotionFormatError(path, f"expected a dict of motion arrays, found {type(data).__name__}")
    data = {k: v for k, v in data.items() if v is not None}  # GMR writes None for absent
    for key in ("fps", "root_pos", "root_rot", "dof_pos"):
        if key not in data:
            raise MotionFormatError(path, f"missing required key; keys present: {sorted(map(str, data))}", field=key)
    fps = _fps(data["fps"], path)
    root_pos = _float_array(data["root_pos"], path, "root_pos")
    T = _frames(root_pos, path, "root_pos", (None, 3), "(T, 3)")
    root_rot = _float_array(data["root_rot"], path, "root_rot")
    _shape(root_rot, path, "root_rot", (T, 4), "(T, 4) xyzw", T)
    dof_pos = _float_array(data["dof_pos"], path, "dof_pos")
    _dof_shape(dof_pos, path, "dof_pos", robot, T)
    for key, arr in (("root_pos", root_pos), ("root_rot", root_rot), ("dof_pos", dof_pos)):
        _finite(arr, path, key)
    root_quat = _unit_quat(root_rot[:, [3, 0, 1, 2]], path, "root_rot")

    body_pos, body_quat = host_body_poses(robot, np.concatenate([root_pos, root_quat, dof_pos], axis=-1))
    provenance: dict[str, Any] = {}
    names = data.get("link_body_list")
    local = data.get("local_body_pos")
    if names is not None:
        names = _name_list(names, path, "link_body_list")
    if local is not None:
        local = _float_array(local, path, "local_body_pos")
        L = len(names) if names is not None else None
        _shape(local, path, "local_body_pos", (T, L, 3), "(T, L, 3), L = len(link_body_list)", T)
        _finite(local, path, "local_body_pos")
    if names is not None:
        shared = [(i, robot.body_names.index(b)) for i, b in enumerate(names) if b in robot.body_names]
        if not shared:
            raise MotionFormatError(
                path,
                f"names none of robot {robot.name}'s bodies (expected names such as "
                f"{list(robot.body_names[:3])}, found {names[:3]}...): "
                "the file is for another robot",
                field="link_body_list",
            )
        provenance["link_bodies_on_robot"] = len(shared)
        provenance["link_bodies_skipped"] = [b for b in names if b not in robot.body_names]
        if local is not None:
            fi, ri = (np.array(ix) for ix in zip(*shared, strict=True))
            fk_local = quat_rotate(quat_conj(root_quat)[:, None, :], body_pos[:, ri] - root_pos[:, None, :])
            err = np.linalg.norm(local[:, fi] - fk_local, axis=-1)
            worst = float(err.max())
            provenance["local_body_pos_max_err_m"] = worst
            if worst > pos_tol:
                t, k = np.unravel_index(int(err.argmax()), err.shape)
                raise MotionFormatError(
                    path,
                    f"disagrees with robot {robot.name}'s forward kinematics of root_pos/root_rot/"
                    f"dof_pos: body '{names[fi[k]]}' at frame {t} is {worst:.4g} m away "
                    f"(tolerance {pos_tol:g} m); the file is for another robot or joint order",
                    field="local_body_pos",
                )
    return _result(path, "gmr_pkl", robot, fps, root_pos, root_quat, dof_pos, body_pos, body_quat, provenance)


_MJLAB_REQUIRED = (
    "fps",
    "joint_pos",
    "joint_vel",
    "body_pos_w",
    "body_quat_w",
    "body_lin_vel_w",
    "body_ang_vel_w",
)


def read_mjlab_npz(
    path: PathLike,
    robot: RobotSpec | str,
    *,
    pos_tol: float = FK_POS_TOL,
    rot_tol: float = FK_ROT_TOL,
) -> RetargetingResult:
    """Read an mjlab / BeyondMimic motion NPZ (``allow_pickle=False``), checked against FK."""
    robot = _robot(robot)
    path = Path(path)
    _check_not_empty(path)
    a = load_npz(path)
    for key in _MJLAB_REQUIRED:
        if key not in a:
            raise MotionFormatError(path, f"missing required key; keys present: {sorted(a)}", field=key)
    fps = _fps(a["fps"], path)
    joint_pos = _float_array(a["joint_pos"], path, "joint_pos")
    T = _frames(joint_pos, path, "joint_pos", (None, None), "(T, n)")
    n = robot.num_dof
    joint_names = a.get("joint_names")
    if joint_names is not None:
        names = _name_list(joint_names, path, "joint_names")
        _match_names(names, robot.dof_names, path, "joint_names", f"joints of robot {robot.name}")
        order = np.array([names.index(j) for j in robot.dof_names], dtype=np.int64)
        _shape(joint_pos, path, "joint_pos", (T, len(names)), "(T, len(joint_names))", T)
        joint_order = "by_name"
    else:
        order = np.arange(n)
        joint_order = "assumed_mjcf"
    _dof_shape(joint_pos, path, "joint_pos", robot, T)
    joint_vel = _float_array(a["joint_vel"], path, "joint_vel")
    _shape(joint_vel, path, "joint_vel", (T, n), "(T, n)", T)

    body_pos_f = _float_array(a["body_pos_w"], path, "body_pos_w")
    B = body_pos_f.shape[1] if body_pos_f.ndim == 3 else 0
    if B == 0:
        raise MotionFormatError(
            path,
            f"expected shape (T, B, 3) with B >= 1 (T={T}), found {body_pos_f.shape}",
            field="body_pos_w",
        )
    _shape(body_pos_f, path, "body_pos_w", (T, B, 3), "(T, B, 3)", T)
    for key, last in (("body_quat_w", 4), ("body_lin_vel_w", 3), ("body_ang_vel_w", 3)):
        _shape(_float_array(a[key], path, key), path, key, (T, B, last), f"(T, B, {last})", T)
    body_quat_f = _float_array(a["body_quat_w"], path, "body_quat_w")
    for key in _MJLAB_REQUIRED[1:]:
        _finite(np.asarray(a[key]), path, key)

    body_names = a.get("body_names")
    if body_names is not None:
        fnames = _name_list(body_names, path, "body_names")
        if len(fnames) != B:
            raise MotionFormatError(
                path,
                f"expected {B} names, one per body of body_pos_w, found {len(fnames)}",
                field="body_names",
            )
        unknown = [b for b in fnames if b not in robot.body_names]
        if unknown:
            raise MotionFormatError(
                path,
                f"expected bodies of robot {robot.name}, found {len(unknown)} it does not have: "
                f"{unknown[:5]}; the file is for another robot",
                field="body_names",
            )
        if len(set(fnames)) != len(fnames):
            raise MotionFormatError(path, "duplicate body names", field="body_names")
        root_name = robot.body_names[robot.tree.root]
        if fnames[0] != root_name:
            raise MotionFormatError(
                path,
                f"expected body 0 to be the floating base '{root_name}', found '{fnames[0]}'",
                field="body_names",
            )
        robot_idx = np.array([robot.body_names.index(b) for b in fnames], dtype=np.int64)
        body_match = "by_name"
    else:
        if B != len(robot.body_names):
            raise MotionFormatError(
                path,
                f"expected {len(robot.body_names)} bodies (robot {robot.name}, MJCF order) since "
                f"the file has no body_names, found {B}",
                field="body_pos_w",
            )
        robot_idx = np.arange(B)
        body_match = "assumed_mjcf"

    root_pos = body_pos_f[:, 0]
    root_quat = _unit_quat(body_quat_f[:, 0], path, "body_quat_w")
    _unit_quat(body_quat_f, path, "body_quat_w")
    dof_pos = joint_pos[:, order]
    body_pos, body_quat = host_body_poses(robot, np.concatenate([root_pos, root_quat, dof_pos], axis=-1))

    # The file's own poses must be the robot's FK of the qpos read from it.
    pos_err = np.linalg.norm(body_pos_f - body_pos[:, robot_idx], axis=-1)  # (T, B)
    rot_err = _rotation_angle(body_quat[:, robot_idx], body_quat_f)
    for err, tol, key, unit in (
        (pos_err, pos_tol, "body_pos_w", "m"),
        (rot_err, rot_tol, "body_quat_w", "rad"),
    ):
        if float(err.max()) > tol:
            t, b = np.unravel_index(int(err.argmax()), err.shape)
            raise MotionFormatError(
                path,
                f"disagrees with robot {robot.name}'s forward kinematics of the file's root pose "
                f"and joint_pos ({joint_order.replace('_', ' ')} joint order): body "
                f"'{robot.body_names[robot_idx[b]]}' at frame {t} is off by "
                f"{float(err.max()):.4g} {unit} (tolerance {tol:g} {unit}); the file was made "
                "for another robot or with another joint/body order",
                field=key,
            )
    provenance = {
        "joint_order": joint_order,
        "body_match": body_match,
        "bodies_checked": int(B),
        "fk_max_pos_err_m": float(pos_err.max()),
        "fk_max_rot_err_rad": float(rot_err.max()),
    }
    return _result(path, "mjlab_npz", robot, fps, root_pos, root_quat, dof_pos, body_pos, body_quat, provenance)


def read_seed_csv(
    path: PathLike,
    robot: RobotSpec | str,
    *,
    fps: float | None = None,
) -> RetargetingResult:
    """Read a BONES-SEED G1 CSV (cm, extrinsic XYZ Euler degrees, joint degrees).

    ``fps`` defaults to :data:`SEED_CSV_FPS` (120, the dataset's rate; the file has none).
    """
    robot = _robot(robot)
    path = Path(path)
    _check_not_empty(path)
    fps_source = "argument" if fps is not None else "BONES-SEED default (120 fps)"
    fps = _fps(SEED_CSV_FPS if fps is None else fps, path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(_csv_rows(fh, path))
    except UnicodeDecodeError as e:
        raise MotionFormatError(path, f"not a UTF-8 text CSV: {e}") from None
    if not rows:
        raise MotionFormatError(path, "empty file: no header row")
    header_line, header = rows[0]
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for h in header:
        if h in seen:
            raise MotionFormatError(path, "duplicate column", line=header_line, field=h)
        seen.add(h)
    for col in SEED_ROOT_COLUMNS:
        if col not in seen:
            raise MotionFormatError(
                path,
                f"missing required column; header has {header[:8]}...",
                line=header_line,
                field=col,
            )
    joint_cols, naming = _seed_joint_columns(header, robot, path, header_line)
    data_rows = rows[1:]
    if not data_rows:
        raise MotionFormatError(path, "no frames: the file has a header row only")

    col_index = {h: i for i, h in enumerate(header)}
    used = list(SEED_ROOT_COLUMNS) + joint_cols
    idx = [col_index[c] for c in used]
    values = np.empty((len(data_rows), len(used)), dtype=np.float64)
    for r, (line, row) in enumerate(data_rows):
        if len(row) != len(header):
            raise MotionFormatError(
                path,
                f"expected {len(header)} values (one per header column), found {len(row)}",
                line=line,
            )
        for c, (i, name) in enumerate(zip(idx, used, strict=True)):
            text = row[i]
            try:
                v = float(text)
            except ValueError:
                raise MotionFormatError(
                    path, f"cannot parse {text.strip()!r} as a number", line=line, field=name
                ) from None
            if not math.isfinite(v):
                raise MotionFormatError(
                    path,
                    f"expected a finite number, found {text.strip()!r}",
                    line=line,
                    field=name,
                )
            values[r, c] = v
    frame = values[:, 0]
    lines = [line for line, _ in data_rows]
    for r in range(len(frame)):
        if frame[r] != round(frame[r]):
            raise MotionFormatError(
                path,
                f"expected an integer frame index, found {frame[r]!r}",
                line=lines[r],
                field="Frame",
            )
        if r and frame[r] != frame[r - 1] + 1:
            raise MotionFormatError(
                path,
                f"expected Frame to increase by 1 per row ({int(frame[r - 1]) + 1}), found {int(frame[r])}",
                line=lines[r],
                field="Frame",
            )
    root_pos = values[:, 1:4] / 100.0  # cm -> m
    euler = np.deg2rad(values[:, 4:7])  # columns X, Y, Z
    root_quat = seed_euler_to_quat(euler)
    dof_pos = np.deg2rad(values[:, 7:])
    body_pos, body_quat = host_body_poses(robot, np.concatenate([root_pos, root_quat, dof_pos], axis=-1))
    provenance = {
        "joint_column_naming": naming,
        "first_frame_index": int(frame[0]),
        "ignored_columns": [h for h in header if h not in used],
        "fps_source": fps_source,
    }
    return _result(path, "seed_csv", robot, fps, root_pos, root_quat, dof_pos, body_pos, body_quat, provenance)


ROBOT_MOTION_READERS: dict[str, Callable[..., RetargetingResult]] = {
    "gmr_pkl": read_gmr_pkl,
    "mjlab_npz": read_mjlab_npz,
    "seed_csv": read_seed_csv,
}


# --------------------------------------------------------------------------- kinematics


def seed_euler_to_quat(euler_xyz_rad: np.ndarray) -> np.ndarray:
    """Extrinsic XYZ Euler angles (..., 3) [about world X, Y, Z] -> unit quaternion wxyz.

    R = Rz(z) @ Ry(y) @ Rx(x): rotate about world X first, then world Y, then world Z,
    which equals the intrinsic Z-Y'-X'' sequence; w >= 0.
    """
    e = np.asarray(euler_xyz_rad, dtype=np.float64)
    q = euler_to_quat(e[..., ::-1], "ZYX")  # intrinsic ZYX composes R = Rz Ry Rx
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def _rotation_angle(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Angle (radians) of the rotation between unit quaternions, sign-agnostic."""
    q2 = q2 / np.linalg.norm(q2, axis=-1, keepdims=True)
    rel = quat_mul(quat_conj(q1), q2)
    s = np.linalg.norm(rel[..., 1:], axis=-1)
    return 2.0 * np.arctan2(s, np.abs(rel[..., 0]))


# --------------------------------------------------------------------------- helpers


def _robot(robot: RobotSpec | str) -> RobotSpec:
    if isinstance(robot, str | os.PathLike):
        return load_robot(robot)
    return robot


def _check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:  # FileNotFoundError propagates for a missing file
        raise MotionFormatError(path, "empty file (0 bytes)")


def _result(
    path: Path,
    fmt: str,
    robot: RobotSpec,
    fps: float,
    root_pos: np.ndarray,
    root_quat: np.ndarray,
    dof_pos: np.ndarray,
    body_pos: np.ndarray,
    body_quat: np.ndarray,
    extra: dict[str, Any],
) -> RetargetingResult:
    provenance = {
        "source_path": str(path),
        "source_format": fmt,
        "solved": False,
        "robot": robot.name,
        "num_frames": int(root_pos.shape[0]),
        "package_version": retarget_jax.__version__,
        **extra,
    }
    return RetargetingResult(
        fps=float(fps),
        root_pos=np.ascontiguousarray(root_pos, dtype=np.float64),
        root_quat_wxyz=np.ascontiguousarray(root_quat, dtype=np.float64),
        dof_pos=np.ascontiguousarray(dof_pos, dtype=np.float64),
        dof_names=tuple(robot.dof_names),
        body_names=tuple(robot.body_names),
        body_pos_w=body_pos,
        body_quat_w=body_quat,
        status=SolveStatus.CONVERGED,
        final_cost=float("nan"),
        iterations=0,
        robot=robot.name,
        provenance=provenance,
        target_pos_w=None,
        target_body_names=(),
    )


def _fps(value: Any, path: Path) -> float:
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.size != 1:
        raise MotionFormatError(path, f"expected one number, found {_describe(value)}", field="fps")
    fps = float(arr.reshape(()))
    if not math.isfinite(fps) or fps <= 0:
        raise MotionFormatError(path, f"expected a finite fps > 0, found {fps}", field="fps")
    return fps


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def _float_array(value: Any, path: Path, field: str) -> np.ndarray:
    """``value`` as a float64 array; refuses strings, objects and booleans."""
    try:
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise MotionFormatError(path, f"expected a numeric array, found {e}", field=field) from None
    if arr.dtype.kind not in "fiu":
        raise MotionFormatError(path, f"expected a numeric array, found {_describe(value)}", field=field)
    return arr.astype(np.float64, copy=False)


def _shape_ok(arr: np.ndarray, shape: tuple) -> bool:
    """``arr.shape`` equals ``shape``, where None matches any size."""
    return arr.ndim == len(shape) and all(s is None or s == f for s, f in zip(shape, arr.shape, strict=True))


def _frames(arr: np.ndarray, path: Path, field: str, shape: tuple, symbolic: str) -> int:
    """Number of frames T from the array that defines it (checks ndim, T >= 1)."""
    if not _shape_ok(arr, shape):
        raise MotionFormatError(path, f"expected shape {symbolic}, found {arr.shape}", field=field)
    if arr.shape[0] == 0:
        raise MotionFormatError(path, "expected at least one frame, found 0", field=field)
    return int(arr.shape[0])


def _shape(arr: np.ndarray, path: Path, field: str, shape: tuple, symbolic: str, T: int) -> None:
    if not _shape_ok(arr, shape):
        want = tuple("*" if s is None else s for s in shape)
        raise MotionFormatError(path, f"expected shape {symbolic} = {want} (T={T}), found {arr.shape}", field=field)


def _dof_shape(arr: np.ndarray, path: Path, field: str, robot: RobotSpec, T: int) -> None:
    n = robot.num_dof
    if arr.ndim == 2 and arr.shape[0] == T and arr.shape[1] != n:
        raise MotionFormatError(
            path,
            f"expected {n} joint values per frame (robot {robot.name}), found {arr.shape[1]}: "
            "the file is for another robot or DoF set",
            field=field,
        )
    _shape(arr, path, field, (T, n), f"(T, n) with n={n} joints of {robot.name}", T)


def _finite(arr: np.ndarray, path: Path, field: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise MotionFormatError(
            path,
            f"expected finite values, found {arr[tuple(where)]} at frame {int(where[0])} "
            f"(index {tuple(int(i) for i in where)}; {int(bad.sum())} non-finite in all)",
            field=field,
        )


def _unit_quat(q: np.ndarray, path: Path, field: str) -> np.ndarray:
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    off = np.abs(norm[..., 0] - 1.0)
    if (off > QUAT_NORM_TOL).any():
        where = np.argwhere(off > QUAT_NORM_TOL)[0]
        raise MotionFormatError(
            path,
            f"expected unit quaternions, found norm {float(norm[tuple(where)][0]):.4g} at frame "
            f"{int(where[0])} (index {tuple(int(i) for i in where)})",
            field=field,
        )
    return q / norm


def _name_list(value: Any, path: Path, field: str) -> list[str]:
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or (value.dtype.kind not in "US" and value.size):
            raise MotionFormatError(path, f"expected a (N,) array of names, found {_describe(value)}", field=field)
        items = value.tolist()
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = list(value)
    else:
        raise MotionFormatError(path, f"expected a list of names, found {_describe(value)}", field=field)
    out = []
    for s in items:
        if isinstance(s, bytes):
            s = s.decode("utf-8", "replace")
        if not isinstance(s, str):
            raise MotionFormatError(path, f"expected names (str), found {type(s).__name__} {s!r}", field=field)
        out.append(s)
    return out


def _match_names(found: Sequence[str], expected: Sequence[str], path: Path, field: str, kind: str) -> None:
    missing = [e for e in expected if e not in found]
    extra = [f for f in found if f not in expected]
    dup = sorted({f for f in found if list(found).count(f) > 1})
    if missing or extra or dup or len(found) != len(expected):
        parts = [f"expected the {len(expected)} {kind}, found {len(found)} names"]
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unknown {extra[:5]}{'...' if len(extra) > 5 else ''}")
        if dup:
            parts.append(f"duplicated {dup[:5]}")
        raise MotionFormatError(path, "; ".join(parts) + ": the file is for another robot", field=field)


def _csv_rows(fh, path: Path):
    """(line number, row) for every non-blank CSV row; csv errors become MotionFormatError."""
    reader = csv.reader(fh)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise MotionFormatError(path, f"malformed CSV: {e}", line=reader.line_num) from None
        if row and any(cell.strip() for cell in row):
            yield reader.line_num, row


def _seed_joint_columns(header: Sequence[str], robot: RobotSpec, path: Path, line: int) -> tuple[list[str], str]:
    """The ``_dof`` column of each robot joint (MJCF order) and the naming found."""
    dof_cols = [h for h in header if h.endswith("_dof")]
    full = {f"{j}_dof": j for j in robot.dof_names}
    short = {f"{j.removesuffix('_joint')}_dof": j for j in robot.dof_names}
    n_full = sum(c in full for c in dof_cols)
    n_short = sum(c in short for c in dof_cols)
    table, naming = (full, "<joint>_dof") if n_full >= n_short else (short, "<joint minus _joint>_dof")
    unknown = [c for c in dof_cols if c not in table]
    missing = [c for c, j in table.items() if c not in dof_cols]
    if unknown or missing:
        msg = f"expected {robot.num_dof} joint columns '<joint>_dof' for robot {robot.name}, found {len(dof_cols)}"
        if missing:
            msg += f"; missing {missing[:5]}{'...' if len(missing) > 5 else ''}"
        if unknown:
            msg += f"; not joints of {robot.name}: {unknown[:5]}{'...' if len(unknown) > 5 else ''}"
        raise MotionFormatError(
            path,
            msg + ": the file is for another robot or DoF set",
            line=line,
            field=(missing or unknown)[0],
        )
    by_joint = {j: c for c, j in table.items()}
    return [by_joint[j] for j in robot.dof_names], naming
