"""Per-motion rigid-body states at the output rate (stage: motion libraries, host code).

A :class:`MotionStates` holds one motion (a clip or a slice of one) as a motion-tracking
trainer reads it: T frames at ``fps``, B bodies, n DoF, F contact bodies, all float32 but
the contact flags. Quaternions are **wxyz**; world frame Z-up, metres, seconds.

Two sources:

* Body-model targets (``smpl``, ``smplx``; :func:`body_model_states`): the SMPL family's
  FK (:func:`retarget_jax.body_models.smpl_joint_poses`) of the file's pose parameters,
  on the built-in neutral skeleton or the user's model files with the file's betas, no
  solve. Bodies are those of the vendored ProtoMotions figure (``smpl_humanoid.xml``, 24
  bodies; ``smplx_humanoid.xml``, 52 with fingers), in its MJCF order, and each body's
  rotation is that figure's body frame (identity in the T-pose facing +X). The 22 body
  joints are posed from the file; the SMPL hand bodies and the SMPL-X fingers are posed
  from the file's hand parameters when it has them and stay at rest otherwise. DoF are
  the rotation vectors (x, y, z) of every non-root body's rotation relative to its parent,
in the figure's body frames (ProtoMotions' exp-map DoF), and their rates the body's
angular velocity relative to its parent, in the parent's frame. Then the height
  fix: the whole motion is raised or lowered so that its lowest joint over all frames
  sits at the toe's rest height (the toe joint's height above the sole of the figure's
  foot, 0.0145 m SMPL, 0.0171 m SMPL-X). Contacts: the four foot bodies (ankles and
  toes), in contact where lower than 0.1 m and slower than 0.15 m/s (:class:`ContactRule`).
* Robot targets (:func:`robot_states`): the retargeted trajectory (a solve's
  :class:`~retarget_jax.result.RetargetingResult`, or a robot-space file), body poses by
  MuJoCo C kinematics; contacts are the stance flags of the solve's ContactPlan on the
  recipe's foot links (none for a robot-space file).

Velocities come from the solution's coordinates, not from differences of body positions:
generalized velocities (root linear velocity, root and joint angular rates) are central
differences of the pose (one-sided at the ends; rotations on the manifold), and every
body's linear and angular velocity follows from them through the kinematic tree (for
robots MuJoCo's ``mj_objectVelocity``; for the body model the same recursion,
``w_j = w_parent + R_parent w_local_j``, ``v_j = v_parent + w_parent x (p_j - p_parent)``),
so they are exactly consistent with the tree.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from retarget_jax.body_models import SMPL_BODY_JOINT_NAMES, smpl_joint_poses
from retarget_jax.body_models.neutral import (
    XML_BODY_TO_SMPL,
    XML_TO_CANONICAL,
    figure_path,
    parse_figure,
)
from retarget_jax.body_models.topology import BodySkeleton
from retarget_jax.errors import MotionFormatError, MotionLibFormatError, SliceError
from retarget_jax.files.atomic import atomic_write
from retarget_jax.io.result_npz import str_array
from retarget_jax.io.writers import angular_velocity_w, linear_velocity
from retarget_jax.motion.resample import bracket
from retarget_jax.motionlib.config import ContactRule
from retarget_jax.rotations import (
    mat_to_quat,
    quat_conj,
    quat_exp,
    quat_log,
    quat_mul,
    quat_rotate,
    quat_slerp,
)

__all__ = [
    "FRAME_FIELDS",
    "STATES_SCHEMA_VERSION",
    "Figure",
    "MotionStates",
    "body_model_states",
    "figure",
    "load_states",
    "robot_states",
    "save_states",
    "slice_times",
]

STATES_SCHEMA_VERSION = 1

#: Per-frame arrays of a motion: name -> (trailing shape letters, dtype). T is the leading axis.
FRAME_FIELDS: dict[str, tuple[str, type]] = {
    "root_pos": ("3", np.float32),
    "root_quat_wxyz": ("4", np.float32),
    "root_lin_vel_w": ("3", np.float32),
    "root_ang_vel_w": ("3", np.float32),
    "dof_pos": ("n", np.float32),
    "dof_vel": ("n", np.float32),
    "body_pos_w": ("B3", np.float32),
    "body_quat_w": ("B4", np.float32),
    "body_lin_vel_w": ("B3", np.float32),
    "body_ang_vel_w": ("B3", np.float32),
    "contacts": ("F", np.bool_),
}
NAME_FIELDS = ("body_names", "dof_names", "contact_body_names")
#: Times within this of a sample count as on it; slices may end this far past the last sample.
_EPS = 1e-6


@dataclasses.dataclass
class MotionStates:
    """One motion's states (see the module docstring for what each holds).

    Attributes:
        fps: frames per second.
        root_pos (T, 3), root_quat_wxyz (T, 4): the floating base (robot root body, or the
            pelvis), world. root_lin_vel_w, root_ang_vel_w (T, 3): its velocities, world.
        dof_pos, dof_vel (T, n): joint positions and velocities (radians, rad/s).
        body_pos_w (T, B, 3), body_quat_w (T, B, 4) wxyz: body origins and frames, world.
        body_lin_vel_w, body_ang_vel_w (T, B, 3): their velocities, world frame.
        contacts (T, F) bool: foot contact flags of ``contact_body_names``.
        body_names (B,), dof_names (n,), contact_body_names (F,): the names of the bodies,
            joints and contact links.
        info: JSON-able facts (source file, slice, source fps, solve status, metrics).
    """

    fps: float
    root_pos: np.ndarray
    root_quat_wxyz: np.ndarray
    root_lin_vel_w: np.ndarray
    root_ang_vel_w: np.ndarray
    dof_pos: np.ndarray
    dof_vel: np.ndarray
    body_pos_w: np.ndarray
    body_quat_w: np.ndarray
    body_lin_vel_w: np.ndarray
    body_ang_vel_w: np.ndarray
    contacts: np.ndarray
    body_names: tuple[str, ...]
    dof_names: tuple[str, ...]
    contact_body_names: tuple[str, ...]
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for k, (_, dt) in FRAME_FIELDS.items():
            setattr(self, k, np.ascontiguousarray(np.asarray(getattr(self, k)), dtype=dt))
        for k in NAME_FIELDS:
            setattr(self, k, tuple(str(n) for n in getattr(self, k)))
        _check_shapes({k: getattr(self, k) for k in (*FRAME_FIELDS, *NAME_FIELDS)}, "<states>")

    @property
    def num_frames(self) -> int:
        return int(self.root_pos.shape[0])

    @property
    def duration_s(self) -> float:
        """Time of the last frame: (T - 1) / fps."""
        return (self.num_frames - 1) / self.fps


def _check_shapes(arrays: dict[str, np.ndarray], where: object) -> None:
    """Every frame field has the shape its letters say (T, n, B, F taken from the arrays)."""
    dims = {
        "T": arrays["root_pos"].shape[0] if np.ndim(arrays["root_pos"]) == 2 else -1,
        "B": len(arrays["body_names"]),
        "n": len(arrays["dof_names"]),
        "F": len(arrays["contact_body_names"]),
    }
    for k, (letters, dt) in FRAME_FIELDS.items():
        a = arrays[k]
        want = (dims["T"], *(int(c) if c.isdigit() else dims[c] for c in letters))
        if a.shape != want:
            raise MotionLibFormatError(
                where,
                f"expected shape {want} (T, n, B, F = {dims['T']}, {dims['n']}, "
                f"{dims['B']}, {dims['F']}), found {a.shape}",
                field=k,
            )
        if np.dtype(dt) == np.bool_:
            if a.dtype != np.bool_:
                raise MotionLibFormatError(where, f"expected bool, found {a.dtype}", field=k)
        elif a.dtype.kind != "f":
            raise MotionLibFormatError(where, f"expected floats, found {a.dtype}", field=k)


# --------------------------------------------------------------------------- per-motion files


def save_states(states: MotionStates, path: str | os.PathLike, build_key: str) -> Path:
    """Write one motion's states as a pickle-free npz, atomically. ``build_key`` identifies
    the inputs and settings it was made from (a rerun reuses the file only when they match)."""
    arrays = {k: getattr(states, k) for k in FRAME_FIELDS}
    arrays.update({k: str_array(getattr(states, k)) for k in NAME_FIELDS})
    arrays.update(
        schema_version=np.array(STATES_SCHEMA_VERSION, np.int64),
        fps=np.array(states.fps, np.float64),
        info_json=np.array(json.dumps(states.info, sort_keys=True)),
        build_key=np.array(build_key),
    )
    with atomic_write(path, suffix=".npz") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def load_states(path: str | os.PathLike) -> tuple[MotionStates, str]:
    """Read a per-motion states file: (states, build_key). MotionLibFormatError names the
    file and the field of anything malformed."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:
        raise MotionLibFormatError(path, f"not a readable states file ({type(e).__name__}: {e})") from None
    for k in (*FRAME_FIELDS, *NAME_FIELDS, "fps", "info_json", "build_key", "schema_version"):
        if k not in data:
            raise MotionLibFormatError(path, f"missing; fields: {', '.join(sorted(data))}", field=k)
    if int(data["schema_version"]) != STATES_SCHEMA_VERSION:
        raise MotionLibFormatError(
            path, f"expected schema {STATES_SCHEMA_VERSION}, found {data['schema_version']}", field="schema_version"
        )
    _check_shapes(data, path)
    try:
        info = json.loads(str(data["info_json"]))
    except ValueError as e:
        raise MotionLibFormatError(path, f"not JSON: {e}", field="info_json") from None
    states = MotionStates(
        fps=float(data["fps"]),
        **{k: data[k] for k in FRAME_FIELDS},
        **{k: tuple(data[k].tolist()) for k in NAME_FIELDS},
        info=info,
    )
    return states, str(data["build_key"])


