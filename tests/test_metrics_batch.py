"""Jitted batch metrics on hand-built G1 trajectories with known answers.

Every clip is built from qpos with MuJoCo C forward kinematics, and every expected value is
computed here independently of the code under test (MuJoCo geom poses for the ground,
``mujoco.mj_geomDistance`` for self-collision, closed forms for sliding, limits and jerk).
All clips share one padded batch (one compile, float64), evaluated once per module.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from inputs import result_of

from retarget_jax.errors import ConfigError
from retarget_jax.metrics import batch as mb
from retarget_jax.metrics.batch import (
    CORE_KEYS,
    MetricBatch,
    evaluate_batch,
    metric_geometry,
)
from retarget_jax.result import RetargetingResult
from retarget_jax.robots.kinematics import body_poses, host_body_poses

FPS = 50.0
FEET = ("left_ankle_roll_link", "right_ankle_roll_link")
TARGET_BODIES = (
    "pelvis",
    "torso_link",
    "left_wrist_yaw_link",
    "right_wrist_yaw_link",
    "left_ankle_roll_link",
    "right_knee_link",
)


# --------------------------------------------------------------------------- independent references


def _collision_geoms(m):
    return [g for g in range(m.ngeom) if (m.geom_contype[g] or m.geom_conaffinity[g]) and m.geom_bodyid[g] > 0]


def _geom_lowest(m, d, g) -> float:
    """Lowest world z of a capsule or sphere from MuJoCo's geom pose."""
    z, R, size = d.geom_xpos[g][2], d.geom_xmat[g].reshape(3, 3), m.geom_size[g]
    if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE:
        return float(z - abs(R[2, 2]) * size[1] - size[0])
    assert m.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE, "the G1 collides with capsules and spheres"
    return float(z - size[0])


def _mj(robot, qpos):
    m = robot.mj_model
    d = mujoco.MjData(m)
    d.qpos[:] = qpos
    mujoco.mj_kinematics(m, d)
    return m, d


def lowest_z(robot, qpos, geoms=None) -> float:
    m, d = _mj(robot, qpos)
    return min(_geom_lowest(m, d, g) for g in (geoms if geoms is not None else _collision_geoms(m)))


def self_depth(robot, qpos) -> float:
    """Deepest overlap of the declared pairs by mujoco.mj_geomDistance (0 without one)."""
    m, d = _mj(robot, qpos)
    dist = [mujoco.mj_geomDistance(m, d, a, b, 1.0, None) for a, b in robot.collision.pairs]
    return max(0.0, -min(dist))


def foot_geoms(robot, name):
    m = robot.mj_model
    b = robot.body_names.index(name) + 1
    return [g for g in _collision_geoms(m) if m.geom_bodyid[g] == b]


# --------------------------------------------------------------------------- clips


def make_result(robot, root, dof, *, quat=None, fps=FPS, contacts=None, targets=None, offsets=None):
    T = root.shape[0]
    quat = np.tile([1.0, 0.0, 0.0, 0.0], (T, 1)) if quat is None else quat
    return result_of(
        robot,
        root,
        quat,
        dof,
        fps=fps,
        final_cost=0.1,
        iterations=3,
        target_pos_w=targets,
        target_body_names=TARGET_BODIES if targets is not None else (),
        target_offset_b=offsets,
        contacts=contacts,
        contact_body_names=FEET if contacts is not None else (),
    )


def stand_height(robot, dof) -> float:
    """Root height putting the lowest collision geom exactly on z = 0."""
    q = np.concatenate([[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0], dof])
    return 1.0 - lowest_z(robot, q)


def random_dof(robot, rng, T, lo_frac=0.4, hi_frac=0.6):
    lo, hi = robot.dof_ranges[:, 0], robot.dof_ranges[:, 1]
    return lo + (hi - lo) * rng.uniform(lo_frac, hi_frac, size=(T, robot.num_dof))


def _rot(q, v):
    out = np.empty(3)
    mujoco.mju_rotVecQuat(out, v, q)
    return out


