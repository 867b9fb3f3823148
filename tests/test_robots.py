"""Every built-in robot: it loads, its names and ranges are MuJoCo's, it stands, it carries
its licence notice, its vendored MJCF is what ``scripts/vendor_robots.py`` makes, and its
shipped LAFAN1 recipe resolves against it with the reference pose the recipe claims.

Host-only tests (MuJoCo C and numpy); none of them compiles the solver.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest

from retarget_jax.errors import RobotModelError
from retarget_jax.files.resources import ROBOT_ASSETS
from retarget_jax.motion.demo import demo_motion
from retarget_jax.problem import RetargetingProblem, compile_problem, load_recipe
from retarget_jax.robots import load_robot
from retarget_jax.robots.spec import BUILTIN_ROBOTS

REPO_ROOT = Path(__file__).resolve().parents[1]

# name -> (hinge DoF, floating-base body); a new robot works without an entry here.
EXPECTED = {
    "unitree_g1": (29, "pelvis"),
    "unitree_h1": (19, "pelvis"),
    "booster_t1": (23, "Trunk"),
}
# name -> its shipped LAFAN1 recipe
RECIPES = {"unitree_g1": "lafan1_g1", "unitree_h1": "lafan1_h1", "booster_t1": "lafan1_t1"}

ROBOTS = sorted(BUILTIN_ROBOTS)


@pytest.fixture(scope="module", params=ROBOTS)
def robot(request):
    return load_robot(request.param)


def test_builtin_robots_have_expected_entries():
    assert set(EXPECTED) <= set(BUILTIN_ROBOTS)
    assert set(RECIPES) <= set(BUILTIN_ROBOTS)


def test_robot_loads_with_mujoco_names_and_ranges(robot):
    m = robot.mj_model
    hinges = [j for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    free = [j for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
    assert len(free) == 1 and len(hinges) == m.njnt - 1
    assert robot.dof_names == tuple(m.joint(j).name for j in hinges)
    assert robot.body_names == tuple(m.body(b).name for b in range(1, m.nbody))
    assert len(set(robot.body_names)) == len(robot.body_names)
    assert robot.nq == m.nq and robot.nv == m.nv
    assert robot.dof_ranges.shape == (robot.num_dof, 2)
    limited = np.asarray(m.jnt_limited[hinges], bool)
    np.testing.assert_array_equal(robot.dof_ranges[limited], m.jnt_range[hinges][limited])
    assert np.all(robot.dof_ranges[:, 0] < robot.dof_ranges[:, 1])
    assert robot.body_names[robot.tree.root] == m.body(int(m.jnt_bodyid[free[0]])).name
    if robot.name in EXPECTED:
        n, root = EXPECTED[robot.name]
        assert robot.num_dof == n
        assert robot.body_names[robot.tree.root] == root
    assert Path(robot.mjcf_path).is_relative_to(ROBOT_ASSETS)


def test_robot_stands_on_its_feet(robot):
    """Standing height (root above the lowest collision geom at qpos0) is a humanoid's,
    and that lowest geom is on a foot: on or below the recipe's ground bodies."""
    assert robot.standing_height > 0.5
    m = robot.mj_model
    d = mujoco.MjData(m)
    d.qpos[:] = m.qpos0
    d.qpos[:3] = [0.0, 0.0, robot.standing_height]
    mujoco.mj_kinematics(m, d)
    from retarget_jax.robots.spec import geom_lowest_z

    lows = np.array([geom_lowest_z(m, d, g) for g in range(m.ngeom)])
    assert abs(lows.min()) < 1e-9
    if robot.name in RECIPES:
        ground = {robot.body_index(b) + 1 for b in load_recipe(RECIPES[robot.name]).ground_bodies}
        b = int(m.geom_bodyid[int(np.argmin(lows))])
        while b not in ground and b != 0:
            b = int(m.body_parentid[b])
        assert b in ground, "the lowest geom is not on a foot"


def test_robot_is_mesh_free_with_collision_geoms(robot):
    m = robot.mj_model
    assert m.nmesh == 0
    assert not np.any(m.geom_type == mujoco.mjtGeom.mjGEOM_MESH)
    assert m.ngeom > 0


@pytest.mark.parametrize("name", ROBOTS)
def test_every_builtin_robot_has_a_notice(name):
    notice = (ROBOT_ASSETS / BUILTIN_ROBOTS[name]).parent / "NOTICE.md"
    assert notice.is_file(), f"{name}: no NOTICE.md next to {BUILTIN_ROBOTS[name]}"
    text = notice.read_text()
    assert "Licen" in text and len(text) > 200


# ---------------------------------------------------------------------------------------
# The vendored MJCFs are exactly what the script makes from ../shared/robots


