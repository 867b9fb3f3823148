"""Rotation helpers (quaternions wxyz, SO(3) exp/log), host and jit alike.

Every function works on numpy arrays on the host and on jax arrays inside jit: the
array namespace is taken from the inputs, so one implementation serves both sides.
Quaternions are (..., 4) in w, x, y, z order, Hamilton convention, and rotate
vectors actively: ``v_world = q * v_body * q^-1``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def array_namespace(*arrays):
    """``jax.numpy`` if any input is a jax array or tracer, else ``numpy``: the module every
    function here (and the host-or-jit helpers elsewhere) computes with."""
    return jnp if any(isinstance(a, jax.Array | jax.core.Tracer) for a in arrays) else np


def quat_mul(q1, q2):
    """Hamilton product ``q1 * q2`` (apply q2 first, then q1)."""
    xp = array_namespace(q1, q2)
    w1, x1, y1, z1 = (q1[..., i] for i in range(4))
    w2, x2, y2, z2 = (q2[..., i] for i in range(4))
    return xp.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        axis=-1,
    )


def quat_conj(q):
    xp = array_namespace(q)
    return xp.concatenate([q[..., :1], -q[..., 1:]], axis=-1)


def quat_normalize(q):
    xp = array_namespace(q)
    return q / xp.linalg.norm(q, axis=-1, keepdims=True)


def quat_rotate(q, v):
    """Rotate vectors ``v`` (..., 3) by unit quaternions ``q`` (..., 4)."""
    xp = array_namespace(q, v)
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * xp.cross(u, v)
    return v + w * t + xp.cross(u, t)


def quat_to_mat(q):
    """Unit quaternion (..., 4) -> rotation matrix (..., 3, 3)."""
    xp = array_namespace(q)
    w, x, y, z = (q[..., i] for i in range(4))
    return xp.stack(
        [
            xp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            xp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            xp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def mat_to_quat(R):
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4), w >= 0; numpy or jax.

    Branch-free (jit-able): all four of Shepperd's forms are computed and, per matrix,
    the one built on the largest of 1 + tr, 1 + 2 R_ii - tr is kept (the best conditioned).
    """
    xp = array_namespace(R)
    if xp is np:
        R = np.asarray(R, dtype=np.float64)
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    tr = m00 + m11 + m22
    # 4 q_k^2 for k = w, x, y, z
    d = xp.stack([1.0 + tr, 1.0 + 2.0 * m00 - tr, 1.0 + 2.0 * m11 - tr, 1.0 + 2.0 * m22 - tr], axis=-1)
    cands = xp.stack(
        [
            xp.stack([d[..., 0], m21 - m12, m02 - m20, m10 - m01], axis=-1),
            xp.stack([m21 - m12, d[..., 1], m01 + m10, m02 + m20], axis=-1),
            xp.stack([m02 - m20, m01 + m10, d[..., 2], m12 + m21], axis=-1),
            xp.stack([m10 - m01, m02 + m20, m12 + m21, d[..., 3]], axis=-1),
        ],
        axis=-2,
    )  # (..., 4, 4): row k is 4 q_k q
    k = xp.argmax(d, axis=-1)
    onehot = (xp.arange(4) == k[..., None]).astype(cands.dtype)
    q = xp.sum(onehot[..., :, None] * cands, axis=-2)
    q = q / xp.linalg.norm(q, axis=-1, keepdims=True)
    return q * xp.where(q[..., :1] < 0, -1.0, 1.0)


def continuous_quat(q, axis: int = 0):
    """Quaternions (..., 4) with one sign along ``axis`` (a frame axis; the 4 components
    are the last axis): the first along it has w >= 0 and each next one is negated where
    its dot product with the previous one is negative. q and -q are the same rotation;
    this keeps a trajectory from jumping between them. Numpy or jax."""
    xp = array_namespace(q)
    axis = axis % q.ndim
    first = xp.take(q, xp.asarray([0]), axis=axis) if xp is not np else np.take(q, [0], axis=axis)
    n = q.shape[axis]
    prev = xp.take(q, xp.arange(0, n - 1), axis=axis)
    nxt = xp.take(q, xp.arange(1, n), axis=axis)
    dots = xp.sum(prev * nxt, axis=-1, keepdims=True)
    signs = xp.concatenate([xp.where(first[..., :1] < 0, -1.0, 1.0), xp.where(dots < 0, -1.0, 1.0)], axis=axis)
    return q * xp.cumprod(signs, axis=axis).astype(q.dtype)


