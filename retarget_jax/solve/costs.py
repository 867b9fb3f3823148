"""Residuals of the retargeting objective and their analytic Jacobians (jit code).

The objective of one clip is a sum of squares over frames t, frame pairs (t, t+1) and
frame triples (t-1, t, t+1):

    F(x) = sum_t ||r_t(x_t)||^2 + sum_t ||p_t(x_t, x_{t+1})||^2 + sum_t ||a_t(x_{t-1}, x_t, x_{t+1})||^2

r_t (:func:`frame_residual`), per frame:
  - tracking: position targets (3 per point), orientation targets (3 per body, log map);
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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from retarget_jax.problem.compile import CompiledProblem, _scaled_figure
from retarget_jax.robots.collision import ground_clearance, ground_height, self_collision
from retarget_jax.robots.kinematics import forward_kinematics, point_jacobians, projected_jacobians
from retarget_jax.rotations import (
    quat_conj,
    quat_log,
    quat_mul,
    quat_rotate,
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
    orientation targets (T, Kr), stance (T, F)). A target whose human joint is missing in
    a frame is 0."""
    c = problem.clip
    return c.frame_mask, c.pos_valid, c.rot_valid, c.stance


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


def sole_points(problem: CompiledProblem, fk, *, jacobian: bool):
    """World sole points (Ks, 3) of the contact links and, if asked, their linear
    Jacobians (Ks, 3, nv)."""
    xpos, xquat = fk[0], fk[1]
    sb = jnp.asarray(problem.sole_body, jnp.int32)
    soles = xpos[sb] + quat_rotate(xquat[sb], problem.clip.sole_offset)
    if not jacobian:
        return soles, None
    J, _ = point_jacobians(problem.robot.tree, fk, sb, soles)
    return soles, J


def _height_rows(points, J, terrain):
    """Height above the terrain (k,) of world points (k, 3), and its Jacobian (k, nv) from
    the points' linear Jacobians (k, 3, nv) (None: no Jacobian)."""
    h, dh = ground_height(terrain, points[:, :2])
    z = points[:, 2] - h
    if J is None:
        return z, None
    return z, J[:, 2, :] - jnp.einsum("ki,kin->kn", dh, J[:, :2, :])


def frame_residual(problem: CompiledProblem, qpos, tpos, tquat, masks, *, jacobian: bool, features: bool = False):
    """Residual (m,) of one frame, and its Jacobian (m, nv) if asked.

    With ``features``, also returns what the pair terms need of this frame (one FK
    serves both): the horizontal sole positions (Ks, 2) and their Jacobians (Ks, 2, nv)
    (None without ``jacobian``), as a last element ``(xy, Jxy)``.

    ``masks`` is one frame of :func:`frame_masks`: the frame's padding mask, the validity
    of each position and orientation target in it, and the stance of each foot.

    Orientation residual e = log(R_target^T R_body). A world angular velocity w of the
    body gives R_body <- exp([w]) R_body = R_body exp([R_body^T w]), so
    de = Jr^-1(e) R_body^T w and d e / d tangent = Jr^-1(e) R_body^T J_ang.
    Distances between capsules are differentiated at fixed closest points (their motion
    along the surfaces does not change the distance to first order): d dist = n.(v_a - v_b).
    """
    out = _frame_terms(problem, qpos, tpos, tquat, masks, jacobian=jacobian)
    (r_a, r_b), (rp, sp), feats = out[0], out[1], out[-1]
    r = jnp.concatenate([r_a, rp, r_b])
    if not jacobian:
        return (r, feats) if features else r
    J_a, J_b = out[2]
    n = rp.shape[0]
    Jpost = jnp.concatenate([jnp.zeros((n, 6), qpos.dtype), jnp.diag(sp)], axis=1)
    J = jnp.concatenate([J_a, Jpost, J_b])
    return (r, J, feats) if features else (r, J)


