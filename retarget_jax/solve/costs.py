"""Residuals of the retargeting objective and their analytic Jacobians (jit code).

The objective of one clip is a sum of squares over frames t, frame pairs (t, t+1) and
frame triples (t-1, t, t+1):

    F(x) = sum_t ||r_t(x_t)||^2 + sum_t ||p_t(x_t, x_{t+1})||^2 + sum_t ||a_t(x_{t-1}, x_t, x_{t+1})||^2

r_t (:func:`frame_residual`), per frame:
  - tracking: position targets (3 per point), orientation targets (3 per body, log map);
  - limb directions: per limb (:mod:`retarget_jax.problem.limbs`), the robot segment's unit
    vector minus the unscaled human bone's (3 per limb, scale-free);
  - posture: a weak prior towards the recipe's default joint angles;
  - ground: the depth below the terrain of every collision geom's lowest point (0 above,
    through a 2 mm smoothed hinge);
  - contact height: in stance (the ContactPlan), each sole point of the foot at its
    flat-foot height above the terrain, two-sided, so the sole sits on the ground level;
  - self-collision: for each declared geom pair, how far it is inside its margin (0
    outside, smoothed the same way).
p_t (:func:`pair_residual`): velocities of root position, root orientation and joints
  (smoothness); in stance at both frames, the horizontal velocity of each sole point
  (no foot sliding); each joint's speed beyond its velocity limit.
a_t (:func:`triple_residual`): accelerations of root position, root orientation, joints.

Every term has a traced weight (0 switches it off without recompiling). Frames with mask
0 (padding) contribute nothing. Tangent layout: see robots.spec. The triple terms make
the normal equations block-pentadiagonal (:func:`retarget_jax.solve.linalg.block_banded_solve`).

:func:`normal_equations` assembles them for the solver, cheaply: one FK per frame
(:func:`retarget_jax.robots.kinematics.body_frames`), Jacobian rows only for the lowest
ground points off the feet and the closest self-collision pairs (the others' smoothed
hinges are flat zeros), and every row on a foot (stance sole heights, sole slide, the
feet's own ground points) in the 6-D space of that foot's twist. :func:`frame_residual`,
:func:`pair_residual` and :func:`triple_residual` give every row with its full Jacobian
(tests check them against finite differences, and the normal equations against the dense
system they make); :func:`total_cost` sums them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from retarget_jax.problem.compile import CompiledProblem, scaled_figure
from retarget_jax.problem.limbs import unit
from retarget_jax.robots.collision import ground_clearance, ground_height, self_collision
from retarget_jax.robots.kinematics import (
    BodyFrames,
    body_frames,
    point_jacobians,
    projected_jacobians,
)
from retarget_jax.rotations import (
    mat_to_quat,
    quat_conj,
    quat_log,
    quat_mul,
    quat_to_mat,
    so3_right_jacobian_inv,
)

_UP = np.array([0.0, 0.0, 1.0], np.float32)

#: Width (m) of the smoothed hinge of the ground and self-collision terms (see _soft_hinge).
SOFT_HINGE = 0.002


def _soft_hinge(c):
    """Smoothed min(0, c): -s softplus(-c / s), s = SOFT_HINGE, and its derivative
    sigmoid(-c / s). Equal to c well inside (c << -s), 0 well outside (c >> s), -0.69 s at
    c = 0. A hard hinge switches rows on and off between Gauss-Newton iterations, which
    with stiff weights makes the solve bounce for many iterations; the smooth one does not."""
    return -SOFT_HINGE * jax.nn.softplus(-c / SOFT_HINGE), jax.nn.sigmoid(-c / SOFT_HINGE)


def scaled_human(problem: CompiledProblem) -> jnp.ndarray:
    """(T, J, 3) human joints with each bone scaled, the root trajectory scaled about its
    anchor, and the whole figure shifted so the robot's soles meet the floor. Numpy or
    jax, like the problem's arrays."""
    c = problem.clip
    return (
        scaled_figure(
            c.human_pos, c.bone_scale, c.bone_lateral_scale, c.root_scale, c.root_anchor, problem.human_parents
        )
        + c.z_offset * _UP
    )


def targets(problem: CompiledProblem):
    """Position targets (T, Kp, 3) and orientation targets (T, Kr, 4); numpy or jax, like
    the problem's arrays (the host builds a result's targets without dispatching jax ops)."""
    c = problem.clip
    sh = scaled_human(problem)
    tpos = sh[:, list(problem.pos_joint)] + c.pos_target_dz[..., None] * _UP
    tquat = quat_mul(c.human_quat[:, list(problem.rot_joint)], c.rot_offset)
    return tpos, tquat


