"""The Hydra driver: every shipped experiment composes into the typed RunConfig, unknown
keys fail, and a directory of robot-space files converts without a solve."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from retarget_jax.errors import ConfigError
from retarget_jax.files.resources import config_dir
from retarget_jax.formats import MotionFormat
from retarget_jax.io import load_result, write_result
from retarget_jax.problem import load_recipe
from retarget_jax.run import RunConfig, execute, typed_config

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))


def _compose(overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return typed_config(cfg)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_to_a_typed_config(name):
    cfg = _compose([f"+experiment={name}"])
    assert isinstance(cfg, RunConfig)
    MotionFormat.parse(cfg.input.format)
    if cfg.recipe:
        load_recipe(cfg.recipe)


def test_plausibility_and_contact_settings_compose_and_are_typed():
    cfg = _compose(
        [
            "+experiment=demo",
            "plausibility=false",
            "solver.weights.contact_slide=3",
            "contacts.speed_on=0.2",
            "limits.joint_velocity=12",
            "+limits.joint_velocity_per_joint.left_knee_joint=9",
        ]
    )
    assert cfg.plausibility is False and cfg.solver.weights.contact_slide == 3.0
    assert cfg.contacts.speed_on == 0.2 and cfg.limits.joint_velocity == 12.0
    assert cfg.limits.joint_velocity_per_joint == {"left_knee_joint": 9.0}
    from retarget_jax.problem import CostWeights

    off = CostWeights().without_plausibility()
    assert off.ground == off.contact_slide == off.self_collision == off.accel_joint == 0.0
    assert off.smooth_joint == CostWeights().smooth_joint and off.posture == CostWeights().posture


def test_unknown_keys_fail_before_any_work():
    with pytest.raises(ConfigError, match="inptu"):
        _compose(["+experiment=demo", "+inptu.path=x"])
    with pytest.raises(ConfigError, match="solver.max_itres"):
        _compose(["+experiment=demo", "+solver.max_itres=5"])
    with pytest.raises(Exception, match="fps"):
        _compose(["+experiment=amass", "input.fps=fast"])
    with pytest.raises(Exception, match="smoth"):
        _compose(["+experiment=demo", "+solver.weights.smoth=2"])
    with pytest.raises(Exception, match="unitree_h9"):  # a config group option that does not exist
        _compose(["+experiment=demo", "robot=unitree_h9"])


def test_config_groups_select_robot_source_solver_and_batch():
    import yaml

    cfg = _compose(["robot=unitree_h1", "source=amass", "solver=fast", "batch=gpu"])
    fast = yaml.safe_load((config_dir() / "solver" / "fast.yaml").read_text())
    assert cfg.robot.name == "unitree_h1" and cfg.input.format == "amass" and cfg.input.fps == 30
    assert cfg.solver.max_iters == fast["max_iters"] != _compose([]).solver.max_iters
    assert cfg.batch.max_batch == 1024
    assert _compose([]).robot.name is None  # no default robot: a run over files must name one
    cfg = _compose(["+experiment=amass", "robot=booster_t1", "solver.weights.smooth=10"])
    assert cfg.robot.name == "booster_t1" and cfg.solver.weights.smooth == 10.0
    cfg = _compose(["robot=mjcf", "robot.mjcf=/x/my_robot.xml"])
    assert cfg.robot.mjcf == "/x/my_robot.xml"


def test_a_run_over_files_without_a_robot_refuses_before_any_work(tmp_path):
    (tmp_path / "in").mkdir()
    np.savez(tmp_path / "in" / "a.npz", poses=np.zeros((3, 72)))
    cfg = _compose(["+experiment=amass", f"input.path={tmp_path / 'in'}", f"output.dir={tmp_path / 'out'}"])
    with pytest.raises(ConfigError, match="no robot given"):
        execute(cfg)
    assert not (tmp_path / "out").exists()


def test_smooth_multiplies_the_three_velocity_weights():
    cfg = _compose(["+experiment=demo", "solver.weights.smooth=0.5"])
    from retarget_jax.config import cost_weights
    from retarget_jax.problem import CostWeights

    w = cost_weights(cfg)
    base = CostWeights()
    assert (w.smooth_position, w.smooth_rotation, w.smooth_joint) == pytest.approx(
        (0.5 * base.smooth_position, 0.5 * base.smooth_rotation, 0.5 * base.smooth_joint)
    )
    assert w.accel_joint == base.accel_joint and w.ground == base.ground


def test_directory_of_robot_space_files_converts_and_bad_files_are_recorded(tmp_path, g1, g1_trajectory):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    good = g1_trajectory
    write_result(good, src / "sub" / "a.pkl", "gmr_pkl")
    (src / "b.pkl").write_bytes(b"\x80\x04corrupt")
    cfg = _compose(
        [
            "+experiment=demo",
            f"input.path={src}",
            "input.format=gmr_pkl",
            f"output.dir={tmp_path / 'out'}",
            "output.formats=[npz]",
        ]
    )
    summary = execute(cfg)
    assert [f["source"].endswith("b.pkl") for f in summary["failed"]] == [True]
    assert summary["success"] == 1 and summary["failed_count"] == 1
    assert summary["failed"][0]["error_type"] == "motion_format"
    res = load_result(tmp_path / "out" / "sub" / "a.npz")
    np.testing.assert_allclose(res.dof_pos, good.dof_pos, atol=1e-5)
    # the run's batch manifest: one record per input, output paths relative to it
    from retarget_jax.manifest import BatchManifest

    manifest = BatchManifest.load(tmp_path / "out" / "batch_manifest.json")
    assert (manifest.total, manifest.success_count, manifest.failed_count) == (2, 1, 1)
    by_id = manifest.records_by_id()
    assert by_id["sub/a.pkl"].output == "sub/a.npz" and by_id["sub/a.pkl"].status == "success"
    failed = [r for r in manifest.records if r.status == "failed"]
    assert failed[0].error_type == "motion_format" and "b.pkl" in failed[0].motion


def test_the_shipped_slurm_launcher_config_composes():
    # hydra-submitit-launcher is a test dependency (pyproject [test]): composing needs it
    import hydra_plugins.hydra_submitit_launcher  # noqa: F401

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                "+experiment=amass",
                "robot=unitree_g1",
                "hydra/launcher=slurm_gpu",
                "hydra.launcher.nodes=4",
                "batch=gpu",
                "batch.distributed.enabled=true",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (4, 1, 1)
    run = typed_config(cfg)
    assert run.batch.distributed.enabled and run.batch.max_batch == 1024


def test_config_defaults_are_the_library_defaults():
    """The schema takes its solver, weight, contact and limit defaults from the library types
    (one source of truth): the default run config builds exactly the library's defaults."""
    import dataclasses

    from retarget_jax.config import run_settings
    from retarget_jax.problem import CostWeights, JointVelocityLimits
    from retarget_jax.problem.contacts import ContactThresholds
    from retarget_jax.solve import SolverOptions

    for cfg in (RunConfig(), _compose([]), _compose(["+experiment=demo"])):
        rs = run_settings(cfg)
        assert rs.options == SolverOptions()
        assert rs.problem.weights == CostWeights()
        assert rs.problem.contact_thresholds == ContactThresholds()
        assert rs.problem.joint_velocity_limits == JointVelocityLimits()
    # every SolverOptions / CostWeights field is a config key (none forgotten)
    keys = {f.name for f in dataclasses.fields(RunConfig().solver)}
    assert {f.name for f in dataclasses.fields(SolverOptions)} <= keys
    assert {f.name for f in dataclasses.fields(CostWeights)} <= {
        f.name for f in dataclasses.fields(RunConfig().solver.weights)
    }
    # an override reaches the options
    assert run_settings(_compose(["solver.max_iters=5", "solver.rtol=0.003"])).options == SolverOptions(
        max_iters=5, rtol=0.003
    )


