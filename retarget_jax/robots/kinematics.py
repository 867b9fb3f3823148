"""Forward kinematics and body Jacobians of a KinematicTree (jit code).

:func:`body_frames` computes every body's world position and rotation matrix, and every
hinge's world anchor and axis, one tree *level* at a time: all bodies at one depth in one
vector op (the G1's 30 bodies are 11 levels), so XLA sees a few small dependent blocks
rather than one per body, which keeps the solver's compile short. Rotation matrices
rather than quaternions: a level is a handful of batched 3x3 products and a Rodrigues
formula per hinge (a third of the HLO ops of the quaternion chain). :func:`body_poses`
converts to quaternions for results and writers. Parity with ``mujoco.mj_kinematics`` is
tested to 1e-5 m.

Jacobians are analytic, from the tree (derivation):
  a hinge i on body c with world axis a_i and world anchor o_i rotates every descendant
  point p with linear velocity a_i x (p - o_i) and angular velocity a_i per unit rate;
  the root translation moves every point by I; a root rotation rate w in the root frame
  is a world angular velocity R_root w, giving linear velocity (R_root w) x (p - p_root)
  = -[p - p_root]x R_root w.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax.numpy as jnp
import mujoco
import numpy as np

from retarget_jax.errors import SolveError
from retarget_jax.robots.spec import KinematicTree, RobotSpec
from retarget_jax.rotations import (
    continuous_quat,
    mat_to_quat,
    quat_exp,
    quat_mul,
    quat_normalize,
    quat_to_mat,
    skew,
)


class BodyFrames(NamedTuple):
    """World frames of a robot's bodies and hinges (any leading axes ``...``)."""

    xpos: jnp.ndarray  # (..., B, 3) body origins
    xmat: jnp.ndarray  # (..., B, 3, 3) body -> world rotations
    anchor: jnp.ndarray  # (..., n, 3) hinge anchors
    axis: jnp.ndarray  # (..., n, 3) hinge axes (unit)


def body_frames(tree: KinematicTree, qpos: jnp.ndarray) -> BodyFrames:
    """World frames of all bodies and hinges for qpos (..., 7 + n): root position, root
    quaternion wxyz (normalised here, as MuJoCo does), hinge angles; any leading axes.

    A body without a hinge has zero ``jnt_pos`` / ``jnt_axis`` and angle 0, so the hinge
    step (Rodrigues' formula R = I + sin(q) K + (1 - cos(q)) K^2, K = [axis]x) is the
    identity for it.
    """
    lead = qpos.shape[:-1]
    n = tree.num_dof
    dtype = qpos.dtype
    plan = _level_plan(tree)
    consts = _tree_constants(tree, dtype)
    root_R = quat_to_mat(quat_normalize(qpos[..., 3:7]))
    q_ext = jnp.concatenate([qpos[..., 7:], jnp.zeros((*lead, 1), dtype)], axis=-1)  # index -1 -> 0
    pos_parts, rot_parts, anchor_parts, axis_parts = [], [], [], []
    for lv in plan.levels:
        idx = np.asarray(lv.bodies)
        if lv.parent_slots is None:  # the root, or static bodies on the world
            p = jnp.broadcast_to(consts.body_pos[idx], (*lead, len(idx), 3))
            R = jnp.broadcast_to(consts.body_R[idx], (*lead, len(idx), 3, 3))
            if lv.root_slot is not None:
                p = p.at[..., lv.root_slot, :].set(qpos[..., 0:3])
                R = R.at[..., lv.root_slot, :, :].set(root_R)
        else:
            P = pos_parts[0] if len(pos_parts) == 1 else jnp.concatenate(pos_parts, axis=-2)
            RR = rot_parts[0] if len(rot_parts) == 1 else jnp.concatenate(rot_parts, axis=-3)
            par = np.asarray(lv.parent_slots)
            Rp = RR[..., par, :, :]
            p = P[..., par, :] + jnp.einsum("...bij,bj->...bi", Rp, consts.body_pos[idx])
            R = jnp.einsum("...bij,bjk->...bik", Rp, consts.body_R[idx])
            if lv.has_dof:
                a = q_ext[..., np.asarray(lv.dofs)]
                anchor = p + jnp.einsum("...bij,bj->...bi", R, consts.jnt_pos[idx])
                axis = jnp.einsum("...bij,bj->...bi", R, consts.jnt_axis[idx])
                Rh = (
                    consts.eye
                    + jnp.sin(a)[..., None, None] * consts.K[idx]
                    + (1.0 - jnp.cos(a))[..., None, None] * consts.K2[idx]
                )
                R = jnp.einsum("...bij,...bjk->...bik", R, Rh)
                p = anchor - jnp.einsum("...bij,bj->...bi", R, consts.jnt_pos[idx])
                anchor_parts.append(anchor)
                axis_parts.append(axis)
        pos_parts.append(p)
        rot_parts.append(R)
    back = np.asarray(plan.body_order)
    xpos = jnp.concatenate(pos_parts, axis=-2)[..., back, :]
    xmat = jnp.concatenate(rot_parts, axis=-3)[..., back, :, :]
    if n:
        dof_back = np.asarray(plan.dof_order)
        anchors = jnp.concatenate(anchor_parts, axis=-2)[..., dof_back, :]
        axes = jnp.concatenate(axis_parts, axis=-2)[..., dof_back, :]
    else:
        anchors = axes = jnp.zeros((*lead, 0, 3), dtype)
    return BodyFrames(xpos, xmat, anchors, axes)