def frame_masks(problem: CompiledProblem):
    """Per-frame inputs of :func:`frame_residual` besides the targets: (frame mask (T,),
    position-target validity (T, Kp), orientation-target validity (T, Kr), stance (T, F),
    limb validity (T, L), the human's unit limb directions (T, L, 3)). A target or limb
    whose human joint is missing in a frame is 0. The limb directions are those of the
    unscaled human bones (a scale changes lengths, not directions)."""
    c = problem.clip
    ja = [a for a, _ in problem.limb_joint]
    jb = [b for _, b in problem.limb_joint]
    hdir = unit(c.human_pos[:, jb] - c.human_pos[:, ja])
    return c.frame_mask, c.pos_valid, c.rot_valid, c.stance, c.limb_valid, hdir


def pair_masks(problem: CompiledProblem):
    """Per-pair masks for :func:`pair_residual`: (both frames real (T-1,), foot in stance
    at both frames (T-1, F))."""
    c = problem.clip
    m = c.frame_mask[:-1] * c.frame_mask[1:]
    return m, c.stance[:-1] * c.stance[1:] * m[:, None]


def triple_masks(problem: CompiledProblem):
    """(T-2,) 1 where frames t-1, t, t+1 are all real."""
    m = problem.clip.frame_mask
    return m[:-2] * m[1:-1] * m[2:]


def sole_points(problem: CompiledProblem, frames: BodyFrames, *, jacobian: bool):
    """World sole points (Ks, 3) of the contact links and, if asked, their linear
    Jacobians (Ks, 3, nv), for one frame's :class:`BodyFrames`."""
    sb = np.asarray(problem.sole_body, np.int32)
    soles = frames.xpos[sb] + jnp.einsum("kij,kj->ki", frames.xmat[sb], problem.clip.sole_offset)
    if not jacobian:
        return soles, None
    J, _ = point_jacobians(problem.robot.tree, frames, sb, soles)
    return soles, J


class _FrameRows(NamedTuple):
    """One frame's residual rows and what their Jacobians are built from."""

    frames: BodyFrames
    pts: jnp.ndarray  # (Kp, 3) tracked points
    r_pos: jnp.ndarray  # (Kp, 3)
    sp: jnp.ndarray  # (Kp,) sqrt weights of the position rows
    e: jnp.ndarray  # (Kr, 3) orientation errors log(R_target^T R_body)
    r_rot: jnp.ndarray  # (Kr, 3)
    sr: jnp.ndarray  # (Kr,)
    r_post: jnp.ndarray  # (n,)
    sq: jnp.ndarray  # (n,)
    clear: jnp.ndarray  # (P,) ground clearance of every ground point
    centres: jnp.ndarray  # (P, 3)
    up_g: jnp.ndarray  # (P, 3) terrain normal direction (-dh/dx, -dh/dy, 1)
    r_ground: jnp.ndarray  # (P,)
    w_ground: jnp.ndarray  # (P,) d r_ground / d clearance
    soles: jnp.ndarray  # (Ks, 3)
    up_s: jnp.ndarray  # (Ks, 3)
    r_contact: jnp.ndarray  # (Ks,)
    sc: jnp.ndarray  # (Ks,)
    gap: jnp.ndarray  # (C,) pair distance minus margin
    ca: jnp.ndarray  # (C, 3) closest points
    cb: jnp.ndarray
    normal: jnp.ndarray  # (C, 3) from b to a
    r_self: jnp.ndarray  # (C,)
    w_self: jnp.ndarray  # (C,) d r_self / d distance
    limb_a: jnp.ndarray  # (L, 3) robot points at the limbs' proximal ends
    limb_b: jnp.ndarray  # (L, 3) ... and distal ends
    limb_u: jnp.ndarray  # (L, 3) unit robot segment direction
    limb_len: jnp.ndarray  # (L,) robot segment length
    r_dir: jnp.ndarray  # (L, 3) sqrt weight x (robot unit direction - human unit direction)
    sd: jnp.ndarray  # (L,) sqrt weights of the direction rows


