"""Collision geometry (ground clearance, declared self-collision pairs, terrain) checked
against MuJoCo C, and ContactPlan detection and loading on hand-built foot trajectories."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from retarget_jax.errors import ConfigError, MotionFormatError, UnknownNameError
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.skeleton import HumanJoint as H
from retarget_jax.problem.contacts import (
    ContactPlan,
    ContactThresholds,
    detect_contacts,
    load_contact_plan,
    stance_foot_speed,
)
from retarget_jax.robots import body_frames, load_robot
from retarget_jax.robots.collision import (
    HeightField,
    collision_arrays,
    collision_spec,
    ground_clearance,
    ground_height,
    load_height_field,
    segment_closest_points,
    self_collision,
)
from retarget_jax.robots.spec import geom_lowest_z

ROBOTS = ("unitree_g1", "unitree_h1", "booster_t1")


def _random_qpos(robot, rng):
    m = robot.mj_model
    q = m.qpos0.copy()
    q[:3] = rng.normal(scale=0.3, size=3)
    quat = rng.normal(size=4)
    q[3:7] = quat / np.linalg.norm(quat)
    lo, hi = robot.dof_ranges.T
    q[7:] = rng.uniform(lo, hi)
    return q


def _flat(dtype):
    return HeightField(heights=jnp.zeros((2, 2), dtype), origin=jnp.zeros(2, dtype), cell=jnp.ones((), dtype))


@pytest.mark.parametrize("name", ROBOTS)
def test_ground_clearance_and_pair_distances_match_mujoco(name, x64):
    robot = load_robot(name)
    m = robot.mj_model
    d = mujoco.MjData(m)
    col = collision_arrays(robot, dtype=jnp.float64)
    assert len(robot.collision.pairs) >= 1 and robot.collision.source.endswith("collision.yaml")
    fn = jax.jit(
        lambda q: (
            ground_clearance(col, *body_frames(robot.tree, q)[:2], _flat(jnp.float64))[0],
            self_collision(col, *body_frames(robot.tree, q)[:2])[0],
        )
    )
    rng = np.random.default_rng(0)
    point_geom = np.asarray(col.point_geom)
    for _ in range(6):
        q = _random_qpos(robot, rng)
        d.qpos[:] = q
        mujoco.mj_forward(m, d)
        clear, dist = (np.asarray(a) for a in fn(jnp.asarray(q)))
        for g in robot.collision.geoms:
            ours = clear[point_geom == g].min()
            if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_CYLINDER:
                # rims sampled at 8 points: never below the true lowest point, at most r(1 - cos 22.5 deg) above
                R = d.geom_xmat[g].reshape(3, 3)
                r, h = m.geom_size[g][:2]
                true = d.geom_xpos[g][2] - abs(R[2, 2]) * h - r * np.sqrt(max(0.0, 1 - R[2, 2] ** 2))
                assert true - 1e-12 <= ours <= true + r * (1 - np.cos(np.pi / 8)) + 1e-12
            else:
                assert ours == pytest.approx(geom_lowest_z(m, d, g), abs=1e-10)
        fromto = np.zeros(6)
        ref = [mujoco.mj_geomDistance(m, d, a, b, 10.0, fromto) for a, b in robot.collision.pairs]
        np.testing.assert_allclose(dist, ref, atol=1e-9)


def test_segment_closest_points_against_brute_force(x64):
    rng = np.random.default_rng(1)
    s = np.linspace(0, 1, 401)
    for k in range(40):
        p0, p1, q0, q1 = rng.normal(size=(4, 3))
        if k % 10 == 0:
            p1 = p0.copy()  # a point
        if k % 10 == 1:
            q1 = q0 + 0.5 * (p1 - p0)  # parallel
        sa, ta = (float(x) for x in segment_closest_points(*(jnp.asarray(v) for v in (p0, p1, q0, q1))))
        got = np.linalg.norm(p0 + sa * (p1 - p0) - q0 - ta * (q1 - q0))
        A = p0 + s[:, None] * (p1 - p0)
        B = q0 + s[:, None] * (q1 - q0)
        brute = np.linalg.norm(A[:, None] - B[None], axis=-1).min()
        assert 0 <= sa <= 1 and 0 <= ta <= 1
        assert got <= brute + 1e-12 and got >= brute - 1e-2 * np.linalg.norm(p1 - p0 + q1 - q0) - 1e-12


def test_height_field_is_bilinear_with_fd_gradient_and_flat_beyond_its_edge(x64):
    heights = jnp.asarray([[0.0, 0.1, 0.3], [0.2, 0.4, 0.1]])
    hf = HeightField(heights=heights, origin=jnp.asarray([1.0, -1.0]), cell=jnp.asarray(0.5))
    h, _ = ground_height(hf, jnp.asarray([[1.0, -1.0], [1.5, 0.0], [1.25, -0.75]]))
    np.testing.assert_allclose(np.asarray(h), [0.0, 0.1, (0.0 + 0.1 + 0.2 + 0.4) / 4], atol=1e-12)
    xy = jnp.asarray([[1.2, -0.6], [1.4, -0.2]])
    _, grad = ground_height(hf, xy)
    eps = 1e-6
    for k in range(2):
        e = jnp.zeros(2).at[k].set(eps)
        fd = (ground_height(hf, xy + e)[0] - ground_height(hf, xy - e)[0]) / (2 * eps)
        np.testing.assert_allclose(np.asarray(grad[:, k]), np.asarray(fd), atol=1e-8)
    far, g = ground_height(hf, jnp.asarray([[10.0, 10.0], [-5.0, -5.0]]))
    np.testing.assert_allclose(np.asarray(far), [0.1, 0.0])
    assert np.all(np.asarray(g) == 0)


def test_height_field_file_errors_name_the_field(tmp_path):
    good = tmp_path / "hf.npz"
    np.savez(good, heights=np.zeros((3, 4)), origin=np.zeros(2), cell=np.float64(0.1))
    assert load_height_field(good).heights.shape == (3, 4)
    bad = tmp_path / "bad.npz"
    np.savez(bad, heights=np.zeros((3, 4)), origin=np.zeros(3), cell=np.float64(0.1))
    with pytest.raises(MotionFormatError, match="origin"):
        load_height_field(bad)
    np.savez(bad, heights=np.zeros((3, 4)), origin=np.zeros(2), cell=np.float64(0.0))
    with pytest.raises(MotionFormatError, match="cell"):
        load_height_field(bad)


def test_pairs_file_errors_list_valid_names_and_mjcf_pairs_are_read(tmp_path):
    g1 = load_robot("unitree_g1")
    bad = tmp_path / "pairs.yaml"
    bad.write_text("pairs:\n  - [left_hand_collision, no_such_geom]\n")
    with pytest.raises(UnknownNameError, match="torso_collision"):
        collision_spec(g1, bad)
    bad.write_text("pairs:\n  - {bodies: [pelvis, nowhere_link]}\n")
    with pytest.raises(UnknownNameError, match="nowhere_link"):
        collision_spec(g1, bad)
    bad.write_text("pairs:\n  - [left_hand_collision, left_hand_collision]\n")
    with pytest.raises(ConfigError, match="itself"):
        collision_spec(g1, bad)
    bad.write_text("margin: -1\npairs: []\n")
    with pytest.raises(ConfigError, match="margin"):
        collision_spec(g1, bad)
    body = bad.with_name("b.yaml")
    body.write_text("margin: 0.02\npairs:\n  - {bodies: [left_ankle_roll_link, right_ankle_roll_link]}\n")
    spec = collision_spec(g1, body)
    assert len(spec.pairs) == 49 and spec.margin == 0.02  # 7 sole capsules each: every one against every one
    # an MJCF's own <contact><pair> entries are declared pairs too; no file beside it: nothing else
    xml = tmp_path / "bot.xml"
    xml.write_text("""<mujoco><worldbody><body name="base"><freejoint/><geom name="a" type="sphere" size="0.1"/>
      <body name="arm" pos="0 0 0.3"><joint name="j" type="hinge" axis="0 1 0"/>
      <geom name="b" type="capsule" fromto="0 0 0 0.3 0 0" size="0.05"/></body></body></worldbody>
      <contact><pair geom1="a" geom2="b"/></contact></mujoco>""")
    bot = load_robot(xml)
    assert bot.collision.pairs == ((0, 1),) and bot.collision.source == ""


# ----------------------------------------------------------------------------- contacts


def _foot_motion(ankle_xyz, toe_xyz=None, fps=30.0, valid=None):
    """A 4-joint motion (pelvis, left hip, left ankle, [left toe]) around given foot paths."""
    T = ankle_xyz.shape[0]
    names = [H.PELVIS, H.LEFT_HIP, H.LEFT_ANKLE] + ([H.LEFT_TOE] if toe_xyz is not None else [])
    pos = np.zeros((T, len(names), 3))
    pos[:, 0] = [0.0, 0.0, 0.9]
    pos[:, 1] = [0.0, 0.1, 0.85]
    pos[:, 2] = ankle_xyz
    if toe_xyz is not None:
        pos[:, 3] = toe_xyz
    return HumanMotion(
        joint_names=tuple(names),
        parents=np.array([-1, 0, 1, 2][: len(names)]),
        positions=pos,
        orientations=None,
        fps=fps,
        valid=valid,
    )


def _step_path(T=90, fps=30.0):
    """Flat foot still for frames 0-29, a 0.5 m step with a 10 cm lift over 30-44, still again."""
    t = np.arange(T)
    x = np.clip((t - 30) / 15.0, 0, 1) * 0.5
    lift = np.where((t >= 30) & (t < 45), 0.10 * np.sin(np.pi * (t - 30) / 15.0), 0.0)
    return np.stack([x, np.full(T, 0.1), 0.08 + lift], axis=1)


def test_detected_stance_follows_height_and_speed():
    ankle = _step_path()
    toe = ankle + [0.15, 0.0, -0.06]
    plan = detect_contacts(_foot_motion(ankle, toe), (H.LEFT_ANKLE,))
    s = plan.stance[:, 0]
    assert plan.source == "detected" and plan.thresholds == ContactThresholds()
    assert s[:29].all() and s[47:].all()  # planted before and after the step
    assert not s[31:44].any()  # lifted and moving in between
    assert 0.6 < s.mean() < 0.9


def test_hysteresis_keeps_stance_between_the_on_and_off_speeds():
    T, fps = 60, 30.0
    th = ContactThresholds(height_on=0.03, height_off=0.05, speed_on=0.2, speed_off=0.4, min_duration=0.0)
    v = np.where(np.arange(T) < 30, 0.0, 0.3)  # at rest, then a steady creep between the two speeds
    x = np.concatenate([[0.0], np.cumsum(v[1:]) / fps])
    foot = np.stack([x, np.zeros(T), np.full(T, 0.08)], axis=1)
    s = detect_contacts(_foot_motion(foot), (H.LEFT_ANKLE,), th).stance[:, 0]
    assert s[:28].all() and s[33:].all()  # entered at rest, kept while creeping under speed_off
    started_moving = detect_contacts(_foot_motion(foot[29:]), (H.LEFT_ANKLE,), th).stance[:, 0]
    assert not started_moving[3:].any()  # never entered: the creep is above speed_on


def test_short_stance_runs_are_dropped_and_invalid_frames_are_never_stance():
    T = 60
    foot = np.stack([np.zeros(T), np.zeros(T), np.full(T, 0.3)], axis=1)
    foot[10:12, 2] = 0.0  # two frames down: shorter than min_duration = 0.1 s (3 frames)
    foot[30:50, 2] = 0.0
    valid = np.ones((T, 3), dtype=bool)
    valid[40, 2] = False
    s = detect_contacts(_foot_motion(foot, valid=valid), (H.LEFT_ANKLE,)).stance[:, 0]
    assert not s[:29].any() and not s[40]
    assert s[32:39].all()


def test_stance_foot_speed_of_a_known_slide():
    T, fps = 31, 30.0
    pos = np.zeros((T, 2, 3))
    pos[:, 0, 0] = 0.1 * np.arange(T) / fps  # foot 0 slides at 0.1 m/s
    stance = np.ones((T, 2), dtype=bool)
    assert stance_foot_speed(pos, stance, fps) == pytest.approx(0.05)  # mean over both feet
    stance[:, 1] = False
    assert stance_foot_speed(pos, stance, fps) == pytest.approx(0.1)
    assert stance_foot_speed(pos, np.zeros_like(stance), fps) == 0.0


def test_explicit_plans_load_from_npz_and_csv_with_typed_errors(tmp_path):
    feet = (H.LEFT_ANKLE, H.RIGHT_ANKLE)
    stance = np.zeros((5, 2), dtype=bool)
    stance[1:3, 0] = True
    np.savez(tmp_path / "p.npz", stance=stance[:, ::-1], feet=np.array(["right_ankle", "left_ankle"]))
    plan = load_contact_plan(tmp_path / "p.npz", feet, 5)
    np.testing.assert_array_equal(plan.for_feet(feet), stance)
    (tmp_path / "p.csv").write_text("left_ankle,right_ankle\n" + "\n".join(f"{int(a)},{int(b)}" for a, b in stance))
    np.testing.assert_array_equal(load_contact_plan(tmp_path / "p.csv", feet, 5).for_feet(feet), stance)
    with pytest.raises(MotionFormatError, match="stance"):
        load_contact_plan(tmp_path / "p.npz", feet, 6)
    np.savez(tmp_path / "q.npz", stance=np.full((5, 2), 2))
    with pytest.raises(MotionFormatError, match="0 or 1"):
        load_contact_plan(tmp_path / "q.npz", feet, 5)
    np.savez(tmp_path / "r.npz", stance=stance, feet=np.array(["left_ankle", "left_wrist"]))
    with pytest.raises(ConfigError, match="right_ankle"):
        load_contact_plan(tmp_path / "r.npz", feet, 5)
    with pytest.raises(Exception, match="stance must be"):
        ContactPlan(np.zeros((5, 3)), feet)