# --------------------------------------------------------------------------- slicing


def slice_times(
    last: float, nominal_end: float, start: float, end: float | None, output_fps: float, where: str, describe: str = ""
) -> np.ndarray:
    """Output sample times ``start + k / output_fps`` of a slice of a clip whose clock runs
    from 0 (its first sample) to ``last`` (its last sample).

    ``end`` may exceed ``last`` up to ``nominal_end`` (a clip of T samples at f fps is often
    called T / f seconds long, one frame more than its last sample's time) and is then cut
    at ``last``. A slice that starts after ``last``, ends after ``nominal_end``, or yields
    fewer than 2 frames raises SliceError naming ``where`` and the clip (``describe``).
    """
    span = f"the clip runs from 0 to {last:.4f} s" + (f" ({describe})" if describe else "")
    if start > last + _EPS:
        raise SliceError(f"{where}: slice start {start:g} s is after the clip's end; {span}")
    if end is not None and end > nominal_end + _EPS:
        raise SliceError(f"{where}: slice end {end:g} s is after the clip's end; {span}")
    stop = last if end is None else min(end, last)
    n = int(np.floor((stop - start) * output_fps + 1e-9)) + 1 if stop >= start else 0
    if n < 2:
        raise SliceError(
            f"{where}: slice [{start:g}, {stop:g}] s has {max(n, 0)} frame(s) at {output_fps:g} fps; "
            f"a motion needs at least 2 (velocities); {span}"
        )
    return start + np.arange(n, dtype=np.float64) / output_fps