def _frame_rows(problem: CompiledProblem, qpos, tpos, tquat, masks) -> _FrameRows:
    """Every residual row of one frame (see the module docstring), from one FK."""
    c, rob = problem.clip, problem.robot
    col = rob.collision
    f = body_frames(rob.tree, qpos)
    mask, pvalid, rvalid, stance, lvalid, hdir = masks
    pb = np.asarray(problem.pos_body, np.int32)
    rb = np.asarray(problem.rot_body, np.int32)
    pts = f.xpos[pb] + jnp.einsum("kij,kj->ki", f.xmat[pb], c.pos_offset)
    sp = jnp.sqrt(c.pos_weight) * pvalid * mask
    # orientation: e = log(R_target^T R_body)
    rel = jnp.einsum("kji,kjl->kil", quat_to_mat(tquat), f.xmat[rb])
    e = quat_log(mat_to_quat(rel))
    sr = jnp.sqrt(c.rot_weight) * rvalid * mask
    sq = jnp.sqrt(c.posture_weight) * mask
    # ground: every collision geom's lowest point above the terrain
    clear, centres, dh = ground_clearance(col, f.xpos, f.xmat, c.terrain)
    sg = jnp.sqrt(c.ground_weight) * mask
    hg, dhg = _soft_hinge(clear)
    # contact: stance soles at their flat-foot height
    soles, _ = sole_points(problem, f, jacobian=False)
    h_s, dh_s = ground_height(c.terrain, soles[:, :2])
    foot = np.asarray(problem.sole_foot, np.int32)
    sc = jnp.sqrt(c.contact_height_weight * c.sole_scale) * stance[foot] * mask
    # self-collision: declared pairs kept their margin apart
    dist, ca, cb, normal = self_collision(col, f.xpos, f.xmat)
    gap = dist - col.margin
    hs, dhs = _soft_hinge(gap)
    ss = jnp.sqrt(c.self_collision_weight) * mask
    # limb directions: unit robot segment vs the human bone's
    la = np.asarray([a for a, _ in problem.limb_body], np.int32)
    lb = np.asarray([b for _, b in problem.limb_body], np.int32)
    ends_a = f.xpos[la] + jnp.einsum("kij,kj->ki", f.xmat[la], c.limb_offset[:, 0])
    ends_b = f.xpos[lb] + jnp.einsum("kij,kj->ki", f.xmat[lb], c.limb_offset[:, 1])
    seg = ends_b - ends_a
    seg_len = jnp.sqrt(jnp.sum(seg * seg, axis=-1))
    u = seg / jnp.maximum(seg_len, 1e-9)[:, None]
    sd = jnp.sqrt(c.limb_weight) * lvalid * mask
    up = lambda d: jnp.concatenate([-d, jnp.ones_like(d[:, :1])], axis=1)  # noqa: E731
    return _FrameRows(
        frames=f,
        pts=pts,
        r_pos=sp[:, None] * (pts - tpos),
        sp=sp,
        e=e,
        r_rot=sr[:, None] * e,
        sr=sr,
        r_post=sq * (qpos[7:] - rob.q_default),
        sq=sq,
        clear=clear,
        centres=centres,
        up_g=up(dh),
        r_ground=sg * hg,
        w_ground=sg * dhg,
        soles=soles,
        up_s=up(dh_s),
        r_contact=sc * (soles[:, 2] - h_s - c.sole_rest_z),
        sc=sc,
        gap=gap,
        ca=ca,
        cb=cb,
        normal=normal,
        r_self=ss * hs,
        w_self=ss * dhs,
        limb_a=ends_a,
        limb_b=ends_b,
        limb_u=u,
        limb_len=seg_len,
        r_dir=sd[:, None] * (u - hdir),
        sd=sd,
    )


def _dir_rows(problem: CompiledProblem, rows: _FrameRows):
    """Jacobians (L, 3, nv) of the limb-direction rows: d u = (I - u u^T) / |v| d v for
    the segment v = b - a, so d r / d tangent = sd (I - u u^T) / |v| (J_b - J_a)."""
    tree, f = problem.robot.tree, rows.frames
    if not problem.limb_body:
        return jnp.zeros((0, 3, tree.dof_ancestor.shape[-1] + 6), rows.r_dir.dtype)
    la = np.asarray([a for a, _ in problem.limb_body], np.int32)
    lb = np.asarray([b for _, b in problem.limb_body], np.int32)
    Ja, _ = point_jacobians(tree, f, la, rows.limb_a)
    Jb, _ = point_jacobians(tree, f, lb, rows.limb_b)
    u = rows.limb_u
    P = jnp.eye(3, dtype=u.dtype) - u[:, :, None] * u[:, None, :]
    scale = rows.sd / jnp.maximum(rows.limb_len, 1e-9)
    return scale[:, None, None] * (P @ (Jb - Ja))


def _rot_rows(problem: CompiledProblem, rows: _FrameRows):
    """Jacobians (Kr, 3, nv) of the orientation rows. A world angular velocity w of the
    body gives R_body <- exp([w]) R_body = R_body exp([R_body^T w]), so
    de = Jr^-1(e) R_body^T w and d e / d tangent = Jr^-1(e) R_body^T J_ang."""
    rb = np.asarray(problem.rot_body, np.int32)
    f = rows.frames
    _, Jang = point_jacobians(problem.robot.tree, f, rb, f.xpos[rb])
    return rows.sr[:, None, None] * (so3_right_jacobian_inv(rows.e) @ jnp.swapaxes(f.xmat[rb], -1, -2) @ Jang)


