"""Fault test: ``retarget-jax batch`` killed with SIGKILL at 10 random moments of a 30-clip
run, rerun after each kill, then once to the end.

The jobs convert GMR pickles (robot space: read through the restricted unpickler, body
poses by MuJoCo FK, written as our npz and as mjlab npz), so each run is seconds of host
work and the kills exercise what a preemption hits in every run: the manifest, the
atomic writes of several outputs per job, resume. The same kill-and-resume with solves on
the device is tests/test_batch_driver.py::test_kill_9_at_several_points_then_resume.

Kill moments come from a seeded RNG: after 1 to 3 newly finished clips (counted by their
primary output, which is written last) plus a random delay of up to 50 ms, so they fall
at random phases of reading, writing and manifest saving, and nearly all mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from inputs import synthetic_trajectory

from retarget_jax.files.atomic import is_temp_file
from retarget_jax.io import load_result, write_gmr_pkl
from retarget_jax.manifest import RUN_CONFIG_NAME, BatchManifest
from retarget_jax.result import RetargetingResult

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIPS = 30
KILLS = 10
FRAMES = 1500


def _trajectory(robot, seed: int) -> RetargetingResult:
    return synthetic_trajectory(robot, FRAMES, seed)


def _cmd(inp: Path, out: Path, config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "retarget_jax.cli",
        "batch",
        "--input-dir",
        str(inp),
        "--format",
        "gmr_pkl",
        "--robot",
        "unitree_g1",
        "--config",
        str(config),
        "--output-dir",
        str(out),
        "--no-progress",
    ]


def _env() -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("XLA_FLAGS", None)
    return env


def _done(out: Path) -> int:
    return sum(1 for p in out.rglob("*.npz") if not p.name.endswith(".mjlab.npz") and not is_temp_file(p))


def bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (NaN where a target is masked compares equal to itself)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in out.rglob("*.npz")
        if not is_temp_file(p)
    }


@pytest.mark.timeout(600)
def test_kill_9_at_ten_random_moments_of_a_30_clip_run(tmp_path, g1):
    inp = tmp_path / "motions"
    for i in range(CLIPS):
        (inp / f"subject_{i % 3}").mkdir(parents=True, exist_ok=True)
        write_gmr_pkl(_trajectory(g1, i), inp / f"subject_{i % 3}" / f"clip{i:02d}.pkl")
    jobs = sorted(p.relative_to(inp).as_posix() for p in inp.rglob("*.pkl"))
    config = tmp_path / "run.yaml"
    config.write_text(
        json.dumps(
            {
                "batch": {"max_batch": 2, "progress": False, "max_workers": 2},
                "output": {"formats": ["npz", "mjlab_npz"]},
            }
        )
    )
    env = _env()

    ref = tmp_path / "ref"
    proc = subprocess.run(_cmd(inp, ref, config), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    out = tmp_path / "out"
    rng = np.random.default_rng(7)
    mid_run, snapshots = 0, []
    for _ in range(KILLS):
        before = _done(out) if out.exists() else 0
        target = before + int(rng.integers(1, 4))  # wait for 1 to 3 newly finished clips ...
        delay = float(rng.uniform(0.0, 0.05))  # ... and a little more, to land at a random phase
        p = subprocess.Popen(
            _cmd(inp, out, config), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        t0 = time.monotonic()
        while p.poll() is None and (not out.exists() or _done(out) < target):
            assert time.monotonic() - t0 < 120, "the driver made no progress"
            time.sleep(0.005)
        time.sleep(delay)
        running = p.poll() is None
        if running:
            os.kill(p.pid, signal.SIGKILL)
            done = _done(out)
        p.wait()
        p.stderr.close()
        if running and before < done < CLIPS:  # killed after this run did some work, before its end
            mid_run += 1
        snapshots.append(_snapshot(out))
    assert mid_run >= 8, f"only {mid_run} of {KILLS} kills landed mid-run"

    final = subprocess.run(_cmd(inp, out, config), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]

    manifest = BatchManifest.load(out / "batch_manifest.json")  # loads = counts consistent with records
    ids = [r.job_id for r in manifest.records]
    assert sorted(ids) == jobs and len(set(ids)) == len(ids) == CLIPS  # nothing lost, nothing twice
    assert manifest.failed_count == 0 and manifest.success_count + manifest.skipped_count == CLIPS
    for rec in manifest.records:
        stem = rec.job_id[: -len(".pkl")]
        assert rec.output == stem + ".npz", rec
        # every output loads and equals the uninterrupted run's, byte for byte in its arrays
        assert load_result(out / rec.output).num_frames == FRAMES
        for name in (stem + ".npz", stem + ".mjlab.npz"):
            a, b = _arrays(out / name), _arrays(ref / name)
            assert a.keys() == b.keys() and all(bitwise_equal(a[k], b[k]) for k in a), name
    # a job's outputs are never rewritten once its primary output existed at a kill
    last = _snapshot(out)
    for snap in snapshots:
        for rel, stat in snap.items():
            if not rel.endswith(".mjlab.npz"):
                assert last[rel] == stat, f"{rel} was rewritten after a kill"
    # nothing but outputs, the manifest, the run's settings and leftovers of writes cut by a kill
    for p in out.rglob("*"):
        if p.is_file():
            assert is_temp_file(p) or p.name in ("batch_manifest.json", RUN_CONFIG_NAME) or p.suffix == ".npz", p
    # the settings, rewritten at every start, are whole: the same as the uninterrupted run's but for its folder
    settings, ref_settings = (yaml.safe_load((d / RUN_CONFIG_NAME).read_text()) for d in (out, ref))
    assert settings["output"].pop("dir") == str(out) and ref_settings["output"].pop("dir") == str(ref)
    assert settings == ref_settings
