"""MotionLib: sample motions and query their states at any time (stage: motion libraries;
jit code with a host wrapper, and a numpy path).

Static and traced: the library's arrays are an argument of the jitted functions (traced),
so two libraries of the same shapes share one compiled query; the number of queries Q is
the only static size. Nothing raises inside jit: a time outside a motion is clamped to it
and a motion id outside ``[0, M)`` is clipped into it.

A query at time t of motion m (seconds from its first frame) is taken between frames
``i0 = floor(t * fps)`` and ``i1 = min(i0 + 1, T - 1)`` with ``a = t * fps - i0``:
positions, velocities and DoF linearly, quaternions (wxyz) by SLERP on the shortest arc,
contact flags from the nearer frame. t is clamped to ``[0, (T - 1) / fps]``, and a time
within float rounding of a frame time (``|t fps - k| <= 1e-5 + 5e-7 k``) returns frame k's
stored values exactly.

One implementation serves both paths: :func:`state_at` works on numpy arrays (batched
over queries) and, under ``jax.vmap``, on one query of jax arrays.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from retarget_jax.motionlib.library import MotionLibrary, load_library
from retarget_jax.motionlib.states import FRAME_FIELDS
from retarget_jax.rotations import array_namespace

__all__ = ["LibraryArrays", "MotionLib", "MotionState", "state_at"]

_INTERP_LINEAR = (
    "root_pos",
    "root_lin_vel_w",
    "root_ang_vel_w",
    "dof_pos",
    "dof_vel",
    "body_pos_w",
    "body_lin_vel_w",
    "body_ang_vel_w",
)
_INTERP_SLERP = ("root_quat_wxyz", "body_quat_w")


class MotionState(NamedTuple):
    """States of Q queries (leading axis Q); quaternions wxyz, world frame, see
    :mod:`retarget_jax.motionlib.library` for units."""

    root_pos: np.ndarray | jax.Array
    root_quat_wxyz: np.ndarray | jax.Array
    root_lin_vel_w: np.ndarray | jax.Array
    root_ang_vel_w: np.ndarray | jax.Array
    dof_pos: np.ndarray | jax.Array
    dof_vel: np.ndarray | jax.Array
    body_pos_w: np.ndarray | jax.Array
    body_quat_w: np.ndarray | jax.Array
    body_lin_vel_w: np.ndarray | jax.Array
    body_ang_vel_w: np.ndarray | jax.Array
    contacts: np.ndarray | jax.Array


assert MotionState._fields == tuple(FRAME_FIELDS)


class LibraryArrays(eqx.Module):
    """The arrays a query reads (all traced): per-frame fields (N, ...), per-motion starts,
    lengths, rates, durations and the cumulative distribution of the weights (M,)."""

    frames: dict
    motion_start: jax.Array
    motion_num_frames: jax.Array
    motion_fps: jax.Array
    motion_duration: jax.Array
    weight_cdf: jax.Array

    @classmethod
    def from_library(cls, lib: MotionLibrary, xp=jnp, dtype=np.float32) -> LibraryArrays:
        """Device arrays (``xp=jnp``, float32) or host arrays (``xp=np``, any float dtype)."""
        frames = {k: xp.asarray(v if v.dtype == np.bool_ else v.astype(dtype)) for k, v in lib.frames.items()}
        cdf = np.cumsum(lib.motion_weight) / lib.motion_weight.sum()
        return cls(
            frames=frames,
            motion_start=xp.asarray(lib.motion_start.astype(np.int32)),
            motion_num_frames=xp.asarray(lib.motion_num_frames.astype(np.int32)),
            motion_fps=xp.asarray(lib.motion_fps.astype(dtype)),
            motion_duration=xp.asarray(lib.motion_duration_s.astype(dtype)),
            weight_cdf=xp.asarray(cdf.astype(dtype)),
        )


def _expand(a, x):
    """``a`` (Q,) or () with trailing axes to broadcast against ``x`` (Q, ...)."""
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def _slerp(q0, q1, a, xp):
    """SLERP of wxyz quaternions (..., 4) at fractions ``a`` (...), shortest arc; ``a == 0``
    gives ``q0`` as stored, nearly parallel pairs fall back to normalised LERP."""
    dot = xp.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = xp.where(dot < 0, -q1, q1)
    dot = xp.clip(xp.abs(dot), 0.0, 1.0)
    a = a[..., None]
    near = dot > 0.9995
    theta = xp.arccos(dot)
    s = xp.where(near, 1.0, xp.sin(theta))
    w0 = xp.where(near, 1.0 - a, xp.sin((1.0 - a) * theta) / s)
    w1 = xp.where(near, a, xp.sin(a * theta) / s)
    q = w0 * q0 + w1 * q1
    q = q / xp.linalg.norm(q, axis=-1, keepdims=True)
    return xp.where(a == 0, q0, q)


def state_at(arrays: LibraryArrays, motion_ids, times) -> MotionState:
    """States of motions ``motion_ids`` at ``times`` (seconds from each motion's first
    frame): numpy arrays (Q,) on the host, or one query of jax scalars under ``jax.vmap``."""
    xp = array_namespace(arrays.motion_fps)
    M = arrays.motion_start.shape[0]
    m = xp.clip(xp.asarray(motion_ids).astype(xp.int32), 0, M - 1)
    n = arrays.motion_num_frames[m]
    fps = arrays.motion_fps[m]
    t = xp.clip(xp.asarray(times).astype(fps.dtype), 0.0, arrays.motion_duration[m])
    f = t * fps
    k = xp.round(f)
    f = xp.where(xp.abs(f - k) <= 1e-5 + 5e-7 * k, k, f)
    i0 = xp.clip(xp.floor(f), 0, n - 1).astype(xp.int32)
    i1 = xp.minimum(i0 + 1, n - 1)
    a = xp.where(i1 > i0, xp.clip(f - i0, 0.0, 1.0), 0.0).astype(fps.dtype)
    r0 = arrays.motion_start[m] + i0
    r1 = arrays.motion_start[m] + i1
    out = {}
    for key in _INTERP_LINEAR:
        x0, x1 = arrays.frames[key][r0], arrays.frames[key][r1]
        w = _expand(a, x0)
        out[key] = xp.where(w == 0, x0, (1.0 - w) * x0 + w * x1)
    for key in _INTERP_SLERP:
        x0, x1 = arrays.frames[key][r0], arrays.frames[key][r1]
        out[key] = _slerp(x0, x1, xp.broadcast_to(_expand(a, x0[..., 0]), x0.shape[:-1]), xp)
    c0, c1 = arrays.frames["contacts"][r0], arrays.frames["contacts"][r1]
    out["contacts"] = xp.where(_expand(a, c0) < 0.5, c0, c1)
    return MotionState(**out)


@jax.jit
def _get_state(arrays: LibraryArrays, motion_ids: jax.Array, times: jax.Array) -> MotionState:
    return jax.vmap(state_at, in_axes=(None, 0, 0))(arrays, motion_ids, times)


@functools.partial(jax.jit, static_argnums=2)
def _sample_motions(cdf: jax.Array, key: jax.Array, n: int) -> jax.Array:
    # inverse CDF: O(n log M), where a Gumbel argmax (jax.random.categorical) is O(n M)
    u = jax.random.uniform(key, (n,), dtype=cdf.dtype)
    ids = jnp.searchsorted(cdf, u, side="right").astype(jnp.int32)
    # float round-off can leave cdf[-1] a hair below 1, or put u past a zero-weight tail
    last = jnp.max(jnp.where(jnp.diff(cdf, prepend=0.0) > 0, jnp.arange(cdf.shape[0]), 0))
    return jnp.minimum(ids, last)


@jax.jit
def _sample_times(duration: jax.Array, key: jax.Array, motion_ids: jax.Array, truncate_time) -> jax.Array:
    d = jnp.maximum(duration[motion_ids] - truncate_time, 0.0)
    return jax.random.uniform(key, motion_ids.shape, dtype=duration.dtype) * d


class MotionLib:
    """A motion library ready for queries from a training step.

    >>> lib = MotionLib.load("out/amass_train.npz")       # or out/amass_train_slurmrank.npz
    >>> ids = lib.sample_motions(jax.random.key(0), 4096)  # by weight
    >>> t = lib.sample_times(jax.random.key(1), ids)       # uniform in each motion
    >>> s = lib.get_motion_state(ids, t)                   # MotionState of (4096, ...) arrays

    ``get_motion_state`` is jitted and vmapped over the queries (one compile per Q); the
    functions it calls take the library's arrays as an argument, so they compose with a
    user's own jit (use :attr:`arrays` and :func:`state_at` under ``jax.vmap`` there).
    ``*_numpy`` methods answer the same queries on the host without JAX (inspection,
    tests, torch users).
    """

    def __init__(self, library: MotionLibrary | str | os.PathLike, *, rank: int | None = None) -> None:
        self.library = library if isinstance(library, MotionLibrary) else load_library(library, rank=rank)
        self.arrays = LibraryArrays.from_library(self.library)
        self._host = None

    @classmethod
    def load(cls, path: str | os.PathLike, *, rank: int | None = None) -> MotionLib:
        return cls(path, rank=rank)

    @property
    def num_motions(self) -> int:
        return self.library.num_motions

    @property
    def body_names(self) -> tuple[str, ...]:
        return self.library.body_names

    @property
    def dof_names(self) -> tuple[str, ...]:
        return self.library.dof_names

    @property
    def motion_duration(self) -> np.ndarray:
        """(M,) seconds from each motion's first frame to its last."""
        return self.library.motion_duration_s

    def sample_motions(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` motion ids drawn with probability proportional to the weights."""
        return _sample_motions(self.arrays.weight_cdf, key, int(n))

    def sample_times(self, key: jax.Array, motion_ids: jax.Array, truncate_time: float = 0.0) -> jax.Array:
        """A time uniform in ``[0, duration - truncate_time]`` of each motion."""
        return _sample_times(
            self.arrays.motion_duration, key, jnp.asarray(motion_ids, jnp.int32), jnp.float32(truncate_time)
        )

    def get_motion_state(self, motion_ids, times) -> MotionState:
        """States at ``times`` of ``motion_ids`` (both (Q,)), jitted: see the module docstring."""
        return _get_state(self.arrays, jnp.asarray(motion_ids, jnp.int32), jnp.asarray(times, jnp.float32))

    # ---- numpy path
    @property
    def host_arrays(self) -> LibraryArrays:
        if self._host is None:
            self._host = LibraryArrays.from_library(self.library, xp=np, dtype=np.float64)
        return self._host

    def get_motion_state_numpy(self, motion_ids, times) -> MotionState:
        """The same query on the host in numpy (float64 arithmetic on the stored values)."""
        return state_at(self.host_arrays, np.asarray(motion_ids, np.int64), np.asarray(times, np.float64))

    def sample_motions_numpy(self, rng: np.random.Generator, n: int) -> np.ndarray:
        w = self.library.motion_weight
        return rng.choice(self.num_motions, size=int(n), p=w / w.sum())

    def sample_times_numpy(self, rng: np.random.Generator, motion_ids, truncate_time: float = 0.0) -> np.ndarray:
        d = np.maximum(self.motion_duration[np.asarray(motion_ids)] - truncate_time, 0.0)
        return rng.random(d.shape) * d