def frame_residual(problem: CompiledProblem, qpos, tpos, tquat, masks, *, jacobian: bool, features: bool = False):
    """Residual (m,) of one frame, and its Jacobian (m, nv) if asked.

    Rows: tracked positions (3 Kp), orientations (3 Kr), posture (n), every ground point
    (P), stance sole heights (Ks), every self-collision pair (C), limb directions (3 L). With ``features``, also
    returns what the pair terms need of this frame (one FK serves both): the horizontal
    sole positions (Ks, 2) and their Jacobians (Ks, 2, nv) (None without ``jacobian``), as
    a last element ``(xy, Jxy)``.

    ``masks`` is one frame of :func:`frame_masks`: the frame's padding mask, the validity
    of each position and orientation target in it, and the stance of each foot.
    Distances between capsules are differentiated at fixed closest points (their motion
    along the surfaces does not change the distance to first order): d dist = n.(v_a - v_b).
    """
    rows = _frame_rows(problem, qpos, tpos, tquat, masks)
    r = jnp.concatenate(
        [
            rows.r_pos.reshape(-1),
            rows.r_rot.reshape(-1),
            rows.r_post,
            rows.r_ground,
            rows.r_contact,
            rows.r_self,
            rows.r_dir.reshape(-1),
        ]
    )
    if not jacobian:
        return (r, (rows.soles[:, :2], None)) if features else r
    tree, col, f = problem.robot.tree, problem.robot.collision, rows.frames
    nv = qpos.shape[0] - 1
    pb = np.asarray(problem.pos_body, np.int32)
    Jlin, _ = point_jacobians(tree, f, pb, rows.pts)
    _, Js = sole_points(problem, f, jacobian=True)
    Jz = Js[:, 2, :] - jnp.einsum("ki,kin->kn", -rows.up_s[:, :2], Js[:, :2, :])
    Jg = projected_jacobians(tree, f, np.asarray(col.point_body, np.int32), rows.centres, rows.up_g)
    Jd = projected_jacobians(tree, f, np.asarray(col.body_a, np.int32), rows.ca, rows.normal) - projected_jacobians(
        tree, f, np.asarray(col.body_b, np.int32), rows.cb, rows.normal
    )
    n = nv - 6
    J = jnp.concatenate(
        [
            (rows.sp[:, None, None] * Jlin).reshape(-1, nv),
            _rot_rows(problem, rows).reshape(-1, nv),
            jnp.concatenate([jnp.zeros((n, 6), qpos.dtype), jnp.diag(rows.sq)], axis=1),
            rows.w_ground[:, None] * Jg,
            rows.sc[:, None] * Jz,
            rows.w_self[:, None] * Jd,
            _dir_rows(problem, rows).reshape(-1, nv),
        ]
    )
    return (r, J, (rows.soles[:, :2], Js[:, :2, :])) if features else (r, J)


def _velocity(q0, q1):
    """Tangent difference (nv,) q1 - q0 (root rotation as log(R0^T R1)) and, for the
    root-rotation block, Jr^-1(d) and E = exp(d)."""
    dq_rel = quat_mul(quat_conj(q0[3:7]), q1[3:7])
    d = quat_log(dq_rel)
    return jnp.concatenate([q1[0:3] - q0[0:3], d, q1[7:] - q0[7:]]), d, dq_rel


def _velocity_jacobians(d, dq_rel, nv, dtype):
    """d v / d q0, d v / d q1 (nv, nv) of :func:`_velocity`.

    Root orientation: d = log(R0^T R1). With R0 <- R0 exp(a), R1 <- R1 exp(b) (local
    tangents): R0^T R1 -> exp(-a) E exp(b) = E exp(b - E^T a), so
    dd/db = Jr^-1(d) and dd/da = -Jr^-1(d) E^T, E = exp(d).
    """
    Jri = so3_right_jacobian_inv(d)
    E = quat_to_mat(dq_rel)
    eye = jnp.eye(nv, dtype=dtype)
    return -eye.at[3:6, 3:6].set(Jri @ E.T), eye.at[3:6, 3:6].set(Jri)


def _joint_speed(problem: CompiledProblem, v, pmask):
    """Joint-speed rows (n,) (excess over the limit, rad/s) and their derivative (n,)
    with respect to the joints' tangent difference."""
    c = problem.clip
    speed = v[6:] * c.fps
    excess = speed - jnp.clip(speed, -c.velocity_limit, c.velocity_limit)
    sv = jnp.sqrt(c.velocity_weight) * pmask
    return sv * excess, sv * c.fps * (excess != 0).astype(v.dtype)


def pair_residual(problem: CompiledProblem, q0, q1, f0, f1, masks, *, jacobian: bool):
    """Residual between consecutive frames, and d/dq0, d/dq1 if asked.

    ``f0``, ``f1``: the two frames' features from :func:`frame_residual` (xy, Jacobian or None).
    ``masks``: one pair of :func:`pair_masks`. Rows: smoothness (nv), sole slide (2 Ks),
    joint speed beyond its limit (n).
    """
    c = problem.clip
    pmask, stance = masks
    scale = jnp.sqrt(c.smooth_weight) * c.fps * pmask
    v, d, dq_rel = _velocity(q0, q1)
    foot = np.asarray(problem.sole_foot, np.int32)
    sl = jnp.sqrt(c.contact_slide_weight * c.sole_scale) * c.fps * stance[foot]
    slide = sl[:, None] * (f1[0] - f0[0])
    r_v, active = _joint_speed(problem, v, pmask)
    r = jnp.concatenate([scale * v, slide.reshape(-1), r_v])
    if not jacobian:
        return r
    nv = v.shape[0]
    A, B = _velocity_jacobians(d, dq_rel, nv, q0.dtype)
    Js0 = (sl[:, None, None] * f0[1]).reshape(-1, nv)
    Js1 = (sl[:, None, None] * f1[1]).reshape(-1, nv)
    n = nv - 6
    Jv = jnp.concatenate([jnp.zeros((n, 6), q0.dtype), jnp.diag(active)], axis=1)
    JA = jnp.concatenate([scale[:, None] * A, -Js0, -Jv])
    JB = jnp.concatenate([scale[:, None] * B, Js1, Jv])
    return r, JA, JB