def _vendor_module():
    spec = importlib.util.spec_from_file_location("vendor_robots", REPO_ROOT / "scripts" / "vendor_robots.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ROBOTS)
def test_vendored_mjcf_is_reproducible(name, shared_data_dir, tmp_path):
    vendor = _vendor_module()
    if name not in vendor.ROBOTS:
        pytest.fail(f"{name} is built in but scripts/vendor_robots.py does not know it")
    src = shared_data_dir.parent / "robots" / vendor.ROBOTS[name].source
    if not src.exists():
        pytest.skip(f"{src} not found")
    out = tmp_path / Path(vendor.ROBOTS[name].source).name
    vendor.vendor(src, out, vendor.ROBOTS[name])
    assert out.read_text() == (ROBOT_ASSETS / BUILTIN_ROBOTS[name]).read_text()


# ---------------------------------------------------------------------------------------
# Shipped recipes against their robots


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_resolves_and_reference_pose_is_a_t_pose(name):
    """Every name of the recipe resolves (compiled on the demo walk), and its
    ``robot_reference_pose`` is the straight T-pose of the source conventions: arms
    straight along +-Y with the elbow's hinge axis vertical (as the G1's), legs straight
    under the hips, soles level."""
    robot, recipe = load_robot(name), load_recipe(RECIPES[name])
    compile_problem(RetargetingProblem(demo_motion(num_frames=8), recipe, robot))
    m = robot.mj_model
    d = mujoco.MjData(m)
    d.qpos[:] = m.qpos0
    for joint, v in recipe.robot_reference_pose.items():
        d.qpos[7 + robot.dof_index(joint)] = v
    mujoco.mj_kinematics(m, d)

    def point(human: str) -> np.ndarray:
        t = next(t for t in recipe.targets if t.human.value == human and t.position_weight > 0)
        b = robot.body_index(t.body) + 1
        return d.xpos[b] + d.xmat[b].reshape(3, 3) @ np.asarray(t.offset)

    for side, sign in (("left", 1.0), ("right", -1.0)):
        shoulder, elbow, wrist = point(f"{side}_shoulder"), point(f"{side}_elbow"), point(f"{side}_wrist")
        for a, b in ((shoulder, elbow), (elbow, wrist)):
            u = (b - a) / np.linalg.norm(b - a)
            assert u[1] * sign > 0.99, f"{side} arm segment points along {u}, not {sign:+.0f}Y"
        elbow_body = robot.body_index(next(t.body for t in recipe.targets if t.human.value == f"{side}_elbow"))
        hinge = robot.tree.body_dof[elbow_body]
        assert hinge >= 0, "the elbow target body carries no hinge"
        j = m.joint(robot.dof_names[hinge]).id
        assert abs(d.xaxis[j][2]) > 0.99, f"{side} elbow axis {d.xaxis[j]} is not vertical"
        hip, ankle = point(f"{side}_hip"), point(f"{side}_ankle")
        assert np.linalg.norm((hip - ankle)[:2]) < 0.03, f"{side} leg is not straight under the hip"
    for b in recipe.ground_bodies:
        assert d.xmat[robot.body_index(b) + 1].reshape(3, 3)[2, 2] > 0.999, f"{b} is not level"


# ---------------------------------------------------------------------------------------
# Loader rules the H1 and T1 sources exercise

_DUMMY_WORLD_HINGE = """
<mujoco>
  <worldbody>
    <body name="base" pos="0 0 1">
      <freejoint/>
      <geom type="sphere" size="0.1"/>
    </body>
    <body name="not_use_body" pos="0 0 20">
      <inertial pos="0 0 0" mass="0.1" diaginertia="0.1 0.1 0.1"/>
      <joint name="not_use_joint"/>
    </body>
  </worldbody>
</mujoco>
"""

_FLOOR_ON_WORLD = """
<mujoco>
  <worldbody>
    <geom name="ground" type="plane" size="10 10 0.1"/>
    <body name="base" pos="0 0 1">
      <freejoint/>
      <geom type="box" size="0.1 0.1 0.1"/>
      <body name="leg" pos="0 0 -0.2">
        <joint name="knee" axis="0 1 0" range="-1 1"/>
        <geom type="sphere" size="0.05" pos="0 0 -0.5"/>
      </body>
    </body>
  </worldbody>
</mujoco>
"""


def test_hinge_outside_the_floating_base_is_rejected(tmp_path):
    """Unitree's h1.xml pads its motor list with a hinge on a world body; such a joint
    would be a DoF that moves nothing the retargeter tracks."""
    path = tmp_path / "dummy.xml"
    path.write_text(_DUMMY_WORLD_HINGE)
    with pytest.raises(
        RobotModelError,
        match=r"joint 'not_use_joint' on body 'not_use_body' is not below "
        r"the floating base 'base'",
    ):
        load_robot(path)


def test_floor_geom_on_the_world_body_is_not_the_robots_sole(tmp_path):
    """The T1 source carries a ground plane: the robot's lowest point ignores it."""
    path = tmp_path / "floor.xml"
    path.write_text(_FLOOR_ON_WORLD)
    robot = load_robot(path)
    assert robot.standing_height == pytest.approx(0.2 + 0.5 + 0.05)
