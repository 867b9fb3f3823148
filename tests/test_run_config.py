"""The Hydra driver: every shipped experiment composes into the typed RunConfig, unknown
keys fail, and a directory of robot-space files converts without a solve."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from retarget_jax.errors import ConfigError
from retarget_jax.formats import MotionFormat
from retarget_jax.io import load_result, write_result
from retarget_jax.problem import load_recipe
from retarget_jax.problem.recipe import config_dir
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
    cfg = _compose(["+experiment=demo", "plausibility=false", "solver.weights.contact_slide=3",
                                 "contacts.speed_on=0.2", "limits.joint_velocity=12",
                    "+limits.joint_velocity_per_joint.left_knee_joint=9"])
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
    cfg = _compose(["robot=unitree_h1", "source=amass", "solver=fast", "batch=gpu"])
    assert cfg.robot.name == "unitree_h1" and cfg.input.format == "amass" and cfg.input.fps == 30
    assert cfg.solver.max_iters == 20 and cfg.batch.max_batch == 1024
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
    from retarget_jax.problem import CostWeights
    from retarget_jax.run import _weights

    w = _weights(cfg)
    base = CostWeights()
    assert (w.smooth_position, w.smooth_rotation, w.smooth_joint) == pytest.approx(
        (0.5 * base.smooth_position, 0.5 * base.smooth_rotation, 0.5 * base.smooth_joint))
    assert w.accel_joint == base.accel_joint and w.ground == base.ground


def test_directory_of_robot_space_files_converts_and_bad_files_are_recorded(tmp_path, g1, g1_trajectory):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    good = g1_trajectory
    write_result(good, src / "sub" / "a.pkl", "gmr_pkl")
    (src / "b.pkl").write_bytes(b"\x80\x04corrupt")
    cfg = _compose(["+experiment=demo", f"input.path={src}", "input.format=gmr_pkl",
                    f"output.dir={tmp_path / 'out'}", "output.formats=[npz]"])
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
        cfg = compose(config_name="config", overrides=["+experiment=amass", "robot=unitree_g1",
                                                       "hydra/launcher=slurm_gpu", "hydra.launcher.nodes=4",
                                                       "batch=gpu", "batch.distributed.enabled=true"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (4, 1, 1)
    run = typed_config(cfg)
    assert run.batch.distributed.enabled and run.batch.max_batch == 1024
