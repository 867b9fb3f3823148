"""Every source family through the whole pipeline, on one compiled solver shape.

All clips here are retargeted to the G1 in bucket 64 with recipes that share their target
set (lafan1_g1, smpl_g1, keypoints_g1), so the module compiles the solver once; the
canonical skeleton makes the shapes independent of the source's joint set.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from retarget_jax.cli import main
from retarget_jax.io import load_result
from retarget_jax.metrics import metric_summary
from retarget_jax.motion import read_motion
from retarget_jax.motion.canonical import CANONICAL_JOINTS
from retarget_jax.motion.demo import demo_motion
from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP
from retarget_jax.motion.skeleton import HumanJoint as J
from retarget_jax.pipeline import retarget_motions
from retarget_jax.problem import load_recipe
from retarget_jax.result import SolveStatus
from retarget_jax.rotations import quat_rotate

ROLE_TO_LAFAN1 = {role: name for name, role in LAFAN1_JOINT_MAP.items()}


def _upright_and_grounded(res, robot, recipe):
    m = metric_summary(res, robot)
    assert SolveStatus.ok(res.status)
    assert m["upright"] > 0.8
    assert m["joint_limit_violation.max_rad"] < 1e-6
    for b in recipe.ground_bodies:
        assert abs(m[f"stance_feet.{b}_stance_sole_height_mean"]) < 0.03
    return m


def _write_keypoints(path, motion, names=None, valid=None):
    names = names or [ROLE_TO_LAFAN1[j] for j in motion.joint_names]
    arrays = dict(
        positions=motion.positions.astype(np.float32), joint_names=np.array(names), fps=np.float32(motion.fps)
    )
    if valid is not None:
        arrays["valid"] = valid
    np.savez(path, **arrays)


def test_masked_joint_is_ignored_by_the_solve(g1, lafan1_g1_recipe):
    """A joint marked invalid is not tracked: garbage there changes nothing, and the
    result equals that of the same motion without the joint at all."""
    m = demo_motion(num_frames=40)
    w = m.index(J.LEFT_WRIST)
    pos = m.positions.copy()
    pos[:, w] += np.array([0.0, 3.0, 2.0])  # far out of reach
    valid = np.ones((m.num_frames, len(m.joint_names)), bool)
    valid[:, w] = False
    masked = dataclasses.replace(m, positions=pos, valid=valid)
    keep = [i for i in range(len(m.joint_names)) if i != w]
    without = dataclasses.replace(
        m,
        joint_names=tuple(m.joint_names[i] for i in keep),
        parents=np.array([keep.index(int(m.parents[i])) if m.parents[i] >= 0 else -1 for i in keep]),
        positions=m.positions[:, keep],
        orientations=m.orientations[:, keep],
        source_joint_names=(),
    )
    unmasked = dataclasses.replace(m, positions=pos)
    a, b, c = retarget_motions([masked, without, unmasked], lafan1_g1_recipe, g1, max_batch=1)
    np.testing.assert_allclose(a.dof_pos, b.dof_pos, atol=2e-4)
    assert np.abs(a.dof_pos - c.dof_pos).max() > 0.1  # the garbage would have mattered
    k = [i for i, name in enumerate(a.target_body_names) if name == "left_wrist_yaw_link"]
    assert np.isnan(a.target_pos_w[:, k]).all() and np.isfinite(c.target_pos_w).all()


def test_bvh_motion_and_its_keypoints_give_nearly_the_same_robot_motion(tmp_path, g1):
    """The same motion with joint orientations (LAFAN1 conventions) and as positions only
    (keypoints npz with LAFAN1 names, read back through the keypoints reader)."""
    m = demo_motion(num_frames=60)
    kp = tmp_path / "walk_keypoints.npz"
    _write_keypoints(kp, m)
    km = read_motion(kp, "keypoints")
    assert km.orientations is None
    (a,) = retarget_motions([m], load_recipe("lafan1_g1"), g1)
    (b,) = retarget_motions([km], load_recipe("keypoints_g1"), g1)
    _upright_and_grounded(b, g1, load_recipe("keypoints_g1"))
    # body positions agree to a few cm, joint angles on average to a few degrees
    d_body = np.linalg.norm(a.body_pos_w - b.body_pos_w, axis=-1)
    assert d_body.mean() < 0.03 and np.percentile(d_body, 95) < 0.08
    assert np.abs(a.dof_pos - b.dof_pos).mean() < 0.1


def _smplx_npz(path, T=120, fps=120.0):
    """A synthetic AMASS SMPL-X clip: a Y-up body turned Z-up (root_orient), stepping in
    place with swinging arms, written in AMASS's SMPL-X layout."""
    t = np.arange(T) / fps
    pose_body = np.zeros((T, 21, 3))
    s = np.sin(2 * np.pi * 1.0 * t)
    pose_body[:, 0, 0] = -0.4 * np.clip(s, 0, None)  # left hip flexion (about SMPL x)
    pose_body[:, 3, 0] = 0.8 * np.clip(s, 0, None)  # left knee
    pose_body[:, 1, 0] = -0.4 * np.clip(-s, 0, None)
    pose_body[:, 4, 0] = 0.8 * np.clip(-s, 0, None)
    pose_body[:, 15, 2] = -1.2  # left shoulder down from the T-pose (about SMPL z)
    pose_body[:, 16, 2] = 1.2
    root_orient = np.tile([np.pi / 2, 0.0, 0.0], (T, 1))  # canonical Y-up -> world Z-up
    trans = np.c_[np.zeros(T), np.zeros(T), np.full(T, 0.95)]
    np.savez(
        path,
        pose_body=pose_body.reshape(T, 63),
        root_orient=root_orient,
        trans=trans,
        betas=np.zeros(16),
        gender=np.array("neutral"),
        mocap_frame_rate=np.array(fps),
        pose_hand=np.zeros((T, 90)),
        pose_jaw=np.zeros((T, 3)),
        pose_eye=np.zeros((T, 6)),
    )


