"""Tests for retarget_jax.robots: RobotSpec from an MJCF, tree FK and point Jacobians.

FK is checked against MuJoCo C (``mj_kinematics``) attribute by attribute, and against
MJX; Jacobians against central finite differences taken on the manifold (the root
rotation is perturbed by ``q exp(eps e_i)``, exactly as the solver steps). The FK and
Jacobian checks run on every built-in robot (G1, H1, T1): their trees differ (the T1's
floating base is its upper body, with the legs below a waist joint).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from retarget_jax.errors import RobotModelError, UnknownNameError
from retarget_jax.robots import body_frames, integrate, load_robot, point_jacobians
from retarget_jax.robots.spec import BUILTIN_ROBOTS
from retarget_jax.rotations import mat_to_quat, quat_conj, quat_log, quat_mul

NUM_CONFIGS = 24
POS_ATOL = 1e-5  # metres
QUAT_ATOL = 1e-5


@pytest.fixture(params=sorted(BUILTIN_ROBOTS), scope="module")
def robot(request):
    """Each built-in robot in turn."""
    return load_robot(request.param)


def deepest_body(robot) -> int:
    """The body at the end of the longest chain of hinges (a hand or a foot)."""
    return int(np.argmax(np.asarray(robot.tree.dof_ancestor).sum(axis=1)))


def random_qpos(robot, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, nq) random root pose (any orientation) and joints uniform in their ranges."""
    lo, hi = robot.dof_ranges[:, 0], robot.dof_ranges[:, 1]
    root_pos = rng.uniform(-1.0, 1.0, (n, 3))
    root_quat = rng.normal(size=(n, 4))
    root_quat /= np.linalg.norm(root_quat, axis=-1, keepdims=True)
    joints = rng.uniform(lo, hi, (n, robot.num_dof))
    return np.concatenate([root_pos, root_quat, joints], axis=-1)


def mujoco_kinematics(robot, qpos: np.ndarray):
    """xpos, xquat (bodies without world) and hinge anchors, axes (dof order) from MuJoCo C."""
    m = robot.mj_model
    d = mujoco.MjData(m)
    jids = [m.joint(name).id for name in robot.dof_names]
    out = {"xpos": [], "xquat": [], "xanchor": [], "xaxis": []}
    for q in qpos:
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        out["xpos"].append(d.xpos[1:].copy())
        out["xquat"].append(d.xquat[1:].copy())
        out["xanchor"].append(d.xanchor[jids].copy())
        out["xaxis"].append(d.xaxis[jids].copy())
    return {k: np.stack(v) for k, v in out.items()}


def assert_quat_close_up_to_sign(q, q_ref, atol):
    q, q_ref = np.asarray(q, np.float64), np.asarray(q_ref, np.float64)
    err = np.minimum(np.abs(q - q_ref).max(-1), np.abs(q + q_ref).max(-1))
    assert err.max() < atol, f"quaternion mismatch {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"


