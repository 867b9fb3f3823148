"""The batch driver end to end, as users run it (subprocesses of ``retarget-jax batch`` and
``python -m retarget_jax.run``): kill -9 and resume, 4 host devices and 2 JAX processes
against one device, a Hydra multirun sweep, and the CLI's refusals.

Every solve here has one shape (4 clips of a 64-frame bucket, the lafan1_g1 recipe on
keypoint files, at most 50 iterations), so the persistent compilation cache compiles it
once per device layout, and tests/test_sharding.py uses the same programs. The solves
run to convergence: solutions stopped early by an iteration cap differ between
programs by far more than round-off (LM's accept/reject decisions diverge).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from retarget_jax.cli import main as cli_main
from retarget_jax.io import load_result
from retarget_jax.manifest import BatchManifest

REPO_ROOT = Path(__file__).resolve().parents[1]
# the persistent compilation cache of tests/conftest.py, shared with the subprocesses
CACHE = os.environ.get("RETARGET_JAX_CACHE_DIR") or str(REPO_ROOT / ".jax_cache")
LONG = 150  # frames of the clip longer than a window: solved as 3 windows of 64, stitched


def _write_clip(path: Path, T: int, shift: float) -> None:
    from retarget_jax.motion.demo import demo_motion

    m = demo_motion(num_frames=T)
    pos = m.positions + np.array([shift, -0.5 * shift, 0.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, positions=pos, joint_names=np.array([j.value for j in m.joint_names]), fps=np.float64(m.fps))


def _clips(root: Path, n: int) -> dict[str, int]:
    """n short clips in two subject folders with equal file names, plus one long clip."""
    frames = {}
    for i in range(n):
        rel = f"subject_{'ab'[i % 2]}/clip{i // 2:02d}.npz"
        frames[rel] = 30 + (7 * i) % 31
        _write_clip(root / rel, frames[rel], 0.05 * i)
    frames["long/walk.npz"] = LONG
    _write_clip(root / "long/walk.npz", LONG, 0.0)
    return frames


def _config(path: Path, **extra) -> Path:
    cfg = {
        "recipe": "lafan1_g1",
        "solver": {"max_iters": 50},
        "batch": {"max_batch": 4, "buckets": [64], "window": 64, "overlap": 16, "progress": False},
        "output": {"formats": ["npz"]},
        "jax_cache_dir": CACHE,
    }
    for k, v in extra.items():
        cfg[k].update(v)  # type: ignore[union-attr]
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _env(devices: int = 1) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _batch_cmd(inp: Path, out: Path, config: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "retarget_jax.cli",
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
        *extra,
    ]


# float32 round-off between compiled programs (B=4 on one device, 1 clip on each of 4):
# converged solutions differ by about 1e-5 rad; see tests/test_sharding.py
QPOS_ATOL = 5e-5


def _qpos(out: Path, frames: dict[str, int]) -> dict[str, tuple]:
    res = {}
    for rel, T in frames.items():
        r = load_result(out / rel)  # loads = passes the result schema
        assert r.num_frames == T, rel  # never truncated, long clips included
        assert r.robot == "unitree_g1"
        assert r.provenance["status_name"] == "converged", (rel, r.provenance["status_name"])
        res[rel] = (r.qpos, r.iterations, r.final_cost)
    return res


def _assert_equal(got: dict, ref: dict) -> float:
    diff = 0.0
    for k, (q, iters, cost) in ref.items():
        assert got[k][1] == iters, k  # the same iterations
        np.testing.assert_allclose(got[k][2], cost, rtol=1e-5)
        diff = max(diff, float(np.abs(got[k][0] - q).max()))
    assert diff < QPOS_ATOL, diff
    return diff


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.npz")}


def _success(mpath: Path) -> int:
    try:
        return BatchManifest.load(mpath).success_count
    except (OSError, ValueError, Exception):
        return -1


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("motions")
    return root, _clips(root, 8)


@pytest.fixture(scope="module")
def single_device(clip_dir, tmp_path_factory):
    """The reference: one device, one process."""
    inp, frames = clip_dir
    tmp = tmp_path_factory.mktemp("single")
    out = tmp / "out"
    proc = subprocess.run(
        _batch_cmd(inp, out, _config(tmp / "run.yaml")), env=_env(), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, _qpos(out, frames)


def test_kill_9_at_several_points_then_resume(tmp_path):
    inp = tmp_path / "motions"
    frames = _clips(inp, 40)
    out = tmp_path / "out"
    mpath = out / "batch_manifest.json"
    cmd = _batch_cmd(inp, out, _config(tmp_path / "run.yaml"))
    # kill points: during start-up, then after 4, 16 and 28 clips are recorded
    points = [("seconds", 3.0), ("success", 4), ("success", 16), ("success", 28)]
    snapshots, mid_run_kills = [], 0
    for kind, value in points:
        p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        while p.poll() is None:
            if (kind == "seconds" and time.monotonic() - t0 >= value) or (
                kind == "success" and _success(mpath) >= value
            ):
                os.kill(p.pid, signal.SIGKILL)
                break
            assert time.monotonic() - t0 < 900, "the driver made no progress"
            time.sleep(0.02)
        p.wait()
        p.stderr.close()
        if p.returncode == -signal.SIGKILL and _success(mpath) < len(frames):
            mid_run_kills += 1
        snapshots.append(_snapshot(out))
    assert mid_run_kills >= 3
    final = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stderr[-3000:]

    manifest = BatchManifest.load(mpath)
    assert manifest.total == len(frames) == 41
    assert manifest.success_count + manifest.skipped_count == manifest.total and manifest.failed_count == 0
    assert sorted(r.job_id for r in manifest.records) == sorted(frames)
    _qpos(out, frames)
    # no clip solved twice once its output existed: every file seen at a kill is untouched
    last = _snapshot(out)
    for snap in snapshots:
        for rel, stat in snap.items():
            assert last[rel] == stat, f"{rel} was rewritten after a kill"
    # outputs written just before a kill (no record yet) are kept as skipped, never redone
    assert all(r.output == r.job_id for r in manifest.records)


def test_four_host_devices_equal_one(clip_dir, single_device, tmp_path):
    """Four host devices (one clip each, under shard_map) against one device (4 rows in
    sequence): different XLA programs, so float32 round-off differs, and on a clip whose
    stopping test sits at its threshold the solve can stop one iteration apart (seen on
    1 of 41 clips: 11 vs 10 iterations). Every clip must converge on both; every other
    clip must match to the iteration, its cost to 1e-5 and its joints to 2e-4 rad; at most 2 clips may stop one
    iteration
    apart, and those must agree to the solver's own tolerance: cost within rtol (1e-4)
    and joints within 1 cm / 0.01 rad."""
    inp, frames = clip_dir
    ref_out, ref = single_device
    out = tmp_path / "out"
    proc = subprocess.run(
        _batch_cmd(inp, out, _config(tmp_path / "run.yaml")),
        env=_env(devices=4),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = _qpos(out, frames)
    apart = {k for k in ref if got[k][1] != ref[k][1]}
    assert len(apart) <= 2, {k: (got[k][1], ref[k][1]) for k in apart}
    for k in apart:
        assert abs(got[k][1] - ref[k][1]) == 1, (k, got[k][1], ref[k][1])
        np.testing.assert_allclose(got[k][2], ref[k][2], rtol=1e-4)
        assert float(np.abs(got[k][0] - ref[k][0]).max()) < 1e-2, k
    diff = 0.0
    for k in set(ref) - apart:
        np.testing.assert_allclose(got[k][2], ref[k][2], rtol=1e-5)
        diff = max(diff, float(np.abs(got[k][0] - ref[k][0]).max()))
    # the solve stops at rtol 1e-4: its solution is determined to about 1e-4 rad, and the
    # two programs' round-off moves it that much (9.8e-5 seen); 1 device vs 2 processes,
    # the same program, keeps QPOS_ATOL
    assert diff < 2e-4, diff
    print(f"4 host devices vs 1: max |qpos difference| {diff:.2e}; one iteration apart: {sorted(apart)}")
    assert BatchManifest.load(out / "batch_manifest.json").success_count == len(frames)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_and_merge_one_manifest(clip_dir, single_device, tmp_path):
    inp, frames = clip_dir
    _, ref = single_device
    out = tmp_path / "out"
    port = _free_port()
    procs = []
    for k in range(2):
        cfg = _config(
            tmp_path / f"run{k}.yaml",
            batch={
                "distributed": {
                    "enabled": True,
                    "coordinator_address": f"localhost:{port}",
                    "num_processes": 2,
                    "process_id": k,
                }
            },
        )
        procs.append(
            subprocess.Popen(
                _batch_cmd(inp, out, cfg), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    logs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, logs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "process 2 of 2" in logs[1][0]
    diff = _assert_equal(_qpos(out, frames), ref)
    print(f"2 processes vs 1: max |qpos difference| {diff:.2e}")
    manifest = BatchManifest.load(out / "batch_manifest.json")
    assert manifest.success_count == manifest.total == len(frames)
    assert sorted(r.job_id for r in manifest.records) == sorted(frames)
    assert not list(out.glob("batch_manifest.part-*"))  # merged, parts removed


def test_multirun_sweep_writes_each_run_to_its_own_directory(clip_dir, tmp_path):
    inp, frames = clip_dir
    two = tmp_path / "two"
    for rel in ("subject_a/clip00.npz", "subject_b/clip00.npz"):
        (two / rel).parent.mkdir(parents=True, exist_ok=True)
        (two / rel).write_bytes((inp / rel).read_bytes())
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "retarget_jax.run",
        "-m",
        "+experiment=keypoints",
        "robot=unitree_g1",
        f"input.path={two}",
        "solver.weights.smooth=0.1,1,10",
        "solver.max_iters=50",
        "recipe=lafan1_g1",
        "batch.max_batch=4",
        "batch.buckets=[64]",
        "batch.window=64",
        "batch.overlap=16",
        "batch.progress=false",
        "output.formats=[npz]",
        f"jax_cache_dir={CACHE}",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.rglob("batch_manifest.json"))
    # <job number>_<the job's overrides, path-like keys left out>
    assert len(runs) == 3 and len({r.parent for r in runs}) == 1
    for i, (run, v) in enumerate(zip(runs, ("0.1", "1", "10"), strict=True)):
        assert run.name.startswith(f"{i}_") and run.name.endswith(f"solver.weights.smooth={v}"), run.name
        assert "input.path" not in run.name
    smooth = []
    for run in runs:
        m = BatchManifest.load(run / "batch_manifest.json")
        assert m.success_count == m.total == 2
        r = load_result(run / "subject_a/clip00.npz")
        smooth.append(r.provenance["weights"]["smooth_joint"])
    np.testing.assert_allclose(smooth, [0.0002, 0.002, 0.02])


def test_cli_refuses_to_guess_a_robot_and_names_bad_keys(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    np.savez(tmp_path / "in" / "a.npz", poses=np.zeros((4, 165)))
    assert (
        cli_main(
            ["batch", "--input-dir", str(tmp_path / "in"), "--format", "smplx", "--output-dir", str(tmp_path / "out")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no robot given" in err and "unitree_g1" in err
    assert not (tmp_path / "out").exists()  # refused before any work
    bad = tmp_path / "bad.yaml"
    bad.write_text("solver:\n  max_itres: 3\n")
    assert (
        cli_main(
            [
                "batch",
                "--input-dir",
                str(tmp_path / "in"),
                "--format",
                "smplx",
                "--robot",
                "unitree_g1",
                "--config",
                str(bad),
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert "max_itres" in capsys.readouterr().err
    # the robot may come from the config file instead of the flag (then the file is read)
    good = tmp_path / "good.yaml"
    good.write_text("robot:\n  name: unitree_h2\n")
    assert (
        cli_main(
            [
                "batch",
                "--input-dir",
                str(tmp_path / "in"),
                "--format",
                "smplx",
                "--config",
                str(good),
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert "unitree_h2" in capsys.readouterr().err  # an unknown robot is named, with the valid ones
