"""Dataset builds (retarget_jax.dataset): a spec of every kind of source -> shards.

One module-scoped build serves most tests: six sources (BVH, keypoints npz, GMR pkl,
SEED CSV, result / mjlab npz) with clips built to be kept, clips built to be dropped by
each filter (too short, too fast, floating, lying) and broken files. Every human clip is
at most 60 frames (one 64-frame bucket) and solved with 2 iterations in batches of 4, so
the module compiles the solver once; later builds reuse it (and the intermediates).
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from inputs import result_of

from retarget_jax.dataset import (
    MotionDataset,
    build_dataset,
    check_fk_file,
    load_spec,
    reshard,
    split_of,
)
from retarget_jax.dataset.build import BUILD_INFO_NAME, MANIFEST_NAME, read_manifest
from retarget_jax.dataset.fk import fk_figures
from retarget_jax.dataset.shards import FRAME_KEYS, open_shard, shard_files
from retarget_jax.errors import DatasetSpecError, MotionFormatError
from retarget_jax.files.atomic import is_temp_file
from retarget_jax.io import save_result, write_gmr_pkl, write_mjlab_npz
from retarget_jax.io.readers import SEED_ROOT_COLUMNS
from retarget_jax.motion.demo import demo_motion
from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP
from retarget_jax.result import RetargetingResult
from retarget_jax.rotations import quat_to_mat

REPO = Path(__file__).resolve().parents[1]
ROLE_TO_LAFAN1 = {role: name for name, role in LAFAN1_JOINT_MAP.items()}
FAST = {"solver": {"max_iters": 2}, "batch": {"max_batch": 4}}

# what each input was built to become: clip id -> (status, filter or error type)
EXPECTED = {
    "mocap/walk_a.bvh": ("kept", ""),
    "mocap/walk_b.bvh": ("kept", ""),
    "mocap/short.bvh": ("dropped", "min_frames"),
    "mocap/broken.bvh": ("failed", "motion_format"),
    "kp/walk_kp.npz": ("kept", ""),
    "kp/sub/walk_kp2.npz": ("kept", ""),
    "gmr/stand_0.pkl": ("kept", ""),
    "gmr/stand_1.pkl": ("kept", ""),
    "gmr/fast.pkl": ("dropped", "max_root_lin_vel"),
    "gmr/floating.pkl": ("dropped", "max_all_off_ground_s"),
    "gmr/lying.pkl": ("dropped", "min_peak_body_height"),
    "gmr/evil.pkl": ("failed", "motion_format"),
    "seed/stand_seed.csv": ("kept", ""),
    "seed/no_knee.csv": ("failed", "motion_format"),
    "ready/stand_result.npz": ("kept", ""),
    "ready/stand_mjlab.npz": ("kept", ""),
}


# --------------------------------------------------------------------------- inputs


def _demo_bvh_writer():
    spec = importlib.util.spec_from_file_location("make_demo_motion", REPO / "scripts" / "make_demo_motion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_bvh


def _write_keypoints(path: Path, motion) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        positions=motion.positions.astype(np.float32),
        joint_names=np.array([ROLE_TO_LAFAN1[j] for j in motion.joint_names]),
        fps=np.float32(motion.fps),
    )


def standing(
    robot,
    T: int,
    fps: float,
    *,
    speed: float = 0.1,
    lift: tuple[int, int, float] | None = None,
    teleport: int | None = None,
    lying: bool = False,
    phase: float = 0.0,
) -> RetargetingResult:
    """The robot standing at its default pose and swinging its arms while gliding forward at
    ``speed`` m/s; ``lift`` = (first, last, metres) raises it off the ground for those frames,
    ``teleport`` jumps the root 1 m forward at that frame, ``lying`` lays it on its side."""
    t = np.arange(T) / fps
    dof = np.tile(robot.mj_model.qpos0[7:], (T, 1))
    for name in ("left_shoulder_pitch_joint", "right_shoulder_pitch_joint", "left_elbow_joint"):
        dof[:, robot.dof_names.index(name)] += 0.3 * np.sin(2 * np.pi * 0.8 * t + phase) + 0.3
    root = np.c_[speed * t, np.zeros(T), np.full(T, robot.standing_height)]
    quat = np.tile([1.0, 0.0, 0.0, 0.0], (T, 1))
    if lift is not None:  # a smooth rise and fall, 10 frames each (not a jump the speed filter would catch)
        a, b, h = lift
        ramp = np.clip(np.minimum(np.arange(T) - a, b - np.arange(T)) / 10.0, 0.0, 1.0)
        root[:, 2] += h * (0.5 - 0.5 * np.cos(np.pi * ramp))
    if teleport is not None:
        root[teleport:, 0] += 1.0
    if lying:
        quat[:] = [np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0]
        root[:, 2] = 0.15
    return result_of(robot, root, quat, dof, fps=fps)


def _write_seed(path: Path, traj: RetargetingResult, drop: str | None = None) -> None:
    """A BONES-SEED CSV (cm, extrinsic XYZ degrees, joint degrees) of a trajectory."""
    R = quat_to_mat(traj.root_quat_wxyz)
    euler = np.degrees(
        np.stack(
            [
                np.arctan2(R[:, 2, 1], R[:, 2, 2]),
                np.arcsin(np.clip(-R[:, 2, 0], -1, 1)),
                np.arctan2(R[:, 1, 0], R[:, 0, 0]),
            ],
            axis=-1,
        )
    )
    cols = [f"{j}_dof" for j in traj.dof_names if j != drop]
    keep = [i for i, j in enumerate(traj.dof_names) if j != drop]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*SEED_ROOT_COLUMNS, *cols])
        for t in range(traj.num_frames):
            w.writerow(
                [
                    t,
                    *(
                        repr(float(v))
                        for v in [*(traj.root_pos[t] * 100), *euler[t], *np.degrees(traj.dof_pos[t, keep])]
                    ),
                ]
            )


def make_corpus(root: Path, robot) -> dict[str, Path]:
    """Every input of :data:`EXPECTED` under ``root``; returns the source folders."""
    write_bvh = _demo_bvh_writer()
    d = {name: root / name for name in ("mocap", "kp", "gmr", "seed", "ready")}
    for p in d.values():
        p.mkdir(parents=True, exist_ok=True)
    write_bvh(d["mocap"] / "walk_a.bvh", demo_motion(num_frames=50))
    write_bvh(d["mocap"] / "walk_b.bvh", demo_motion(num_frames=60))
    write_bvh(d["mocap"] / "short.bvh", demo_motion(num_frames=20))
    (d["mocap"] / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0\n")
    _write_keypoints(d["kp"] / "walk_kp.npz", demo_motion(num_frames=56))
    _write_keypoints(d["kp"] / "sub" / "walk_kp2.npz", demo_motion(num_frames=44))
    write_gmr_pkl(standing(robot, 45, 30.0), d["gmr"] / "stand_0.pkl")
    write_gmr_pkl(standing(robot, 50, 30.0, phase=1.0), d["gmr"] / "stand_1.pkl")
    write_gmr_pkl(standing(robot, 45, 30.0, teleport=20), d["gmr"] / "fast.pkl")
    write_gmr_pkl(standing(robot, 90, 30.0, lift=(20, 70, 0.5)), d["gmr"] / "floating.pkl")
    write_gmr_pkl(standing(robot, 45, 30.0, lying=True), d["gmr"] / "lying.pkl")
    (d["gmr"] / "evil.pkl").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    _write_seed(d["seed"] / "stand_seed.csv", standing(robot, 160, 120.0, phase=2.0))
    _write_seed(d["seed"] / "no_knee.csv", standing(robot, 160, 120.0), drop="left_knee_joint")
    save_result(standing(robot, 60, 50.0, phase=0.5), d["ready"] / "stand_result.npz")
    write_mjlab_npz(standing(robot, 40, 30.0, phase=1.5), d["ready"] / "stand_mjlab.npz")
    return d


def write_spec(path: Path, sources: list[dict], **extra) -> Path:
    spec = {
        "name": "mix",
        "robot": "unitree_g1",
        "target_fps": 30,
        "val_percent": 30,
        "hash_salt": "t",
        "preprocess": {
            "normalize_root_xy": True,
            "ground_align": "clip_min_foot",
            "min_frames": 30,
            "max_root_lin_vel": 6.0,
            "min_peak_body_height": 0.4,
            "max_all_off_ground_s": 1.0,
        },
        "sources": sources,
        **FAST,
        **extra,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main_sources(d: dict[str, Path]) -> list[dict]:
    """The test spec's sources; robot-space ones first, so the kill test's build is killed
    while it converts them, before it pays for tracing the solver."""
    return [
        {"name": "gmr", "type": "pkl", "input": str(d["gmr"])},
        {"name": "seed", "type": "seed_csv", "input": str(d["seed"]), "weight": 0.5},
        {"name": "ready", "type": "npz", "input": str(d["ready"])},
        {"name": "mocap", "type": "bvh", "bvh_format": "lafan1", "input": str(d["mocap"]), "weight": 1.0},
        {"name": "kp", "type": "keypoints", "input": str(d["kp"]), "weight": 2.0},
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, g1):
    root = tmp_path_factory.mktemp("dataset")
    dirs = make_corpus(root / "inputs", g1)
    spec = write_spec(root / "mix.yaml", main_sources(dirs))
    return root, dirs, spec


@pytest.fixture(scope="module")
def built(corpus):
    root, _, spec = corpus
    info = build_dataset(spec, root / "out", log=lambda m: None)
    return root / "out" / "mix", info


def _rows(ds: Path) -> dict[str, dict]:
    return {r["clip_id"]: r for r in read_manifest(ds / MANIFEST_NAME)}


def _shard_bytes(ds: Path) -> dict[str, bytes]:
    return {f"{s}/{p.name}": p.read_bytes() for s in ("train", "val") for p in shard_files(ds / s)}


# --------------------------------------------------------------------------- acceptance: the build


def test_manifest_accounts_for_every_input_with_status_and_reason(built, corpus):
    ds, info = built
    rows = _rows(ds)
    inputs = {
        f"{src}/{p.relative_to(folder).as_posix()}"
        for src, folder in corpus[1].items()
        for p in folder.rglob("*")
        if p.is_file()
    }
    assert set(rows) == inputs == set(EXPECTED)
    for cid, (status, why) in EXPECTED.items():
        r = rows[cid]
        assert r["status"] == status, (cid, r)
        if status == "dropped":
            assert r["filters"] == why and r["reason"], (cid, r)
        if status == "failed":
            assert r["error_type"] == why and r["input"] in r["reason"], (cid, r)
        if status == "kept":
            assert r["shard"] and r["split"] == split_of(cid, 30, "t") and not r["error_type"]
    assert info["counts"] == {"inputs": 16, "kept": 9, "dropped": 4, "failed": 3}
    assert info["drops_per_filter"] == {
        "min_frames": 1,
        "max_root_lin_vel": 1,
        "min_peak_body_height": 1,
        "max_all_off_ground_s": 1,
    }
    json.loads((ds / BUILD_INFO_NAME).read_text())  # valid JSON on disk


def test_filter_reasons_carry_their_figures(built):
    rows = _rows(built[0])
    short = rows["mocap/short.bvh"]
    assert f"{short['frames']} frames at 30 fps < min_frames 30" in short["reason"] and int(short["frames"]) < 30
    assert "m/s > max_root_lin_vel 6" in rows["gmr/fast.pkl"]["reason"]
    # 50 frames at 30 fps off the ground (plus the frames lifting off)
    assert "floating" in rows["gmr/floating.pkl"]["reason"] and float(rows["gmr/floating.pkl"]["frames"]) == 90
    assert "min_peak_body_height 0.4" in rows["gmr/lying.pkl"]["reason"]
    assert "refusing to load class os.system" in rows["gmr/evil.pkl"]["reason"]
    assert "left_knee_joint" in rows["seed/no_knee.csv"]["reason"]


def test_shards_hold_every_kept_clip_where_the_manifest_says(built):
    ds, info = built
    rows = _rows(ds)
    seen = {}
    for split in ("train", "val"):
        for p in shard_files(ds / split):
            sh = open_shard(p)
            assert str(sh.arrays["split"]) == split and str(sh.arrays["robot"]) == "unitree_g1"
            for i, cid in enumerate(sh.arrays["clip_ids"].tolist()):
                r = rows[cid]
                assert r["shard"] == f"{split}/{p.name}"
                assert int(r["offset"]) == int(sh.arrays["clip_starts"][i])
                assert int(r["frames"]) == int(sh.arrays["clip_lengths"][i])
                assert float(sh.arrays["clip_weights"][i]) == float(r["weight"])
                assert str(sh.arrays["clip_sources"][i]) == cid.split("/")[0]
                seen[cid] = sh.clip(i)
    assert set(seen) == {c for c, (s, _) in EXPECTED.items() if s == "kept"}
    assert info["per_split"]["train"]["clips"] + info["per_split"]["val"]["clips"] == 9
    assert info["per_split"]["val"]["clips"] >= 1  # the salt and val_percent leave both splits non-empty
    # resampled to 30 fps on exact times: the 120 fps SEED clip of 160 frames has 40
    assert seen["seed/stand_seed.csv"].num_frames == 40 and seen["seed/stand_seed.csv"].fps == 30.0
    assert all(c.fps == 30.0 for c in seen.values())
    for c in seen.values():  # normalized and ground-aligned
        np.testing.assert_allclose(c.frames["root_pos"][0, :2], 0.0, atol=1e-6)
        assert np.isfinite(np.stack([c.frames[k].astype(float).sum() for k in FRAME_KEYS])).all()
    stand = seen["gmr/stand_0.pkl"]
    assert stand.frames["contacts"].all()  # both feet flat on the ground, not moving
    np.testing.assert_allclose(stand.frames["root_pos"][:, 2], g1_standing_height(), atol=1e-5)


def g1_standing_height() -> float:
    from retarget_jax.robots import load_robot

    return load_robot("unitree_g1").standing_height


def test_every_kept_clip_passes_check_fk(built, g1):
    ds, info = built
    rows = _rows(ds)
    for cid, r in rows.items():
        if r["status"] == "kept":
            assert float(r["fk_pos_max_m"]) < 1e-3 and float(r["fk_quat_p95_rad"]) < 0.1, cid
    assert info["fk_check"]["clips_checked"] == 9 and info["fk_check"]["pos_max_m"] < 1e-3
    checked = 0
    for p in shard_files(ds / "train") + shard_files(ds / "val"):
        for cid, fig in check_fk_file(p):
            assert fig.passed, (cid, fig)
            checked += 1
    assert checked == 9


def test_check_fk_catches_body_poses_that_do_not_follow_the_joints(built, g1, tmp_path, capsys):
    from retarget_jax.cli import main

    ds = built[0]
    p = shard_files(ds / "train")[0]
    assert main(["dataset", "check-fk", "--npz", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] == [] and out["clips"] == len(open_shard(p).arrays["clip_ids"])
    # a shard whose joint columns were swapped: FK now disagrees with the stored bodies
    a = {k: np.array(v) for k, v in open_shard(p).arrays.items()}
    a["joint_pos"][:, [0, 3]] = a["joint_pos"][:, [3, 0]]
    bad = tmp_path / "swapped.npz"
    np.savez(bad, **a)
    assert main(["dataset", "check-fk", "--npz", str(bad)]) == 1
    c = open_shard(p).clip(0)
    fig = fk_figures(
        g1,
        c.frames["root_pos"],
        c.frames["root_quat_wxyz"],
        c.frames["joint_pos"] + 0.05,
        c.frames["body_pos_w"],
        c.frames["body_quat_w"],
    )
    assert not fig.passed and fig.pos_max > 1e-3


def test_loader_samples_frames_and_windows_by_weight(built):
    ds = built[0]
    train = MotionDataset(ds, "train")
    val = MotionDataset(ds, "val")
    assert len(train) + len(val) == 9
    assert train.joint_names == val.joint_names and len(train.joint_names) == 29
    rng = np.random.default_rng(0)
    w = train.sample_windows(rng, batch_size=64, length=30)
    assert w["joint_pos"].shape == (64, 30, 29) and w["body_quat_w"].shape == (64, 30, 30, 4)
    for b in range(8):  # each window is the right slice of its clip
        clip = train.clip(int(w["clip_index"][b]))
        s = int(w["start"][b])
        np.testing.assert_array_equal(w["root_pos"][b], clip["root_pos"][s : s + 30])
    f = train.sample_frames(rng, 16, array="jax")
    assert f["contacts"].shape == (16, 2) and type(f["joint_pos"]).__module__.startswith("jax")
    # clips are drawn in proportion to their source weight
    idx = train.sample_clips(np.random.default_rng(1), 40000)
    weights = np.array([c.weight for c in train.clips])
    freq = np.bincount(idx, minlength=len(train)) / idx.size
    np.testing.assert_allclose(freq, weights / weights.sum(), atol=0.01)


# --------------------------------------------------------------------------- acceptance: stability


def test_rebuild_reuses_clips_and_gives_identical_shards(built, corpus):
    ds, _ = built
    root, _, spec = corpus
    before = _shard_bytes(ds)
    clip_files = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (ds / "clips").rglob("*.npz")}
    info = build_dataset(spec, root / "out", log=lambda m: None)
    assert _shard_bytes(ds) == before
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in clip_files} == clip_files  # nothing re-solved
    assert info["stage1"]["mocap"]["reused"] == 3 and info["stage1"]["mocap"]["done_now"] == 0


def test_hash_split_is_stable_when_a_source_is_added(built, corpus, g1, tmp_path):
    ds, _ = built
    root, dirs, _ = corpus
    extra = tmp_path / "extra"
    extra.mkdir()
    for i in range(6):
        write_gmr_pkl(standing(g1, 40, 30.0, phase=0.3 * i), extra / f"more_{i}.pkl")
    spec = write_spec(
        tmp_path / "mix.yaml", [*main_sources(dirs), {"name": "extra", "type": "gmr_pkl", "input": str(extra)}]
    )
    shutil.copytree(ds / "clips", tmp_path / "out" / "mix" / "clips")  # reuse the solved clips
    info = build_dataset(spec, tmp_path / "out", log=lambda m: None)
    assert info["stage1"]["kp"]["done_now"] == 0
    a, b = _rows(ds), _rows(tmp_path / "out" / "mix")
    assert set(b) == set(a) | {f"extra/more_{i}.pkl" for i in range(6)}
    for cid, r in a.items():
        assert b[cid]["status"] == r["status"] and b[cid]["split"] == r["split"], cid
    # the split is a function of the id and the salt only
    ids = [f"src/clip_{i:04d}.npz" for i in range(4000)]
    val = [split_of(i, 5.0, "") == "val" for i in ids]
    assert 0.04 < np.mean(val) < 0.06
    assert [split_of(i, 5.0, "other") for i in ids] != [split_of(i, 5.0, "") for i in ids]


def test_kill_9_during_a_build_then_rerun_gives_identical_shards(built, corpus, tmp_path):
    ds, _ = built
    _, _, spec = corpus
    out = tmp_path / "out"
    # the human sources were solved by an earlier run (their clips are reused, as in any
    # rerun); this build is killed while it converts the first robot-space source
    for src in ("mocap", "kp"):
        shutil.copytree(ds / "clips" / src, out / "mix" / "clips" / src)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    cmd = [
        sys.executable,
        "-m",
        "retarget_jax.cli",
        "dataset",
        "build",
        "--spec",
        str(spec),
        "--output-root",
        str(out),
        "--no-progress",
        "--cache-dir",
        "",
    ]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    clips = out / "mix" / "clips" / "gmr"
    while p.poll() is None:  # kill as soon as the first clip of the first source is on disk
        if clips.is_dir() and any(not is_temp_file(f) for f in clips.glob("*.npz")):
            os.kill(p.pid, signal.SIGKILL)
            break
        assert time.monotonic() - t0 < 120, "the build made no progress"
        time.sleep(0.002)
    p.wait()
    err = p.stderr.read()
    p.stderr.close()
    assert p.returncode == -signal.SIGKILL, err[-2000:]
    assert not (out / "mix" / BUILD_INFO_NAME).exists() and not (out / "mix" / "train").exists()
    done = [f for f in clips.glob("*.npz") if not is_temp_file(f)]
    info = build_dataset(spec, out, log=lambda m: None)
    assert info["stage1"]["gmr"]["reused"] == len(done) >= 1 and info["stage1"]["mocap"]["done_now"] == 0
    assert info["counts"] == {"inputs": 16, "kept": 9, "dropped": 4, "failed": 3}
    assert _shard_bytes(out / "mix") == _shard_bytes(ds)
    assert (out / "mix" / MANIFEST_NAME).read_bytes() == (ds / MANIFEST_NAME).read_bytes()
    assert not [f for f in (out / "mix").rglob("*") if is_temp_file(f)]


def test_resume_after_part_of_a_solved_batch_was_lost_gives_identical_shards(built, corpus, tmp_path):
    """What a kill between two clips' writes of one device batch leaves: the rerun solves
    the missing clip in a batch of its own (padded rows) and gets the same bytes."""
    ds, _ = built
    _, _, spec = corpus
    shutil.copytree(ds / "clips", tmp_path / "mix" / "clips")
    lost = tmp_path / "mix" / "clips" / "mocap" / "walk_b.npz"
    lost.unlink()
    kept = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "mix" / "clips").rglob("*.npz")}
    info = build_dataset(spec, tmp_path, log=lambda m: None)
    assert info["stage1"]["mocap"]["done_now"] == 1 and lost.exists()
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in kept} == kept
    assert _shard_bytes(tmp_path / "mix") == _shard_bytes(ds)


def test_reshard_splits_and_merges_back_to_the_same_clips(built, tmp_path):
    from retarget_jax.cli import main

    ds = built[0]
    small = tmp_path / "small"
    assert main(["dataset", "reshard", "--input", str(ds), "--output", str(small), "--max-size-gb", "0.00005"]) == 0
    assert len(shard_files(small / "train")) > len(shard_files(ds / "train"))

    meta = {s: open_shard(shard_files(ds / s)[0]).meta for s in ("train", "val")}

    def clips(folder):
        out = {}
        for p in shard_files(folder):
            sh = open_shard(p)
            assert sh.meta == meta[folder.name]  # robot, split and names in every shard
            for c in sh.clips():
                out[c.clip_id] = (c.source, c.fps, c.weight, {k: np.array(v) for k, v in c.frames.items()})
        return out

    for split in ("train", "val"):
        a, b = clips(ds / split), clips(small / split)
        assert list(a) == list(b)  # same clips, same order
        for cid in a:
            assert a[cid][:3] == b[cid][:3]
            for k in FRAME_KEYS:
                np.testing.assert_array_equal(a[cid][3][k], b[cid][3][k])
        for p in shard_files(small / split):  # the bound holds, but for a single clip larger than it
            sh = open_shard(p)
            assert sh.num_clips == 1 or sum(v.nbytes for k, v in sh.arrays.items() if k in FRAME_KEYS) <= 50_000
    back = tmp_path / "back"
    reshard(small, back, int(256e6))  # merged with the build's own bound: the build's shards, byte for byte
    assert _shard_bytes(back) == _shard_bytes(ds)


# --------------------------------------------------------------------------- spec errors


@pytest.mark.parametrize(
    "edit, key, match",
    [
        (lambda s: s.update(shards=3), "shards", r"unknown key 'shards'; valid keys here: .*val_percent"),
        (lambda s: s["preprocess"].update(min_frame=3), "preprocess.min_frame", "unknown key 'min_frame'"),
        (lambda s: s["sources"][0].update(wieght=2), "sources[0].wieght", "unknown key 'wieght'"),
        (lambda s: s["sources"][0].update(type="fbx"), "sources[0].type", "unknown source type 'fbx'; valid: amass"),
        (lambda s: s["sources"][0].update(weight=-1), "sources[0].weight", "expected a number > 0, found -1"),
        (lambda s: s["sources"][0].update(input="nowhere"), "sources[0].input", "does not exist"),
        (lambda s: s["sources"][0].pop("bvh_format"), "sources[0].bvh_format", "needs bvh_format"),
        (lambda s: s.update(val_percent="five"), "val_percent", "expected a finite number, found str"),
        (
            lambda s: s["preprocess"].update(ground_align="lowest"),
            "preprocess.ground_align",
            "valid: none, clip_min_foot",
        ),
        (lambda s: s.update(solver={"max_iter": 3}), "solver.max_iter", "unknown key 'max_iter'; valid keys here: "),
        (lambda s: s["sources"].append(dict(s["sources"][0])), "sources[1].name", "used twice"),
    ],
)
def test_bad_spec_fails_before_any_work_naming_file_and_key(tmp_path, edit, key, match):
    (tmp_path / "m").mkdir()
    spec = {
        "name": "x",
        "robot": "unitree_g1",
        "preprocess": {},
        "sources": [{"name": "m", "type": "bvh", "bvh_format": "lafan1", "input": "m"}],
    }
    edit(spec)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(DatasetSpecError, match=match) as e:
        build_dataset(path, tmp_path / "out", log=lambda m: None)
    assert str(path) in str(e.value) and f"key '{key}'" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_spec_resolves_defaults_and_relative_inputs(tmp_path):
    (tmp_path / "data" / "seed").mkdir(parents=True)
    p = tmp_path / "s.yaml"
    p.write_text("name: g1_mix\nrobot: unitree_g1\nsources:\n  - {name: seed, type: seed_csv, input: data/seed}\n")
    s = load_spec(p)
    assert s.sources[0].input == (tmp_path / "data" / "seed").resolve() and s.sources[0].format == "seed_csv"
    assert (s.target_fps, s.val_percent, s.hash_salt, s.preprocess.min_frames) == (30.0, 5.0, "", 30)
    assert load_spec(p, overrides={"val_percent": 10}).val_percent == 10.0
    p.write_text("name: a\nname: b\nrobot: unitree_g1\nsources: []\n")
    with pytest.raises(DatasetSpecError, match="appears twice"):
        load_spec(p)


def test_a_corrupt_shard_is_a_typed_error_naming_file_and_key(built, tmp_path):
    p = shard_files(built[0] / "train")[0]
    a = {k: np.array(v) for k, v in open_shard(p).arrays.items()}
    a["clip_starts"] = a["clip_starts"][::-1].copy()
    bad = tmp_path / "bad.npz"
    np.savez(bad, **a)
    with pytest.raises(MotionFormatError, match=r"bad.npz, field 'clip_starts'"):
        open_shard(bad)
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(MotionFormatError, match="trunc.npz"):
        open_shard(trunc)


# --------------------------------------------------------------------------- real capture


def test_real_capture_from_shared_data_builds_and_passes_check_fk(shared_data_dir, tmp_path):
    """60-frame pieces of the shared LAFAN1 BVH and of the OMOMO keypoints (the mocapbank
    BVH would cost one more solver program; benchmarks/bench_dataset.py --shared builds
    all three shared clips whole)."""
    from retarget_jax.io.bvh import write_bvh
    from retarget_jax.motion.bvh import parse_bvh

    for sub in ("lafan1", "omomo"):
        (tmp_path / sub).mkdir()
    clip = parse_bvh(shared_data_dir / "lafan1_skeleton_clip_a.bvh")
    write_bvh(tmp_path / "lafan1" / "clip_a.bvh", dataclasses.replace(clip, frames=clip.frames[100:160]))
    with np.load(shared_data_dir / "omomo_sub3_largebox_003_joints.npz", allow_pickle=False) as z:
        np.savez(
            tmp_path / "omomo" / "largebox_003.npz",
            positions=z["positions"][:60],
            joint_names=z["joint_names"],
            fps=z["fps"],
        )
    spec = write_spec(
        tmp_path / "real.yaml",
        [
            {"name": "lafan1", "type": "bvh", "bvh_format": "lafan1", "input": "lafan1"},
            {"name": "omomo", "type": "keypoints", "input": "omomo", "weight": 3.0},
        ],
        name="real",
    )
    info = build_dataset(spec, tmp_path / "out", log=lambda m: None)
    rows = _rows(tmp_path / "out" / "real")
    assert {r["status"] for r in rows.values()} == {"kept"}, rows
    assert set(rows) == {"lafan1/clip_a.bvh", "omomo/largebox_003.npz"}
    assert info["fk_check"]["clips_checked"] == 2 and info["fk_check"]["pos_max_m"] < 1e-3
    for split in ("train", "val"):
        for p in shard_files(tmp_path / "out" / "real" / split):
            assert all(f.passed for _, f in check_fk_file(p))


# --------------------------------------------------------------------------- Hydra entry


def test_hydra_entry_builds_with_spec_overrides(corpus, tmp_path, monkeypatch):
    from hydra import compose, initialize

    from retarget_jax.dataset import run

    _, dirs, _ = corpus
    spec = write_spec(tmp_path / "robot_only.yaml", [{"name": "gmr", "type": "pkl", "input": str(dirs["gmr"])}])
    monkeypatch.chdir(tmp_path)
    with initialize(version_base="1.3", config_path=None):
        cfg = compose(
            "dataset_run",
            overrides=[
                f"dataset={spec}",
                f"output_root={tmp_path / 'out'}",
                "progress=false",
                "jax_cache_dir=null",
                "+set.name=hydra_mix",
                "+set.val_percent=0",
                "+set.preprocess.min_frames=48",
            ],
        )
        info = run.execute(run.typed(cfg))
        bad = compose("dataset_run", overrides=[f"dataset={spec}", "+set.val_precent=3"])
    assert info["name"] == "hydra_mix" and info["per_split"]["val"]["clips"] == 0
    # min_frames 48 drops the 45-frame stand_0 too (as well as the fast, lying and floating ones)
    assert info["counts"] == {"inputs": 6, "kept": 1, "dropped": 4, "failed": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "robot_only.yaml"]  # Hydra wrote nothing
    with pytest.raises(DatasetSpecError, match=r"robot_only.yaml, key 'val_precent': unknown key"):
        run.execute(run.typed(bad))
