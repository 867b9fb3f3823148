"""The `retarget-jax` command line: format names, robot-space conversion, errors.

The solving paths of the command are covered in tests/test_sources_e2e.py, which shares
one compiled solver shape across formats.
"""

from __future__ import annotations

import numpy as np
import pytest

from retarget_jax.cli import main
from retarget_jax.formats import HUMAN_FORMATS, ROBOT_FORMATS, MotionFormat, default_recipe
from retarget_jax.io import load_result, write_result

ISSUE_FORMATS = {
    "amass",
    "smpl",
    "smplh",
    "smplx",
    "bvh_lafan1",
    "bvh_nokov",
    "bvh_hc_mocap",
    "bvh",
    "keypoints",
    "gmr_pkl",
    "mjlab_npz",
    "seed_csv",
}


def test_format_names_are_the_documented_set(capsys):
    assert {f.value for f in MotionFormat} == ISSUE_FORMATS
    assert {f.value for f in ROBOT_FORMATS} == {"gmr_pkl", "mjlab_npz", "seed_csv"}
    assert len(HUMAN_FORMATS) + len(ROBOT_FORMATS) == len(ISSUE_FORMATS)
    assert main(["formats"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert listed == ISSUE_FORMATS


@pytest.mark.parametrize(
    "fmt,robot,recipe",
    [
        ("amass", "unitree_g1", "smpl_g1"),
        ("smplx", "unitree_h1", "smpl_h1"),
        ("bvh_nokov", "booster_t1", "lafan1_t1"),
        ("keypoints", "unitree_g1", "keypoints_g1"),
    ],
)
def test_default_recipe_per_family_and_robot(fmt, robot, recipe):
    assert default_recipe(fmt, robot) == recipe


@pytest.mark.parametrize("src_fmt,suffix", [("gmr_pkl", ".pkl"), ("mjlab_npz", ".npz")])
def test_robot_space_input_converts_without_a_solve(tmp_path, g1_trajectory, capsys, src_fmt, suffix):
    traj = g1_trajectory
    src = tmp_path / f"in{suffix}"
    write_result(traj, src, src_fmt)
    out = tmp_path / "out.npz"
    rc = main(["retarget", str(src), "--format", src_fmt, "--robot", "unitree_g1", "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = load_result(out)
    assert res.num_frames == traj.num_frames and res.fps == traj.fps
    np.testing.assert_allclose(res.dof_pos, traj.dof_pos, atol=1e-5)
    np.testing.assert_allclose(res.body_pos_w, traj.body_pos_w, atol=1e-5)
    assert res.provenance["solved"] is False and res.provenance["source_format"] == src_fmt


def test_output_format_follows_the_file_name(tmp_path, g1_trajectory):
    traj = g1_trajectory
    src = tmp_path / "in.pkl"
    write_result(traj, src, "gmr_pkl")
    out = tmp_path / "clip.mjlab.npz"
    assert main(["retarget", str(src), "-f", "gmr_pkl", "-o", str(out)]) == 0
    with np.load(out) as z:
        assert {"joint_pos", "body_pos_w", "fps"} <= set(z.files)
        np.testing.assert_allclose(z["joint_pos"], traj.dof_pos, atol=1e-5)


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["--format", "fbx"], "UnknownNameError: --format: motion format 'fbx' not found"),
        (["--format", "bvh_lafan1", "--robot", "atlas"], "UnknownNameError"),
        (["--format", "gmr_pkl"], "MotionFormatError"),  # the file is not a pickle
    ],
)
def test_errors_are_typed_and_exit_2(tmp_path, capsys, argv, expect):
    src = tmp_path / "in.pkl"
    src.write_bytes(b"not a pickle at all")
    rc = main(["retarget", str(src), "--output", str(tmp_path / "o.npz"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and expect in err and "Traceback" not in err
    assert not (tmp_path / "o.npz").exists()


def test_missing_input_file_is_reported(tmp_path, capsys):
    rc = main(["retarget", str(tmp_path / "nope.bvh"), "-f", "bvh_lafan1", "-o", str(tmp_path / "o.npz")])
    assert rc == 2 and "nope.bvh" in capsys.readouterr().err


def test_sources_without_joint_frames_get_the_position_only_recipe():
    import dataclasses

    from retarget_jax.motion.demo import demo_motion

    m = demo_motion(num_frames=5)
    assert default_recipe("bvh", "unitree_g1", m) == "lafan1_g1"
    assert default_recipe("bvh", "unitree_g1", dataclasses.replace(m, conventions=None)) == "keypoints_g1"
    assert default_recipe("bvh_nokov", "booster_t1", dataclasses.replace(m, orientations=None)) == "keypoints_t1"