def tree_as(tree, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


def forward_kinematics(tree, qpos):
    """body_frames as (xpos, xquat, anchors, axes), the layout MuJoCo's data has."""
    f = body_frames(tree, qpos)
    return f.xpos, mat_to_quat(f.xmat), f.anchor, f.axis


def check_fk_against_mujoco(robot, qpos, ours):
    ref = mujoco_kinematics(robot, qpos)
    xpos, xquat, anchors, axes = (np.asarray(a, np.float64) for a in ours)
    assert xpos.shape == ref["xpos"].shape and anchors.shape == ref["xanchor"].shape
    np.testing.assert_allclose(xpos, ref["xpos"], atol=POS_ATOL, rtol=0)
    assert_quat_close_up_to_sign(xquat, ref["xquat"], QUAT_ATOL)
    np.testing.assert_allclose(anchors, ref["xanchor"], atol=POS_ATOL, rtol=0)
    np.testing.assert_allclose(axes, ref["xaxis"], atol=QUAT_ATOL, rtol=0)


# ---------------------------------------------------------------------------------------
# RobotSpec


def test_g1_spec_names_and_ranges(g1):
    m = g1.mj_model
    hinges = [j for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    assert g1.num_dof == 29 and len(g1.dof_names) == 29
    assert g1.dof_names == tuple(m.joint(j).name for j in hinges)
    assert g1.nq == m.nq == 36 and g1.nv == m.nv == 35
    assert g1.dof_ranges.shape == (29, 2)
    np.testing.assert_array_equal(g1.dof_ranges, m.jnt_range[hinges])
    assert np.all(g1.dof_ranges[:, 0] < g1.dof_ranges[:, 1])
    assert len(g1.body_names) == 30 and g1.body_names[0] == "pelvis"
    assert g1.body_names == tuple(m.body(b).name for b in range(1, m.nbody))
    for side in ("left", "right"):
        assert f"{side}_ankle_roll_link" in g1.body_names
        assert f"{side}_knee_joint" in g1.dof_names
    assert g1.tree.root == 0 and g1.tree.num_bodies == 30 and g1.tree.num_dof == 29
    assert g1.body_index("left_knee_link") == g1.body_names.index("left_knee_link")
    assert g1.dof_index("right_elbow_joint") == g1.dof_names.index("right_elbow_joint")


def test_unknown_body_and_joint_names_list_valid_choices(g1):
    with pytest.raises(
        UnknownNameError, match=r"body of robot unitree_g1 'left_foot' not found; valid: .*left_ankle_roll_link"
    ) as e:
        g1.body_index("left_foot")
    assert set(e.value.valid) == set(g1.body_names)
    with pytest.raises(
        UnknownNameError, match=r"recipe x: joint of robot unitree_g1 'knee' not found; valid: .*left_knee_joint"
    ):
        g1.dof_index("knee", where="recipe x")


def test_unknown_robot_name():
    with pytest.raises(UnknownNameError, match=r"robot 'unitree_g2' not found; valid: .*unitree_g1"):
        load_robot("unitree_g2")


_NO_FREE_JOINT = """
<mujoco>
  <worldbody>
    <body name="base" pos="0 0 1">
      <geom type="box" size="0.1 0.1 0.1"/>
      <body name="link">
        <joint name="hinge" type="hinge" axis="0 0 1"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02"/>
      </body>
    </body>
  </worldbody>
</mujoco>
"""

_SLIDE_JOINT = """
<mujoco>
  <worldbody>
    <body name="base" pos="0 0 1">
      <freejoint/>
      <geom type="box" size="0.1 0.1 0.1"/>
      <body name="link">
        <joint name="slider" type="slide" axis="1 0 0"/>
        <geom type="sphere" size="0.05"/>
      </body>
    </body>
  </worldbody>
</mujoco>
"""


def test_mjcf_without_free_joint_is_rejected(tmp_path):
    path = tmp_path / "fixed_base.xml"
    path.write_text(_NO_FREE_JOINT)
    with pytest.raises(RobotModelError, match=r"fixed_base\.xml: expected exactly one free joint .*found 0"):
        load_robot(path)


def test_mjcf_with_slide_joint_is_rejected(tmp_path):
    path = tmp_path / "slider.xml"
    path.write_text(_SLIDE_JOINT)
    with pytest.raises(RobotModelError, match=r"joint 'slider' has type mjJNT_SLIDE"):
        load_robot(path)


_TWO_LINK = """
<mujoco>
  <compiler angle="radian"/>
  <worldbody>
    <body name="base" pos="0 0 1">
      <freejoint/>
      <geom type="box" size="0.1 0.1 0.1"/>
      <body name="link" pos="0.2 0 0" quat="0.9 0.1 0.3 0.2">
        <joint name="hinge" type="hinge" axis="0 1 1" pos="0.05 0 0" range="-1 1"/>
        <geom type="sphere" size="0.05"/>
      </body>
    </body>
  </worldbody>
</mujoco>
"""


def test_small_mjcf_loads_and_matches_mujoco(tmp_path):
    path = tmp_path / "two_link.xml"
    path.write_text(_TWO_LINK)
    robot = load_robot(path)
    assert robot.name == "two_link" and robot.dof_names == ("hinge",) and robot.body_names == ("base", "link")
    np.testing.assert_allclose(robot.dof_ranges, [[-1.0, 1.0]])
    qpos = random_qpos(robot, np.random.default_rng(3), 4)
    with jax.enable_x64(True):
        tree = tree_as(robot.tree, jnp.float64)
        ours = jax.vmap(lambda q: forward_kinematics(tree, q))(jnp.asarray(qpos))
    check_fk_against_mujoco(robot, qpos, ours)


# ---------------------------------------------------------------------------------------
# Forward kinematics


def test_fk_matches_mujoco_float32_jit_vmap(robot):
    qpos = random_qpos(robot, np.random.default_rng(0), NUM_CONFIGS)
    tree = tree_as(robot.tree, jnp.float32)
    fk = jax.jit(jax.vmap(lambda q: forward_kinematics(tree, q)))
    ours = fk(jnp.asarray(qpos, jnp.float32))
    assert ours[0].dtype == jnp.float32 and ours[1].shape == (NUM_CONFIGS, len(robot.body_names), 4)
    check_fk_against_mujoco(robot, qpos, ours)


def test_fk_matches_mujoco_float64(robot, x64):
    qpos = random_qpos(robot, np.random.default_rng(1), NUM_CONFIGS)
    tree = tree_as(robot.tree, jnp.float64)
    ours = jax.jit(jax.vmap(lambda q: forward_kinematics(tree, q)))(jnp.asarray(qpos))
    assert ours[0].dtype == jnp.float64
    check_fk_against_mujoco(robot, qpos, ours)
    # in float64 the agreement is at round-off level, far below the 1e-5 m of float32
    ref = mujoco_kinematics(robot, qpos)
    np.testing.assert_allclose(np.asarray(ours[0]), ref["xpos"], atol=1e-10, rtol=0)


def test_fk_unnormalised_root_quaternion(g1):
    """MuJoCo normalises the root quaternion; so does our FK."""
    qpos = random_qpos(g1, np.random.default_rng(2), 3)
    qpos[:, 3:7] *= np.array([[0.5], [2.0], [3.0]])
    ours = jax.vmap(lambda q: forward_kinematics(tree_as(g1.tree, jnp.float32), q))(jnp.asarray(qpos, jnp.float32))
    qn = qpos.copy()
    qn[:, 3:7] /= np.linalg.norm(qn[:, 3:7], axis=-1, keepdims=True)
    check_fk_against_mujoco(g1, qn, ours)


def test_fk_matches_mjx(g1):
    from mujoco import mjx

    qpos = random_qpos(g1, np.random.default_rng(4), 3)
    mx = g1.mjx_model
    data = mjx.make_data(mx)
    mjx_fk = jax.jit(jax.vmap(lambda q: mjx.kinematics(mx, data.replace(qpos=q))))
    d = mjx_fk(jnp.asarray(qpos, jnp.float32))
    tree = tree_as(g1.tree, jnp.float32)
    xpos, xquat, anchors, axes = jax.jit(jax.vmap(lambda q: forward_kinematics(tree, q)))(
        jnp.asarray(qpos, jnp.float32)
    )
    jids = [g1.mj_model.joint(name).id for name in g1.dof_names]
    np.testing.assert_allclose(xpos, np.asarray(d.xpos)[:, 1:], atol=POS_ATOL, rtol=0)
    assert_quat_close_up_to_sign(xquat, np.asarray(d.xquat)[:, 1:], QUAT_ATOL)
    np.testing.assert_allclose(anchors, np.asarray(d.xanchor)[:, jids], atol=POS_ATOL, rtol=0)
    np.testing.assert_allclose(axes, np.asarray(d.xaxis)[:, jids], atol=QUAT_ATOL, rtol=0)


# ---------------------------------------------------------------------------------------
# Point Jacobians


def _jacobians_and_fd(tree, qpos, bodies, offsets, eps):
    """Analytic (K, 3, nv) linear and angular Jacobians, and their central differences."""
    fk = body_frames(tree, qpos)
    pts = fk.xpos[bodies] + jnp.einsum("kij,kj->ki", fk.xmat[bodies], offsets)
    Jlin, Jang = point_jacobians(tree, fk, bodies, pts)

    def points_and_quats(delta):
        f = body_frames(tree, integrate(qpos, delta))
        return f.xpos[bodies] + jnp.einsum("kij,kj->ki", f.xmat[bodies], offsets), mat_to_quat(f.xmat[bodies])

    nv = qpos.shape[0] - 1
    E = eps * jnp.eye(nv, dtype=qpos.dtype)
    p_pm, q_pm = jax.vmap(points_and_quats)(jnp.concatenate([E, -E]))  # one traced FK, not two
    p_plus, p_minus, q_plus, q_minus = p_pm[:nv], p_pm[nv:], q_pm[:nv], q_pm[nv:]
    lin_fd = (p_plus - p_minus) / (2 * eps)  # (nv, K, 3)
    # world angular velocity: R(+) = exp([w eps]) R(0), R(-) = exp(-[w eps]) R(0)
    ang_fd = quat_log(quat_mul(q_plus, quat_conj(q_minus))) / (2 * eps)
    return Jlin, Jang, jnp.transpose(lin_fd, (1, 2, 0)), jnp.transpose(ang_fd, (1, 2, 0))


def test_point_jacobians_match_manifold_finite_differences(robot, x64):
    rng = np.random.default_rng(5)
    tree = tree_as(robot.tree, jnp.float64)
    K = 12
    check = jax.jit(lambda q, b, o: _jacobians_and_fd(tree, q, b, o, 1e-6))
    for q in random_qpos(robot, rng, 3):
        bodies = rng.choice(robot.tree.num_bodies, K, replace=False)
        bodies[0] = robot.tree.root  # the floating base itself
        bodies[1] = deepest_body(robot)  # end of a long chain
        offsets = rng.normal(scale=0.1, size=(K, 3))
        Jlin, Jang, Jlin_fd, Jang_fd = (
            np.asarray(a) for a in check(jnp.asarray(q), jnp.asarray(bodies), jnp.asarray(offsets))
        )
        assert Jlin.shape == (K, 3, robot.nv) and Jang.shape == (K, 3, robot.nv)
        np.testing.assert_allclose(Jlin, Jlin_fd, atol=1e-6, rtol=0)
        np.testing.assert_allclose(Jang, Jang_fd, atol=1e-6, rtol=0)
        # the hinge columns of bodies that a hinge does not move are exactly zero
        anc = np.asarray(robot.tree.dof_ancestor)[bodies]
        assert np.all(Jlin[:, :, 6:][np.broadcast_to(anc[:, None, :] == 0, Jlin[:, :, 6:].shape)] == 0)