def triple_residual(problem: CompiledProblem, q0, q1, q2, mask, *, jacobian: bool):
    """Acceleration residual (nv,) of frames t-1, t, t+1 (velocity of (t, t+1) minus that
    of (t-1, t), per second squared), and its Jacobians d/dq0, d/dq1, d/dq2 if asked."""
    c = problem.clip
    scale = jnp.sqrt(c.accel_weight) * c.fps * c.fps * mask
    v01, d01, e01 = _velocity(q0, q1)
    v12, d12, e12 = _velocity(q1, q2)
    r = scale * (v12 - v01)
    if not jacobian:
        return r
    nv = v01.shape[0]
    A01, B01 = _velocity_jacobians(d01, e01, nv, q0.dtype)
    A12, B12 = _velocity_jacobians(d12, e12, nv, q0.dtype)
    s = scale[:, None]
    return r, -s * A01, s * (A12 - B01), s * B12


def total_cost(problem: CompiledProblem, qpos: jnp.ndarray, tpos=None, tquat=None) -> jnp.ndarray:
    """F(x) for one clip: qpos (T, nq)."""
    if tpos is None:
        tpos, tquat = targets(problem)
    r, (xy, _) = jax.vmap(lambda q, p, o, m: frame_residual(problem, q, p, o, m, jacobian=False, features=True))(
        qpos, tpos, tquat, frame_masks(problem)
    )
    rp = jax.vmap(lambda a, b, fa, fb, m: pair_residual(problem, a, b, (fa, None), (fb, None), m, jacobian=False))(
        qpos[:-1], qpos[1:], xy[:-1], xy[1:], pair_masks(problem)
    )
    ra = jax.vmap(lambda a, b, c, m: triple_residual(problem, a, b, c, m, jacobian=False))(
        qpos[:-2], qpos[1:-1], qpos[2:], triple_masks(problem)
    )
    return jnp.sum(r * r) + jnp.sum(rp * rp) + jnp.sum(ra * ra)


# --- normal equations ----------------------------------------------------------------
# The pair and triple Jacobians of the smoothness, acceleration and joint-speed rows are
# "diagonal plus a 3x3 root-rotation block" matrices (identities up to sign, except the
# root-orientation block Jr^-1 / Jr^-1 E^T). Their products are kept in that form, (T, nv)
# diagonals and (T, 3, 3) blocks, and expanded once: no dense (nv x nv) products of them.


def _dmat(diag, blk):
    """(diag (nv,), blk (3, 3)): the matrix diag(diag) with its [3:6, 3:6] block replaced."""
    return diag.at[3:6].set(0.0), blk


def _dmat_tmul(A, w, B):
    """A^T diag(w) B for two diag-block matrices, as a diag-block matrix."""
    (da, ba), (db, bb) = A, B
    return da * w * db, ba.T @ (w[3:6, None] * bb)


def _dmat_tvec(A, x):
    """A^T x for a diag-block matrix A."""
    d, b = A
    return (d * x).at[3:6].set(b.T @ x[3:6])


def _expand(diag, blk):
    """(..., nv), (..., 3, 3) -> dense (..., nv, nv)."""
    nv = diag.shape[-1]
    pad = [(0, 0)] * (blk.ndim - 2) + [(3, nv - 6), (3, nv - 6)]
    return diag[..., :, None] * jnp.eye(nv, dtype=diag.dtype) + jnp.pad(blk, pad)


def _pair_smooth_terms(problem: CompiledProblem, q0, q1, masks):
    """One pair's smoothness and joint-speed contributions as diag-block parts (Daa, Dbb,
    Dba), their gradients (ga, gb) and their cost (the slide rows: :func:`_slide_terms`)."""
    c = problem.clip
    pmask, _ = masks
    scale = jnp.sqrt(c.smooth_weight) * c.fps * pmask
    v, d, dq_rel = _velocity(q0, q1)
    nv = v.shape[0]
    Jri = so3_right_jacobian_inv(d)
    A = _dmat(-jnp.ones(nv, q0.dtype), -Jri @ quat_to_mat(dq_rel).T)
    B = _dmat(jnp.ones(nv, q0.dtype), Jri)
    r_v, active = _joint_speed(problem, v, pmask)
    w = scale * scale
    pad = jnp.zeros(6, q0.dtype)
    a2 = jnp.concatenate([pad, active * active])
    Daa = _dmat_tmul(A, w, A)
    Dbb = _dmat_tmul(B, w, B)
    Dba = _dmat_tmul(B, w, A)
    Daa, Dbb, Dba = (Daa[0] + a2, Daa[1]), (Dbb[0] + a2, Dbb[1]), (Dba[0] - a2, Dba[1])
    gv = jnp.concatenate([pad, active * r_v])
    ga = _dmat_tvec(A, w * v) - gv
    gb = _dmat_tvec(B, w * v) + gv
    cost = jnp.sum((scale * v) ** 2) + jnp.sum(r_v * r_v)
    return (Daa, Dbb, Dba), (ga, gb), cost


