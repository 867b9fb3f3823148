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


def _xp(*arrays):
    return jnp if any(isinstance(a, jax.Array | jax.core.Tracer) for a in arrays) else np


def quat_mul(q1, q2):
    """Hamilton product ``q1 * q2`` (apply q2 first, then q1)."""
    xp = _xp(q1, q2)
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
    xp = _xp(q)
    return xp.concatenate([q[..., :1], -q[..., 1:]], axis=-1)


def quat_normalize(q):
    xp = _xp(q)
    return q / xp.linalg.norm(q, axis=-1, keepdims=True)


def quat_rotate(q, v):
    """Rotate vectors ``v`` (..., 3) by unit quaternions ``q`` (..., 4)."""
    xp = _xp(q, v)
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * xp.cross(u, v)
    return v + w * t + xp.cross(u, t)


def quat_to_mat(q):
    """Unit quaternion (..., 4) -> rotation matrix (..., 3, 3)."""
    xp = _xp(q)
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
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4), w >= 0 (host only, numpy)."""
    R = np.asarray(R, dtype=np.float64)
    shape = R.shape[:-2]
    R = R.reshape(-1, 3, 3)
    q = np.empty((R.shape[0], 4))
    tr = np.trace(R, axis1=1, axis2=2)
    for i in range(R.shape[0]):
        m = R[i]
        if tr[i] > 0:
            s = np.sqrt(tr[i] + 1.0) * 2
            q[i] = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
        elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
            s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
            q[i] = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
        elif m[1, 1] > m[2, 2]:
            s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
            q[i] = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
        else:
            s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
            q[i] = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return q.reshape(*shape, 4)


def axis_angle_to_quat(axis, angle):
    """Unit axis (..., 3) and angle (...) -> quaternion (..., 4)."""
    xp = _xp(axis, angle)
    half = 0.5 * angle
    return xp.concatenate([xp.cos(half)[..., None], xp.sin(half)[..., None] * axis], axis=-1)


def quat_exp(omega):
    """SO(3) exponential of a rotation vector (..., 3) as a quaternion (..., 4).

    Uses a Taylor expansion near zero so that the derivative is finite at omega = 0
    (the solver differentiates through it at exactly zero).
    """
    xp = _xp(omega)
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
    xp = _xp(q)
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
    xp = _xp(v)
    z = xp.zeros_like(v[..., 0])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return xp.stack(
        [xp.stack([z, -w, y], -1), xp.stack([w, z, -x], -1), xp.stack([-y, x, z], -1)], axis=-2
    )


def so3_right_jacobian_inv(r):
    """Inverse right Jacobian of SO(3) at rotation vector r (..., 3) -> (..., 3, 3).

    For R' = exp(r) exp(d) with small d, log(R') = r + Jr^-1(r) d + O(d^2).
    Jr^-1(r) = I + 1/2 [r]x + (1/|r|^2 - (1+cos|r|) / (2|r| sin|r|)) [r]x^2,
    with the Taylor value 1/12 of the last coefficient near |r| = 0.
    """
    xp = _xp(r)
    theta2 = xp.sum(r * r, axis=-1)[..., None, None]
    small = theta2 < 1e-6
    safe2 = xp.where(small, 1.0, theta2)
    theta = xp.sqrt(safe2)
    c = xp.where(small, 1.0 / 12.0 + theta2 / 720.0,
                 1.0 / safe2 - (1.0 + xp.cos(theta)) / (2.0 * theta * xp.sin(theta)))
    K = skew(r)
    eye = xp.eye(3, dtype=r.dtype) if xp is np else jnp.eye(3, dtype=r.dtype)
    return eye + 0.5 * K + c * (K @ K)


def euler_to_quat(angles_rad, order: str):
    """Intrinsic Euler angles applied in ``order`` (e.g. 'ZYX' as BVH channels list them).

    BVH rotation channels compose left to right: R = R_{order[0]} R_{order[1]} R_{order[2]},
    angles[..., i] belonging to axis order[i].
    """
    xp = _xp(angles_rad)
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