def _frame_terms(problem: CompiledProblem, qpos, tpos, tquat, masks, *, jacobian: bool):
    """The rows of :func:`frame_residual` in three parts: ``(r_a, r_b)`` the dense rows
    (tracking; ground, contact, self-collision), ``(r_post, s_post)`` the posture rows
    (diagonal Jacobian ``s_post`` on the joints), then, with ``jacobian``, ``(J_a, J_b)``,
    and last the pair features ``(xy, Jxy)``. The posture rows are kept apart so that
    the normal equations add them as a diagonal instead of a dense product."""
    c, rob = problem.clip, problem.robot
    col = rob.collision
    tree = rob.tree
    fk = forward_kinematics(tree, qpos)
    xpos, xquat = fk[0], fk[1]
    pb = jnp.asarray(problem.pos_body, jnp.int32)
    rb = jnp.asarray(problem.rot_body, jnp.int32)
    qp = xquat[pb]
    pts = xpos[pb] + quat_rotate(qp, c.pos_offset)
    mask, pvalid, rvalid, stance = masks
    sp = (jnp.sqrt(c.pos_weight) * pvalid)[:, None] * mask
    sr = (jnp.sqrt(c.rot_weight) * rvalid)[:, None] * mask
    sq = jnp.sqrt(c.posture_weight) * mask
    qr = xquat[rb]
    e = quat_log(quat_mul(quat_conj(tquat), qr))
    # ground: every collision geom's lowest point above the terrain
    clear, centres, dh = ground_clearance(col, xpos, xquat, c.terrain)
    sg = jnp.sqrt(c.ground_weight) * mask
    hg, dhg = _soft_hinge(clear)
    # contact: stance soles at their flat-foot height
    soles, Js = sole_points(problem, fk, jacobian=jacobian)
    zs, Jz = _height_rows(soles, Js, c.terrain)
    foot = jnp.asarray(problem.sole_foot, jnp.int32)
    sc = jnp.sqrt(c.contact_height_weight * c.sole_scale) * stance[foot] * mask
    # self-collision: declared pairs kept their margin apart
    dist, ca, cb, normal = self_collision(col, xpos, xquat)
    hs, dhs = _soft_hinge(dist - col.margin)
    ss = jnp.sqrt(c.self_collision_weight) * mask
    r_a = jnp.concatenate([(sp * (pts - tpos)).reshape(-1), (sr * e).reshape(-1)])
    r_b = jnp.concatenate([sg * hg, sc * (zs - c.sole_rest_z), ss * hs])
    post = (sq * (qpos[7:] - rob.q_default), sq)
    feats = (soles[:, :2], None if Js is None else Js[:, :2, :])
    if not jacobian:
        return (r_a, r_b), post, feats
    Jlin, _ = point_jacobians(tree, fk, pb, pts)
    _, Jang = point_jacobians(tree, fk, rb, xpos[rb])
    # Ground and self-collision rows are one direction each: project before building.
    up = jnp.concatenate([-dh, jnp.ones_like(dh[:, :1])], axis=1)
    Jgz = projected_jacobians(tree, fk, jnp.asarray(col.point_body, jnp.int32), centres, up)
    Jd = (projected_jacobians(tree, fk, jnp.asarray(col.body_a, jnp.int32), ca, normal)
          - projected_jacobians(tree, fk, jnp.asarray(col.body_b, jnp.int32), cb, normal))
    Jrot = so3_right_jacobian_inv(e) @ jnp.swapaxes(quat_to_mat(qr), -1, -2) @ Jang
    J_a = jnp.concatenate([
        (sp[:, :, None] * Jlin).reshape(-1, Jlin.shape[-1]),
        (sr[:, :, None] * Jrot).reshape(-1, Jrot.shape[-1]),
    ])
    J_b = jnp.concatenate([
        (sg * dhg)[:, None] * Jgz,
        sc[:, None] * Jz,
        (ss * dhs)[:, None] * Jd,
    ])
    return (r_a, r_b), post, (J_a, J_b), feats


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
    foot = jnp.asarray(problem.sole_foot, jnp.int32)
    sl = jnp.sqrt(c.contact_slide_weight * c.sole_scale) * c.fps * stance[foot]
    slide = sl[:, None] * (f1[0] - f0[0])
    speed = v[6:] * c.fps
    excess = speed - jnp.clip(speed, -c.velocity_limit, c.velocity_limit)
    sv = jnp.sqrt(c.velocity_weight) * pmask
    r = jnp.concatenate([scale * v, slide.reshape(-1), sv * excess])
    if not jacobian:
        return r
    nv = v.shape[0]
    A, B = _velocity_jacobians(d, dq_rel, nv, q0.dtype)
    Js0 = (sl[:, None, None] * f0[1]).reshape(-1, nv)
    Js1 = (sl[:, None, None] * f1[1]).reshape(-1, nv)
    n = nv - 6
    active = sv * c.fps * (excess != 0).astype(q0.dtype)
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


