"""SMPL-family forward kinematics of the 22 body joints (jit code, with a host wrapper).

The model's rule (smplx ``batch_rigid_transform``), per frame, with local rotations
``R_j = exp(pose_j)`` (axis-angle in the SMPL canonical frame; ``pose_0`` is the global
``root_orient``) and rest joints ``J``:

    G_0 = R_0,            p_0 = J_0 + trans
    G_j = G_parent R_j,   p_j = p_parent + G_parent (J_j - J_parent)

The root rotates about ``J_0``, so ``J_0`` itself is not rotated. ``G_j`` is the joint's
global frame: identity axes of the canonical body, carried into the (AMASS, Z-up) world.

:func:`body_fk` is one frame, plain JAX (compose with vmap, jit, grad). The host entry
:func:`smpl_joint_poses` pads the frame count to a power of two (at least 16) before
one jitted vmap call, so clips of many lengths share a few small compiles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from retarget_jax.body_models.topology import NUM_BODY_JOINTS, SMPL_BODY_PARENTS
from retarget_jax.rotations import quat_exp, quat_mul, quat_normalize, quat_rotate

__all__ = ["body_fk", "smpl_joint_poses"]


def body_fk(rest_joints: jax.Array, pose_aa: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posed body joints of one frame, without the translation.

    Args:
        rest_joints: (22, 3) rest joints, SMPL canonical frame.
        pose_aa: (22, 3) axis-angle local rotations, ``pose_aa[0]`` the root orientation.

    Returns:
        positions (22, 3) (add ``trans`` for the world) and global rotations (22, 4) wxyz.
    """
    # A scan over the joints in tree order (parents come first) rather than an unrolled
    # loop: one small body to compile instead of 21 copies of it.
    parents = jnp.asarray(np.maximum(SMPL_BODY_PARENTS, 0))
    q_local = quat_exp(pose_aa)
    offsets = rest_joints - rest_joints[parents]

    def step(carry, j):
        pos, quat = carry
        p = parents[j]
        pos = pos.at[j].set(pos[p] + quat_rotate(quat[p], offsets[j]))
        quat = quat.at[j].set(quat_mul(quat[p], q_local[j]))
        return (pos, quat), None

    pos0 = jnp.zeros_like(rest_joints).at[0].set(rest_joints[0])
    quat0 = jnp.zeros_like(q_local).at[0].set(q_local[0])
    (pos, quat), _ = jax.lax.scan(step, (pos0, quat0), jnp.arange(1, NUM_BODY_JOINTS))
    return pos, quat_normalize(quat)


_batched_fk = jax.jit(jax.vmap(body_fk, in_axes=(None, 0)))


def _bucket(T: int) -> int:
    return max(16, 1 << (T - 1).bit_length())


def smpl_joint_poses(rest_joints: np.ndarray, pose_aa: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World joints of a clip (host): (T, 22, 3) positions and (T, 22, 4) wxyz rotations.

    Args:
        rest_joints: (22, 3) rest joints, SMPL canonical frame.
        pose_aa: (T, 22, 3) axis-angle local rotations (joint 0: root orientation).
        trans: (T, 3) translations (AMASS ``trans``).

    The kinematics run in float32 (JAX's default); the translation is added in float64.
    """
    pose_aa = np.asarray(pose_aa, dtype=np.float32)
    trans = np.asarray(trans, dtype=np.float64)
    T = pose_aa.shape[0]
    if pose_aa.shape != (T, NUM_BODY_JOINTS, 3) or trans.shape != (T, 3) or T < 1:
        raise ValueError(f"pose_aa must be (T, 22, 3) and trans (T, 3), T >= 1; got {pose_aa.shape} and {trans.shape}")
    padded = np.zeros((_bucket(T), NUM_BODY_JOINTS, 3), dtype=np.float32)
    padded[:T] = pose_aa
    pos, quat = _batched_fk(jnp.asarray(np.asarray(rest_joints, dtype=np.float32)), jnp.asarray(padded))
    pos = np.asarray(pos, dtype=np.float64)[:T] + trans[:, None, :]
    quat = np.asarray(quat, dtype=np.float64)[:T]
    quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    return pos, quat
