"""Tests for retarget_jax.problem: recipe parsing, name resolution and scales from the clip."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import yaml

from retarget_jax.errors import ConfigError, UnknownNameError
from retarget_jax.motion.demo import demo_motion
from retarget_jax.motion.skeleton import HumanJoint
from retarget_jax.problem import RetargetingProblem, compile_problem, recipe_from_dict
from retarget_jax.problem.recipe import config_dir


@pytest.fixture(scope="module")
def recipe_dict():
    return yaml.safe_load((config_dir() / "recipes" / "lafan1_g1.yaml").read_text())


@pytest.fixture(scope="module")
def walk():
    return demo_motion(num_frames=40)


def test_shipped_recipe_parses(recipe_dict, lafan1_g1_recipe):
    r = recipe_from_dict(recipe_dict)
    assert r == lafan1_g1_recipe
    assert r.root_human is HumanJoint.PELVIS and r.root_body == "pelvis"
    assert len(r.targets) == len(recipe_dict["targets"])


def test_unknown_human_joint_lists_valid_roles(recipe_dict):
    d = copy.deepcopy(recipe_dict)
    d["targets"][4]["human"] = "left_kneee"
    with pytest.raises(UnknownNameError,
                       match=r"recipe: targets\[4\]\.human: human joint 'left_kneee' not found; valid: .*left_knee") as e:
        recipe_from_dict(d)
    assert set(e.value.valid) == {j.value for j in HumanJoint}


def test_unknown_human_joint_in_scale_group(recipe_dict):
    d = copy.deepcopy(recipe_dict)
    d["scale_groups"]["arms"]["bones"] = ["left_elbow", "right_forearm"]
    with pytest.raises(UnknownNameError, match=r"scale_groups\.arms\.bones: human joint 'right_forearm' not found"):
        recipe_from_dict(d)


def test_unknown_robot_body_names_field_and_lists_bodies(recipe_dict, g1, walk):
    d = copy.deepcopy(recipe_dict)
    d["targets"][6]["body"] = "left_foot_link"
    recipe = recipe_from_dict(d)  # bodies are checked against the robot at compile time
    with pytest.raises(UnknownNameError,
                       match=r"recipe lafan1_g1: targets.*: body of robot unitree_g1 'left_foot_link' not found; "
                             r"valid: .*left_ankle_roll_link") as e:
        compile_problem(RetargetingProblem(walk, recipe, g1))
    assert set(e.value.valid) == set(g1.body_names)


def test_unknown_body_in_scale_group_and_pose(recipe_dict, g1, walk):
    d = copy.deepcopy(recipe_dict)
    d["scale_groups"]["legs"]["robot_chain"] = ["left_hip_roll_link", "left_ankle"]
    with pytest.raises(UnknownNameError, match=r"scale_groups\.legs: body of robot unitree_g1 'left_ankle' not found"):
        compile_problem(RetargetingProblem(walk, recipe_from_dict(d), g1))
    d = copy.deepcopy(recipe_dict)
    d["default_pose"]["left_elbow"] = 0.3
    with pytest.raises(UnknownNameError,
                       match=r"default_pose: joint of robot unitree_g1 'left_elbow' not found; valid: .*left_elbow_joint"):
        compile_problem(RetargetingProblem(walk, recipe_from_dict(d), g1))


def test_unknown_recipe_key_is_config_error(recipe_dict):
    d = copy.deepcopy(recipe_dict)
    d["smoothnes"] = 1.0
    with pytest.raises(ConfigError, match=r"recipe: unknown key\(s\) \['smoothnes'\]; valid: .*'targets'"):
        recipe_from_dict(d)
    d = copy.deepcopy(recipe_dict)
    d["targets"][0]["weight"] = 1.0
    with pytest.raises(ConfigError, match=r"targets\[0\]: unknown key\(s\) \['weight'\]"):
        recipe_from_dict(d)
    d = copy.deepcopy(recipe_dict)
    del d["root"]
    with pytest.raises(ConfigError, match=r"missing required key 'root'"):
        recipe_from_dict(d)


def test_recipe_for_another_robot_is_config_error(recipe_dict, g1, walk):
    d = copy.deepcopy(recipe_dict)
    d["robot"] = "unitree_h1"
    with pytest.raises(ConfigError, match=r"is for robot 'unitree_h1', not 'unitree_g1'"):
        compile_problem(RetargetingProblem(walk, recipe_from_dict(d), g1))


def test_scales_are_derived_from_the_clip(lafan1_g1_recipe, g1, walk):
    """A 10% larger performer gets 10% smaller scales; the floor offset is unchanged."""
    big = dataclasses.replace(walk, positions=walk.positions * 1.1)
    p = compile_problem(RetargetingProblem(walk, lafan1_g1_recipe, g1))
    p_big = compile_problem(RetargetingProblem(big, lafan1_g1_recipe, g1))
    c, cb = p.clip, p_big.clip
    assert np.all(np.isfinite(c.bone_scale)) and float(c.root_scale) > 0
    np.testing.assert_allclose(np.asarray(cb.bone_scale), np.asarray(c.bone_scale) / 1.1, rtol=1e-6)
    np.testing.assert_allclose(float(cb.root_scale), float(c.root_scale) / 1.1, rtol=1e-6)
    np.testing.assert_allclose(float(cb.z_offset), float(c.z_offset), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(cb.pos_target_dz), np.asarray(c.pos_target_dz), atol=1e-6)
    # groups scale different bones: legs and arms differ on the demo skeleton
    knee, elbow = walk.index("left_knee"), walk.index("left_elbow")
    assert abs(float(c.bone_scale[knee]) - float(c.bone_scale[elbow])) > 1e-3
    assert float(c.bone_scale[knee]) == pytest.approx(float(c.root_scale))


def test_compiled_problem_shapes_and_dtypes(lafan1_g1_recipe, g1, walk):
    import jax.numpy as jnp

    p = compile_problem(RetargetingProblem(walk, lafan1_g1_recipe, g1))
    c = p.clip
    T, J = walk.num_frames, len(walk.joint_names)
    Kp = sum(t.position_weight > 0 for t in lafan1_g1_recipe.targets)
    Kr = sum(t.orientation_weight > 0 for t in lafan1_g1_recipe.targets)
    assert c.human_pos.shape == (T, J, 3) and c.human_quat.shape == (T, J, 4)
    assert c.pos_weight.shape == (Kp,) and c.pos_offset.shape == (Kp, 3) and c.rot_offset.shape == (Kr, 4)
    assert c.smooth_weight.shape == (g1.nv,) and c.posture_weight.shape == (g1.num_dof,)
    assert len(p.pos_body) == Kp and len(p.rot_body) == Kr and p.num_frames == T
    for leaf in (c.human_pos, c.fps, c.root_scale, c.pos_weight, p.robot.q_lower, p.robot.tree.body_pos):
        assert leaf.dtype == jnp.float32 and not getattr(leaf, "weak_type", False)
    q_lo, q_hi, q_def = (np.asarray(a) for a in (p.robot.q_lower, p.robot.q_upper, p.robot.q_default))
    assert np.all(q_lo <= q_def) and np.all(q_def <= q_hi)


def test_lateral_scale_group_stretches_only_the_hip_width():
    """lafan1_h1's hip group is lateral: along the hip axis the hip bones take its ratio,
    across it (a source's vertical drop from the root) the root scale; and the host-side
    twin used for heights matches the jitted figure."""
    import numpy as np

    from retarget_jax.motion.canonical import canonical_index, canonicalize
    from retarget_jax.motion.demo import demo_motion
    from retarget_jax.motion.skeleton import HumanJoint as J
    from retarget_jax.problem import RetargetingProblem, compile_problem, load_recipe
    from retarget_jax.problem.compile import scaled_figure
    from retarget_jax.robots import load_robot
    from retarget_jax.solve.costs import scaled_human

    m = demo_motion(num_frames=12)
    cp = compile_problem(RetargetingProblem(m, load_recipe("lafan1_h1"), load_robot("unitree_h1")))
    c = cp.clip
    sh, p = np.asarray(scaled_human(cp), np.float64), np.asarray(c.human_pos, np.float64)
    lh, rh, pel = (canonical_index(j) for j in (J.LEFT_HIP, J.RIGHT_HIP, J.PELVIS))
    lateral, root = float(c.bone_lateral_scale[lh]), float(c.root_scale)
    assert lateral > 1.5 * root  # the H1 stands wide
    axis = p[:, lh] - p[:, rh]
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    for hip in (lh, rh):
        v, w = p[:, hip] - p[:, pel], sh[:, hip] - sh[:, pel]
        av, aw = (v * axis).sum(-1), (w * axis).sum(-1)
        np.testing.assert_allclose(aw, lateral * av, rtol=1e-5)
        np.testing.assert_allclose(w - aw[:, None] * axis, root * (v - av[:, None] * axis), atol=1e-6)
    pos, _, _ = canonicalize(m)
    twin = scaled_figure(pos, np.asarray(c.bone_scale, np.float64), np.asarray(c.bone_lateral_scale, np.float64),
                          root, np.asarray(c.root_anchor, np.float64))
    twin[..., 2] += float(c.z_offset)
    np.testing.assert_allclose(twin, sh, atol=1e-5)
