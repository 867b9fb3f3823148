"""Resampling on exact times: frame counts, interpolation, SLERP, validity, irregular clocks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from retarget_jax.errors import InvalidMotionError
from retarget_jax.motion.demo import demo_motion
from retarget_jax.motion.resample import resample, resample_times
from retarget_jax.rotations import axis_angle_to_quat, quat_conj, quat_log, quat_mul


def _angle(a, b):
    return np.linalg.norm(quat_log(quat_mul(quat_conj(a), b)), axis=-1)


@pytest.mark.parametrize("T", [120, 480, 1000])
def test_120_to_30_fps_has_exactly_T_over_4_frames(T):
    m = demo_motion(num_frames=T, fps=120.0)
    r = resample(m, 30)
    assert r.num_frames == T * 30 // 120 and r.fps == 30.0
    np.testing.assert_allclose(r.times, np.arange(r.num_frames) / 30.0, atol=1e-12)
    # every output time is a source sample: values are copied exactly
    np.testing.assert_allclose(r.positions, m.positions[::4], atol=1e-12)
    assert _angle(r.orientations, m.orientations[::4]).max() < 1e-9


def test_100_to_30_fps_is_exactly_30_fps_and_interpolates_linearly():
    m = demo_motion(num_frames=101, fps=100.0)  # 1.0 s of motion
    r = resample(m, 30)
    assert r.num_frames == 31 and r.fps == 30.0
    np.testing.assert_allclose(np.diff(r.times), 1 / 30, atol=1e-12)
    # t = 1/30 s lies between source samples 3 (0.03 s) and 4 (0.04 s), a third of the way
    expect = m.positions[3] + (1 / 3) * (m.positions[4] - m.positions[3])
    np.testing.assert_allclose(r.positions[1], expect, atol=1e-9)


def test_orientations_follow_the_great_circle():
    T = 11
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    angles = np.linspace(0.0, 2.0, T)  # a constant-rate rotation about one axis
    m = demo_motion(num_frames=T, fps=10.0)
    q = np.repeat(axis_angle_to_quat(axis[None] * np.ones((T, 1)), angles)[:, None], len(m.joint_names), 1)
    m = dataclasses.replace(m, orientations=q)
    r = resample(m, 25.0)
    expect = axis_angle_to_quat(np.broadcast_to(axis, (r.num_frames, 3)), 2.0 * r.times)
    assert _angle(r.orientations[:, 0], expect).max() < 1e-9


def test_irregular_source_clock_uses_its_own_timestamps():
    m = demo_motion(num_frames=40, fps=30.0)
    # the same samples with one dropped frame: times jump over it
    keep = np.r_[0:17, 18:40]
    gap = dataclasses.replace(
        m, positions=m.positions[keep], orientations=m.orientations[keep], timestamps=m.times[keep]
    )
    r = resample(gap, 30.0)
    assert r.num_frames == 40
    np.testing.assert_allclose(r.positions[:17], m.positions[:17], atol=1e-12)
    np.testing.assert_allclose(r.positions[18:], m.positions[18:], atol=1e-12)
    mid = 0.5 * (m.positions[16] + m.positions[18])  # the dropped frame, interpolated
    np.testing.assert_allclose(r.positions[17], mid, atol=1e-12)


def test_validity_needs_both_neighbours():
    m = demo_motion(num_frames=9, fps=8.0)
    valid = np.ones((9, len(m.joint_names)), bool)
    valid[4, 3] = False
    r = resample(dataclasses.replace(m, valid=valid), 16.0)
    assert r.num_frames == 17
    bad = ~r.valid[:, 3]
    # output t = k/16: samples 7, 8 (on source 4) and 9 touch source frame 4
    assert np.flatnonzero(bad).tolist() == [7, 8, 9]
    assert r.valid[:, [0, 1, 2, 4]].all()


def test_same_rate_is_a_no_op_and_bad_rates_are_rejected():
    m = demo_motion(num_frames=20)
    assert resample(m, m.fps) is m and resample(m, None) is m
    with pytest.raises(InvalidMotionError, match="fps"):
        resample(m, 0.0)
    assert len(resample_times(np.array([0.0]), 30.0)) == 1