@pytest.fixture(scope="module")
def clips(g1):
    robot = g1
    rng = np.random.default_rng(7)
    n = robot.num_dof
    zero = np.zeros(n)
    h0 = stand_height(robot, zero)
    out, expect = {}, {}

    def standing(T, vx=0.0):
        t = np.arange(T) / FPS
        return np.c_[vx * t, np.zeros(T), np.full(T, h0)], np.tile(zero, (T, 1))

    # (a) sliding at 0.1 m/s with both feet in stance; a static clip
    root, dof = standing(30, vx=0.1)
    out["slide"] = make_result(robot, root, dof, contacts=np.ones((30, 2), bool))
    root, dof = standing(25)
    out["static"] = make_result(robot, root, dof, contacts=np.ones((25, 2), bool))
    # a foot skating fast (0.5 m/s, above the contact speed) is not in contact, even on the floor
    root, dof = standing(30, vx=0.5)
    out["skate"] = make_result(robot, root, dof, contacts=np.ones((30, 2), bool))
    # (i) the same slide without a contact plan: proxy basis
    root, dof = standing(33, vx=0.1)
    out["proxy"] = make_result(robot, root, dof)

    # (b) lowest capsule 2 cm under the floor in frame 7, 1 cm in frames 0-3, above it elsewhere
    T = 20
    dof = random_dof(robot, rng, T)
    depth = np.full(T, -0.05)
    depth[:4], depth[7] = 0.01, 0.02
    root = np.zeros((T, 3))
    for t in range(T):
        root[t, 2] = 0.8 - lowest_z(robot, np.r_[0, 0, 0.8, 1, 0, 0, 0, dof[t]]) - depth[t]
    out["sunk"] = make_result(robot, root, dof, contacts=np.zeros((T, 2), bool))
    expect["sunk_lowest"] = [lowest_z(robot, q) for q in out["sunk"].qpos]

    # (c) left elbow 0.1 rad past its upper limit in 7 frames, a knee 0.05 under its lower in 1
    T = 40
    root, dof = standing(T)
    dof = dof.copy()
    el, kn = robot.dof_index("left_elbow_joint"), robot.dof_index("right_knee_joint")
    dof[3:10, el] = robot.dof_ranges[el, 1] + 0.1
    dof[20, kn] = robot.dof_ranges[kn, 0] - 0.05
    out["limits"] = make_result(robot, root, dof, contacts=np.ones((T, 2), bool))

    # (d) the left arm swung into the torso
    T = 10
    root, dof = standing(T)
    dof = dof.copy()
    dof[:, robot.dof_index("left_elbow_joint")] = 1.0
    dof[:, robot.dof_index("left_shoulder_roll_joint")] = np.linspace(0.0, -0.45, T)
    out["selfpen"] = make_result(robot, root, dof, contacts=np.ones((T, 2), bool))

    # (e) targets 3 cm from the tracked points (some NaN), and targets at known varied distances
    for name, T in (("track3cm", 24), ("track", 37)):
        dof = random_dof(robot, rng, T, 0.3, 0.7)
        yaw = np.linspace(0.0, 0.8, T)
        quat = np.c_[np.cos(yaw / 2), np.zeros(T), np.zeros(T), np.sin(yaw / 2)]
        root = np.c_[np.linspace(0, 0.3, T), np.zeros(T), np.full(T, 0.75)]
        K = len(TARGET_BODIES)
        offsets = rng.normal(scale=0.05, size=(K, 3))
        direction = rng.normal(size=(T, K, 3))
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        dist = np.full((T, K), 0.03) if name == "track3cm" else rng.uniform(0.0, 0.1, size=(T, K))
        pos, rot = host_body_poses(robot, np.concatenate([root, quat, dof], axis=-1))
        idx = [robot.body_names.index(b) for b in TARGET_BODIES]
        targets = np.empty((T, K, 3))
        for t in range(T):
            for k, b in enumerate(idx):
                targets[t, k] = pos[t, b] + _rot(rot[t, b], offsets[k]) + dist[t, k] * direction[t, k]
        nan = np.zeros((T, K), bool)
        nan[rng.integers(0, T, 9), rng.integers(0, K, 9)] = True
        targets[nan] = np.nan
        dist[nan] = 99.0  # would dominate mean and p95 if NaN targets leaked in
        out[name] = make_result(robot, root, dof, quat=quat, targets=targets, offsets=offsets)
        expect[name] = dist[~nan]

    # (f) every joint cubic in time with leading coefficient a: jerk = 6 a
    T, a = 40, 0.5
    t = (np.arange(T) / FPS)[:, None]
    b, c = rng.uniform(0, 0.2, size=(2, 1, n))
    root, _ = standing(T)
    out["cubic"] = make_result(robot, root, b * t + c * t**2 + a * t**3)
    expect["cubic"] = 6 * a

    # (g) standing still; the plan lifts the right foot after frame 12 (it stays down)
    T, k = 30, 12
    root, dof = standing(T)
    plan = np.ones((T, 2), bool)
    plan[k:, 1] = False
    out["plan"] = make_result(robot, root, dof, contacts=plan)
    expect["plan"] = (T + k) / (2 * T)
    expect["foot_lowest"] = [[lowest_z(robot, q, foot_geoms(robot, f)) for f in FEET] for q in out["plan"].qpos]

    # (h) limbs: human bones at known angles theta (per frame and limb) from the robot's own
    # segments (MuJoCo FK), turned about an axis perpendicular to the segment; one limb has
    # frames without its joints (NaN) and one limb of LIMBS is absent (its slot stays empty)
    T = 28
    dof = random_dof(robot, rng, T, 0.3, 0.7)
    root = np.c_[np.zeros(T), np.zeros(T), np.full(T, 0.75)]
    pos, rot = host_body_poses(robot, np.concatenate([root, np.tile([1.0, 0, 0, 0], (T, 1)), dof], axis=-1))
    limbs = (
        ("left_upper_arm", "left_shoulder_roll_link", "left_elbow_link"),
        ("right_thigh", "right_hip_roll_link", "right_knee_link"),
        ("trunk", "pelvis", "torso_link"),
    )
    offs = rng.normal(scale=0.03, size=(len(limbs), 2, 3))
    theta = rng.uniform(0.0, 1.2, size=(T, len(limbs)))
    hdir = np.empty((T, len(limbs), 3))
    for t in range(T):
        for k, (_, a, b) in enumerate(limbs):
            ia, ib = robot.body_names.index(a), robot.body_names.index(b)
            seg = (pos[t, ib] + _rot(rot[t, ib], offs[k, 1])) - (pos[t, ia] + _rot(rot[t, ia], offs[k, 0]))
            u = seg / np.linalg.norm(seg)
            axis = np.cross(u, rng.normal(size=3))
            axis /= np.linalg.norm(axis)
            c, s_ = np.cos(theta[t, k]), np.sin(theta[t, k])
            hdir[t, k] = c * u + s_ * np.cross(axis, u)  # Rodrigues, axis perpendicular to u
    missing = np.zeros((T, len(limbs)), bool)
    missing[[2, 9, 10, 20], 1] = True
    hdir[missing] = np.nan
    r = make_result(robot, root, dof)
    r.limb_names = tuple(name for name, _, _ in limbs)
    r.limb_body_names = tuple((a, b) for _, a, b in limbs)
    r.limb_offset_b, r.limb_human_dir = offs, hdir
    out["limbs"] = r
    expect["limbs"] = (np.cos(theta), ~missing)

    names = list(out)
    with jax.enable_x64(True):
        batch = MetricBatch.from_results([out[k] for k in names], robot, length=64)
        geo = metric_geometry(robot, batch.contact_bodies)
        traces0 = mb.TRACE_COUNT
        core = jax.device_get(evaluate_batch(batch, geo))
        traced = mb.TRACE_COUNT - traces0
    vals = {name: {key: float(core[key][i]) for key in CORE_KEYS} for i, name in enumerate(names)}
    return {"results": out, "values": vals, "expect": expect, "batch": batch, "geometry": geo, "traced": traced}


