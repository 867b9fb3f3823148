"""Quality figures of one result: tracking error, jerk, uprightness, feet, joint limits.

Units: metres, radians, seconds. Host code on numpy arrays.
"""

from __future__ import annotations

import mujoco
import numpy as np

from retarget_jax.result import RetargetingResult
from retarget_jax.robots.spec import RobotSpec, geom_lowest_z
from retarget_jax.rotations import quat_rotate


def clip_metrics(result: RetargetingResult, robot: RobotSpec, *, foot_bodies=(), pos_offsets=None,
                 stance_speed: float = 0.15, stance_height: float = 0.05) -> dict[str, float]:
    """Figures for one clip.

    - tracking error: distance between each mapped body point and its scaled human target
      (mean and 95th percentile over frames and targets);
    - jerk: mean |d^3 q / dt^3| of the actuated joints (rad/s^3);
    - upright: min over frames of the root z-axis' world z component;
    - stance feet: over frames where a foot body moves slower than ``stance_speed`` (m/s)
      and its sole is lower than ``stance_height`` above its lowest, the height of its
      sole: the lowest point of the collision geoms on the foot body and below it (a foot
      with its heel up and its toes on the floor has sole height 0);
    - joint-limit violation: max rad outside the MJCF range.
    """
    out: dict[str, float] = {}
    dt = 1.0 / result.fps
    if result.target_pos_w is not None and result.target_body_names:
        idx = [result.body_names.index(b) for b in result.target_body_names]
        pts = result.body_pos_w[:, idx]
        if pos_offsets is not None:
            pts = pts + quat_rotate(result.body_quat_w[:, idx], np.asarray(pos_offsets)[None])
        err = np.linalg.norm(pts - result.target_pos_w, axis=-1)
        err = err[np.isfinite(err)]  # NaN targets: the source had no such joint there
        out["tracking_error_mean_m"] = float(err.mean()) if err.size else float("nan")
        out["tracking_error_p95_m"] = float(np.percentile(err, 95)) if err.size else float("nan")
    q = result.dof_pos
    if q.shape[0] >= 4:
        jerk = np.diff(q, n=3, axis=0) / dt**3
        out["jerk_mean_abs_rad_s3"] = float(np.abs(jerk).mean())
    up = quat_rotate(result.root_quat_wxyz, np.array([0.0, 0.0, 1.0]))[:, 2]
    out["upright_min_cos"] = float(up.min())
    lo, hi = robot.dof_ranges[:, 0], robot.dof_ranges[:, 1]
    out["joint_limit_violation_max_rad"] = float(max(0.0, (lo - q).max(), (q - hi).max()))
    soles = _sole_heights(result, robot, foot_bodies) if foot_bodies else {}
    for name in foot_bodies:
        b = result.body_names.index(name)
        z = soles[name]
        v = np.linalg.norm(np.gradient(result.body_pos_w[:, b, :2], dt, axis=0), axis=-1)
        stance = (v < stance_speed) & (z < z.min() + stance_height)
        out[f"{name}_stance_fraction"] = float(stance.mean())
        out[f"{name}_stance_sole_height_mean_m"] = float(z[stance].mean()) if stance.any() else float("nan")
        out[f"{name}_stance_sole_height_p95_abs_m"] = (
            float(np.percentile(np.abs(z[stance]), 95)) if stance.any() else float("nan"))
        out[f"{name}_sole_height_min_m"] = float(z.min())
    return out


def _sole_heights(result: RetargetingResult, robot: RobotSpec, foot_bodies) -> dict[str, np.ndarray]:
    """(T,) height of the lowest collision-geom point of each foot (the body and the bodies
    below it, e.g. the T1's contact spheres), by MuJoCo forward kinematics per frame."""
    m = robot.mj_model
    d = mujoco.MjData(m)
    geoms = {name: robot.subtree_geoms(robot.body_index(name)) for name in foot_bodies}
    out = {name: np.empty(result.num_frames) for name in foot_bodies}
    for t, q in enumerate(result.qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        for name, gs in geoms.items():
            out[name][t] = min((geom_lowest_z(m, d, g) for g in gs), default=np.nan)
    return out


def recipe_metrics(result: RetargetingResult, robot: RobotSpec, recipe) -> dict[str, float]:
    """:func:`clip_metrics` with the recipe's tracked points and ground bodies."""
    offsets = [t.offset for t in recipe.targets if t.position_weight > 0]
    return clip_metrics(result, robot, foot_bodies=tuple(recipe.ground_bodies),
                        pos_offsets=np.reshape(offsets, (-1, 3)))
