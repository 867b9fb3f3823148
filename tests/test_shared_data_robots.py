"""Every real clip in ../shared/data, on every built-in robot (first 64 frames, so the
solver shape is the one tests/test_sources_e2e.py compiles): upright, soles on the floor,
joints in range, tracking within a few centimetres. Full clips: scripts/evaluate_shared_data.py.

Upright is judged against the human: the OMOMO clip bends 80 degrees forward to lift a
box within these frames, and a robot that follows it must lean too. The robot's pelvis
must never be inverted, and never lean more than 15 degrees beyond the human's trunk
(pelvis to neck) in the same frame."""

from __future__ import annotations

import numpy as np
import pytest

from retarget_jax.formats import default_recipe
from retarget_jax.metrics import metric_summary
from retarget_jax.motion import read_motion
from retarget_jax.pipeline import retarget_motions
from retarget_jax.problem import load_recipe
from retarget_jax.result import SolveStatus
from retarget_jax.robots import load_robot
from retarget_jax.rotations import quat_rotate

FILES = [
    ("lafan1_skeleton_clip_a.bvh", "bvh_lafan1", None),
    ("mocapbank_19joint_clip.bvh", "bvh", "mocapbank_19"),
    ("omomo_sub3_largebox_003_joints.npz", "keypoints", None),
]


@pytest.mark.parametrize("robot_name", ["unitree_g1", "unitree_h1", "booster_t1"])
@pytest.mark.parametrize("fname,fmt,joint_map", FILES)
def test_real_clip_start_retargets_upright_on_the_floor(shared_data_dir, robot_name, fname, fmt, joint_map):
    motion = read_motion(shared_data_dir / fname, fmt, joint_map=joint_map).slice(0, 64)
    robot = load_robot(robot_name)
    recipe = load_recipe(default_recipe(fmt, robot_name, motion))
    (res,) = retarget_motions([motion], recipe, robot)
    assert SolveStatus.ok(res.status)
    m = metric_summary(res, robot)
    trunk = motion.positions[:, motion.index("neck")] - motion.positions[:, motion.index("pelvis")]
    human_up = trunk[:, 2] / np.linalg.norm(trunk, axis=-1)
    robot_up = quat_rotate(res.root_quat_wxyz, np.array([0.0, 0.0, 1.0]))[:, 2]
    assert robot_up.min() > 0.0  # never inverted
    assert (np.arccos(np.clip(robot_up, -1, 1)) < np.arccos(np.clip(human_up, -1, 1)) + np.radians(15)).all()
    assert m["joint_limit_violation.max_rad"] < 1e-6
    assert m["tracking_error.mean"] < 0.08
    for b in recipe.ground_bodies:
        assert abs(m[f"stance_feet.{b}_stance_sole_height_mean"]) < 0.03, b
    assert np.isfinite(res.qpos).all()


def test_real_bvh_and_its_keypoints_give_nearly_the_same_robot_motion(shared_data_dir, tmp_path, g1):
    """The LAFAN1 clip as BVH (joint orientations, lafan1_g1) and as a keypoints npz of its
    joint positions (keypoints_g1, positions only): the robot motions nearly agree."""
    from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP

    bvh = read_motion(shared_data_dir / FILES[0][0], "bvh_lafan1").slice(0, 64)
    kp = tmp_path / "lafan1_keypoints.npz"
    np.savez(kp, positions=bvh.positions, joint_names=np.array(bvh.source_joint_names), fps=np.float64(bvh.fps))
    km = read_motion(kp, "keypoints")
    assert km.orientations is None and set(km.joint_names) == set(bvh.joint_names)
    (a,) = retarget_motions([bvh], load_recipe(default_recipe("bvh_lafan1", "unitree_g1", bvh)), g1)
    (b,) = retarget_motions([km], load_recipe(default_recipe("keypoints", "unitree_g1", km)), g1)
    assert a.provenance["recipe"] == "lafan1_g1" and b.provenance["recipe"] == "keypoints_g1"
    # Legs and pelvis are set by positions in both (measured: 0.8 cm apart). The arms and
    # torso lose their orientation targets as keypoints, so the forearm twist and torso
    # posture are freer (measured: 6-8 cm at the hands, 3.3 cm over all bodies); still
    # within the tracking error of the BVH solve itself.
    d_body = np.linalg.norm(a.body_pos_w - b.body_pos_w, axis=-1)
    legs = [i for i, n in enumerate(a.body_names) if any(k in n for k in ("hip", "knee", "ankle", "pelvis"))]
    assert d_body[:, legs].mean() < 0.015
    assert d_body.mean() < 0.04 and np.percentile(d_body, 95) < 0.10
    assert set(LAFAN1_JOINT_MAP) == set(bvh.source_joint_names)


def test_cli_bvh_with_a_shipped_joint_map(shared_data_dir, tmp_path, capsys):
    """`retarget-jax retarget X.bvh --format bvh --joint-map mixamo`: the LAFAN1 clip's
    first 64 frames renamed to Mixamo's `mixamorig:` joints retarget through the CLI."""
    import dataclasses

    from test_bvh import renamed_clip

    from retarget_jax.cli import main
    from retarget_jax.io import load_result
    from retarget_jax.io.bvh import write_bvh
    from retarget_jax.motion.bvh import parse_bvh
    from retarget_jax.motion.joint_maps import load_joint_map

    clip = parse_bvh(shared_data_dir / FILES[0][0])
    clip = dataclasses.replace(clip, frames=clip.frames[:64])
    src = tmp_path / "take_mixamo.bvh"
    write_bvh(src, renamed_clip(clip, load_joint_map("mixamo")))
    assert "mixamorig:Hips" in src.read_text()[:200]
    out = tmp_path / "take.npz"
    rc = main(
        [
            "retarget",
            str(src),
            "--format",
            "bvh",
            "--joint-map",
            "mixamo",
            "--robot",
            "unitree_g1",
            "-o",
            str(out),
            "--cache-dir",
            "",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    res = load_result(out)
    assert res.num_frames == 64 and res.provenance["source_format"] == "bvh"
    assert res.provenance["recipe"] == "lafan1_g1" and SolveStatus.ok(res.status)