# --------------------------------------------------------------------------- tests


def test_level_fk_matches_mujoco(g1, clips, x64):
    r = clips["results"]["track"]
    tree = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), g1.tree)
    xpos, xquat = jax.jit(body_poses)(tree, jnp.asarray(r.qpos))
    np.testing.assert_allclose(np.asarray(xpos), r.body_pos_w, atol=1e-12)
    np.testing.assert_allclose(np.asarray(xquat), r.body_quat_w, atol=1e-12)


def test_batch_shapes_and_masks(clips):
    batch = clips["batch"]
    n = len(clips["results"])
    assert batch.qpos.shape == (n, 64, 36) and batch.qpos.dtype == jnp.float64
    assert batch.contacts.shape == (n, 64, 2) and batch.target.shape == (n, 64, 6, 3)
    frames = np.asarray(batch.frame_mask).sum(1)
    assert frames.tolist() == [r.num_frames for r in clips["results"].values()]
    # padding repeats the last frame
    q = np.asarray(batch.qpos[0])
    np.testing.assert_array_equal(q[30:], np.broadcast_to(q[29], q[30:].shape))
    assert np.asarray(batch.has_plan).tolist() == [float(r.contacts is not None) for r in clips["results"].values()]
    for name, v in clips["values"].items():
        assert v["frames"] == clips["results"][name].num_frames