# --------------------------------------------------------------------------- body model

#: SMPL-H / SMPL-X finger joints in model order (per hand: index, middle, pinky, ring, thumb).
FINGER_BODIES = tuple(
    f"{s}_{f}{i}" for s in "LR" for f in ("Index", "Middle", "Pinky", "Ring", "Thumb") for i in (1, 2, 3)
)
FOOT_BODIES = ("L_Ankle", "L_Toe", "R_Ankle", "R_Toe")
_Q_FIGURE = mat_to_quat(XML_TO_CANONICAL)  # figure body frame -> SMPL canonical frame


@dataclasses.dataclass(frozen=True)
class Figure:
    """The vendored body-model figure of a target: bodies in MJCF order and their rest
    offsets (parent to child) in the SMPL canonical frame."""

    family: str
    mjcf_path: str
    body_names: tuple[str, ...]
    parents: np.ndarray  # (N,), -1 for the pelvis
    offsets: np.ndarray  # (N, 3), canonical frame
    smpl_index: np.ndarray  # (22,) figure index of each SMPL body joint (SMPL order)
    toe_rest_height: float  # toe joint above the sole of the foot geoms in the rest pose, m


@functools.cache
def figure(family: str) -> Figure:
    """The figure of a body-model target (``smpl`` or ``smplx``)."""
    path = figure_path(family)
    names, parents, pos = parse_figure(path)
    offsets = pos @ XML_TO_CANONICAL.T
    index = {n: i for i, n in enumerate(names)}
    smpl_of = {v: k for k, v in XML_BODY_TO_SMPL.items()}
    smpl_index = np.array([index[smpl_of[j]] for j in SMPL_BODY_JOINT_NAMES])
    # the toe joint's rest height above the lowest point of the foot geoms (boxes in the figure)
    m = mujoco.MjModel.from_xml_path(path)
    d = mujoco.MjData(m)
    mujoco.mj_kinematics(m, d)
    foot = {m.body(n).id for n in ("L_Ankle", "L_Toe")}
    lowest = []
    for g in range(m.ngeom):
        if m.geom_bodyid[g] in foot:
            R = d.geom_xmat[g].reshape(3, 3)
            if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX:
                lowest.append(d.geom_xpos[g][2] - np.abs(R[2]) @ m.geom_size[g])
            else:
                lowest.append(d.geom_xpos[g][2] - m.geom_rbound[g])
    toe = float(d.xpos[m.body("L_Toe").id][2] - min(lowest))
    return Figure(family, path, names, parents, offsets, smpl_index, toe)


