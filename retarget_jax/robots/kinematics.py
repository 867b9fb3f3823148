"""Forward kinematics and body Jacobians of a KinematicTree (jit code).

FK walks the bodies in MJCF order (parents before children) with one small vector op per
body; under ``vmap`` over frames and clips each op becomes one fused loop over the batch,
which is several times cheaper than a general ``mjx.kinematics`` call (that also computes
geoms, sites and inertial frames we do not need). Parity with ``mujoco.mj_kinematics``
is tested to 1e-5 m.

Jacobians are analytic, from the tree (derivation):
  a hinge i on body c with world axis a_i and world anchor o_i rotates every descendant
  point p with linear velocity a_i x (p - o_i) and angular velocity a_i per unit rate;
  the root translation moves every point by I; a root rotation rate w in the root frame
  is a world angular velocity R_root w, giving linear velocity (R_root w) x (p - p_root)
  = -[p - p_root]x R_root w.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from retarget_jax.errors import SolveError
from retarget_jax.robots.spec import KinematicTree, RobotSpec
from retarget_jax.rotations import (
    axis_angle_to_quat,
    quat_exp,
    quat_mul,
    quat_normalize,
    quat_rotate,
    quat_to_mat,
    skew,
)


def forward_kinematics(tree: KinematicTree, qpos: jnp.ndarray):
    """World poses of all bodies for one qpos (7 + n).

    Returns:
        xpos (B, 3), xquat (B, 4) wxyz, hinge anchors (n, 3) and axes (n, 3) in the world.
    """
    n = tree.num_dof
    root_pos = qpos[0:3]
    root_quat = quat_normalize(qpos[3:7])
    joints = qpos[7:]
    xpos: list = [None] * tree.num_bodies
    xquat: list = [None] * tree.num_bodies
    anchors: list = [None] * n
    axes: list = [None] * n
    for b, p in enumerate(tree.parents):
        if b == tree.root:
            xpos[b], xquat[b] = root_pos, root_quat
            continue
        if p < 0:  # a static body attached to the world
            pos, quat = tree.body_pos[b], tree.body_quat[b]
        else:
            pos = xpos[p] + quat_rotate(xquat[p], tree.body_pos[b])
            quat = quat_mul(xquat[p], tree.body_quat[b])
        i = tree.body_dof[b]
        if i >= 0:
            anchor = pos + quat_rotate(quat, tree.jnt_pos[b])
            axis_w = quat_rotate(quat, tree.jnt_axis[b])
            quat = quat_mul(quat, axis_angle_to_quat(tree.jnt_axis[b], joints[i]))
            pos = anchor - quat_rotate(quat, tree.jnt_pos[b])
            anchors[i], axes[i] = anchor, axis_w
        # A fusion barrier per body: without it XLA fuses the whole dependent chain of
        # small quaternion ops into one kernel that recomputes shared producers, and
        # compile and run time grow exponentially with the tree depth (seen on CPU).
        xpos[b], xquat[b] = jax.lax.optimization_barrier((pos, quat))
    z = jnp.zeros((0, 3), qpos.dtype)
    return (
        jnp.stack(xpos),
        jnp.stack(xquat),
        jnp.stack(anchors) if n else z,
        jnp.stack(axes) if n else z,
    )


def point_jacobians(tree: KinematicTree, fk, bodies: jnp.ndarray, points_w: jnp.ndarray):
    """Linear and angular Jacobians (K, 3, nv) of world points attached to ``bodies`` (K,).

    ``points_w`` (K, 3) are world positions of the points (body origin plus offset).
    The angular part is the body's world angular velocity per unit tangent.
    """
    xpos, xquat, anchors, axes = fk
    K = bodies.shape[0]
    R_root = quat_to_mat(xquat[tree.root])
    mask = tree.dof_ancestor[bodies]  # (K, n)
    lever = points_w[:, None, :] - anchors[None, :, :]  # (K, n, 3)
    Jlin_h = jnp.cross(jnp.broadcast_to(axes[None], lever.shape), lever) * mask[..., None]
    Jang_h = axes[None, :, :] * mask[..., None]
    eye = jnp.broadcast_to(jnp.eye(3, dtype=points_w.dtype), (K, 3, 3))
    Jlin_rot = -skew(points_w - xpos[tree.root]) @ R_root
    Jlin = jnp.concatenate([eye, Jlin_rot, jnp.swapaxes(Jlin_h, 1, 2)], axis=-1)
    Jang = jnp.concatenate(
        [jnp.zeros_like(eye), jnp.broadcast_to(R_root, (K, 3, 3)), jnp.swapaxes(Jang_h, 1, 2)], axis=-1)
    return Jlin, Jang


def projected_jacobians(tree: KinematicTree, fk, bodies: jnp.ndarray, points_w: jnp.ndarray,
                        dirs_w: jnp.ndarray) -> jnp.ndarray:
    """Rows (K, nv): d (u_k . p_k) / d tangent for world points p_k (K, 3) attached to
    ``bodies`` (K,), along fixed world directions u_k (K, 3).

    The same derivation as :func:`point_jacobians`, contracted with u before anything is
    materialised (one row per point instead of three): hinge i gives
    u . (a_i x (p - o_i)) = a_i . ((p - o_i) x u), the root translation u, and a root
    rotation rate w (root frame) gives u . ((R w) x (p - p_root)) = w . R^T ((p - p_root) x u).
    """
    xpos, xquat, anchors, axes = fk
    R_root = quat_to_mat(xquat[tree.root])
    mask = tree.dof_ancestor[bodies]  # (K, n)
    lever = points_w[:, None, :] - anchors[None, :, :]  # (K, n, 3)
    hinge = jnp.sum(axes[None] * jnp.cross(lever, dirs_w[:, None, :]), axis=-1) * mask
    rot = jnp.cross(points_w - xpos[tree.root], dirs_w) @ R_root
    return jnp.concatenate([dirs_w, rot, hinge], axis=-1)


def integrate(qpos: jnp.ndarray, delta: jnp.ndarray) -> jnp.ndarray:
    """qpos (7+n) (+) tangent delta (6+n): root position in world, root rotation in root frame."""
    pos = qpos[0:3] + delta[0:3]
    quat = quat_normalize(quat_mul(qpos[3:7], quat_exp(delta[3:6])))
    return jnp.concatenate([pos, quat, qpos[7:] + delta[6:]])


def _tree_levels(tree: KinematicTree) -> tuple[tuple[int, ...], ...]:
    """Bodies grouped by depth below the world (static; parents come before children)."""
    depth: list[int] = []
    for p in tree.parents:
        depth.append(0 if p < 0 else depth[p] + 1)
    return tuple(tuple(b for b, d in enumerate(depth) if d == k) for k in range(max(depth, default=-1) + 1))


def body_poses(tree: KinematicTree, qpos: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """World body poses for qpos (..., nq): xpos (..., B, 3), xquat (..., B, 4) wxyz.

    The same kinematics as :func:`forward_kinematics` (checked against MuJoCo in
    tests/test_metrics_batch.py), computed one tree *level* at a time: all
    bodies at one depth in one vector op, any leading axes at once. The G1's 30 bodies
    are 11 levels, so XLA sees 11 small blocks instead of 30 dependent ones and compiles
    the metrics several times faster; the metrics need no anchors, axes or Jacobians.
    A body without a hinge has zero ``jnt_pos`` / ``jnt_axis`` and angle 0, so the hinge
    step is the identity for it.
    """
    lead = qpos.shape[:-1]
    root_pos = qpos[..., 0:3]
    root_quat = quat_normalize(qpos[..., 3:7])
    q_ext = jnp.concatenate([qpos[..., 7:], jnp.zeros((*lead, 1), qpos.dtype)], axis=-1)  # index -1 -> 0
    slot: dict[int, int] = {}  # body -> position in the level-ordered arrays
    pos_parts, quat_parts = [], []
    for level in _tree_levels(tree):
        idx = np.asarray(level)
        if tree.parents[level[0]] < 0:  # the root, or static bodies on the world
            pos = jnp.broadcast_to(jnp.asarray(tree.body_pos)[idx], (*lead, len(level), 3))
            quat = jnp.broadcast_to(jnp.asarray(tree.body_quat)[idx], (*lead, len(level), 4))
            if tree.root in level:
                r = level.index(tree.root)
                pos = pos.at[..., r, :].set(root_pos)
                quat = quat.at[..., r, :].set(root_quat)
        else:
            par = np.asarray([slot[tree.parents[b]] for b in level])
            ppos = jnp.concatenate(pos_parts, axis=-2)[..., par, :]
            pquat = jnp.concatenate(quat_parts, axis=-2)[..., par, :]
            pos = ppos + quat_rotate(pquat, tree.body_pos[idx])
            quat = quat_mul(pquat, tree.body_quat[idx])
            dof = np.asarray([tree.body_dof[b] for b in level])
            if np.any(dof >= 0):
                jp, ja = tree.jnt_pos[idx], tree.jnt_axis[idx]
                anchor = pos + quat_rotate(quat, jp)
                quat = quat_mul(quat, axis_angle_to_quat(ja, q_ext[..., dof]))
                pos = anchor - quat_rotate(quat, jp)
        for b in level:
            slot[b] = len(slot)
        pos_parts.append(pos)
        quat_parts.append(quat)
    back = np.asarray([slot[b] for b in range(len(tree.parents))])
    return jnp.concatenate(pos_parts, axis=-2)[..., back, :], jnp.concatenate(quat_parts, axis=-2)[..., back, :]


def host_forward_kinematics(robot: RobotSpec | mujoco.MjModel, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World body poses by MuJoCo C ``mj_kinematics``, one frame at a time.

    Args:
        robot: a RobotSpec or its ``mujoco.MjModel``.
        qpos: (..., nq) root position, root quaternion wxyz, hinge joints.

    Returns:
        xpos (..., B, 3), xquat (..., B, 4) wxyz, float64, bodies in MJCF order without
        the world body: the order of ``RobotSpec.body_names`` and of the JAX
        :func:`~retarget_jax.robots.kinematics.forward_kinematics`.
    """
    m = robot.mj_model if isinstance(robot, RobotSpec) else robot
    qpos = np.asarray(qpos, np.float64)
    if qpos.ndim < 1 or qpos.shape[-1] != m.nq:
        raise SolveError(f"host_forward_kinematics: expected qpos (..., {m.nq}), got shape {qpos.shape}")
    lead = qpos.shape[:-1]
    flat = qpos.reshape(-1, m.nq)
    d = mujoco.MjData(m)
    B = m.nbody - 1
    xpos = np.empty((flat.shape[0], B, 3))
    xquat = np.empty((flat.shape[0], B, 4))
    for t, q in enumerate(flat):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        xpos[t] = d.xpos[1:]
        xquat[t] = d.xquat[1:]
    return xpos.reshape(*lead, B, 3), xquat.reshape(*lead, B, 4)