def axis_angle_to_quat(axis, angle):
    """Unit axis (..., 3) and angle (...) -> quaternion (..., 4)."""
    xp = array_namespace(axis, angle)
    half = 0.5 * angle
    return xp.concatenate([xp.cos(half)[..., None], xp.sin(half)[..., None] * axis], axis=-1)


def quat_exp(omega):
    """SO(3) exponential of a rotation vector (..., 3) as a quaternion (..., 4).

    Uses a Taylor expansion near zero so that the derivative is finite at omega = 0
    (the solver differentiates through it at exactly zero).
    """
    xp = array_namespace(omega)
    theta2 = xp.sum(omega * omega, axis=-1, keepdims=True)
    small = theta2 < 1e-8
    safe2 = xp.where(small, 1.0, theta2)
    theta = xp.sqrt(safe2)
    half = 0.5 * theta
    # sin(theta/2)/theta, cos(theta/2); Taylor: 1/2 - theta^2/48, 1 - theta^2/8
    k = xp.where(small, 0.5 - theta2 / 48.0, xp.sin(half) / theta)
    w = xp.where(small, 1.0 - theta2 / 8.0, xp.cos(half))
    return xp.concatenate([w, k * omega], axis=-1)


def quat_log(q):
    """Rotation vector (..., 3) of a unit quaternion (shortest arc, |angle| <= pi)."""
    xp = array_namespace(q)
    q = q * xp.where(q[..., :1] < 0, -1.0, 1.0)
    w = xp.clip(q[..., :1], -1.0, 1.0)
    v = q[..., 1:]
    s2 = xp.sum(v * v, axis=-1, keepdims=True)
    small = s2 < 1e-12
    s = xp.sqrt(xp.where(small, 1.0, s2))
    # angle = 2 atan2(|v|, w); omega = angle * v / |v|; Taylor near 0: 2 v / w
    k = xp.where(small, 2.0 / w, 2.0 * xp.arctan2(s, w) / s)
    return k * v


def skew(v):
    """(..., 3) -> (..., 3, 3) cross-product matrix: skew(a) @ b == cross(a, b)."""
    xp = array_namespace(v)
    z = xp.zeros_like(v[..., 0])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return xp.stack([xp.stack([z, -w, y], -1), xp.stack([w, z, -x], -1), xp.stack([-y, x, z], -1)], axis=-2)


def so3_right_jacobian_inv(r):
    """Inverse right Jacobian of SO(3) at rotation vector r (..., 3) -> (..., 3, 3).

    For R' = exp(r) exp(d) with small d, log(R') = r + Jr^-1(r) d + O(d^2).
    Jr^-1(r) = I + 1/2 [r]x + (1/|r|^2 - (1+cos|r|) / (2|r| sin|r|)) [r]x^2,
    with the Taylor value 1/12 of the last coefficient near |r| = 0.
    """
    xp = array_namespace(r)
    theta2 = xp.sum(r * r, axis=-1)[..., None, None]
    small = theta2 < 1e-6
    safe2 = xp.where(small, 1.0, theta2)
    theta = xp.sqrt(safe2)
    c = xp.where(
        small, 1.0 / 12.0 + theta2 / 720.0, 1.0 / safe2 - (1.0 + xp.cos(theta)) / (2.0 * theta * xp.sin(theta))
    )
    K = skew(r)
    eye = xp.eye(3, dtype=r.dtype) if xp is np else jnp.eye(3, dtype=r.dtype)
    return eye + 0.5 * K + c * (K @ K)


def euler_to_quat(angles_rad, order: str):
    """Intrinsic Euler angles applied in ``order`` (e.g. 'ZYX' as BVH channels list them).

    BVH rotation channels compose left to right: R = R_{order[0]} R_{order[1]} R_{order[2]},
    angles[..., i] belonging to axis order[i].
    """
    xp = array_namespace(angles_rad)
    axes = {"X": (1.0, 0.0, 0.0), "Y": (0.0, 1.0, 0.0), "Z": (0.0, 0.0, 1.0)}
    q = None
    for i, ax in enumerate(order.upper()):
        a = xp.asarray(axes[ax], dtype=angles_rad.dtype)
        qi = axis_angle_to_quat(xp.broadcast_to(a, angles_rad.shape[:-1] + (3,)), angles_rad[..., i])
        q = qi if q is None else quat_mul(q, qi)
    return q


def quat_slerp(q0, q1, t):
    """Spherical interpolation between unit quaternions, shortest arc (host, numpy)."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    omega = quat_log(quat_mul(quat_conj(q0), q1))
    return quat_normalize(quat_mul(q0, quat_exp(omega * t)))
