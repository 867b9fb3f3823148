"""Metric plugins, reports, manifests and the ``retarget-jax evaluate`` command.

The jitted figures themselves are checked against known answers in test_metrics_batch.py;
here a few values are cross-checked with an independent numpy reference (float32 tolerances).
Shapes are shared: one (B=1, K=3, F=2) compile serves the report, plugin and single-CLI
tests, one (B=2) the manifest test, one (B=1, K=0, F=0) the robot-space file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest
from inputs import result_of

from retarget_jax.cli import main
from retarget_jax.errors import ConfigError, MotionFormatError
from retarget_jax.io import save_result, write_result
from retarget_jax.manifest import (
    BATCH_MANIFEST_NAME,
    BatchManifest,
    BatchRunRecord,
    EvaluationManifest,
    EvaluationRecord,
)
from retarget_jax.metrics import (
    evaluate_results,
    register_metric,
    registered_metrics,
    unregister_metric,
    write_report,
)
from retarget_jax.metrics import report as report_mod
from retarget_jax.result import RetargetingResult, SolveStatus
from retarget_jax.robots.kinematics import host_body_poses

FEET = ("left_ankle_roll_link", "right_ankle_roll_link")
TARGETS = ("pelvis", "left_wrist_yaw_link", "right_knee_link")
BUILTIN = {
    "optimization_cost": "1",
    "foot_sliding": "m/s",
    "contact_preservation": "fraction",
    "penetration": "m",
    "tracking_error": "m",
    "joint_limit_violation": {"max_rad": "rad", "fraction_of_frames": "fraction"},
    "jerk": "rad/s^3",
    "limb_direction": "cosine",
    "upright": "cosine",
    "stance_feet": {
        "stance_fraction": "fraction",
        "stance_sole_height_mean": "m",
        "stance_sole_height_p95_abs": "m",
        "sole_height_min": "m",
    },
}


def numpy_tracking_and_jerk(r: RetargetingResult) -> tuple[float, float, float]:
    """Independent reference: (tracking error mean, p95, mean |jerk|) by numpy, zero offsets."""
    idx = [r.body_names.index(b) for b in r.target_body_names]
    err = np.linalg.norm(r.body_pos_w[:, idx] - r.target_pos_w, axis=-1)
    err = err[np.isfinite(err)]  # NaN targets: the source had no such joint there
    jerk = np.diff(r.dof_pos, n=3, axis=0) * r.fps**3
    return float(err.mean()), float(np.percentile(err, 95)), float(np.abs(jerk).mean())


def make_result(robot, seed: int, T: int = 16) -> RetargetingResult:
    """A solved-looking G1 clip with targets near the tracked points and a contact plan."""
    rng = np.random.default_rng(seed)
    lo, hi = robot.dof_ranges[:, 0], robot.dof_ranges[:, 1]
    dof = lo + (hi - lo) * rng.uniform(0.35, 0.65, size=(T, robot.num_dof))
    root = np.c_[np.linspace(0, 0.3, T), np.zeros(T), np.full(T, 0.76)]
    quat = np.tile([1.0, 0.0, 0.0, 0.0], (T, 1))
    pos, rot = host_body_poses(robot, np.concatenate([root, quat, dof], axis=-1))
    idx = [robot.body_names.index(b) for b in TARGETS]
    targets = pos[:, idx] + rng.normal(scale=0.02, size=(T, len(idx), 3))
    targets[3, 1] = np.nan
    contacts = rng.uniform(size=(T, 2)) < 0.6
    # the left upper arm's human bone: the robot's own segment, turned 0.3 rad in frames 0-7
    ia, ib = robot.body_names.index("left_shoulder_roll_link"), robot.body_names.index("left_elbow_link")
    seg = pos[:, ib] - pos[:, ia]
    u = seg / np.linalg.norm(seg, axis=-1, keepdims=True)
    perp = np.cross(u, [0.0, 0.0, 1.0])
    perp /= np.linalg.norm(perp, axis=-1, keepdims=True)
    turn = np.where(np.arange(T) < 8, 0.3, 0.0)[:, None]
    hdir = np.cos(turn) * u + np.sin(turn) * perp
    return result_of(
        robot,
        root,
        quat,
        dof,
        status=SolveStatus.MAX_ITERATIONS,
        final_cost=0.25,
        iterations=30,
        provenance={
            "source_path": f"motions/clip{seed}.bvh",
            "recipe": "lafan1_g1",
            "config_hash": "abc123",
            "weights": {"position": 1.0, "smooth": 0.1},
            "contact_plan": {"source": "detected"},
        },
        target_pos_w=targets,
        target_body_names=TARGETS,
        target_offset_b=np.zeros((len(idx), 3)),
        contacts=contacts,
        contact_body_names=FEET,
        limb_names=("left_upper_arm",),
        limb_body_names=(("left_shoulder_roll_link", "left_elbow_link"),),
        limb_offset_b=np.zeros((1, 2, 3)),
        limb_human_dir=hdir[:, None],
    )


@pytest.fixture(scope="module")
def clip(g1):
    return make_result(g1, seed=1)


@pytest.fixture(scope="module")
def report(g1, clip):
    (rep,) = evaluate_results([clip], g1, ids=["walk"], paths=["results/walk.npz"])
    return rep


@pytest.fixture
def extra_plugins():
    """Three test plugins (raising, NaN, not applicable), removed afterwards."""

    @register_metric("boom", unit="m", description="always raises")
    def _boom(ctx):
        raise ValueError("kaput")

    register_metric("nan_metric", "m", "returns NaN", lambda ctx: {"a": 1.0, "b": float("nan")})

    @register_metric("never", unit="m", description="not applicable")
    def _never(ctx):
        return ctx.not_applicable("nothing to measure")

    yield ["boom", "nan_metric", "never"]
    for name in ("boom", "nan_metric", "never"):
        unregister_metric(name)


# --------------------------------------------------------------------------- reports


def test_report_fields_units_and_values(g1, clip, report):
    assert report["schema_version"] == 1 and report["kind"] == "retarget_jax.metrics_report"
    assert report["status"] == "success", report["warnings"]
    assert report["result"] == {
        "id": "walk",
        "path": "results/walk.npz",
        "robot": "unitree_g1",
        "source_path": "motions/clip1.bvh",
        "config_hash": "abc123",
        "recipe": "lafan1_g1",
        "solve_status": "max_iterations",
    }
    assert (report["frames"], report["qpos_dim"], report["fps"]) == (16, 36, 30.0)
    assert report["problem"] == {
        "recipe": "lafan1_g1",
        "weights": {"position": 1.0, "smooth": 0.1},
        "contact_plan": {"source": "detected"},
        "iterations": 30,
        "final_cost": 0.25,
    }
    assert report["warnings"] == []
    dt.datetime.fromisoformat(report["evaluated_at"].replace("Z", "+00:00"))
    m = report["metrics"]
    assert {k: v["unit"] for k, v in m.items()} == BUILTIN
    assert m["optimization_cost"]["value"] == 0.25
    assert m["foot_sliding"]["basis"] == "contact_plan" and m["foot_sliding"]["value"] >= 0
    assert 0.0 <= m["contact_preservation"]["value"] <= 1.0
    assert set(m["penetration"]["value"]) == {"mean", "max", "ground_max", "self_max"}
    assert set(m["joint_limit_violation"]["value"]) == {"max_rad", "fraction_of_frames"}
    # cross-check with the host-side numpy metrics (NaN targets skipped there too)
    mean, p95, jerk = numpy_tracking_and_jerk(clip)
    assert m["tracking_error"]["value"]["mean"] == pytest.approx(mean, rel=1e-4)
    assert m["tracking_error"]["value"]["p95"] == pytest.approx(p95, rel=1e-4)
    assert m["jerk"]["value"] == pytest.approx(jerk, rel=1e-3)
    assert m["upright"]["value"] == pytest.approx(1.0)  # the root never tilts
    feet = m["stance_feet"]["value"]
    for f in FEET:  # the root glides at 0.56 m/s: no stance frames, so no stance heights
        assert feet[f"{f}_stance_fraction"] == 0.0 and np.isfinite(feet[f"{f}_sole_height_min"])
    assert set(feet) == {f"{f}_{k}" for f in FEET for k in ("stance_fraction", "sole_height_min")}
    assert m["stance_feet"]["never_in_stance"] == list(FEET)
    assert m["joint_limit_violation"]["value"]["max_rad"] == 0.0
    # half the frames at 0.3 rad from the human bone, half along it
    T = clip.num_frames
    limb = m["limb_direction"]["value"]
    assert limb["mean"] == pytest.approx((np.cos(0.3) + 1.0) / 2, abs=1e-5)
    assert limb["left_upper_arm_mean"] == pytest.approx(limb["mean"], abs=1e-9)
    assert limb["p5"] == pytest.approx(np.percentile(np.r_[np.full(8, np.cos(0.3)), np.ones(T - 8)], 5), abs=1e-5)
    assert set(limb) == {"mean", "p5", "left_upper_arm_mean", "left_upper_arm_p5"}


def test_host_only_plugins_skip_the_jitted_pass(g1, clip, monkeypatch):
    """Plugins that need no jitted figures run without the jitted pass (no compile): a
    tilted root gives its known uprightness."""

    def no_pass(*a, **k):
        raise AssertionError("the jitted pass ran")

    monkeypatch.setattr(report_mod, "_evaluate_group", no_pass)
    tilt = 0.4  # rad about x: the root z-axis' world z is cos(tilt)
    quat = np.tile([1.0, 0.0, 0.0, 0.0], (clip.num_frames, 1))
    quat[5] = [np.cos(tilt / 2), np.sin(tilt / 2), 0.0, 0.0]
    tilted = dataclasses.replace(clip, root_quat_wxyz=quat)
    (rep,) = evaluate_results([tilted], g1, plugins=["upright", "stance_feet", "optimization_cost"])
    assert rep["status"] == "success", rep["warnings"]
    assert rep["metrics"]["upright"]["value"] == pytest.approx(np.cos(tilt))
    assert set(rep["metrics"]) == {"upright", "stance_feet", "optimization_cost"}


def test_write_report_is_strict_json_with_sorted_keys(tmp_path, report):
    rep = json.loads(json.dumps(report))
    rep["problem"]["final_cost"] = float("nan")
    rep["metrics"]["jerk"]["value"] = float("inf")
    path = write_report(rep, tmp_path / "deep" / "r.metrics.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back["problem"]["final_cost"] is None and back["metrics"]["jerk"]["value"] is None
    assert list(back) == sorted(back)
    assert [p.name for p in path.parent.iterdir()] == ["r.metrics.json"]  # no temporary left


def test_plugin_failures_make_a_partial_report(g1, clip, extra_plugins):
    (rep,) = evaluate_results([clip], g1, ids=["walk"])
    assert rep["status"] == "partial"
    m = rep["metrics"]
    assert m["boom"]["value"] is None and "ValueError: kaput" in m["boom"]["error"]
    assert m["nan_metric"]["value"] == {"a": 1.0, "b": None}
    assert m["never"]["value"] is None and m["never"]["not_applicable"] == "nothing to measure"
    assert any("'boom' failed: ValueError: kaput" in w for w in rep["warnings"])
    assert any("'nan_metric'" in w and "non-finite" in w for w in rep["warnings"])
    assert any("'never' not applicable" in w for w in rep["warnings"])
    assert m["jerk"]["value"] > 0 and m["tracking_error"]["value"]["mean"] > 0  # the rest still ran
    # not applicable alone is not a failure
    (ok,) = evaluate_results([clip], g1, plugins=["never", "jerk"])
    assert ok["status"] == "success" and set(ok["metrics"]) == {"never", "jerk"}
    with pytest.raises(ConfigError, match="'boom' is already registered"):
        register_metric("boom", "m", "again", lambda ctx: 0.0)


def test_unregistered_plugins_are_gone(extra_plugins):
    assert set(extra_plugins) <= set(registered_metrics())
    unregister_metric("never")
    assert "never" not in registered_metrics()
    register_metric("never", "m", "back for the teardown", lambda ctx: None)


def test_a_failed_jitted_pass_gives_partial_reports(g1, clip, monkeypatch):
    def broken(batch, geometry):
        raise RuntimeError("XLA ran out of memory")

    monkeypatch.setattr(report_mod, "evaluate_batch", broken)
    reps = evaluate_results([clip, make_result(g1, seed=2)], g1)
    assert [r["status"] for r in reps] == ["partial", "partial"]
    assert "jitted metrics pass failed" in reps[0]["warnings"][0] and "out of memory" in reps[0]["warnings"][0]
    assert reps[0]["metrics"]["optimization_cost"]["value"] == 0.25  # needs no jitted figures
    assert reps[0]["metrics"]["jerk"]["value"] is None


def test_results_of_another_robot_are_refused(g1, clip):
    other = RetargetingResult(**{**clip.__dict__, "robot": "booster_t1"})
    with pytest.raises(ConfigError, match="result 'x': robot 'booster_t1'"):
        evaluate_results([other], g1, ids=["x"])


# --------------------------------------------------------------------------- CLI, one result


def test_cli_single_result(tmp_path, clip, report, capsys):
    src = tmp_path / "R.npz"
    save_result(clip, src)
    out = tmp_path / "R.metrics.json"
    assert main(["evaluate", "--result", str(src), "--output", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    summary = json.loads(line)
    assert "\n" not in line and summary["status"] == "success" and summary["report"] == str(out)
    rep = json.loads(out.read_text())
    assert rep["result"]["path"] == str(src) and rep["result"]["robot"] == "unitree_g1"
    for name in ("foot_sliding", "contact_preservation", "tracking_error", "jerk"):
        assert rep["metrics"][name]["value"] == pytest.approx(report["metrics"][name]["value"], rel=1e-6)


def test_cli_robot_space_file_metrics_not_applicable(tmp_path, g1_trajectory, capsys):
    src = tmp_path / "clip.npz"
    write_result(g1_trajectory, src, "mjlab_npz")
    out = tmp_path / "clip.metrics.json"
    assert main(["evaluate", "--result", str(src), "--format", "mjlab_npz", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: ConfigError" in err and "--robot is required" in err
    assert not out.exists()
    assert (
        main(["evaluate", "--result", str(src), "--format", "mjlab_npz", "--robot", "unitree_g1", "--output", str(out)])
        == 0
    )
    rep = json.loads(out.read_text())
    assert rep["status"] == "success"
    m = rep["metrics"]
    for name in (
        "optimization_cost",
        "foot_sliding",
        "contact_preservation",
        "tracking_error",
        "limb_direction",
        "stance_feet",
    ):
        assert m[name]["value"] is None and m[name]["not_applicable"], name
    assert m["penetration"]["value"]["max"] >= 0 and m["jerk"]["value"] > 0
    assert len(rep["warnings"]) == 6


def test_cli_errors_are_typed(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an archive")
    assert main(["evaluate", "--result", str(bad), "--output", str(tmp_path / "o.json")]) == 2
    assert "error: MotionFormatError" in capsys.readouterr().err
    assert main(["evaluate", "--result", str(bad)]) == 2
    assert "--output" in capsys.readouterr().err


# --------------------------------------------------------------------------- manifests


def _records():
    return [
        BatchRunRecord(
            "a",
            "motions/a/walk.bvh",
            "results/a/walk.npz",
            "success",
            "2025-01-01T00:00:00Z",
            "2025-01-01T00:00:05Z",
            "",
            None,
            {"recipe": "lafan1_g1"},
        ),
        BatchRunRecord("b", "motions/b/walk.bvh", "results/b/walk.npz", "skipped", message="exists"),
        BatchRunRecord(
            "c", "motions/c/run.bvh", None, "failed", message="joint 'Hips' missing", error_type="motion_format"
        ),
        BatchRunRecord("d", "motions/d/walk.bvh", "results/d/walk.npz", "success"),
        BatchRunRecord("e", "motions/e/jump.bvh", "results/e/jump.npz", "success"),
    ]


def test_batch_manifest_round_trip_and_counts(tmp_path):
    m = BatchManifest.from_records(_records(), input_dir="motions", output_dir="results", pattern="**/*.bvh")
    assert (m.total, m.success_count, m.skipped_count, m.failed_count) == (5, 3, 1, 1)
    path = m.save_json(tmp_path / BATCH_MANIFEST_NAME)
    back = BatchManifest.load(path)
    assert back == m
    assert list(back.records_by_id()) == ["a", "b", "c", "d", "e"]
    m.records.append(BatchRunRecord("f", "x", "y", "success"))
    with pytest.raises(ConfigError, match="recount"):
        m.save_json(tmp_path / "again.json")
    ev = EvaluationManifest.from_records(
        [EvaluationRecord("a", "r.npz", "r.metrics.json", "partial", "w")], batch_manifest="m.json", output_dir="."
    )
    assert EvaluationManifest.load(ev.save_json(tmp_path / "ev.json")) == ev


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda d: d["records"][1].update(status="done"), r"records\[1\]\.status"),
        (lambda d: d["records"][0].pop("job_id"), r"records\[0\]\.job_id"),
        (lambda d: d["records"][3].update(job_id="a"), r"records\[3\]\.job_id"),
        (lambda d: d.update(success_count=4), "success_count"),
        (lambda d: d.update(total="5"), "total"),
        (lambda d: d.update(schema_version=2), "schema_version"),
    ],
)
def test_bad_manifest_fields_name_file_and_field(tmp_path, edit, field):
    data = BatchManifest.from_records(_records(), output_dir="results").to_json()
    edit(data)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(MotionFormatError, match=rf"m\.json, field '{field}'"):
        BatchManifest.load(path)


def test_corrupt_manifest_is_a_typed_error(tmp_path, capsys):
    path = tmp_path / BATCH_MANIFEST_NAME
    path.write_text('{"schema_version": 1, "records": [')
    with pytest.raises(MotionFormatError, match=rf"{BATCH_MANIFEST_NAME}, line 1: not valid JSON"):
        BatchManifest.load(path)
    assert main(["evaluate", "--batch-manifest", str(path), "--output-dir", str(tmp_path / "D")]) == 2
    assert "error: MotionFormatError" in capsys.readouterr().err


def test_cli_batch_manifest(tmp_path, g1, capsys):
    run = tmp_path / "run"
    save_result(make_result(g1, seed=3, T=14), run / "results" / "a" / "walk.npz")
    save_result(make_result(g1, seed=4, T=20), run / "results" / "b" / "walk.npz")
    (run / "results" / "d").mkdir(parents=True)
    (run / "results" / "d" / "walk.npz").write_bytes(b"PK\x03\x04 truncated")
    mpath = BatchManifest.from_records(_records(), input_dir="motions", output_dir="results").save_json(
        run / BATCH_MANIFEST_NAME
    )
    out_dir = tmp_path / "D"
    rc = main(
        [
            "evaluate",
            "--batch-manifest",
            str(mpath),
            "--output-dir",
            str(out_dir),
            "--output",
            "evaluation_manifest.json",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip())
    assert summary["total"] == 5
    ra, rb = out_dir / "a" / "walk.metrics.json", out_dir / "b" / "walk.metrics.json"
    assert ra.is_file() and rb.is_file()
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.json")) == [
        "a/walk.metrics.json",
        "b/walk.metrics.json",
        "evaluation_manifest.json",
    ]
    assert json.loads(ra.read_text())["frames"] == 14 and json.loads(rb.read_text())["frames"] == 20
    assert json.loads(ra.read_text())["result"]["id"] == "a"

    ev = EvaluationManifest.load(out_dir / "evaluation_manifest.json")
    assert ev.success_count + ev.partial_count == 2 and ev.skipped_count == 1 and ev.failed_count == 2
    assert ev.success_count + ev.partial_count + ev.skipped_count + ev.failed_count == ev.total == 5
    recs = ev.records_by_id()
    assert [r.job_id for r in ev.records] == ["a", "b", "c", "d", "e"]
    assert (out_dir / recs["a"].report).resolve() == ra.resolve()
    assert (out_dir / recs["b"].result).resolve() == (run / "results" / "b" / "walk.npz").resolve()
    assert recs["c"].status == "skipped" and "joint 'Hips' missing" in recs["c"].message
    assert recs["d"].status == "failed" and "MotionFormatError" in recs["d"].message and recs["d"].report is None
    assert recs["e"].status == "failed" and "FileNotFoundError" in recs["e"].message
