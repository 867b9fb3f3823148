"""Residuals of the retargeting objective and their analytic Jacobians (jit code).

The objective of one clip is a sum of squares over frames t and frame pairs (t, t+1):

    F(x) = sum_t ||r_t(x_t)||^2 + sum_t ||p_t(x_t, x_{t+1})||^2

r_t: position targets (3 per point), orientation targets (3 per body, log map), a
weak posture prior and the depth of sole points below the floor (0 above it); p_t: velocities of root position, root orientation and joints.
Frames with mask 0 (padding) contribute nothing. Tangent layout: see robots.spec.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from retarget_jax.problem.compile import CompiledProblem, _scaled_figure
from retarget_jax.robots.kinematics import forward_kinematics, point_jacobians
from retarget_jax.rotations import (
    quat_conj,
    quat_log,
    quat_mul,
    quat_rotate,
    quat_to_mat,
    so3_right_jacobian_inv,
)

_UP = np.array([0.0, 0.0, 1.0], np.float32)


def scaled_human(problem: CompiledProblem) -> jnp.ndarray:
    """(T, J, 3) human joints with each bone scaled, the root trajectory scaled about its
    anchor, and the whole figure shifted so the robot's soles meet the floor. Numpy or
    jax, like the problem's arrays."""
    c = problem.clip
    return _scaled_figure(c.human_pos, c.bone_scale, c.bone_lateral_scale, c.root_scale, c.root_anchor,
                          problem.human_parents) + c.z_offset * _UP


def targets(problem: CompiledProblem):
    """Position targets (T, Kp, 3) and orientation targets (T, Kr, 4); numpy or jax, like
    the problem's arrays (the host builds a result's targets without dispatching jax ops)."""
    c = problem.clip
    sh = scaled_human(problem)
    tpos = sh[:, list(problem.pos_joint)] + c.pos_target_dz[..., None] * _UP
    tquat = quat_mul(c.human_quat[:, list(problem.rot_joint)], c.rot_offset)
    return tpos, tquat


def frame_masks(problem: CompiledProblem):
    """Per-frame masks for :func:`frame_residual`: (frame (T,), position targets (T, Kp),
    orientation targets (T, Kr)). A target whose human joint is missing in a frame is 0."""
    c = problem.clip
    return c.frame_mask, c.pos_valid, c.rot_valid


def frame_residual(problem: CompiledProblem, qpos, tpos, tquat, masks, *, jacobian: bool):
    """Residual (m,) of one frame, and its Jacobian (m, nv) if asked.

    ``masks`` is one frame of :func:`frame_masks`: the frame's padding mask and the
    validity of each position and orientation target in it.

    Orientation residual e = log(R_target^T R_body). A world angular velocity w of the
    body gives R_body <- exp([w]) R_body = R_body exp([R_body^T w]), so
    de = Jr^-1(e) R_body^T w and d e / d tangent = Jr^-1(e) R_body^T J_ang.
    """
    c, rob = problem.clip, problem.robot
    fk = forward_kinematics(rob.tree, qpos)
    xpos, xquat = fk[0], fk[1]
    pb = jnp.asarray(problem.pos_body, jnp.int32)
    rb = jnp.asarray(problem.rot_body, jnp.int32)
    qp = xquat[pb]
    pts = xpos[pb] + quat_rotate(qp, c.pos_offset)
    mask, pvalid, rvalid = masks
    sp = (jnp.sqrt(c.pos_weight) * pvalid)[:, None] * mask
    sr = (jnp.sqrt(c.rot_weight) * rvalid)[:, None] * mask
    sq = jnp.sqrt(c.posture_weight) * mask
    qr = xquat[rb]
    e = quat_log(quat_mul(quat_conj(tquat), qr))
    # sole points below the floor: depth (z < 0), zero above it
    fb = jnp.asarray(problem.floor_body, jnp.int32)
    soles = xpos[fb] + quat_rotate(xquat[fb], c.floor_offset)
    below = (soles[:, 2] < 0).astype(qpos.dtype)
    sf = jnp.sqrt(c.floor_weight) * mask * below
    r = jnp.concatenate([
        (sp * (pts - tpos)).reshape(-1),
        (sr * e).reshape(-1),
        sq * (qpos[7:] - rob.q_default),
        sf * soles[:, 2],
    ])
    if not jacobian:
        return r
    Jlin, _ = point_jacobians(rob.tree, fk, pb, pts)
    _, Jang = point_jacobians(rob.tree, fk, rb, xpos[rb])
    Jsole, _ = point_jacobians(rob.tree, fk, fb, soles)
    Jrot = so3_right_jacobian_inv(e) @ jnp.swapaxes(quat_to_mat(qr), -1, -2) @ Jang
    n = qpos.shape[0] - 7
    Jpost = jnp.concatenate([jnp.zeros((n, 6), qpos.dtype), jnp.diag(sq)], axis=1)
    J = jnp.concatenate([
        (sp[:, :, None] * Jlin).reshape(-1, Jlin.shape[-1]),
        (sr[:, :, None] * Jrot).reshape(-1, Jrot.shape[-1]),
        Jpost,
        sf[:, None] * Jsole[:, 2, :],
    ])
    return r, J


def pair_residual(problem: CompiledProblem, q0, q1, pair_mask, *, jacobian: bool):
    """Velocity residual (nv,) between consecutive frames, and d/dq0, d/dq1 (nv, nv).

    Root orientation: d = log(R0^T R1). With R0 <- R0 exp(a), R1 <- R1 exp(b) (local
    tangents): R0^T R1 -> exp(-a) E exp(b) = E exp(b - E^T a), so
    dd/db = Jr^-1(d) and dd/da = -Jr^-1(d) E^T, E = exp(d).
    """
    c = problem.clip
    scale = jnp.sqrt(c.smooth_weight) * c.fps * pair_mask
    dq_rel = quat_mul(quat_conj(q0[3:7]), q1[3:7])
    d = quat_log(dq_rel)
    v = jnp.concatenate([q1[0:3] - q0[0:3], d, q1[7:] - q0[7:]])
    r = scale * v
    if not jacobian:
        return r
    nv = v.shape[0]
    Jri = so3_right_jacobian_inv(d)
    E = quat_to_mat(dq_rel)
    eye = jnp.eye(nv, dtype=q0.dtype)
    A = -eye.at[3:6, 3:6].set(Jri @ E.T)
    B = eye.at[3:6, 3:6].set(Jri)
    return r, scale[:, None] * A, scale[:, None] * B


def pair_masks(mask: jnp.ndarray) -> jnp.ndarray:
    return mask[:-1] * mask[1:]


def total_cost(problem: CompiledProblem, qpos: jnp.ndarray, tpos=None, tquat=None) -> jnp.ndarray:
    """F(x) for one clip: qpos (T, nq)."""
    if tpos is None:
        tpos, tquat = targets(problem)
    mask = problem.clip.frame_mask
    r = jax.vmap(lambda q, p, o, m: frame_residual(problem, q, p, o, m, jacobian=False))(
        qpos, tpos, tquat, frame_masks(problem))
    rp = jax.vmap(lambda a, b, m: pair_residual(problem, a, b, m, jacobian=False))(
        qpos[:-1], qpos[1:], pair_masks(mask))
    return jnp.sum(r * r) + jnp.sum(rp * rp)