@pytest.mark.parametrize("robot_name", ["unitree_g1", "unitree_h1", "booster_t1"])
def test_smplx_120fps_resampled_to_30fps_through_the_cli(tmp_path, capsys, robot_name):
    from retarget_jax.formats import ROBOT_SHORT_NAMES
    from retarget_jax.robots import load_robot

    robot = load_robot(robot_name)
    src = tmp_path / "clip_stageii.npz"
    _smplx_npz(src, T=120, fps=120.0)
    out = tmp_path / "clip.npz"
    rc = main(
        [
            "retarget",
            str(src),
            "--format",
            "amass",
            "--robot",
            robot_name,
            "--output",
            str(out),
            "--fps",
            "30",
            "--cache-dir",
            "",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    res = load_result(out)
    assert res.num_frames == 120 * 30 // 120 and res.fps == 30.0
    assert res.provenance["source_fps"] == 120.0 and res.provenance["source_format"] == "smplx"
    recipe = load_recipe(f"smpl_{ROBOT_SHORT_NAMES[robot_name]}")
    assert res.provenance["recipe"] == recipe.name and res.robot == robot_name
    m = _upright_and_grounded(res, robot, recipe)
    assert m["tracking_error.mean"] < 0.06
    # the body faces where the SMPL body faces: canonical +Z turned by root_orient -> world -Y
    fwd = quat_rotate(res.root_quat_wxyz, np.array([1.0, 0.0, 0.0]))
    assert (fwd[:, 1] < -0.9).all()


@pytest.mark.parametrize("robot_name", ["unitree_g1", "unitree_h1", "booster_t1"])
def test_keypoints_with_missing_joints_and_frames(tmp_path, robot_name):
    """Keypoints without toes and with an occluded wrist for a few frames still retarget
    to every robot; the missing targets are NaN in the result and untracked."""
    from retarget_jax.formats import ROBOT_SHORT_NAMES
    from retarget_jax.robots import load_robot

    m = demo_motion(num_frames=50)
    drop = {J.LEFT_TOE, J.RIGHT_TOE}
    keep = [i for i, j in enumerate(m.joint_names) if j not in drop]
    sub = dataclasses.replace(
        m,
        joint_names=tuple(m.joint_names[i] for i in keep),
        parents=np.zeros(len(keep), int) - 1,
        positions=m.positions[:, keep].copy(),
        orientations=None,
        conventions=None,
        source_joint_names=(),
    )
    w = sub.joint_names.index(J.RIGHT_WRIST)
    sub.positions[10:15, w] = np.nan
    kp = tmp_path / "kp.npz"
    _write_keypoints(kp, sub)
    km = read_motion(kp, "keypoints")
    assert not km.valid_mask[10:15, km.index(J.RIGHT_WRIST)].any()
    robot = load_robot(robot_name)
    recipe = load_recipe(f"keypoints_{ROBOT_SHORT_NAMES[robot_name]}")
    (res,) = retarget_motions([km], recipe, robot)
    _upright_and_grounded(res, robot, recipe)
    pos_targets = [t.human for t in recipe.targets if t.position_weight > 0]  # result's target order
    wk = [pos_targets.index(J.RIGHT_WRIST)]
    assert np.isnan(res.target_pos_w[10:15, wk]).all() and np.isfinite(res.target_pos_w[:10, wk]).all()
    toes = [k for k, h in enumerate(pos_targets) if h in (J.LEFT_TOE, J.RIGHT_TOE)]
    assert np.isnan(res.target_pos_w[:, toes]).all()
    assert len(CANONICAL_JOINTS) == 22


def test_a_user_robot_from_an_mjcf_path_and_a_recipe_file(tmp_path, capsys):
    """The 'Adding a robot' path of docs/robots.md: an MJCF file outside the package and a recipe
    YAML that names it, used from the command line without touching code."""
    import shutil

    import yaml

    from retarget_jax.files.resources import ROBOT_ASSETS, config_dir
    from retarget_jax.robots import load_robot
    from retarget_jax.robots.spec import BUILTIN_ROBOTS

    xml = tmp_path / "my_robot.xml"
    shutil.copy(ROBOT_ASSETS / BUILTIN_ROBOTS["unitree_g1"], xml)
    recipe = yaml.safe_load((config_dir() / "recipes" / "lafan1_g1.yaml").read_text())
    recipe.update(name="my_robot_lafan1", robot="my_robot")
    rfile = tmp_path / "my_robot_lafan1.yaml"
    rfile.write_text(yaml.safe_dump(recipe))
    kp = tmp_path / "walk.npz"
    _write_keypoints(kp, demo_motion(num_frames=40))
    out = tmp_path / "walk_my_robot.npz"
    rc = main(
        [
            "retarget",
            str(kp),
            "-f",
            "keypoints",
            "--robot",
            str(xml),
            "--recipe",
            str(rfile),
            "-o",
            str(out),
            "--cache-dir",
            "",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    res = load_result(out)
    assert res.robot == "my_robot" and res.provenance["recipe"] == "my_robot_lafan1"
    _upright_and_grounded(res, load_robot(xml), load_recipe(rfile))  # the metrics check the robot's name


def test_cli_explicit_contact_plan_follows_resampling_and_plausibility_switches_off(tmp_path, capsys):
    """``--contacts`` (a plan on the source's 120 frames) is carried onto the 30 fps result;
    ``--no-plausibility`` zeroes those weights (same compiled shape as the test above)."""
    src = tmp_path / "clip_stageii.npz"
    _smplx_npz(src, T=120, fps=120.0)
    plan = tmp_path / "plan.csv"
    rows = [f"1,{int(t >= 60)}" for t in range(120)]  # left foot planted, right planted from 0.5 s
    plan.write_text("left_ankle,right_ankle\n" + "\n".join(rows))
    out = tmp_path / "clip.npz"
    rc = main(
        [
            "retarget",
            str(src),
            "--format",
            "amass",
            "--robot",
            "unitree_g1",
            "--output",
            str(out),
            "--fps",
            "30",
            "--cache-dir",
            "",
            "--contacts",
            str(plan),
            "--no-plausibility",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    res = load_result(out)
    assert res.contact_body_names == ("left_ankle_roll_link", "right_ankle_roll_link")
    assert res.contacts.shape == (30, 2) and res.contacts[:, 0].all()
    np.testing.assert_array_equal(res.contacts[:, 1], np.arange(30) >= 15)
    assert res.provenance["contact_plan"]["source"] == "explicit"
    w = res.provenance["weights"]
    assert w["ground"] == w["contact_slide"] == w["self_collision"] == 0.0 and w["smooth_joint"] > 0
    bad = tmp_path / "bad.csv"
    bad.write_text("left_ankle,right_ankle\n1,0\n")
    rc = main(["retarget", str(src), "--format", "amass", "--output", str(out), "--contacts", str(bad)])
    assert rc == 2 and "stance" in capsys.readouterr().err