def _triple_terms(problem: CompiledProblem, q0, q1, q2, mask):
    """One triple's diag-block contributions: D at its three frames, L1 (t, t-1) and
    (t+1, t), L2 (t+1, t-1), the gradients at its three frames, and the cost."""
    c = problem.clip
    scale = jnp.sqrt(c.accel_weight) * c.fps * c.fps * mask
    v01, d01, e01 = _velocity(q0, q1)
    v12, d12, e12 = _velocity(q1, q2)
    nv = v01.shape[0]
    one = jnp.ones(nv, q0.dtype)
    J01, J12 = so3_right_jacobian_inv(d01), so3_right_jacobian_inv(d12)
    M0 = _dmat(one, J01 @ quat_to_mat(e01).T)
    M1 = _dmat(-2.0 * one, -J12 @ quat_to_mat(e12).T - J01)
    M2 = _dmat(one, J12)
    w = scale * scale
    acc = v12 - v01
    D = tuple(_dmat_tmul(M, w, M) for M in (M0, M1, M2))
    L1 = (_dmat_tmul(M1, w, M0), _dmat_tmul(M2, w, M1))
    L2 = _dmat_tmul(M2, w, M0)
    g = tuple(_dmat_tvec(M, w * acc) for M in (M0, M1, M2))
    return D, L1, L2, g, jnp.sum(w * acc * acc)


def foot_groups(problem: CompiledProblem):
    """Static tables of the feet (the recipe's contact links, ``sole_body``): each foot's
    body (F,), the collision ground points rigidly attached to a foot (its own and those
    on hinge-less bodies below it, like the T1's contact spheres) with their foot (Pf,),
    and the other ground points (Pn,). Rows on a foot move with its 6-D twist, so their
    Gauss-Newton blocks are built in that twist's space (see :func:`normal_equations`)."""
    return _foot_groups(
        problem.robot.tree.parents,
        problem.robot.tree.body_dof,
        problem.sole_body,
        problem.sole_foot,
        problem.robot.collision.point_body,
    )


@functools.lru_cache(maxsize=64)
def _foot_groups(parents, body_dof, sole_body, sole_foot, point_body):
    nfeet = max(sole_foot, default=-1) + 1
    feet = [-1] * nfeet
    for b, f in zip(sole_body, sole_foot, strict=True):
        feet[f] = b
    rigid_foot = {}  # body -> foot whose twist it shares
    for b, p in enumerate(parents):
        if b in feet:
            rigid_foot[b] = feet.index(b)
        elif p >= 0 and p in rigid_foot and body_dof[b] < 0:
            rigid_foot[b] = rigid_foot[p]
    on_foot = tuple(k for k, b in enumerate(point_body) if b in rigid_foot)
    other = tuple(k for k, b in enumerate(point_body) if b not in rigid_foot)
    return tuple(feet), on_foot, tuple(rigid_foot[point_body[k]] for k in on_foot), other


def _twist_rows(dirs, offsets):
    """Rows (k, 6) mapping a body twist (origin velocity v, world angular velocity w) to
    the velocity of points at world ``offsets`` (k, 3) from the origin along ``dirs``
    (k, 3): u . (v + w x r) = u . v + (r x u) . w."""
    return jnp.concatenate([dirs, jnp.cross(offsets, dirs)], axis=-1)


def _top_rows(values, k: int | None):
    """Indices of the k smallest ``values`` (all of them when k is None or not smaller)."""
    n = values.shape[0]
    if k is None or k >= n:
        return np.arange(n)
    return jax.lax.top_k(-values, k)[1]