def body_poses(tree: KinematicTree, qpos: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """World body poses for qpos (..., nq): xpos (..., B, 3), xquat (..., B, 4) wxyz.

    For a trajectory (qpos with a frame axis, (..., T, nq)) each body's quaternion keeps
    one sign along T (:func:`~retarget_jax.rotations.continuous_quat`), the convention
    :func:`host_body_poses` follows too.
    """
    f = body_frames(tree, qpos)
    xquat = mat_to_quat(f.xmat)
    if qpos.ndim >= 2:
        xquat = continuous_quat(xquat, axis=-3)
    return f.xpos, xquat


class _Consts(NamedTuple):
    body_pos: jnp.ndarray  # (B, 3)
    body_R: jnp.ndarray  # (B, 3, 3)
    jnt_pos: jnp.ndarray  # (B, 3)
    jnt_axis: jnp.ndarray  # (B, 3)
    K: jnp.ndarray  # (B, 3, 3) [axis]x
    K2: jnp.ndarray  # (B, 3, 3) [axis]x^2
    eye: jnp.ndarray  # (3, 3)


def _tree_constants(tree: KinematicTree, dtype) -> _Consts:
    """The tree's offsets as arrays of ``dtype``, with the body rotations and the hinge
    axes' cross-product matrices (traced when the tree's arrays are)."""
    c = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    axis = c(tree.jnt_axis)
    K = skew(axis)
    return _Consts(
        c(tree.body_pos), quat_to_mat(c(tree.body_quat)), c(tree.jnt_pos), axis, K, K @ K, jnp.eye(3, dtype=dtype)
    )


class _Level(NamedTuple):
    bodies: tuple[int, ...]  # body indices at this depth
    parent_slots: tuple[int, ...] | None  # each body's parent in the level-ordered arrays
    root_slot: int | None  # position of the floating base in this level, if here
    has_dof: bool
    dofs: tuple[int, ...]  # each body's hinge (-1: none)


class _LevelPlan(NamedTuple):
    levels: tuple[_Level, ...]
    body_order: tuple[int, ...]  # body -> its slot in the level-ordered arrays
    dof_order: tuple[int, ...]  # hinge -> its slot among the level-ordered hinge bodies


@functools.lru_cache(maxsize=64)
def _level_plan_cached(parents: tuple[int, ...], body_dof: tuple[int, ...], root: int) -> _LevelPlan:
    levels = []
    slot: dict[int, int] = {}
    dof_slot: dict[int, int] = {}
    ndof_slots = 0
    for level in _levels(parents):
        top = parents[level[0]] < 0
        dofs = tuple(body_dof[b] for b in level)
        has_dof = (not top) and any(d >= 0 for d in dofs)
        levels.append(
            _Level(
                bodies=level,
                parent_slots=None if top else tuple(slot[parents[b]] for b in level),
                root_slot=level.index(root) if top and root in level else None,
                has_dof=has_dof,
                dofs=dofs,
            )
        )
        for b in level:
            slot[b] = len(slot)
        if has_dof:
            for k, d in enumerate(dofs):
                if d >= 0:
                    dof_slot[d] = ndof_slots + k
            ndof_slots += len(level)
    n = max((d for d in body_dof if d >= 0), default=-1) + 1
    return _LevelPlan(tuple(levels), tuple(slot[b] for b in range(len(parents))), tuple(dof_slot[i] for i in range(n)))


def _level_plan(tree: KinematicTree) -> _LevelPlan:
    return _level_plan_cached(tuple(tree.parents), tuple(tree.body_dof), int(tree.root))


def _levels(parents: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    depth: list[int] = []
    for p in parents:
        depth.append(0 if p < 0 else depth[p] + 1)
    return tuple(tuple(b for b, d in enumerate(depth) if d == k) for k in range(max(depth, default=-1) + 1))


def tree_levels(tree: KinematicTree) -> tuple[tuple[int, ...], ...]:
    """Bodies grouped by depth below the world (static; parents come before children)."""
    return _levels(tuple(tree.parents))


def point_jacobians(tree: KinematicTree, frames: BodyFrames, bodies: jnp.ndarray, points_w: jnp.ndarray):
    """Linear and angular Jacobians (K, 3, nv) of world points attached to ``bodies`` (K,)
    (static or traced indices), for one frame's :class:`BodyFrames`.

    ``points_w`` (K, 3) are world positions of the points (body origin plus offset).
    The angular part is the body's world angular velocity per unit tangent.
    """
    xpos, xmat, anchors, axes = frames
    K = points_w.shape[0]
    R_root = xmat[tree.root]
    mask = jnp.asarray(tree.dof_ancestor, points_w.dtype)[bodies]  # (K, n)
    lever = points_w[:, None, :] - anchors[None, :, :]  # (K, n, 3)
    Jlin_h = jnp.cross(jnp.broadcast_to(axes[None], lever.shape), lever) * mask[..., None]
    Jang_h = axes[None, :, :] * mask[..., None]
    eye = jnp.broadcast_to(jnp.eye(3, dtype=points_w.dtype), (K, 3, 3))
    Jlin_rot = -skew(points_w - xpos[tree.root]) @ R_root
    Jlin = jnp.concatenate([eye, Jlin_rot, jnp.swapaxes(Jlin_h, 1, 2)], axis=-1)
    Jang = jnp.concatenate(
        [jnp.zeros_like(eye), jnp.broadcast_to(R_root, (K, 3, 3)), jnp.swapaxes(Jang_h, 1, 2)], axis=-1
    )
    return Jlin, Jang


def projected_jacobians(
    tree: KinematicTree, frames: BodyFrames, bodies: jnp.ndarray, points_w: jnp.ndarray, dirs_w: jnp.ndarray
) -> jnp.ndarray:
    """Rows (K, nv): d (u_k . p_k) / d tangent for world points p_k (K, 3) attached to
    ``bodies`` (K,), along fixed world directions u_k (K, 3).

    The same derivation as :func:`point_jacobians`, contracted with u before anything is
    materialised (one row per point instead of three): hinge i gives
    u . (a_i x (p - o_i)) = a_i . ((p - o_i) x u), the root translation u, and a root
    rotation rate w (root frame) gives u . ((R w) x (p - p_root)) = w . R^T ((p - p_root) x u).
    """
    xpos, xmat, anchors, axes = frames
    R_root = xmat[tree.root]
    mask = jnp.asarray(tree.dof_ancestor, points_w.dtype)[bodies]  # (K, n)
    lever = points_w[:, None, :] - anchors[None, :, :]  # (K, n, 3)
    hinge = jnp.sum(axes[None] * jnp.cross(lever, dirs_w[:, None, :]), axis=-1) * mask
    rot = jnp.cross(points_w - xpos[tree.root], dirs_w) @ R_root
    return jnp.concatenate([dirs_w, rot, hinge], axis=-1)


def integrate(qpos: jnp.ndarray, delta: jnp.ndarray) -> jnp.ndarray:
    """qpos (7+n) (+) tangent delta (6+n): root position in world, root rotation in root frame."""
    pos = qpos[0:3] + delta[0:3]
    quat = quat_normalize(quat_mul(qpos[3:7], quat_exp(delta[3:6])))
    return jnp.concatenate([pos, quat, qpos[7:] + delta[6:]])


def host_body_poses(robot: RobotSpec | mujoco.MjModel, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World body poses by MuJoCo C ``mj_kinematics``, one frame at a time.

    Args:
        robot: a RobotSpec or its ``mujoco.MjModel``.
        qpos: (..., nq) root position, root quaternion wxyz, hinge joints.

    Returns:
        xpos (..., B, 3), xquat (..., B, 4) wxyz, float64, bodies in MJCF order without
        the world body: the order of ``RobotSpec.body_names`` and of the JAX
        :func:`~retarget_jax.robots.kinematics.body_poses`. With a frame axis (qpos
        (..., T, nq)) the quaternions keep one sign along T as :func:`body_poses` does.
    """
    m = robot.mj_model if isinstance(robot, RobotSpec) else robot
    qpos = np.asarray(qpos, np.float64)
    if qpos.ndim < 1 or qpos.shape[-1] != m.nq:
        raise SolveError(f"host_body_poses: expected qpos (..., {m.nq}), got shape {qpos.shape}")
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
    xquat = xquat.reshape(*lead, B, 4)
    if qpos.ndim >= 2:
        xquat = continuous_quat(xquat, axis=-3)
    return xpos.reshape(*lead, B, 3), xquat