def _hand_pose(path: str, family: str, num_frames: int) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """The file's hand parameters as (T, K, 3) axis-angle and the figure bodies they pose:
    SMPL ``poses[:, 66:72]`` (the two hand joints), SMPL-H ``poses[:, 66:156]`` and SMPL-X
    ``poses[:, 75:165]`` or ``pose_hand`` (the 30 finger joints). None when absent."""
    with np.load(path, allow_pickle=False) as z:
        if "poses" in z.files:
            poses = z["poses"]
            cols = {"smpl": (66, 72), "smplh": (66, 156), "smplx": (75, 165)}[family]
            hand, field = poses[:, cols[0] : cols[1]], "poses"
        elif "pose_hand" in z.files:
            hand, field = z["pose_hand"], "pose_hand"
        else:
            return None
    if hand.dtype.kind not in "biuf" or hand.ndim != 2 or hand.shape[0] != num_frames or hand.shape[1] not in (6, 90):
        raise MotionFormatError(
            path, f"expected ({num_frames}, 90) hand parameters, found {hand.shape} {hand.dtype}", field=field
        )
    hand = hand.astype(np.float64)
    if not np.isfinite(hand).all():
        raise MotionFormatError(path, "NaN or infinite hand parameters", field=field)
    names = ("L_Hand", "R_Hand") if hand.shape[1] == 6 else FINGER_BODIES
    return hand.reshape(num_frames, -1, 3), names