def _cut_bvh(src, dst, frames: int) -> None:
    lines = src.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().lower().startswith("frames:"))
    dst.write_text("\n".join(lines[:i] + [f"Frames: {frames}", lines[i + 1]] + lines[i + 2 : i + 2 + frames]) + "\n")


def test_both_front_doors_solve_a_clip_with_the_same_settings(tmp_path, shared_data_dir):
    """``retarget-jax retarget`` and ``python -m retarget_jax.run`` build their settings with
    the same function (retarget_jax.config.run_settings) and write the same trajectory for
    the same clip (real LAFAN1 capture, cut to 60 frames: the 64-frame bucket)."""
    from retarget_jax.cli import build_parser, main, retarget_config
    from retarget_jax.config import run_settings

    clip = tmp_path / "clip.bvh"
    _cut_bvh(shared_data_dir / "lafan1_skeleton_clip_a.bvh", clip, 60)
    args = build_parser().parse_args(
        [
            "retarget",
            str(clip),
            "--format",
            "bvh_lafan1",
            "--robot",
            "unitree_g1",
            "--output",
            str(tmp_path / "cli.npz"),
            "--cache-dir",
            "",
        ]
    )
    hydra_cfg = _compose(
        [
            "+experiment=lafan1_g1",
            f"input.path={clip}",
            f"output.dir={tmp_path / 'run'}",
            "output.formats=[npz]",
            "jax_cache_dir=null",
            "batch.progress=false",
        ]
    )
    a, b = run_settings(retarget_config(args)), run_settings(hydra_cfg)
    assert a.options == b.options and a.problem == b.problem
    assert (a.buckets, a.max_batch, a.window, a.overlap) == (b.buckets, b.max_batch, b.window, b.overlap)
    assert (
        main(
            [
                "retarget",
                str(clip),
                "--format",
                "bvh_lafan1",
                "--robot",
                "unitree_g1",
                "--output",
                str(tmp_path / "cli.npz"),
                "--cache-dir",
                "",
            ]
        )
        == 0
    )
    summary = execute(hydra_cfg)
    assert summary["success"] == 1
    via_cli, via_run = load_result(tmp_path / "cli.npz"), load_result(tmp_path / "run" / "clip.npz")
    assert via_cli.num_frames == via_run.num_frames == 60
    np.testing.assert_array_equal(via_cli.qpos, via_run.qpos)
    np.testing.assert_array_equal(via_cli.body_pos_w, via_run.body_pos_w)
