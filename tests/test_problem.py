"""Tests for retarget_jax.problem: recipe parsing, name resolution and scales from the clip."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import yaml

from retarget_jax.errors import ConfigError, UnknownNameError
from retarget_jax.files.resources import config_dir
from retarget_jax.motion.demo import demo_motion
from retarget_jax.motion.skeleton import HumanJoint
from retarget_jax.problem import RetargetingProblem, compile_problem, recipe_from_dict
from retarget_jax.problem.limbs import recipe_limbs


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
    with pytest.raises(
        UnknownNameError, match=r"recipe: targets\[4\]\.human: human joint 'left_kneee' not found; valid: .*left_knee"
    ) as e:
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
    with pytest.raises(
        UnknownNameError,
        match=r"recipe lafan1_g1: targets.*: body of robot unitree_g1 'left_foot_link' not found; "
        r"valid: .*left_ankle_roll_link",
    ) as e:
        compile_problem(RetargetingProblem(walk, recipe, g1))
    assert set(e.value.valid) == set(g1.body_names)


def test_unknown_body_in_scale_group_and_pose(recipe_dict, g1, walk):
    d = copy.deepcopy(recipe_dict)
    d["scale_groups"]["legs"]["robot_chain"] = ["left_hip_roll_link", "left_ankle"]
    with pytest.raises(UnknownNameError, match=r"scale_groups\.legs: body of robot unitree_g1 'left_ankle' not found"):
        compile_problem(RetargetingProblem(walk, recipe_from_dict(d), g1))
    d = copy.deepcopy(recipe_dict)
    d["default_pose"]["left_elbow"] = 0.3
    with pytest.raises(
        UnknownNameError,
        match=r"default_pose: joint of robot unitree_g1 'left_elbow' not found; valid: .*left_elbow_joint",
    ):
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
    twin = scaled_figure(
        pos,
        np.asarray(c.bone_scale, np.float64),
        np.asarray(c.bone_lateral_scale, np.float64),
        root,
        np.asarray(c.root_anchor, np.float64),
    )
    twin[..., 2] += float(c.z_offset)
    np.testing.assert_allclose(twin, sh, atol=1e-5)


# --------------------------------------------------------------------------- fitted recipe values


def test_fitted_recipe_values_move_the_compiled_arrays(recipe_dict, lafan1_g1_recipe, g1, walk):
    """A group's ``factor`` multiplies its measured ratio, ``ground.offset`` adds to the
    vertical shift, a target's ``rotation_offset`` turns its offset in the body frame, and
    ``limbs`` sets per-limb direction weights; neutral values change nothing."""
    from retarget_jax.rotations import quat_exp, quat_mul

    d = copy.deepcopy(recipe_dict)
    d["scale_groups"]["arms"]["factor"] = 1.1
    d["ground"]["offset"] = 0.02
    rv = [0.1, -0.2, 0.05]
    d["targets"][0]["rotation_offset"] = rv  # pelvis: orientation target 0
    d["limbs"] = {"trunk": 0.0, "left_forearm": 2.0}
    fitted = recipe_from_dict(d)
    base = compile_problem(RetargetingProblem(walk, lafan1_g1_recipe, g1)).clip
    fit = compile_problem(RetargetingProblem(walk, fitted, g1))
    c = fit.clip
    elbow, knee = walk.index("left_elbow"), walk.index("left_knee")
    assert float(c.bone_scale[elbow]) == pytest.approx(1.1 * float(base.bone_scale[elbow]), rel=1e-6)
    assert float(c.bone_scale[knee]) == pytest.approx(float(base.bone_scale[knee]), rel=1e-6)
    assert float(c.z_offset) == pytest.approx(float(base.z_offset) + 0.02, abs=1e-6)
    want = quat_mul(np.asarray(base.rot_offset[0], np.float64), quat_exp(np.asarray(rv)))
    np.testing.assert_allclose(np.asarray(c.rot_offset[0]), want, atol=1e-6)
    np.testing.assert_allclose(np.asarray(c.rot_offset[1:]), np.asarray(base.rot_offset[1:]), atol=1e-7)
    names = [lb.limb.name for lb in recipe_limbs(fitted)]
    w = dict(zip(names, np.asarray(c.limb_weight).tolist(), strict=True))
    from retarget_jax.problem import CostWeights

    default = CostWeights().direction
    assert w["trunk"] == 0.0 and w["left_forearm"] == pytest.approx(2 * default)
    assert w["right_forearm"] == 0.0 and w["left_thigh"] == pytest.approx(default)


@pytest.mark.parametrize(
    "patch, match",
    [
        (lambda d: d.setdefault("limbs", {}).update(left_tail=1.0), r"limbs: limb 'left_tail' not found"),
        (lambda d: d.setdefault("limbs", {}).update(trunk=-1.0), r"limbs\.trunk must be finite and >= 0"),
        (lambda d: d["scale_groups"]["arms"].update(factor=0.0), r"scale_groups\.arms\.factor must be finite and > 0"),
        (lambda d: d["targets"][0].update(rotation_offset=[0.1, 0.2]), r"targets\[0\]\.rotation_offset must have 3"),
        (lambda d: d["ground"].update(hieght=0.1), r"ground: unknown key"),
    ],
)
def test_bad_fitted_values_are_config_errors(recipe_dict, patch, match):
    d = copy.deepcopy(recipe_dict)
    patch(d)
    with pytest.raises((ConfigError, UnknownNameError), match=match):
        recipe_from_dict(d)


# --------------------------------------------------------------------------- compile steps


def test_compile_steps_on_hand_built_inputs(lafan1_g1_recipe, g1, walk):
    """The named steps of compile_problem, called on their own: scales from a hand-built
    clip whose leg chain is known, the ground shift from hand-set heights, position-target
    shifts, and the limbs' static tables."""
    from retarget_jax.motion.canonical import canonical_index
    from retarget_jax.problem import compile as cm

    src = cm.resolve_source(RetargetingProblem(walk, lafan1_g1_recipe, g1))
    assert src.root_joint == canonical_index(HumanJoint.PELVIS) and HumanJoint.LEFT_WRIST in src.present
    scales = cm.measure_scales(src, lafan1_g1_recipe, g1)
    # legs: the G1's hip-roll -> ankle-roll length at the reference pose over the human's chain
    a, b = g1.body_index("left_hip_roll_link"), g1.body_index("left_ankle_roll_link")
    robot_len = float(np.linalg.norm(src.ref_xpos[b] - src.ref_xpos[a]))
    assert scales.group["legs"] == pytest.approx(robot_len / walk.chain_length("left_ankle", "left_hip"), rel=1e-9)
    assert scales.root == scales.group["legs"]
    # ground: hand-set heights of the scaled figure, ankles 10 cm and 8 cm at rest
    T, J = walk.num_frames, scales.bone.shape[0]
    z = np.full((T, J), 0.5)
    z[:, canonical_index(HumanJoint.LEFT_ANKLE)] = 0.10
    z[:, canonical_index(HumanJoint.RIGHT_ANKLE)] = 0.08
    z_offset, floor = cm.ground_shift(src, lafan1_g1_recipe, g1, z)
    assert floor == pytest.approx(0.08)
    z2, _ = cm.ground_shift(src, lafan1_g1_recipe, g1, z + 0.05)  # the human 5 cm higher: the shift drops 5 cm
    assert z2 == pytest.approx(z_offset - 0.05)
    # toes lifted to the ankle's floor height; the pelvis lowered to hip height
    z[:, canonical_index(HumanJoint.LEFT_TOE)] = 0.03
    z[:, canonical_index(HumanJoint.PELVIS)] = 0.95
    z[:, canonical_index(HumanJoint.LEFT_HIP)] = z[:, canonical_index(HumanJoint.RIGHT_HIP)] = 0.90
    pos_t = [t for t in lafan1_g1_recipe.targets if t.position_weight > 0]
    dz = dict(zip([t.human for t in pos_t], cm.position_target_shifts(src, pos_t, z, 0.08), strict=True))
    assert dz[HumanJoint.LEFT_TOE] == pytest.approx(0.05) and dz[HumanJoint.PELVIS] == pytest.approx(-0.05)
    assert dz[HumanJoint.LEFT_KNEE] == 0.0
    # limbs: body pairs of the recipe's targets, validity where both joints are
    valid = np.ones((T, J), bool)
    valid[3, canonical_index(HumanJoint.LEFT_ELBOW)] = False
    bodies, joints, offsets, weights, ok = cm.limb_arrays(lafan1_g1_recipe, g1, valid, 0.5)
    upper = joints.index((canonical_index(HumanJoint.LEFT_SHOULDER), canonical_index(HumanJoint.LEFT_ELBOW)))
    assert bodies[upper] == (g1.body_index("left_shoulder_roll_link"), g1.body_index("left_elbow_link"))
    assert weights[upper] == 0.5 and offsets.shape == (len(joints), 2, 3)
    assert not ok[3, upper] and ok[4, upper] and ok[3].sum() == len(joints) - 2  # upper arm and forearm