def body_model_states(
    clip,
    target: str,
    skeleton: BodySkeleton,
    times: np.ndarray,
    output_fps: float,
    rule: ContactRule,
    *,
    clip_fps: float | None = None,
) -> MotionStates:
    """States of an SMPL-family clip (:class:`~retarget_jax.motion.amass.AmassClip`) on a
    body-model target's figure, sampled at ``times`` (seconds on the clip's clock, see
    :func:`slice_times`): local rotations by SLERP and the translation linearly between
    the bracketing samples, then FK; see the module docstring."""
    fig = figure(target)
    fps = float(clip_fps or clip.fps)
    T_src, N = clip.num_frames, len(fig.body_names)
    i0, i1, a = bracket(np.arange(T_src) / fps, times)
    T = times.shape[0]

    local_src = np.zeros((T_src, N, 4))
    local_src[..., 0] = 1.0
    local_src[:, fig.smpl_index] = quat_exp(clip.pose)
    hands = _hand_pose(clip.path, clip.family, T_src)
    hand_bodies: list[str] = []
    if hands is not None:
        hand, names = hands
        posed = [(k, fig.body_names.index(n)) for k, n in enumerate(names) if n in fig.body_names]
        if posed:
            ks, idx = zip(*posed, strict=True)
            local_src[:, list(idx)] = quat_exp(hand[:, list(ks)])
            hand_bodies = [fig.body_names[i] for i in idx]
    local = quat_slerp(local_src[i0], local_src[i1], np.broadcast_to(a[:, None], (T, N)))
    trans = (1.0 - a)[:, None] * clip.trans[i0] + a[:, None] * clip.trans[i1]

    # the 22 body joints by the package's FK; the other figure bodies hang off them at rest offsets
    pos22, rot22 = smpl_joint_poses(skeleton.rest_joints, quat_log(local[:, fig.smpl_index]), trans)
    pos = np.zeros((T, N, 3))
    rot = np.zeros((T, N, 4))
    pos[:, fig.smpl_index], rot[:, fig.smpl_index] = pos22, rot22
    posed = set(fig.smpl_index.tolist())
    for b in range(N):
        if b not in posed:
            p = fig.parents[b]
            pos[:, b] = pos[:, p] + quat_rotate(rot[:, p], np.broadcast_to(fig.offsets[b], (T, 3)))
            rot[:, b] = quat_mul(rot[:, p], local[:, b])

    # velocities: generalized rates by central differences, propagated down the tree
    w_local = angular_velocity_w(local, output_fps)  # (T, N, 3): each rotation's rate, in its parent's frame
    lin = np.zeros((T, N, 3))
    ang = np.zeros((T, N, 3))
    lin[:, 0] = linear_velocity(trans, output_fps)
    ang[:, 0] = w_local[:, 0]
    for b in range(1, N):  # parents come first in MJCF order
        p = fig.parents[b]
        ang[:, b] = ang[:, p] + quat_rotate(rot[:, p], w_local[:, b])
        lin[:, b] = lin[:, p] + np.cross(ang[:, p], pos[:, b] - pos[:, p])

    pos[..., 2] += fig.toe_rest_height - pos[..., 2].min()  # height fix
    body_quat = quat_mul(rot, np.broadcast_to(_Q_FIGURE, rot.shape))
    body_quat *= np.where(body_quat[..., :1] < 0, -1.0, 1.0)
    foot = [fig.body_names.index(n) for n in FOOT_BODIES]
    speed = np.linalg.norm(lin[:, foot], axis=-1)
    contacts = (pos[:, foot, 2] < rule.height) & (speed < rule.speed)
    # DoF in the figure's body frames (r_figure = C^T r_canonical): ProtoMotions' exp-map DoF
    dof_pos = (quat_log(local[:, 1:]) @ XML_TO_CANONICAL).reshape(T, -1)
    dof_vel = (w_local[:, 1:] @ XML_TO_CANONICAL).reshape(T, -1)
    dof_names = tuple(f"{n}_{c}" for n in fig.body_names[1:] for c in "xyz")
    return MotionStates(
        fps=float(output_fps),
        root_pos=pos[:, 0],
        root_quat_wxyz=body_quat[:, 0],
        root_lin_vel_w=lin[:, 0],
        root_ang_vel_w=ang[:, 0],
        dof_pos=dof_pos,
        dof_vel=dof_vel,
        body_pos_w=pos,
        body_quat_w=body_quat,
        body_lin_vel_w=lin,
        body_ang_vel_w=ang,
        contacts=contacts,
        body_names=fig.body_names,
        dof_names=dof_names,
        contact_body_names=FOOT_BODIES,
        info={
            "source_family": clip.family,
            "source_fps": fps,
            "skeleton": skeleton.source,
            "gender": skeleton.gender,
            "hand_bodies_posed": len(hand_bodies),
            "height_offset_m": float(fig.toe_rest_height),
        },
    )


