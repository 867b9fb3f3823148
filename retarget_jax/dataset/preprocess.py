"""Per-clip preprocessing and filters of a dataset build (host, numpy + MuJoCo C).

Stage: dataset. Runs on a robot trajectory (a :class:`~retarget_jax.result.RetargetingResult`
that was retargeted or loaded), in this order:

1. **resample** to the dataset's ``target_fps`` on exact times (root position and joints
   linear, root orientation SLERP, bodies by MuJoCo FK); a clip already at that rate is
   kept as it is;
2. **truncate** to the source's ``max_frames`` (0: keep all; recorded in the manifest);
3. ``normalize_root_xy``: shift the clip horizontally so the root starts at x = y = 0;
4. ``ground_align: clip_min_foot``: shift it vertically so the lowest sole point of the
   feet over the whole clip is at z = 0 (``none`` keeps the heights);
5. velocities: finite differences within the clip (:func:`retarget_jax.io.linear_velocity`,
   :func:`retarget_jax.io.angular_velocity_w`);
6. contacts: a foot is in stance where its sole is below ``contact_height`` and its body
   moves slower than ``contact_speed`` horizontally;
7. the figures the filters judge (:func:`filter_reasons`).

A *sole* is the lowest point of a foot's collision geoms (the foot body and the bodies
below it), computed from the body poses and the MJCF geom offsets.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import mujoco
import numpy as np

from retarget_jax.dataset.spec import PreprocessSpec
from retarget_jax.errors import DatasetSpecError, InvalidMotionError
from retarget_jax.formats import ROBOT_SHORT_NAMES
from retarget_jax.io.writers import angular_velocity_w, linear_velocity
from retarget_jax.motion.resample import resample_times
from retarget_jax.problem import load_recipe
from retarget_jax.result import RetargetingResult
from retarget_jax.robots.kinematics import host_body_poses
from retarget_jax.rotations import quat_mul, quat_rotate, quat_slerp, quat_to_mat

_EPS = 1e-9
#: the filters, in the order they are reported
FILTERS = ("min_frames", "max_root_lin_vel", "min_peak_body_height", "max_all_off_ground_s")


@dataclasses.dataclass
class ProcessedClip:
    """A clip ready for a shard: float64 per-frame arrays and the figures of its filters."""

    fps: float
    frames: dict[str, np.ndarray]  # shard FRAME_KEYS
    source_frames: int
    source_fps: float
    truncated_from: int | None
    root_speed_max: float
    peak_root_height: float
    longest_off_ground_s: float

    @property
    def num_frames(self) -> int:
        return int(self.frames["joint_pos"].shape[0])


def default_feet(robot, spec_path: Any = "<spec>") -> tuple[str, ...]:
    """The feet of a built-in robot: the ground bodies of its shipped LAFAN1 recipe."""
    if robot.name not in ROBOT_SHORT_NAMES:
        raise DatasetSpecError(
            spec_path,
            "preprocess.feet",
            f"robot '{robot.name}' has no shipped recipe to take its feet from; list its foot bodies here",
        )
    return tuple(load_recipe(f"lafan1_{ROBOT_SHORT_NAMES[robot.name]}").ground_bodies)


@dataclasses.dataclass(frozen=True)
class SoleModel:
    """Collision geoms of each foot, for sole heights from body poses (host)."""

    feet: tuple[str, ...]
    geom_body: tuple[np.ndarray, ...]  # per foot: (G,) body index (into body_names) of each geom
    geom_pos: tuple[np.ndarray, ...]  # (G, 3) geom position in its body's frame
    geom_quat: tuple[np.ndarray, ...]  # (G, 4) geom orientation in its body's frame
    geom_type: tuple[np.ndarray, ...]
    geom_size: tuple[np.ndarray, ...]
    geom_rbound: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, robot, feet: tuple[str, ...], where: Any = "<spec>") -> SoleModel:
        m = robot.mj_model
        per: list[list[np.ndarray]] = [[] for _ in range(6)]
        for foot in feet:
            b = robot.body_index(foot, where=f"{where}, key 'preprocess.feet'")
            geoms = robot.subtree_geoms(b)
            colliding = [g for g in geoms if m.geom_contype[g] or m.geom_conaffinity[g]]
            geoms = colliding or geoms
            if not geoms:
                raise DatasetSpecError(
                    where,
                    "preprocess.feet",
                    f"foot body '{foot}' of robot '{robot.name}' has no geoms to find its sole from",
                )
            g = np.asarray(geoms)
            for lst, arr in zip(
                per,
                (m.geom_bodyid[g] - 1, m.geom_pos[g], m.geom_quat[g], m.geom_type[g], m.geom_size[g], m.geom_rbound[g]),
                strict=True,
            ):
                lst.append(np.array(arr))
        return cls(tuple(feet), *(tuple(x) for x in per))

    def heights(self, body_pos_w: np.ndarray, body_quat_w: np.ndarray) -> np.ndarray:
        """(T, F) lowest world z of each foot's geoms."""
        out = np.empty((body_pos_w.shape[0], len(self.feet)))
        for f in range(len(self.feet)):
            bp = body_pos_w[:, self.geom_body[f]]  # (T, G, 3)
            bq = body_quat_w[:, self.geom_body[f]]
            gpos = bp + quat_rotate(bq, self.geom_pos[f][None])
            R = quat_to_mat(quat_mul(bq, np.broadcast_to(self.geom_quat[f], bq.shape)))  # (T, G, 3, 3)
            z = gpos[..., 2]
            size, typ = self.geom_size[f], self.geom_type[f]
            low = z - self.geom_rbound[f]
            sph = typ == mujoco.mjtGeom.mjGEOM_SPHERE
            cap = typ == mujoco.mjtGeom.mjGEOM_CAPSULE
            box = typ == mujoco.mjtGeom.mjGEOM_BOX
            low = np.where(sph, z - size[:, 0], low)
            low = np.where(cap, z - np.abs(R[..., 2, 2]) * size[:, 1] - size[:, 0], low)
            low = np.where(box, z - np.einsum("tgk,gk->tg", np.abs(R[..., 2, :]), size), low)
            out[:, f] = low.min(axis=1)
        return out


