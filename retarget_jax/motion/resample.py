"""Resampling a motion to a target frame rate on exact sample times (host, numpy).

Output samples sit at ``t0 + k / fps`` for every k whose time lies within the source's
span ``[t0, t_last]``: n = floor((t_last - t0) * fps) + 1 frames (a tolerance of 1e-9 s
absorbs float error). So a 120 fps clip of T frames becomes exactly T * 30 / 120 frames at
30 fps when 4 divides T. Each output time is placed between the two source samples that
bracket it, using the source's own ``timestamps`` (irregular sampling and dropped frames
are handled), positions interpolate linearly and orientations by SLERP. An output sample
is valid when both bracketing source samples are (an output time that falls on a source
sample takes that sample's validity).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from retarget_jax.errors import InvalidMotionError
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.rotations import quat_slerp

__all__ = ["bracket", "resample", "resample_at", "resample_times"]

_EPS = 1e-9


def resample_times(times: np.ndarray, fps: float) -> np.ndarray:
    """Output sample times for source ``times`` at ``fps``."""
    times = np.asarray(times, dtype=np.float64)
    span = float(times[-1] - times[0])
    n = int(np.floor(span * fps + _EPS)) + 1
    return times[0] + np.arange(n, dtype=np.float64) / fps


def bracket(src_t: np.ndarray, out_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output time, the source samples ``i0 <= i1`` that bracket it and the
    fraction ``a`` between them (``out = (1 - a) src[i0] + a src[i1]``); a time on a
    source sample (within 1e-9 s) takes that sample alone (``i0 == i1``, ``a == 0``)."""
    src_t = np.asarray(src_t, dtype=np.float64)
    out_t = np.asarray(out_t, dtype=np.float64)
    i1 = np.clip(np.searchsorted(src_t, out_t - _EPS, side="left"), 0, src_t.shape[0] - 1)
    i0 = np.clip(i1 - 1, 0, None)
    on_sample = np.abs(src_t[i1] - out_t) <= _EPS
    i0 = np.where(on_sample, i1, i0)
    dt = src_t[i1] - src_t[i0]
    a = np.where(dt > 0, (out_t - src_t[i0]) / np.where(dt > 0, dt, 1.0), 0.0)
    return i0, i1, a


def resample(motion: HumanMotion, fps: float | None) -> HumanMotion:
    """The motion at ``fps`` frames per second (the motion itself when it already is)."""
    if fps is None:
        return motion
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise InvalidMotionError(f"{motion.source_path or '<motion>'}: target fps must be positive, got {fps}")
    src_t = motion.times
    uniform = np.allclose(np.diff(src_t), 1.0 / motion.fps, rtol=0, atol=1e-9) if motion.num_frames > 1 else True
    if uniform and abs(fps - motion.fps) < 1e-9:
        return motion
    return resample_at(motion, resample_times(src_t, fps), fps)


def resample_at(motion: HumanMotion, times: np.ndarray, fps: float) -> HumanMotion:
    """The motion sampled at ``times`` (seconds on the motion's own clock, increasing, within
    its span), labelled ``fps``; the new motion's timestamps are ``times``. Positions
    interpolate linearly and orientations by SLERP between the bracketing samples."""
    out_t = np.asarray(times, dtype=np.float64)
    i0, i1, a = bracket(motion.times, out_t)

    pos = np.asarray(motion.positions, np.float64)
    new_pos = (1.0 - a)[:, None, None] * pos[i0] + a[:, None, None] * pos[i1]
    new_quat = None
    if motion.orientations is not None:
        q = np.asarray(motion.orientations, np.float64)
        new_quat = quat_slerp(q[i0], q[i1], np.broadcast_to(a[:, None], q[i0].shape[:-1]))
    new_valid = None
    if motion.valid is not None:
        v = np.asarray(motion.valid, bool)
        new_valid = v[i0] & v[i1]
    return dataclasses.replace(
        motion, positions=new_pos, orientations=new_quat, fps=fps, timestamps=out_t, valid=new_valid
    )