# --------------------------------------------------------------------------- robots


def qpos_at(qpos: np.ndarray, fps: float, times: np.ndarray) -> np.ndarray:
    """A robot trajectory (T, 7 + n) sampled at ``times``: root position and joints
    linearly, the root quaternion (wxyz) by SLERP."""
    i0, i1, a = bracket(np.arange(qpos.shape[0]) / fps, times)
    out = (1.0 - a)[:, None] * qpos[i0] + a[:, None] * qpos[i1]
    out[:, 3:7] = quat_slerp(qpos[i0, 3:7], qpos[i1, 3:7], a)
    return out


def robot_states(
    robot,
    qpos: np.ndarray,
    fps: float,
    *,
    contacts: np.ndarray | None = None,
    contact_body_names: tuple[str, ...] = (),
    info: dict | None = None,
) -> MotionStates:
    """States of a robot trajectory ``qpos`` (T, 7 + n) at ``fps``: generalized velocities by
    central differences (root angular rate on the manifold, in the root frame as MuJoCo's
    free joint takes it), body poses and velocities by MuJoCo C (``mj_kinematics``,
    ``mj_comVel``, ``mj_objectVelocity`` at each body origin, world frame)."""
    m = robot.mj_model
    qpos = np.asarray(qpos, np.float64).copy()
    qpos[:, 3:7] /= np.linalg.norm(qpos[:, 3:7], axis=-1, keepdims=True)
    T = qpos.shape[0]
    w_world = angular_velocity_w(qpos[:, 3:7], fps)
    qvel = np.concatenate(
        [
            linear_velocity(qpos[:, :3], fps),
            quat_rotate(quat_conj(qpos[:, 3:7]), w_world),
            linear_velocity(qpos[:, 7:], fps),
        ],
        axis=-1,
    )
    d = mujoco.MjData(m)
    B = m.nbody - 1
    xpos, xquat = np.empty((T, B, 3)), np.empty((T, B, 4))
    lin, ang = np.empty((T, B, 3)), np.empty((T, B, 3))
    res = np.zeros(6)
    for t in range(T):
        d.qpos[:] = qpos[t]
        d.qvel[:] = qvel[t]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_comVel(m, d)
        xpos[t], xquat[t] = d.xpos[1:], d.xquat[1:]
        for b in range(1, m.nbody):
            mujoco.mj_objectVelocity(
                m, d, mujoco.mjtObj.mjOBJ_XBODY, b, res, 0
            )  # at the body frame origin (mjOBJ_BODY: its COM)
            ang[t, b - 1], lin[t, b - 1] = res[:3], res[3:]
    if contacts is None:
        contacts, contact_body_names = np.zeros((T, 0), bool), ()
    return MotionStates(
        fps=float(fps),
        root_pos=qpos[:, :3],
        root_quat_wxyz=qpos[:, 3:7],
        root_lin_vel_w=qvel[:, :3],
        root_ang_vel_w=w_world,
        dof_pos=qpos[:, 7:],
        dof_vel=qvel[:, 6:],
        body_pos_w=xpos,
        body_quat_w=xquat,
        body_lin_vel_w=lin,
        body_ang_vel_w=ang,
        contacts=np.asarray(contacts, bool),
        body_names=robot.body_names,
        dof_names=robot.dof_names,
        contact_body_names=tuple(contact_body_names),
        info=dict(info or {}),
    )