def test_foot_sliding_known_speed(clips):
    v = clips["values"]
    assert v["slide"]["foot_sliding"] == pytest.approx(0.1, abs=1e-4)
    assert v["slide"]["foot_sliding_proxy"] == 0.0
    assert v["static"]["foot_sliding"] == pytest.approx(0.0, abs=1e-9)
    # the sunk clip is never in stance: no pair, 0
    assert v["sunk"]["foot_sliding"] == 0.0


def test_foot_sliding_proxy_without_plan(clips):
    v = clips["values"]["proxy"]
    assert v["foot_sliding_proxy"] == 1.0 and v["has_plan"] == 0.0
    assert v["foot_sliding"] == pytest.approx(0.1, abs=1e-4)


def test_ground_penetration_against_mujoco_geoms(clips):
    lowest = np.asarray(clips["expect"]["sunk_lowest"])
    assert -lowest.min() == pytest.approx(0.02, abs=1e-9)  # the clip is what it claims
    v = clips["values"]["sunk"]
    assert v["ground_penetration_max"] == pytest.approx(0.02, abs=1e-5)
    assert clips["values"]["static"]["ground_penetration_max"] == pytest.approx(0.0, abs=1e-9)


def test_joint_limit_violation(clips):
    v = clips["values"]["limits"]
    assert v["joint_limit_violation_max"] == pytest.approx(0.1, abs=1e-5)
    assert v["joint_limit_violation_fraction"] == pytest.approx(8 / 40)
    assert clips["values"]["static"]["joint_limit_violation_max"] == 0.0
    assert clips["values"]["static"]["joint_limit_violation_fraction"] == 0.0


def test_self_penetration_against_mj_geom_distance(g1, clips):
    r = clips["results"]["selfpen"]
    depths = np.array([self_depth(g1, q) for q in r.qpos])
    ground = np.array([max(0.0, -lowest_z(g1, q)) for q in r.qpos])
    assert depths.max() > 0.03 and depths[0] == 0.0  # the arm does go into the torso
    v = clips["values"]["selfpen"]
    assert v["self_penetration_max"] == pytest.approx(depths.max(), abs=1e-6)
    assert v["penetration"] == pytest.approx(np.mean(depths + ground), abs=1e-6)
    assert v["penetration_max"] == pytest.approx(np.max(depths + ground), abs=1e-6)
    assert clips["values"]["static"]["self_penetration_max"] == 0.0


def test_tracking_error_known_offsets_and_nan_targets(clips):
    v = clips["values"]
    assert v["track3cm"]["tracking_error_mean"] == pytest.approx(0.03, abs=1e-9)
    assert v["track3cm"]["tracking_error_p95"] == pytest.approx(0.03, abs=1e-9)
    d = clips["expect"]["track"]
    assert v["track"]["tracking_samples"] == d.size
    assert v["track"]["tracking_error_mean"] == pytest.approx(d.mean(), abs=1e-9)
    assert v["track"]["tracking_error_p95"] == pytest.approx(np.percentile(d, 95), abs=1e-9)
    # clips without targets: no samples, zeros
    assert v["static"]["tracking_samples"] == 0 and v["static"]["tracking_error_p95"] == 0.0


def test_jerk_of_a_cubic(clips):
    v = clips["values"]
    assert v["cubic"]["jerk"] == pytest.approx(clips["expect"]["cubic"], rel=1e-6)
    assert v["static"]["jerk"] == pytest.approx(0.0, abs=1e-9)