def resample_result(result: RetargetingResult, fps: float, robot) -> RetargetingResult:
    """The robot trajectory at ``fps`` on exact times (the result itself when it already is)."""
    if abs(float(result.fps) - fps) < _EPS or result.num_frames < 2:
        return result
    T = result.num_frames
    src_t = np.arange(T, dtype=np.float64) / float(result.fps)
    out_t = resample_times(src_t, fps)
    i1 = np.clip(np.searchsorted(src_t, out_t - _EPS, side="left"), 0, T - 1)
    i0 = np.clip(i1 - 1, 0, None)
    on = np.abs(src_t[i1] - out_t) <= _EPS
    i0 = np.where(on, i1, i0)
    dt = src_t[i1] - src_t[i0]
    a = np.where(dt > 0, (out_t - src_t[i0]) / np.where(dt > 0, dt, 1.0), 0.0)
    root = (1 - a)[:, None] * result.root_pos[i0] + a[:, None] * result.root_pos[i1]
    dof = (1 - a)[:, None] * result.dof_pos[i0] + a[:, None] * result.dof_pos[i1]
    q = np.asarray(result.root_quat_wxyz, np.float64)
    quat = quat_slerp(q[i0], q[i1], a)
    quat = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    xpos, xquat = host_body_poses(robot, np.concatenate([root, quat, dof], axis=-1))
    return dataclasses.replace(
        result,
        fps=float(fps),
        root_pos=root,
        root_quat_wxyz=quat,
        dof_pos=dof,
        body_pos_w=xpos,
        body_quat_w=xquat,
        target_pos_w=None,
        target_body_names=(),
        target_offset_b=None,
        contacts=None,
        contact_body_names=(),
    )


