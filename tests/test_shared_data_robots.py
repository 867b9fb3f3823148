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

from retarget_jax.formats import default_recipe, read_motion
from retarget_jax.metrics import recipe_metrics
from retarget_jax.pipeline import retarget_motions
from retarget_jax.problem import load_recipe
from retarget_jax.result import SolveStatus
from retarget_jax.robots import load_robot
from retarget_jax.rotations import quat_rotate

FILES = [("lafan1_skeleton_clip_a.bvh", "bvh_lafan1", None),
         ("mocapbank_19joint_clip.bvh", "bvh", "mocapbank_19"),
         ("omomo_sub3_largebox_003_joints.npz", "keypoints", None)]


@pytest.mark.parametrize("robot_name", ["unitree_g1", "unitree_h1", "booster_t1"])
@pytest.mark.parametrize("fname,fmt,joint_map", FILES)
def test_real_clip_start_retargets_upright_on_the_floor(shared_data_dir, robot_name, fname, fmt, joint_map):
    motion = read_motion(shared_data_dir / fname, fmt, joint_map=joint_map).slice(0, 64)
    robot = load_robot(robot_name)
    recipe = load_recipe(default_recipe(fmt, robot_name, motion))
    (res,) = retarget_motions([motion], recipe, robot)
    assert SolveStatus.ok(res.status)
    m = recipe_metrics(res, robot, recipe)
    trunk = motion.positions[:, motion.index("neck")] - motion.positions[:, motion.index("pelvis")]
    human_up = trunk[:, 2] / np.linalg.norm(trunk, axis=-1)
    robot_up = quat_rotate(res.root_quat_wxyz, np.array([0.0, 0.0, 1.0]))[:, 2]
    assert robot_up.min() > 0.0  # never inverted
    assert (np.arccos(np.clip(robot_up, -1, 1)) < np.arccos(np.clip(human_up, -1, 1)) + np.radians(15)).all()
    assert m["joint_limit_violation_max_rad"] < 1e-6
    assert m["tracking_error_mean_m"] < 0.08
    for b in recipe.ground_bodies:
        assert abs(m[f"{b}_stance_sole_height_mean_m"]) < 0.03, b
    assert np.isfinite(res.qpos).all()
