"""Masked samples the solve fills are on record, never silent: a clip whose frames hold NaN
(read as unobserved and masked) says so in its result's provenance, its batch manifest
record and the CLI's summaries; clean clips say 0.

The batch run has the shape of tests/test_batch_driver.py (keypoint clips of the 64-frame
bucket, lafan1_g1, 4 rows, at most 50 iterations), so the persistent compilation cache
serves both; the single-file CLI run has the shape of the G1 runs in
tests/test_sources_e2e.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from retarget_jax.cli import main as cli_main
from retarget_jax.errors import MotionFormatError
from retarget_jax.io import load_result
from retarget_jax.manifest import BATCH_MANIFEST_NAME, BatchManifest, masked_note
from retarget_jax.motion.canonical import masked_samples
from retarget_jax.motion.demo import demo_motion

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = os.environ.get("RETARGET_JAX_CACHE_DIR") or str(REPO_ROOT / ".jax_cache")

#: role -> frames set to NaN in the clip with holes: 5 + 5 frames, 7 distinct, 2 joints
HOLES = {"right_wrist": range(10, 15), "left_ankle": range(12, 17)}
HOLE_FRAMES = len(set().union(*HOLES.values()))


def _write_clip(path: Path, T: int, shift: float, holes: dict[str, range] | None = None) -> None:
    """The demo walk as a keypoints npz (role names, metres, Z-up), shifted, with NaN in
    ``holes``."""
    m = demo_motion(num_frames=T)
    pos = m.positions + np.array([shift, -0.5 * shift, 0.0])
    names = [j.value for j in m.joint_names]
    for role, frames in (holes or {}).items():
        pos[list(frames), names.index(role)] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, positions=pos, joint_names=np.array(names), fps=np.float64(m.fps))


def test_masked_samples_counts_frames_and_joints(tmp_path):
    from retarget_jax.motion import read_motion

    _write_clip(tmp_path / "holes.npz", 40, 0.0, HOLES)
    m = read_motion(tmp_path / "holes.npz", "keypoints")
    got = masked_samples(m)
    assert got == {
        "masked_frames": HOLE_FRAMES,
        "masked_joints": 2,
        "masked_per_joint": {r: len(f) for r, f in HOLES.items()},
    }
    _write_clip(tmp_path / "clean.npz", 40, 0.0)
    assert masked_samples(read_motion(tmp_path / "clean.npz", "keypoints")) == {
        "masked_frames": 0,
        "masked_joints": 0,
        "masked_per_joint": {},
    }
    assert masked_note(got) == f"filled {HOLE_FRAMES} masked frames (2 joints)"
    assert masked_note({"masked_frames": 1, "masked_joints": 1}) == "filled 1 masked frame (1 joint)"
    assert masked_note({"masked_frames": 0, "masked_joints": 0}) == "" == masked_note({})


def test_nan_in_a_bvh_channel_masks_the_joint_and_those_below_it(tmp_path):
    """NaN in the left forearm's rotation for 3 frames: the elbow and the wrist it carries
    are masked (and filled) in those frames, 3 frames of 2 joints."""
    import dataclasses

    from test_bvh import lafan1_like_clip

    from retarget_jax.io.bvh import write_bvh
    from retarget_jax.motion.bvh import read_bvh_format

    clip = lafan1_like_clip(T=20)
    j = clip.joint_names.index("LeftForeArm")
    frames = clip.frames.copy()
    frames[5:8, clip.channel_start[j]] = np.nan
    write_bvh(tmp_path / "nan.bvh", dataclasses.replace(clip, frames=frames))
    m = read_bvh_format(tmp_path / "nan.bvh", "bvh_lafan1")
    assert masked_samples(m) == {
        "masked_frames": 3,
        "masked_joints": 2,
        "masked_per_joint": {"left_elbow": 3, "left_wrist": 3},
    }


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory):
    """Three keypoint clips, the middle one with NaN holes, through ``retarget-jax batch``."""
    tmp = tmp_path_factory.mktemp("masked_batch")
    inp, out = tmp / "in", tmp / "out"
    _write_clip(inp / "clean_a.npz", 40, 0.0)
    _write_clip(inp / "holes.npz", 50, 0.05, HOLES)
    _write_clip(inp / "clean_b.npz", 60, 0.1)
    config = tmp / "run.yaml"
    config.write_text(
        json.dumps(
            {
                "recipe": "lafan1_g1",
                "solver": {"max_iters": 50},
                "batch": {"max_batch": 4, "buckets": [64], "window": 64, "overlap": 16, "progress": False},
                "output": {"formats": ["npz"]},
                "jax_cache_dir": CACHE,
            }
        )
    )
    argv = [
        "batch",
        "--input-dir",
        str(inp),
        "--format",
        "keypoints",
        "--robot",
        "unitree_g1",
        "--config",
        str(config),
        "--output-dir",
        str(out),
        "--no-progress",
    ]
    return argv, out


def test_batch_manifest_provenance_and_summary_count_the_filled_samples(batch_run, capsys):
    argv, out = batch_run
    assert cli_main(argv) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    manifest = BatchManifest.load(out / BATCH_MANIFEST_NAME)
    records = manifest.records_by_id()
    assert set(records) == {"clean_a.npz", "holes.npz", "clean_b.npz"}
    per_joint = {r: len(f) for r, f in HOLES.items()}
    for job_id, rec in records.items():
        assert rec.status == "success", (job_id, rec.message)
        holes = job_id == "holes.npz"
        want = (HOLE_FRAMES, 2, per_joint) if holes else (0, 0, {})
        assert (
            rec.provenance["masked_frames"],
            rec.provenance["masked_joints"],
            rec.provenance["masked_per_joint"],
        ) == want, job_id
        assert (rec.masked_frames, rec.masked_joints) == want[:2]
        res = load_result(out / job_id)  # the result file says the same
        assert (
            res.provenance["masked_frames"],
            res.provenance["masked_joints"],
            res.provenance["masked_per_joint"],
        ) == want, job_id
        assert res.provenance["status_name"] == "converged"
    lines = [ln for ln in stdout.splitlines() if "masked frame" in ln]
    assert lines == [f"  holes.npz: filled {HOLE_FRAMES} masked frames (2 joints)"], stdout
    assert json.loads(stdout.strip().splitlines()[-1])["masked_clips"] == 1

    # a resumed run keeps the records (nothing solved again) and says it again
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    stdout = captured.out
    assert "3 of 3 job(s) already done, skipped" in captured.out + captured.err
    assert f"holes.npz: filled {HOLE_FRAMES} masked frames (2 joints)" in stdout
    assert BatchManifest.load(out / BATCH_MANIFEST_NAME).records_by_id()["holes.npz"].masked_frames == HOLE_FRAMES


def test_manifest_refuses_a_masked_count_that_is_not_one(batch_run, tmp_path):
    _, out = batch_run
    data = json.loads((out / BATCH_MANIFEST_NAME).read_text())
    k = next(i for i, r in enumerate(data["records"]) if r["job_id"] == "holes.npz")
    data["records"][k]["provenance"]["masked_frames"] = -3
    bad = tmp_path / BATCH_MANIFEST_NAME
    bad.write_text(json.dumps(data))
    with pytest.raises(
        MotionFormatError,
        match=rf"{BATCH_MANIFEST_NAME}, field 'records\[{k}\]\.provenance\."
        r"masked_frames': expected a count >= 0, found -3",
    ):
        BatchManifest.load(bad)


def test_retarget_cli_prints_the_filled_samples(tmp_path, capsys):
    src = tmp_path / "holes.npz"
    _write_clip(src, 50, 0.0, HOLES)
    out = tmp_path / "holes_g1.npz"
    rc = cli_main(
        [
            "retarget",
            str(src),
            "--format",
            "keypoints",
            "--robot",
            "unitree_g1",
            "--output",
            str(out),
            "--cache-dir",
            "",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"{src}: filled {HOLE_FRAMES} masked frames (2 joints)" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert (summary["masked_frames"], summary["masked_joints"]) == (HOLE_FRAMES, 2)
    assert load_result(out).provenance["masked_per_joint"] == {r: len(f) for r, f in HOLES.items()}