def _frame_linearization(problem: CompiledProblem, qpos, tpos, tquat, masks, ground_rows, collision_rows):
    """One frame's part of the normal equations.

    Returns ``(D (nv, nv), g (nv,), cost, Jb (F, 6, nv), Mf (F, 6, 6), gf (F, 6),
    soles (Ks, 3), foot_x (F, 3))``: J^T J and J^T r of the dense rows (tracking, the
    ``ground_rows`` lowest ground points off the feet, the ``collision_rows`` closest
    self-collision pairs) plus the posture diagonal; the feet's twist Jacobians with the
    Gram matrix and gradient of their rows in twist space (their ground points, stance
    sole heights); and what the slide terms need. The cost counts every row.
    """
    rows = _frame_rows(problem, qpos, tpos, tquat, masks)
    tree, col, f = problem.robot.tree, problem.robot.collision, rows.frames
    dtype = qpos.dtype
    nv = qpos.shape[0] - 1
    feet, on_foot, on_foot_foot, other = foot_groups(problem)
    cost = sum(
        jnp.sum(r * r)
        for r in (rows.r_pos, rows.r_rot, rows.r_post, rows.r_ground, rows.r_contact, rows.r_self, rows.r_dir)
    )
    # dense rows
    pb = np.asarray(problem.pos_body, np.int32)
    Jlin, _ = point_jacobians(tree, f, pb, rows.pts)
    J = [(rows.sp[:, None, None] * Jlin).reshape(-1, nv), _rot_rows(problem, rows).reshape(-1, nv)]
    r = [rows.r_pos.reshape(-1), rows.r_rot.reshape(-1)]
    if problem.limb_body:
        J.append(_dir_rows(problem, rows).reshape(-1, nv))
        r.append(rows.r_dir.reshape(-1))
    if other:
        oth = np.asarray(other, np.int32)
        sel = jnp.asarray(oth)[_top_rows(rows.clear[oth], ground_rows)]
        body = jnp.asarray(col.point_body, jnp.int32)[sel]
        J.append(rows.w_ground[sel][:, None] * projected_jacobians(tree, f, body, rows.centres[sel], rows.up_g[sel]))
        r.append(rows.r_ground[sel])
    if col.num_pairs:
        sel = _top_rows(rows.gap, collision_rows)
        ba = jnp.asarray(col.body_a, jnp.int32)[sel]
        bb = jnp.asarray(col.body_b, jnp.int32)[sel]
        Jd = projected_jacobians(tree, f, ba, rows.ca[sel], rows.normal[sel]) - projected_jacobians(
            tree, f, bb, rows.cb[sel], rows.normal[sel]
        )
        J.append(rows.w_self[sel][:, None] * Jd)
        r.append(rows.r_self[sel])
    J = jnp.concatenate(J)
    r = jnp.concatenate(r)
    pad = jnp.zeros(6, dtype)
    D = J.T @ J + jnp.diag(jnp.concatenate([pad, rows.sq * rows.sq]))
    g = J.T @ r + jnp.concatenate([pad, rows.sq * rows.r_post])
    # feet: rows on a foot in the 6-D space of its twist
    F = len(feet)
    fb = np.asarray(feet, np.int32)
    lin, ang = point_jacobians(tree, f, fb, f.xpos[fb])
    Jb = jnp.concatenate([lin, ang], axis=1)  # (F, 6, nv)
    foot = np.asarray(problem.sole_foot, np.int32)
    onehot = jnp.asarray(np.eye(F, dtype=np.float32)[foot], dtype)  # (Ks, F)
    U = rows.sc[:, None] * _twist_rows(rows.up_s, rows.soles - f.xpos[fb[foot]])  # (Ks, 6)
    res = rows.r_contact
    if on_foot:
        idx = np.asarray(on_foot, np.int32)
        fidx = np.asarray(on_foot_foot, np.int32)
        Ug = rows.w_ground[idx][:, None] * _twist_rows(rows.up_g[idx], rows.centres[idx] - f.xpos[fb[fidx]])
        U = jnp.concatenate([U, Ug])
        res = jnp.concatenate([res, rows.r_ground[idx]])
        onehot = jnp.concatenate([onehot, jnp.asarray(np.eye(F, dtype=np.float32)[fidx], dtype)])
    Mf = jnp.einsum("kf,ki,kj->fij", onehot, U, U)
    gf = jnp.einsum("kf,ki,k->fi", onehot, U, res)
    return D, g, cost, Jb, Mf, gf, rows.soles, f.xpos[fb]


def _slide_terms(problem: CompiledProblem, soles0, soles1, fx0, fx1, masks):
    """Sole slide rows of one pair (t, t+1) in the feet's twist spaces: the Gram blocks
    M00 (F, 6, 6) at t, M11 at t+1, the cross block M10 = G1^T G0, the gradients g0, g1
    (F, 6) and the cost. A sole point k at r_k from its foot's origin moves horizontally
    by P (v + w x r_k) for a twist (v, w), P = [[1,0,0],[0,1,0]]."""
    c = problem.clip
    _, stance = masks
    foot = np.asarray(problem.sole_foot, np.int32)
    F = len(foot_groups(problem)[0])
    sl = jnp.sqrt(c.contact_slide_weight * c.sole_scale) * c.fps * stance[foot]
    r = sl[:, None] * (soles1[:, :2] - soles0[:, :2])  # (Ks, 2)
    ex = jnp.broadcast_to(jnp.eye(3, dtype=soles0.dtype)[:2], (soles0.shape[0], 2, 3))

    def rows(soles, fx):  # (Ks, 2, 6): horizontal velocity rows of each sole point
        return jnp.concatenate([ex, jnp.cross((soles - fx[foot])[:, None, :], ex)], axis=-1)

    G0 = -sl[:, None, None] * rows(soles0, fx0)
    G1 = sl[:, None, None] * rows(soles1, fx1)
    onehot = jnp.asarray(np.eye(F, dtype=np.float32)[foot], soles0.dtype)
    M00 = jnp.einsum("kf,kai,kaj->fij", onehot, G0, G0)
    M11 = jnp.einsum("kf,kai,kaj->fij", onehot, G1, G1)
    M10 = jnp.einsum("kf,kai,kaj->fij", onehot, G1, G0)
    g0 = jnp.einsum("kf,kai,ka->fi", onehot, G0, r)
    g1 = jnp.einsum("kf,kai,ka->fi", onehot, G1, r)
    return M00, M11, M10, g0, g1, jnp.sum(r * r)


