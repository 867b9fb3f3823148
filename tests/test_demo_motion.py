"""Tests for retarget_jax.motion.demo: the procedural walk and its LAFAN1 frame conventions."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from retarget_jax.errors import ConfigError
from retarget_jax.motion import demo
from retarget_jax.motion.bvh import read_bvh
from retarget_jax.motion.demo import (
    CONVENTIONS,
    DEMO_PARENTS,
    REFERENCE_OFFSETS,
    demo_motion,
    neutral_pose,
)
from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP, HumanJoint
from retarget_jax.rotations import quat_conj, quat_log, quat_mul, quat_to_mat

FPS = 30.0
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def walk():
    return demo_motion(num_frames=300, fps=FPS)


def _angle_deg(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(A.T @ B) - 1.0) / 2.0, -1.0, 1.0))))


def test_shape_roles_and_parents(walk):
    assert walk.num_frames == 300 and walk.fps == FPS
    assert walk.joint_names == tuple(LAFAN1_JOINT_MAP.values())
    assert len(walk.joint_names) == 22
    for j, role in enumerate(walk.joint_names):
        parent = DEMO_PARENTS[role]
        assert walk.parents[j] == (-1 if parent is None else walk.index(parent))
    assert walk.positions.dtype == np.float64 and walk.is_finite()
    np.testing.assert_allclose(np.linalg.norm(walk.orientations, axis=-1), 1.0, atol=1e-12)
    assert walk.source_format == "demo_walk"


def test_defaults_and_bad_arguments():
    assert demo_motion().num_frames == 150 and demo_motion().fps == 30.0
    with pytest.raises(ConfigError):
        demo_motion(0)
    with pytest.raises(ConfigError):
        demo_motion(10, fps=0.0)


def test_conventions_are_exact_proper_90_degree_rotations():
    for role, C in CONVENTIONS.items():
        assert set(np.unique(C)) <= {-1.0, 0.0, 1.0}, role
        np.testing.assert_array_equal(C.T @ C, np.eye(3))
        assert np.linalg.det(C) == pytest.approx(1.0), role
    assert set(CONVENTIONS) == set(HumanJoint)


def test_positions_follow_orientations(walk):
    # p_child = p_parent + R_world_parent C_parent^T d_child, for every frame.
    R = quat_to_mat(walk.orientations)
    for j, role in enumerate(walk.joint_names):
        p = int(walk.parents[j])
        if p < 0:
            continue
        local = CONVENTIONS[walk.joint_names[p]].T @ REFERENCE_OFFSETS[role]
        np.testing.assert_allclose(
            walk.positions[:, j] - walk.positions[:, p],
            R[:, p] @ local,
            atol=1e-12,
            err_msg=str(role),
        )


def test_bones_point_along_local_x_like_lafan1(walk):
    # LAFAN1 offsets lie on the parent's x axis; ours do wherever a parent has one child.
    for role in (
        "left_knee",
        "left_ankle",
        "left_toe",
        "spine_mid",
        "neck",
        "head",
        "left_elbow",
        "left_wrist",
        "right_shoulder",
        "right_elbow",
    ):
        role = HumanJoint(role)
        parent = DEMO_PARENTS[role]
        local = CONVENTIONS[parent].T @ REFERENCE_OFFSETS[role]
        assert local[0] > 0 and np.allclose(local[1:], 0.0), (role, local)


def test_walks_forward_at_the_requested_pace(walk):
    pelvis = walk.positions[:, walk.index("pelvis")]
    speed = (pelvis[-1, 0] - pelvis[0, 0]) * FPS / (walk.num_frames - 1)
    assert speed == pytest.approx(1.2, abs=0.05)
    assert np.abs(pelvis[:, 1]).max() < 0.05  # straight along +X
    # Step frequency ~1.8 Hz: count toe-offs (toe leaves its rest height) of both feet.
    steps = 0
    for toe in ("left_toe", "right_toe"):
        z = walk.positions[:, walk.index(toe), 2]
        on = z < demo.TOE_HEIGHT + 1e-6
        steps += int(np.sum(on[:-1] & ~on[1:]))
    assert steps / walk.duration_s == pytest.approx(1.8, abs=0.25)


def test_hip_heights(walk):
    for j in ("pelvis", "left_hip", "right_hip"):
        z = walk.positions[:, walk.index(j), 2]
        assert 0.85 <= z.min() and z.max() <= 1.0, (j, z.min(), z.max())
    hips = walk.positions[:, [walk.index("left_hip"), walk.index("right_hip")], 2]
    pelvis = walk.positions[:, walk.index("pelvis"), 2]
    assert 0.5 * (hips.mean() + pelvis.mean()) == pytest.approx(0.93, abs=0.03)


@pytest.mark.parametrize("side", ["left", "right"])
def test_stance_foot_does_not_slide(walk, side):
    for joint, rest in (("toe", demo.TOE_HEIGHT), ("ankle", demo.ANKLE_HEIGHT)):
        p = walk.positions[:, walk.index(f"{side}_{joint}")]
        assert p[:, 2].min() >= rest - 1e-9  # never below its height on the floor
        low = p[:, 2] < rest + 0.002
        both = low[1:] & low[:-1]
        assert both.sum() > 0.3 * walk.num_frames
        v = np.linalg.norm(np.diff(p[:, :2], axis=0), axis=-1) * FPS
        assert v[both].max() < 0.05, (joint, v[both].max())


@pytest.mark.parametrize("side", ["left", "right"])
def test_toes_touch_the_floor_every_second(walk, side):
    z = walk.positions[:, walk.index(f"{side}_toe"), 2]
    win = int(FPS)
    for start in range(0, walk.num_frames - win + 1, win // 2):
        assert z[start : start + win].min() < 0.02
    assert z.max() > 0.05  # and leave it in swing


@pytest.mark.parametrize("side", ["left", "right"])
def test_knee_flexes_in_swing_and_elbow_stays_bent(walk, side):
    P = walk.positions

    def angle(a, b, c):
        u = P[:, walk.index(a)] - P[:, walk.index(b)]
        v = P[:, walk.index(c)] - P[:, walk.index(b)]
        cos = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        return 180.0 - np.degrees(np.arccos(cos))

    knee = angle(f"{side}_hip", f"{side}_knee", f"{side}_ankle")
    assert knee.min() > 5.0 and 40.0 < knee.max() < 75.0
    elbow = angle(f"{side}_shoulder", f"{side}_elbow", f"{side}_wrist")
    assert elbow.min() > 5.0 and elbow.max() < 60.0


def test_arms_swing_opposite_to_legs(walk):
    P = walk.positions
    pelvis_x = P[:, walk.index("pelvis"), 0]
    for side in ("left", "right"):
        foot_fwd = P[:, walk.index(f"{side}_ankle"), 0] - pelvis_x
        hand_fwd = P[:, walk.index(f"{side}_wrist"), 0] - pelvis_x
        assert np.corrcoef(foot_fwd, hand_fwd)[0, 1] < -0.5, side


def test_left_is_on_the_left(walk):
    P = walk.positions
    for a, b in (
        ("left_hip", "right_hip"),
        ("left_shoulder", "right_shoulder"),
        ("left_ankle", "right_ankle"),
    ):
        assert np.all(P[:, walk.index(a), 1] > P[:, walk.index(b), 1])


def test_motion_is_smooth(walk):
    q = walk.orientations
    dq = quat_log(quat_mul(quat_conj(q[:-1]), q[1:]))
    omega = np.degrees(np.linalg.norm(dq, axis=-1)) * FPS
    assert omega.max() < 720.0  # deg/s; a sign flip or jump would show up here
    v = np.linalg.norm(np.diff(walk.positions, axis=0), axis=-1) * FPS
    assert v.max() < 8.0


def test_bvh_round_trip_through_the_reader(tmp_path, walk):
    # The script writes a LAFAN1-layout BVH (cm, Y-up); read_bvh's defaults bring back the
    # same motion, so the demo lives in exactly the reader's conventions.
    spec = importlib.util.spec_from_file_location("make_demo_motion", REPO / "scripts" / "make_demo_motion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp_path / "demo.bvh"
    mod.write_bvh(path, walk)
    back = read_bvh(path)
    assert back.joint_names == walk.joint_names
    np.testing.assert_array_equal(back.parents, walk.parents)
    np.testing.assert_allclose(back.positions, walk.positions, atol=1e-6)
    dq = quat_log(quat_mul(quat_conj(back.orientations), walk.orientations))
    assert np.linalg.norm(dq, axis=-1).max() < 1e-6
    assert back.fps == pytest.approx(walk.fps, rel=1e-6)


# --------------------------------------------------------------------------------------
# Conventions against a real LAFAN1 capture (shared data; skipped where absent)


def _proper_90_rotations() -> list[np.ndarray]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            M = np.zeros((3, 3))
            M[range(3), perm] = signs
            if np.linalg.det(M) > 0:
                out.append(M)
    return out


@pytest.fixture(scope="module")
def lafan1_standing(shared_data_dir):
    """Per role: world orientation relative to the heading, mean over standing T-pose frames."""
    path = shared_data_dir / "lafan1_skeleton_clip_a.bvh"
    if not path.is_file():
        pytest.skip(f"lafan1_skeleton_clip_a.bvh not found in {shared_data_dir}")
    m = read_bvh(path)
    P, R = m.positions, quat_to_mat(m.orientations)

    def bend(a, b, c):
        u = P[:, m.index(a)] - P[:, m.index(b)]
        v = P[:, m.index(c)] - P[:, m.index(b)]
        cos = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        return 180.0 - np.degrees(np.arccos(cos))

    trunk = P[:, m.index("head")] - P[:, m.index("pelvis")]
    tilt = np.degrees(np.arccos(trunk[:, 2] / np.linalg.norm(trunk, axis=-1)))
    arms = [P[:, m.index(f"{s}_elbow")] - P[:, m.index(f"{s}_shoulder")] for s in ("left", "right")]
    abduction = np.min([np.degrees(np.arccos(-a[:, 2] / np.linalg.norm(a, axis=-1))) for a in arms], axis=0)
    standing = (
        (bend("left_hip", "left_knee", "left_ankle") < 15)
        & (bend("right_hip", "right_knee", "right_ankle") < 15)
        & (tilt < 10)
        & (abduction > 70)
    )
    frames = np.flatnonzero(standing)
    assert len(frames) >= 10, "no standing T-pose frames found in the clip"
    # Heading frame: x forward, y left (from the hips), z up.
    left = P[frames, m.index("left_hip")] - P[frames, m.index("right_hip")]
    left[:, 2] = 0.0
    left /= np.linalg.norm(left, axis=-1, keepdims=True)
    up = np.broadcast_to([0.0, 0.0, 1.0], left.shape)
    H = np.stack([np.cross(left, up), left, up], axis=-1)
    out = {}
    for j, role in enumerate(m.joint_names):
        rel = np.swapaxes(H, -1, -2) @ R[frames, j]
        U, _, Vt = np.linalg.svd(rel.sum(0))  # chordal mean
        out[role] = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    return out


def test_conventions_are_the_rounded_lafan1_standing_frames(lafan1_standing):
    rots = _proper_90_rotations()
    for role, R in lafan1_standing.items():
        nearest = min(rots, key=lambda C: _angle_deg(C, R))
        np.testing.assert_array_equal(nearest, CONVENTIONS[role], err_msg=str(role))


def test_neutral_pose_matches_lafan1_standing_frame(lafan1_standing):
    neutral = neutral_pose()
    errors = {str(role): _angle_deg(neutral[role], R) for role, R in lafan1_standing.items()}
    assert max(errors.values()) < 20.0, errors