def _stack_frames(problem: CompiledProblem, qpos, tpos, tquat, *, jacobian: bool):
    return jax.vmap(lambda q, p, o, m: frame_residual(problem, q, p, o, m, jacobian=jacobian, features=True))(
        qpos, tpos, tquat, frame_masks(problem))


def total_cost(problem: CompiledProblem, qpos: jnp.ndarray, tpos=None, tquat=None) -> jnp.ndarray:
    """F(x) for one clip: qpos (T, nq)."""
    if tpos is None:
        tpos, tquat = targets(problem)
    r, (xy, _) = _stack_frames(problem, qpos, tpos, tquat, jacobian=False)
    rp = jax.vmap(lambda a, b, fa, fb, m: pair_residual(problem, a, b, (fa, None), (fb, None), m, jacobian=False))(
        qpos[:-1], qpos[1:], xy[:-1], xy[1:], pair_masks(problem))
    ra = jax.vmap(lambda a, b, c, m: triple_residual(problem, a, b, c, m, jacobian=False))(
        qpos[:-2], qpos[1:-1], qpos[2:], triple_masks(problem))
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
    """(T, nv), (T, 3, 3) -> dense (T, nv, nv)."""
    nv = diag.shape[-1]
    M = diag[:, :, None] * jnp.eye(nv, dtype=diag.dtype)
    return M.at[:, 3:6, 3:6].add(blk)


def _pair_terms(problem: CompiledProblem, q0, q1, f0, f1, masks):
    """One pair's contributions: diag-block parts (Daa, Dbb, Dba), the dense slide rows
    (J0, J1, r_slide), the gradients (ga, gb) of the diag-block rows and the cost."""
    c = problem.clip
    pmask, stance = masks
    scale = jnp.sqrt(c.smooth_weight) * c.fps * pmask
    v, d, dq_rel = _velocity(q0, q1)
    nv = v.shape[0]
    Jri = so3_right_jacobian_inv(d)
    A = _dmat(-jnp.ones(nv, q0.dtype), -Jri @ quat_to_mat(dq_rel).T)
    B = _dmat(jnp.ones(nv, q0.dtype), Jri)
    foot = jnp.asarray(problem.sole_foot, jnp.int32)
    sl = jnp.sqrt(c.contact_slide_weight * c.sole_scale) * c.fps * stance[foot]
    r_s = (sl[:, None] * (f1[0] - f0[0])).reshape(-1)
    J0 = -(sl[:, None, None] * f0[1]).reshape(-1, nv)
    J1 = (sl[:, None, None] * f1[1]).reshape(-1, nv)
    speed = v[6:] * c.fps
    excess = speed - jnp.clip(speed, -c.velocity_limit, c.velocity_limit)
    sv = jnp.sqrt(c.velocity_weight) * pmask
    r_v = sv * excess
    active = sv * c.fps * (excess != 0).astype(q0.dtype)
    w = scale * scale
    pad = jnp.zeros(6, q0.dtype)
    a2 = jnp.concatenate([pad, active * active])
    Daa = _dmat_tmul(A, w, A)
    Dbb = _dmat_tmul(B, w, B)
    Dba = _dmat_tmul(B, w, A)
    Daa, Dbb, Dba = (Daa[0] + a2, Daa[1]), (Dbb[0] + a2, Dbb[1]), (Dba[0] - a2, Dba[1])
    gv = jnp.concatenate([pad, active * r_v])
    ga = _dmat_tvec(A, scale * scale * v) - gv
    gb = _dmat_tvec(B, scale * scale * v) + gv
    cost = jnp.sum((scale * v) ** 2) + jnp.sum(r_s * r_s) + jnp.sum(r_v * r_v)
    return (Daa, Dbb, Dba), (J0, J1, r_s), (ga, gb), cost


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