def test_contact_preservation_known_fraction(clips):
    lows = np.asarray(clips["expect"]["foot_lowest"])
    assert np.all(np.abs(lows) < 0.025)  # both feet touch the floor in every frame
    v = clips["values"]
    assert v["plan"]["contact_preservation"] == pytest.approx(clips["expect"]["plan"], abs=1e-12)
    assert v["static"]["contact_preservation"] == 1.0
    assert v["slide"]["contact_preservation"] == 1.0  # 0.1 m/s: slower than the contact speed
    assert v["skate"]["contact_preservation"] == 0.0
    assert v["skate"]["foot_sliding"] == pytest.approx(0.5, abs=1e-4)
    assert v["sunk"]["has_plan"] == 1.0


def test_padding_changes_nothing_and_no_retrace(g1, clips, x64):
    """A clip alone (no padding) equals the same clip in the padded batch; new values of
    traced inputs reuse the compiled function."""
    assert clips["traced"] <= 1
    alone_r = clips["results"]["track"]
    alone = MetricBatch.from_results([alone_r], g1, contact_bodies=FEET, length=alone_r.num_frames)
    out = jax.device_get(evaluate_batch(alone, metric_geometry(g1, alone.contact_bodies)))
    ref = clips["values"]["track"]
    for key in CORE_KEYS:
        assert float(out[key][0]) == pytest.approx(ref[key], abs=1e-6), key

    batch, geo = clips["batch"], clips["geometry"]
    before, cache = mb.TRACE_COUNT, evaluate_batch._cache_size()
    moved = batch.__class__(
        qpos=batch.qpos + 0.01,
        frame_mask=batch.frame_mask,
        fps=batch.fps * 2,
        contacts=1.0 - batch.contacts,
        has_plan=batch.has_plan,
        target=batch.target,
        target_valid=batch.target_valid,
        target_offset=batch.target_offset,
        limb_body=batch.limb_body,
        limb_offset=batch.limb_offset,
        limb_dir=-batch.limb_dir,
        limb_valid=batch.limb_valid,
        target_body=batch.target_body,
        contact_bodies=batch.contact_bodies,
    )
    res = evaluate_batch(moved, geo)
    assert mb.TRACE_COUNT == before and evaluate_batch._cache_size() == cache
    assert float(res["foot_sliding"][0]) == pytest.approx(0.0, abs=1e-9)  # contacts flipped: swing


def test_mismatched_results_raise_naming_the_result(g1, clips):
    r = clips["results"]
    other = RetargetingResult(**{**r["track"].__dict__, "target_body_names": TARGET_BODIES[::-1]})
    with pytest.raises(ConfigError, match=r"result 'b'.*target_body_names"):
        MetricBatch.from_results([r["track"], other], g1, ids=["a", "b"])
    wrong = RetargetingResult(**{**r["static"].__dict__, "robot": "unitree_h1"})
    with pytest.raises(ConfigError, match=r"results\[0\].*robot 'unitree_h1'"):
        MetricBatch.from_results([wrong], g1)
    with pytest.raises(ConfigError, match="do not fit"):
        MetricBatch.from_results([r["track"]], g1, length=10)


def test_limb_direction_known_angles(clips):
    """Cosines of hand-built human bones at known angles from the robot's segments: mean and
    5th percentile per limb and overall, frames without the joints left out."""
    v = clips["values"]["limbs"]
    cos, ok = clips["expect"]["limbs"]
    assert v["limb_direction_samples"] == ok.sum()
    assert v["limb_direction_mean"] == pytest.approx(cos[ok].mean(), abs=1e-9)
    assert v["limb_direction_p5"] == pytest.approx(np.percentile(cos[ok], 5), abs=1e-9)
    for k, name in enumerate(("left_upper_arm", "right_thigh", "trunk")):
        c = cos[ok[:, k], k]
        assert v[f"limb_direction_mean_{name}"] == pytest.approx(c.mean(), abs=1e-9), name
        assert v[f"limb_direction_p5_{name}"] == pytest.approx(np.percentile(c, 5), abs=1e-9), name
    assert v["limb_direction_mean_left_forearm"] == 0.0  # a limb the result does not have
    # clips without limbs: no samples
    assert clips["values"]["static"]["limb_direction_samples"] == 0