def process_clip(
    result: RetargetingResult,
    robot,
    pre: PreprocessSpec,
    soles: SoleModel,
    fps: float,
    max_frames: int = 0,
    where: str = "<clip>",
) -> ProcessedClip:
    """Steps 1-7 of the module docstring for one clip."""
    if tuple(result.dof_names) != tuple(robot.dof_names):
        raise InvalidMotionError(
            f"{where}, field 'dof_names': the clip's joints are not robot '{robot.name}''s "
            f"({len(result.dof_names)} vs {robot.num_dof}, or another order)"
        )
    if tuple(result.body_names) != tuple(robot.body_names):
        raise InvalidMotionError(f"{where}, field 'body_names': the clip's bodies are not robot '{robot.name}''s")
    arrays = (result.root_pos, result.root_quat_wxyz, result.dof_pos, result.body_pos_w, result.body_quat_w)
    for name, arr in zip(("root_pos", "root_quat_wxyz", "dof_pos", "body_pos_w", "body_quat_w"), arrays, strict=True):
        if not np.all(np.isfinite(arr)):
            raise InvalidMotionError(f"{where}, field '{name}': non-finite values (NaN or inf)")
    src_frames, src_fps = result.num_frames, float(result.fps)
    r = resample_result(result, fps, robot)
    truncated = None
    if max_frames and r.num_frames > max_frames:
        truncated = r.num_frames
    n = min(r.num_frames, max_frames) if max_frames else r.num_frames
    root = np.array(r.root_pos[:n], np.float64)
    quat = np.array(r.root_quat_wxyz[:n], np.float64)
    quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    dof = np.array(r.dof_pos[:n], np.float64)
    bpos = np.array(r.body_pos_w[:n], np.float64)
    bquat = np.array(r.body_quat_w[:n], np.float64)
    bquat /= np.linalg.norm(bquat, axis=-1, keepdims=True)
    if pre.normalize_root_xy and n:
        xy = root[0, :2].copy()
        root[:, :2] -= xy
        bpos[..., :2] -= xy
    sole = soles.heights(bpos, bquat) if n else np.zeros((0, len(soles.feet)))
    if pre.ground_align == "clip_min_foot" and n:
        dz = float(sole.min())
        root[:, 2] -= dz
        bpos[..., 2] -= dz
        sole = sole - dz
    rate = float(r.fps)
    blin = linear_velocity(bpos, rate)
    feet_idx = [robot.body_names.index(f) for f in soles.feet]
    foot_speed = np.linalg.norm(blin[:, feet_idx, :2], axis=-1)
    contacts = (sole < pre.contact_height) & (foot_speed < pre.contact_speed)
    frames = {
        "joint_pos": dof,
        "joint_vel": linear_velocity(dof, rate),
        "root_pos": root,
        "root_quat_wxyz": quat,
        "body_pos_w": bpos,
        "body_quat_w": bquat,
        "body_lin_vel_w": blin,
        "body_ang_vel_w": angular_velocity_w(bquat, rate),
        "contacts": contacts,
    }
    root_speed = np.linalg.norm(linear_velocity(root, rate), axis=-1)
    off = np.all(sole > pre.contact_height, axis=1)
    return ProcessedClip(
        fps=rate,
        frames=frames,
        source_frames=src_frames,
        source_fps=src_fps,
        truncated_from=truncated,
        root_speed_max=float(root_speed.max()) if n else 0.0,
        peak_root_height=float(root[:, 2].max()) if n else float("nan"),
        longest_off_ground_s=_longest_run(off) / rate,
    )


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D bool array."""
    best = cur = 0
    for v in mask:
        cur = cur + 1 if v else 0
        best = max(best, cur)
    return best


def filter_reasons(clip: ProcessedClip, pre: PreprocessSpec) -> list[tuple[str, str]]:
    """``(filter, reason)`` for every filter the clip fails (empty: the clip is kept)."""
    out = []
    if clip.num_frames < max(pre.min_frames, 2):
        out.append(
            (
                "min_frames",
                f"too short: {clip.num_frames} frames at {clip.fps:g} fps < min_frames {max(pre.min_frames, 2)}",
            )
        )
    if pre.max_root_lin_vel is not None and clip.root_speed_max > pre.max_root_lin_vel:
        out.append(
            (
                "max_root_lin_vel",
                f"too fast: root speed reaches {clip.root_speed_max:.3g} m/s > "
                f"max_root_lin_vel {pre.max_root_lin_vel:g}",
            )
        )
    if pre.min_peak_body_height is not None and not clip.peak_root_height >= pre.min_peak_body_height:
        out.append(
            (
                "min_peak_body_height",
                f"too low: the root never rises above {clip.peak_root_height:.3g} m < "
                f"min_peak_body_height {pre.min_peak_body_height:g}",
            )
        )
    if pre.max_all_off_ground_s is not None and clip.longest_off_ground_s > pre.max_all_off_ground_s:
        out.append(
            (
                "max_all_off_ground_s",
                f"floating: every foot is above {pre.contact_height:g} m for "
                f"{clip.longest_off_ground_s:.3g} s > max_all_off_ground_s "
                f"{pre.max_all_off_ground_s:g}",
            )
        )
    return out