def normal_equations(
    problem: CompiledProblem, qpos, tpos, tquat, *, ground_rows: int | None = None, collision_rows: int | None = None
):
    """Gauss-Newton blocks of the block-pentadiagonal system: D (T, nv, nv); L1 (T, nv, nv)
    with L1[t] = H[t, t-1]; L2 (T, nv, nv) with L2[t] = H[t, t-2]; gradient g (T, nv);
    and the cost F (every row counts).

    ``ground_rows`` / ``collision_rows``: per frame, only the lowest ground points off the
    feet and the closest self-collision pairs get Jacobian rows (None: all of them). A
    row left out is one whose smoothed hinge is ~0 and flat (see :func:`_soft_hinge`): it
    adds nothing to g or H. Rows on the feet (stance soles, slide, the feet's ground
    points) are assembled in each foot's 6-D twist space, J^T J = Jb^T (G^T G) Jb, which
    is exact and costs two small products per foot instead of one per row.
    """
    dtype = qpos.dtype
    D, g, cf, Jb, Mf, gf, soles, fx = jax.vmap(
        lambda q, p, o, m: _frame_linearization(problem, q, p, o, m, ground_rows, collision_rows)
    )(qpos, tpos, tquat, frame_masks(problem))
    nv = D.shape[-1]
    pm = pair_masks(problem)
    (Daa, Dbb, Dba), (ga, gb), cp = jax.vmap(lambda a, b, m: _pair_smooth_terms(problem, a, b, m))(
        qpos[:-1], qpos[1:], pm
    )
    M00, M11, M10, g0, g1, cs = jax.vmap(lambda a, b, xa, xb, m: _slide_terms(problem, a, b, xa, xb, m))(
        soles[:-1], soles[1:], fx[:-1], fx[1:], pm
    )
    Dt, L1t, L2t, gt, ca = jax.vmap(lambda a, b, c, m: _triple_terms(problem, a, b, c, m))(
        qpos[:-2], qpos[1:-1], qpos[2:], triple_masks(problem)
    )
    zf = jnp.zeros_like(M00[:1])
    Mf = Mf + jnp.concatenate([M00, zf]) + jnp.concatenate([zf, M11])
    zg = jnp.zeros_like(g0[:1])
    gf = gf + jnp.concatenate([g0, zg]) + jnp.concatenate([zg, g1])

    def shift(x, k, front):  # place a (T - k, ...) array at frames [0, T-k) or [k, T)
        z = jnp.zeros((k, *x.shape[1:]), x.dtype)
        return jnp.concatenate([x, z] if front else [z, x])

    # diagonals and 3x3 root blocks of the pair and triple terms, per frame
    dD = shift(Daa[0], 1, True) + shift(Dbb[0], 1, False)
    bD = shift(Daa[1], 1, True) + shift(Dbb[1], 1, False)
    g = g + shift(ga, 1, True) + shift(gb, 1, False)
    for off in range(3):  # frames t-1, t, t+1 of triple t
        dD = dD + jnp.concatenate([jnp.zeros((off, nv), dtype), Dt[off][0], jnp.zeros((2 - off, nv), dtype)])
        bD = bD + jnp.concatenate([jnp.zeros((off, 3, 3), dtype), Dt[off][1], jnp.zeros((2 - off, 3, 3), dtype)])
        g = g + jnp.concatenate([jnp.zeros((off, nv), dtype), gt[off], jnp.zeros((2 - off, nv), dtype)])
    dL1 = shift(Dba[0], 1, False) + shift(shift(L1t[0][0], 1, True), 1, False) + shift(L1t[1][0], 2, False)
    bL1 = shift(Dba[1], 1, False) + shift(shift(L1t[0][1], 1, True), 1, False) + shift(L1t[1][1], 2, False)
    # feet: D_t += sum_f Jb^T M Jb, g_t += sum_f Jb^T gf, L1_{t+1} += sum_f Jb_{t+1}^T M10 Jb_t
    MJ = jnp.einsum("tfab,tfbj->tfaj", Mf, Jb)
    D = D + jnp.einsum("tfai,tfaj->tij", Jb, MJ) + _expand(dD, bD)
    g = g + jnp.einsum("tfai,tfa->ti", Jb, gf)
    cost = jnp.sum(cf) + jnp.sum(cp) + jnp.sum(cs) + jnp.sum(ca)
    L1 = shift(jnp.einsum("tfai,tfab,tfbj->tij", Jb[1:], M10, Jb[:-1]), 1, False) + _expand(dL1, bL1)
    L2 = _expand(shift(L2t[0], 2, False), shift(L2t[1], 2, False))
    return D, L1, L2, g, cost