def normal_equations(problem: CompiledProblem, qpos, tpos, tquat):
    """Gauss-Newton blocks of the block-pentadiagonal system: D (T, nv, nv); L1 (T, nv, nv)
    with L1[t] = H[t, t-1]; L2 (T, nv, nv) with L2[t] = H[t, t-2]; gradient g (T, nv);
    and the cost F."""
    T = qpos.shape[0]
    (r_a, r_b), (rp, sp), (J_a, J_b), (xy, Jxy) = jax.vmap(
        lambda q, p, o, m: _frame_terms(problem, q, p, o, m, jacobian=True))(qpos, tpos, tquat, frame_masks(problem))
    J = jnp.concatenate([J_a, J_b], axis=1)
    r = jnp.concatenate([r_a, r_b], axis=1)
    D = jnp.einsum("tmi,tmj->tij", J, J)
    g = jnp.einsum("tmi,tm->ti", J, r)
    nv = D.shape[-1]
    pad = jnp.zeros((T, 6), qpos.dtype)
    # diagonal and 3x3 root-block accumulators (posture rows, pair and triple terms)
    dD = jnp.concatenate([pad, sp * sp], axis=1)
    bD = jnp.zeros((T, 3, 3), qpos.dtype)
    g = g + jnp.concatenate([pad, sp * rp], axis=1)
    (Daa, Dbb, Dba), (J0, J1, r_s), (ga, gb), cp = jax.vmap(
        lambda a, b, fa, fb, ja, jb, m: _pair_terms(problem, a, b, (fa, ja), (fb, jb), m))(
        qpos[:-1], qpos[1:], xy[:-1], xy[1:], Jxy[:-1], Jxy[1:], pair_masks(problem))
    dD = dD.at[:-1].add(Daa[0]).at[1:].add(Dbb[0])
    bD = bD.at[:-1].add(Daa[1]).at[1:].add(Dbb[1])
    dL1 = jnp.zeros((T, nv), qpos.dtype).at[1:].set(Dba[0])
    bL1 = jnp.zeros((T, 3, 3), qpos.dtype).at[1:].set(Dba[1])
    g = g.at[:-1].add(ga + jnp.einsum("tki,tk->ti", J0, r_s)).at[1:].add(gb + jnp.einsum("tki,tk->ti", J1, r_s))
    D = D.at[:-1].add(jnp.einsum("tki,tkj->tij", J0, J0)).at[1:].add(jnp.einsum("tki,tkj->tij", J1, J1))
    L1 = jnp.zeros_like(D).at[1:].set(jnp.einsum("tki,tkj->tij", J1, J0))
    Dt, L1t, L2t, gt, ca = jax.vmap(lambda a, b, c, m: _triple_terms(problem, a, b, c, m))(
        qpos[:-2], qpos[1:-1], qpos[2:], triple_masks(problem))
    for off in range(3):
        dD = dD.at[off:off + T - 2].add(Dt[off][0])
        bD = bD.at[off:off + T - 2].add(Dt[off][1])
        g = g.at[off:off + T - 2].add(gt[off])
    dL1 = dL1.at[1:-1].add(L1t[0][0]).at[2:].add(L1t[1][0])
    bL1 = bL1.at[1:-1].add(L1t[0][1]).at[2:].add(L1t[1][1])
    D = D + _expand(dD, bD)
    L1 = L1 + _expand(dL1, bL1)
    L2 = _expand(jnp.zeros((T, nv), qpos.dtype).at[2:].set(L2t[0]),
                 jnp.zeros((T, 3, 3), qpos.dtype).at[2:].set(L2t[1]))
    cost = jnp.sum(r * r) + jnp.sum(rp * rp) + jnp.sum(cp) + jnp.sum(ca)
    return D, L1, L2, g, cost
