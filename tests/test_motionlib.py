"""Tests for retarget_jax.motionlib: motion configs -> per-motion states -> packaged libraries
-> MotionLib queries, for the ``smpl`` body model and the ``unitree_g1`` robot.

The AMASS tree is synthetic and written here: two subjects, SMPL-H files (120 fps, the
``poses`` layout) and SMPL-X files (60 fps, ``poses`` and the ``root_orient`` +
``pose_body`` + ``pose_hand`` layout), with sub-motion slices and weights, a missing file
and a slice outside its clip. Every slice lasts at most 1.9 s, so at 30 fps each G1 clip
fits the solver's 64-frame bucket and the whole G1 build is one compile (2 iterations).
Each library is built once per module and checked by many tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation, Slerp
from scipy.stats import chisquare, kstest

from retarget_jax.errors import MotionConfigError, MotionLibFormatError, SliceError
from retarget_jax.files.atomic import is_temp_file
from retarget_jax.manifest import BatchManifest, manifest_path
from retarget_jax.motion.conventions import SMPL_FRAME
from retarget_jax.motionlib import (
    BuildOptions,
    MotionLib,
    build_libraries,
    load_library,
    load_motion_config,
)
from retarget_jax.motionlib.build import MANIFEST_NAME
from retarget_jax.motionlib.library import process_rank, resolve_library_path, shard_assignment
from retarget_jax.motionlib.states import (
    FRAME_FIELDS,
    figure,
    load_states,
    robot_states,
    slice_times,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_FPS = 30.0
ROOT_FACE_X = Rotation.from_matrix(SMPL_FRAME).as_rotvec()  # canonical Y-up body -> Z-up world, facing +X

TRAIN = [  # (file, entry weight, entry fps, [(start, end, sub weight)])
    ("SubjectA/walk_00_poses.npz", 1.0, None, [(0.0, 1.5, None), (1.0, 2.5, 3.0)]),
    ("SubjectA/walk_01_poses.npz", 2.0, None, [(0.5, 2.0, None)]),
    ("SubjectA/walk_02_poses.npz", 1.0, None, [(2.0, 3.5, 0.5), (0.0, 1.5, 4.0)]),
    ("SubjectB/run_00_stageii.npz", 1.5, 60.0, [(0.25, 1.75, None), (0.9, 2.4, 0.25)]),
    ("SubjectB/stand_00_stageii.npz", 1.0, None, []),
    ("missing/none_poses.npz", 1.0, None, []),  # a missing file: a failed row
    ("SubjectA/walk_01_poses.npz", 1.0, None, [(2.0, 9.0, None)]),  # outside the clip: a failed row
]
VAL = [
    ("SubjectA/walk_00_poses.npz", 1.0, None, [(0.0, 1.5, None)]),  # the same slice as train row 0
    ("SubjectB/run_00_stageii.npz", 1.0, None, [(0.5, 2.0, None)]),
    ("SubjectA/walk_02_poses.npz", 1.0, None, [(1.0, 2.5, None)]),
]
#: Slices of many lengths, for the shard balance (body model only: no solve).
SHARDS = [
    ("SubjectA/walk_00_poses.npz", 1.0, None, [(0.0, 2.9, None), (0.5, 1.1, None), (1.0, 2.0, None)]),
    ("SubjectA/walk_01_poses.npz", 1.0, None, [(0.0, 3.4, None), (2.0, 2.8, None)]),
    ("SubjectA/walk_02_poses.npz", 1.0, None, [(0.0, 3.9, None), (1.5, 3.0, None), (3.0, 3.5, None)]),
    ("SubjectB/run_00_stageii.npz", 1.0, None, [(0.0, 2.4, None), (1.2, 1.9, None)]),
]
TRAIN_WEIGHTS = [1.0, 3.0, 2.0, 0.5, 4.0, 1.5, 0.25, 1.0]  # the good rows, in order


def _pose(T: int, fps: float, width: int, seed: int, speed: float):
    """Smooth joint rotations (sinusoids of random amplitude and phase) and a translation."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None] / fps
    amp = rng.uniform(0.0, 0.25, size=(1, width))
    phase = rng.uniform(0, 2 * np.pi, size=(1, width))
    poses = amp * np.sin(2 * np.pi * 1.1 * t + phase)
    poses[:, :3] = ROOT_FACE_X + 0.05 * np.sin(2 * np.pi * 0.3 * t[:, 0:1] + phase[:, :3])
    trans = np.c_[speed * t[:, 0], 0.02 * np.sin(2 * np.pi * t[:, 0]), 0.95 + 0.01 * np.cos(4 * np.pi * t[:, 0])]
    return poses, trans


def write_tree(root: Path) -> None:
    for s, T in enumerate((360, 420, 480)):  # SMPL-H, 120 fps
        poses, trans = _pose(T, 120.0, 156, s, 0.8)
        p = root / f"SubjectA/walk_{s:02d}_poses.npz"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            p, poses=poses, trans=trans, betas=np.zeros(16), mocap_framerate=np.array(120.0), gender=np.array("neutral")
        )
    (root / "SubjectB").mkdir(parents=True, exist_ok=True)
    poses, trans = _pose(150, 60.0, 165, 7, 2.0)  # SMPL-X, 60 fps, 'poses' layout
    np.savez(
        root / "SubjectB/run_00_stageii.npz",
        poses=poses,
        trans=trans,
        betas=np.zeros(16),
        mocap_frame_rate=np.array(60.0),
        gender=np.array("female"),
        surface_model_type=np.array("smplx"),
    )
    T = 91  # SMPL-X standing still, 1.5 s, 'root_orient' + 'pose_body' + 'pose_hand' layout
    body = np.zeros((T, 63))
    body[:, 15 * 3 + 2] = -0.3  # the left collar's roll, so the pose is not the zero pose
    hand = np.tile(np.linspace(-0.2, 0.2, 90), (T, 1))
    np.savez(
        root / "SubjectB/stand_00_stageii.npz",
        root_orient=np.tile(ROOT_FACE_X, (T, 1)),
        pose_body=body,
        pose_hand=hand,
        trans=np.tile([0.3, -0.2, 0.95], (T, 1)),
        betas=np.zeros(16),
        mocap_frame_rate=np.array(60.0),
        gender=np.array("male"),
        surface_model_type=np.array("smplx"),
    )


def write_config(path: Path, entries) -> Path:
    motions = []
    for file, weight, fps, subs in entries:
        e = {"file": file, "weight": weight}
        if fps is not None:
            e["fps"] = fps
        if subs:
            e["sub_motions"] = [
                {"timings": {"start": s, "end": t}, **({"weight": w} if w is not None else {})} for s, t, w in subs
            ]
        motions.append(e)
    path.write_text(yaml.safe_dump({"motions": motions}))
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    d = tmp_path_factory.mktemp("motionlib")
    write_tree(d / "amass")
    return {
        "root": d / "amass",
        "dir": d,
        "train": write_config(d / "train.yaml", TRAIN),
        "val": write_config(d / "val.yaml", VAL),
    }


def _build(tree, target: str, out: Path, **kw):
    opts = BuildOptions(target=target, output_fps=OUT_FPS, max_iters=2, **kw)
    return build_libraries(tree["root"], out, [tree["train"], tree["val"]], opts, progress=False)


@pytest.fixture(scope="module")
def smpl(tree):
    out = tree["dir"] / "out_smpl"
    t0 = time.perf_counter()
    summary = _build(tree, "smpl", out)
    return {"out": out, "summary": summary, "seconds": time.perf_counter() - t0}


@pytest.fixture(scope="module")
def g1(tree):
    out = tree["dir"] / "out_g1"
    t0 = time.perf_counter()
    summary = _build(tree, "unitree_g1", out)
    return {"out": out, "summary": summary, "seconds": time.perf_counter() - t0}


@pytest.fixture(params=["smpl", "g1"])
def built(request):
    return request.getfixturevalue(request.param)


def _states_files(out: Path) -> dict[str, Path]:
    """job id -> per-motion states file, from the build manifest."""
    mpath = out / MANIFEST_NAME
    m = BatchManifest.load(mpath)
    return {r.job_id: manifest_path(mpath, r.output) for r in m.records if r.output}


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------- configs


def test_motion_config_rows(tree):
    cfg = load_motion_config(tree["train"])
    assert cfg.name == "train" and len(cfg.rows) == 10
    r = cfg.rows[1]
    assert (r.file, r.start, r.end, r.weight) == ("SubjectA/walk_00_poses.npz", 1.0, 2.5, 3.0)
    assert cfg.rows[5].fps == 60.0 and cfg.rows[5].weight == 1.5  # the entry's fps and weight
    assert cfg.rows[7].end is None  # no sub_motions: the whole clip


@pytest.mark.parametrize(
    "motions,field,match",
    [
        ("nothing", "motions", "expected a non-empty list"),
        ([{"fps": 30}], r"motions\[0\]\.file", "expected a file path"),
        ([{"file": "a.npz", "weight": -1}], r"motions\[0\]\.weight", "expected a number >= 0, found -1"),
        (
            [{"file": "a.npz", "sub_motions": [{"timings": {"start": 2.0, "end": 1.0}}]}],
            r"motions\[0\]\.sub_motions\[0\]\.timings\.end",
            "must end after it starts",
        ),
        ([{"file": "a.npz", "fps": 0}], r"motions\[0\]\.fps", "frame rate must be a positive"),
        ([{"file": "a.npz", "weight": 0}], "motions", "every weight is 0"),
    ],
)
def test_motion_config_errors_name_file_and_field(tmp_path, motions, field, match):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"motions": motions}))
    with pytest.raises(MotionConfigError, match=rf"bad\.yaml, field '{field}': .*{match}"):
        load_motion_config(p)


def test_slice_times_cut_on_exact_times():
    t = slice_times(3.9917, 4.0, 1.0, 2.9, 30.0, "f")
    np.testing.assert_allclose(t, 1.0 + np.arange(58) / 30.0)
    assert slice_times(2.0, 2.01, 0.0, 2.01, 30.0, "f")[-1] == pytest.approx(2.0)  # nominal end: cut at the last sample
    with pytest.raises(
        SliceError, match=r"f: slice end 9 s is after the clip's end; the clip runs from 0 to 3\.9917 s"
    ):
        slice_times(3.9917, 4.0, 2.0, 9.0, 30.0, "f")
    with pytest.raises(SliceError, match="has 1 frame"):
        slice_times(3.0, 3.0, 2.99, None, 30.0, "f")


# --------------------------------------------------------------------------- builds


def test_build_manifest_failed_rows_and_the_rest_builds(built):
    s = built["summary"]
    assert (s.success, s.reused, s.failed) == (len(TRAIN_WEIGHTS) + 3, 0, 2)  # rows, not states files
    m = BatchManifest.load(built["out"] / MANIFEST_NAME)
    rec = m.records_by_id()
    assert rec["train/00008"].status == "failed" and rec["train/00008"].error_type == "file_not_found"
    assert "missing/none_poses.npz: file not found" in rec["train/00008"].message
    assert rec["train/00009"].status == "failed" and rec["train/00009"].error_type == "slice"
    assert "slice end 9 s is after the clip's end" in rec["train/00009"].message
    assert rec["train/00000"].output == rec["val/00000"].output  # one states file for the shared slice
    assert rec["train/00000"].provenance["library"] == "amass_train.npz"
    train, val = (load_library(p[0]) for p in (s.libraries["train"], s.libraries["val"]))
    assert train.num_motions == len(TRAIN_WEIGHTS) and val.num_motions == 3
    np.testing.assert_array_equal(train.motion_weight, TRAIN_WEIGHTS)
    assert train.motion_name[1] == "SubjectA/walk_00_poses@1-2.5"
    assert train.motion_num_frames.tolist() == [46] * 8  # 1.5 s at 30 fps: one length, one G1 compile
    assert train.motion_slice_start_s[5] == 0.25 and train.motion_slice_end_s[5] == pytest.approx(0.25 + 45 / 30)


def test_unreadable_and_malformed_files_are_failed_rows_naming_file_and_field(tree, tmp_path):
    root = tmp_path / "amass"
    shutil.copytree(tree["root"] / "SubjectA", root / "SubjectA")
    (root / "bad").mkdir()
    (root / "bad/truncated.npz").write_bytes((root / TRAIN[0][0]).read_bytes()[:200])
    with np.load(root / TRAIN[0][0]) as z:
        fields = {k: z[k] for k in z.files}
    fields["trans"][5, 2] = np.nan
    np.savez(root / "bad/nan.npz", **fields)
    np.savez(root / "bad/shape.npz", betas=np.zeros(16))  # an AMASS *_stagei.npz: no motion
    cfg = write_config(
        tmp_path / "bad.yaml",
        [
            TRAIN[0],
            ("bad/truncated.npz", 1.0, None, []),
            ("bad/nan.npz", 1.0, None, []),
            ("bad/shape.npz", 1.0, None, []),
        ],
    )
    s = build_libraries(root, tmp_path / "out", [cfg], BuildOptions(target="smpl"), progress=False)
    assert (s.success, s.failed) == (2, 3) and load_library(s.libraries["bad"][0]).num_motions == 2
    rec = BatchManifest.load(tmp_path / "out" / MANIFEST_NAME).records_by_id()
    assert {rec[f"bad/0000{i}"].error_type for i in (2, 3, 4)} == {"motion_format"}
    assert "truncated.npz: not a readable npz archive" in rec["bad/00002"].message
    assert "nan.npz, field 'trans': NaN or infinite value at frame 5" in rec["bad/00003"].message
    assert "shape.npz, field 'poses': not a motion file" in rec["bad/00004"].message


def test_library_equals_per_motion_files(built):
    files = _states_files(built["out"])
    lib = load_library(built["summary"].libraries["train"][0])
    good = sorted(j for j in files if j.startswith("train/"))
    assert len(good) == lib.num_motions
    for i, job in enumerate(good):
        states, _ = load_states(files[job])
        s, n = int(lib.motion_start[i]), int(lib.motion_num_frames[i])
        assert n == states.num_frames and lib.motion_fps[i] == states.fps == OUT_FPS
        for k in FRAME_FIELDS:
            a = lib.frames[k][s : s + n]
            assert a.dtype == getattr(states, k).dtype and np.array_equal(a, getattr(states, k)), (job, k)


def test_states_at_frame_times_equal_the_per_motion_files(built):
    files = _states_files(built["out"])
    lib = MotionLib.load(built["summary"].libraries["train"][0])
    ids, times, expect = [], [], {k: [] for k in FRAME_FIELDS}
    for i, job in enumerate(sorted(j for j in files if j.startswith("train/"))):
        states, _ = load_states(files[job])
        ids += [i] * states.num_frames
        times += list(np.arange(states.num_frames) / states.fps)
        for k in FRAME_FIELDS:
            expect[k].append(getattr(states, k))
    jit_state = lib.get_motion_state(np.array(ids), np.array(times))
    np_state = lib.get_motion_state_numpy(np.array(ids), np.array(times))
    for k in FRAME_FIELDS:
        e = np.concatenate(expect[k])
        np.testing.assert_array_equal(np.asarray(getattr(jit_state, k)), e, err_msg=k)
        np.testing.assert_array_equal(np.asarray(getattr(np_state, k)).astype(e.dtype), e, err_msg=k)


def _expected_state(lib, i: int, t: float) -> dict[str, np.ndarray]:
    """Independent reference: linear interpolation, scipy's SLERP, nearer frame's contacts."""
    s, n, fps = int(lib.motion_start[i]), int(lib.motion_num_frames[i]), float(lib.motion_fps[i])
    f = np.clip(t, 0.0, (n - 1) / fps) * fps
    i0 = min(int(np.floor(f)), n - 1)
    i1 = min(i0 + 1, n - 1)
    a = f - i0
    out = {}
    for k, v in lib.frames.items():
        x0, x1 = v[s + i0].astype(np.float64), v[s + i1].astype(np.float64)
        if k in ("root_quat_wxyz", "body_quat_w"):
            q = np.stack([x0, x1]).reshape(2, -1, 4)[..., [1, 2, 3, 0]]
            out[k] = np.stack(
                [Slerp([0, 1], Rotation.from_quat(q[:, b]))(a).as_quat()[[3, 0, 1, 2]] for b in range(q.shape[1])]
            ).reshape(x0.shape)
        elif k == "contacts":
            out[k] = v[s + (i0 if a < 0.5 else i1)]
        else:
            out[k] = (1 - a) * x0 + a * x1
    return out


def test_states_at_random_times_equal_interpolation(built):
    lib = MotionLib.load(built["summary"].libraries["train"][0])
    rng = np.random.default_rng(3)
    ids = rng.integers(0, lib.num_motions, 48)
    times = rng.uniform(-0.3, 2.2, 48)  # some before the start and past the end: clamped
    got = lib.get_motion_state(ids, times)
    got_np = lib.get_motion_state_numpy(ids, times)
    for q, (i, t) in enumerate(zip(ids, times, strict=True)):
        exp = _expected_state(lib.library, int(i), float(t))
        for k in FRAME_FIELDS:
            g, gn = np.asarray(getattr(got, k)[q]), np.asarray(getattr(got_np, k)[q])
            if k in ("root_quat_wxyz", "body_quat_w"):  # q and -q are one rotation
                sign = np.sign(np.sum(g * exp[k], axis=-1, keepdims=True))
                g, gn = g * sign, gn * np.sign(np.sum(gn * exp[k], axis=-1, keepdims=True))
            if k == "contacts":
                assert np.array_equal(g, exp[k]) and np.array_equal(gn, exp[k])
            else:
                np.testing.assert_allclose(g, exp[k], rtol=1e-5, atol=2e-5, err_msg=f"{k} query {q}")
                np.testing.assert_allclose(gn, exp[k], rtol=1e-6, atol=1e-6, err_msg=f"{k} query {q}")


def test_sampling_frequencies_follow_the_weights(smpl):
    lib = MotionLib.load(smpl["summary"].libraries["train"][0])
    n = 40_000
    p = np.asarray(TRAIN_WEIGHTS) / np.sum(TRAIN_WEIGHTS)
    for ids in (
        np.asarray(lib.sample_motions(jax.random.key(0), n)),
        lib.sample_motions_numpy(np.random.default_rng(0), n),
    ):
        counts = np.bincount(ids, minlength=lib.num_motions)
        assert chisquare(counts, n * p).pvalue > 1e-3
        assert chisquare(counts, np.full(lib.num_motions, n / lib.num_motions)).pvalue < 1e-12  # the test has power
    ids = lib.sample_motions(jax.random.key(1), 4096)
    t = np.asarray(lib.sample_times(jax.random.key(2), ids))
    d = lib.motion_duration[np.asarray(ids)]
    assert (t >= 0).all() and (t <= d + 1e-6).all()
    assert kstest(t / d, "uniform").pvalue > 1e-3  # uniform over each motion's length


def test_zero_weight_motions_are_never_sampled(smpl):
    lib = load_library(smpl["summary"].libraries["train"][0])
    lib.motion_weight = np.array([0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0])  # the last one too (CDF tail)
    ml = MotionLib(lib)
    for ids in (
        np.asarray(ml.sample_motions(jax.random.key(5), 20_000)),
        ml.sample_motions_numpy(np.random.default_rng(5), 20_000),
    ):
        counts = np.bincount(ids, minlength=8)
        assert counts[[0, 2, 4, 5, 7]].sum() == 0
        assert chisquare(counts[[1, 3, 6]], 20_000 * np.array([0.25, 0.5, 0.25])).pvalue > 1e-3


def test_query_does_not_retrace_for_new_times_or_a_library_of_the_same_shape(smpl):
    from retarget_jax.motionlib.query import _get_state

    lib = MotionLib.load(smpl["summary"].libraries["train"][0])
    lib.get_motion_state(np.zeros(16, int), np.zeros(16))
    before = _get_state._cache_size()
    lib.get_motion_state(np.arange(16) % 8, np.linspace(0, 1, 16))
    other = MotionLib(load_library(smpl["summary"].libraries["train"][0]))
    other.get_motion_state(np.ones(16, int), np.full(16, 0.5))
    assert _get_state._cache_size() == before


# --------------------------------------------------------------------------- what the states hold


def test_body_model_states_figure_height_fix_contacts_and_velocities(smpl):
    lib = load_library(smpl["summary"].libraries["train"][0])
    fig = figure("smpl")
    assert lib.body_names == fig.body_names and len(lib.body_names) == 24 and len(lib.dof_names) == 69
    assert lib.contact_body_names == ("L_Ankle", "L_Toe", "R_Ankle", "R_Toe")
    assert fig.toe_rest_height == pytest.approx(0.0145, abs=1e-4)
    for i in range(lib.num_motions):  # the height fix: each motion's lowest joint at the toe's rest height
        assert lib.motion(i).body_pos_w[..., 2].min() == pytest.approx(fig.toe_rest_height, abs=1e-6)
    stand = lib.motion(7)  # SMPL-X standing still: feet on the ground, still -> in contact
    assert lib.motion_name[7].startswith("SubjectB/stand_00") and stand.contacts.all()
    walk = lib.motion(1)
    assert not walk.contacts.all()  # a moving figure is not in contact everywhere
    # standing still with the root facing +X: the pelvis frame is the world frame
    np.testing.assert_allclose(np.abs(stand.root_quat_wxyz[:, 0]), 1.0, atol=1e-6)
    # velocities from the pose rates through the tree agree with differences of the poses
    for m in (walk, lib.motion(5)):
        dt = 1.0 / m.fps
        fd = np.gradient(m.body_pos_w.astype(np.float64), dt, axis=0)[2:-2]
        err = np.abs(fd - m.body_lin_vel_w[2:-2]).max()
        assert err < 0.05 * np.abs(m.body_lin_vel_w).max(), err
        q = m.body_quat_w.astype(np.float64)
        rot = Rotation.from_quat(q.reshape(-1, 4)[:, [1, 2, 3, 0]]).as_matrix().reshape(*q.shape[:2], 3, 3)
        dR = np.einsum("tbij,tbkj->tbik", rot[2:], rot[:-2])  # R_{t+1} R_{t-1}^T, world increments
        w = Rotation.from_matrix(dR.reshape(-1, 3, 3)).as_rotvec().reshape(-1, q.shape[1], 3) / (2 * dt)
        err = np.abs(w[1:-1] - m.body_ang_vel_w[2:-2]).max()
        assert err < 0.05 * np.abs(m.body_ang_vel_w).max(), err


def test_body_model_dof_are_local_rotations_in_the_figure_frames(smpl):
    lib = load_library(smpl["summary"].libraries["train"][0])
    m = lib.motion(2)
    fig = figure("smpl")
    q = m.body_quat_w.astype(np.float64)[..., [1, 2, 3, 0]]
    R = Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(*q.shape[:2], 3, 3)
    local = np.einsum("tbji,tbjk->tbik", R[:, fig.parents[1:]], R[:, 1:])
    rv = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(m.num_frames, -1)
    np.testing.assert_allclose(m.dof_pos, rv, atol=2e-5)


def test_robot_states_velocities_agree_with_mujoco_differences():
    from retarget_jax.robots import load_robot

    robot = load_robot("unitree_g1")
    T, fps = 120, 200.0
    t = np.arange(T) / fps
    lo, hi = robot.dof_ranges[:, 0], robot.dof_ranges[:, 1]
    dof = (lo + hi) / 2 + 0.3 * (hi - lo) / 2 * np.sin(2 * np.pi * 0.7 * t[:, None] + np.arange(robot.num_dof))
    yaw = 0.8 * t
    q = np.c_[
        0.5 * t, 0.1 * np.sin(t), np.full(T, 0.78), np.cos(yaw / 2), 0.05 * np.sin(t), np.zeros(T), np.sin(yaw / 2), dof
    ]
    s = robot_states(robot, q, fps)
    fd = np.gradient(s.body_pos_w.astype(np.float64), 1 / fps, axis=0)[2:-2]
    np.testing.assert_allclose(s.body_lin_vel_w[2:-2], fd, atol=2e-3 * np.abs(fd).max())
    np.testing.assert_allclose(s.root_lin_vel_w, s.body_lin_vel_w[:, 0], atol=1e-5)
    np.testing.assert_allclose(s.root_ang_vel_w, s.body_ang_vel_w[:, 0], atol=1e-5)
    np.testing.assert_allclose(s.root_ang_vel_w[2:-2, 2], 0.8, atol=1e-2)


def test_g1_states_come_from_the_solve(g1):
    lib = load_library(g1["summary"].libraries["train"][0])
    assert lib.metadata["model"]["name"] == "unitree_g1" and len(lib.body_names) == 30 and len(lib.dof_names) == 29
    assert lib.contact_body_names == ("left_ankle_roll_link", "right_ankle_roll_link")
    # max_iters=2 (_build); clips in a bucket below coarse_min_frames are solved at
    # full rate only, with the coarse level's budget too
    from retarget_jax.solve import SolverOptions

    budget = 2 + SolverOptions().coarse_iters
    assert all(
        i["solved"] and i["status"] in ("converged", "max_iterations") and 1 <= i["iterations"] <= budget
        for i in lib.infos
    )
    assert all(np.isfinite(i["metrics"]["tracking_error.mean"]) for i in lib.infos)
    m = lib.motion(0)  # the stored body poses are the MuJoCo FK of the stored root and joints
    from retarget_jax.robots import load_robot
    from retarget_jax.robots.kinematics import host_body_poses

    qpos = np.concatenate([m.root_pos, m.root_quat_wxyz, m.dof_pos], axis=-1)
    xpos, _ = host_body_poses(load_robot("unitree_g1"), qpos)
    np.testing.assert_allclose(m.body_pos_w, xpos, atol=1e-5)


# --------------------------------------------------------------------------- shards, ranks, resume


def test_shard_assignment_balances_frames():
    rng = np.random.default_rng(0)
    lengths = rng.integers(30, 3000, 400)  # AMASS-like spread of clip lengths
    for n in (2, 4, 8):
        shards = shard_assignment(lengths, n)
        assert sorted(i for s in shards for i in s) == list(range(400))
        totals = [int(lengths[s].sum()) for s in shards]
        assert max(totals) <= 1.10 * min(totals), totals


def test_sharded_library_and_rank_resolution(tree, monkeypatch):
    out = tree["dir"] / "out_smpl_shards"
    (tree["dir"] / "shards").mkdir()
    cfg = write_config(tree["dir"] / "shards" / "train.yaml", SHARDS)
    whole = build_libraries(tree["root"], out, [cfg], BuildOptions(target="smpl"), progress=False)
    s = build_libraries(tree["root"], out, [cfg], BuildOptions(target="smpl", shards=2), progress=False)
    assert s.reused == 10 and s.success == 0  # the states are reused, only the packaging changes
    paths = [Path(p) for p in s.libraries["train"]]
    assert [p.name for p in paths] == ["amass_train_0.npz", "amass_train_1.npz"]
    shards = [load_library(p) for p in paths]
    totals = [lib.total_frames for lib in shards]
    assert max(totals) <= 1.10 * min(totals), totals
    assert sum(totals) == whole.frames == 541
    assert sorted(n for lib in shards for n in lib.motion_name) == sorted(
        r.file.removesuffix(".npz") + f"@{r.start:g}-{r.end:g}" for r in load_motion_config(cfg).rows
    )
    pattern = out / "amass_train_slurmrank.npz"
    for env, k in (({"RANK": "1"}, 1), ({"SLURM_PROCID": "0"}, 0), ({"OMPI_COMM_WORLD_RANK": "3"}, 1), ({}, 0)):
        for var in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"):
            monkeypatch.delenv(var, raising=False)
        for var, v in env.items():
            monkeypatch.setenv(var, v)
        assert resolve_library_path(pattern) == paths[k]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert process_rank() == (1, "RANK")  # torch's per-process rank wins over the SLURM task's
    assert MotionLib.load(pattern).library.motion_name == shards[1].motion_name
    assert MotionLib.load(pattern, rank=0).library.motion_name == shards[0].motion_name
    # rebuilt unsharded: the shard files go, so a *_slurmrank path cannot mix two builds
    build_libraries(tree["root"], out, [cfg], BuildOptions(target="smpl"), progress=False)
    assert not any(p.exists() for p in paths) and (out / "amass_train.npz").is_file()


def _cli(tree, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "retarget_jax.cli",
        "motionlib",
        "build",
        str(tree["root"]),
        str(out),
        "--motion-config",
        str(tree["train"]),
        "--motion-config",
        str(tree["val"]),
        "--target",
        "smpl",
        "--output-fps",
        str(OUT_FPS),
        "--no-progress",
        "--cache-dir",
        os.environ.get("RETARGET_JAX_CACHE_DIR") or str(REPO_ROOT / ".jax_cache"),
    ]


@pytest.mark.timeout(300)
def test_kill_9_during_a_build_then_rerun_gives_the_same_library_and_force_remake_rebuilds(tree, smpl):
    out = tree["dir"] / "out_kill"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(_cli(tree, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    states_dir = out / "motions" / "smpl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            done = [p for p in states_dir.rglob("*.npz") if not is_temp_file(p)] if states_dir.is_dir() else []
            if len(done) >= 3:
                break
            time.sleep(0.002)
        assert proc.poll() is None, f"the build ended before the kill: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    n_done = len([p for p in states_dir.rglob("*.npz") if not is_temp_file(p)])
    assert 3 <= n_done < 10 and not (out / "amass_train.npz").exists()  # killed mid-build (10 states files)

    rerun = subprocess.run(_cli(tree, out), env=env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 1, rerun.stderr  # 1: the two bad rows failed (as they should)
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["reused"] >= n_done - 1 and summary["failed"] == 2
    for name in ("amass_train.npz", "amass_val.npz"):
        a, b = _arrays(out / name), _arrays(smpl["out"] / name)
        assert a.keys() == b.keys()
        for k in a:
            if k != "metadata_json":
                assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), (name, k)

    # a rerun with nothing new writes nothing; --force-remake recomputes and rewrites all
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz") if not is_temp_file(p)}
    again = build_libraries(
        tree["root"], out, [tree["train"], tree["val"]], BuildOptions(target="smpl"), progress=False
    )
    assert again.written == [] and again.success == 0 and again.reused == 11
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())
    forced = build_libraries(
        tree["root"], out, [tree["train"], tree["val"]], BuildOptions(target="smpl", force_remake=True), progress=False
    )
    assert forced.success == 11 and forced.reused == 0 and len(forced.written) == 2
    assert all(p.stat().st_mtime_ns != t for p, t in stamp.items())
    for name in ("amass_train.npz", "amass_val.npz"):
        a, b = _arrays(out / name), _arrays(smpl["out"] / name)
        assert all(np.array_equal(a[k], b[k]) for k in a if k != "metadata_json")


def test_changed_source_is_recomputed_not_reused(tree, smpl, tmp_path):
    root = tmp_path / "amass"
    shutil.copytree(tree["root"], root)
    out = tmp_path / "out"
    shutil.copytree(smpl["out"] / "motions", out / "motions")
    cfg = write_config(tmp_path / "one.yaml", [TRAIN[1]])
    a = build_libraries(root, out, [cfg], BuildOptions(target="smpl"), progress=False)
    assert (a.reused, a.success) == (1, 0)
    with np.load(root / TRAIN[1][0]) as z:
        fields = {k: z[k] for k in z.files}
    fields["trans"] = fields["trans"] + [0.0, 1.0, 0.0]
    np.savez(root / TRAIN[1][0], **fields)
    b = build_libraries(root, out, [cfg], BuildOptions(target="smpl"), progress=False)
    assert (b.reused, b.success) == (0, 1)
    y_before = load_library(smpl["summary"].libraries["train"][0]).motion(2).root_pos[:, 1]
    np.testing.assert_allclose(load_library(b.libraries["one"][0]).motion(0).root_pos[:, 1], y_before + 1.0, atol=1e-5)


# --------------------------------------------------------------------------- files, export, CLI, Hydra


def test_library_format_errors_name_file_and_field(smpl, tmp_path):
    good = _arrays(Path(smpl["summary"].libraries["val"][0]))
    cases = {
        "missing": ({k: v for k, v in good.items() if k != "body_quat_w"}, "body_quat_w", "missing"),
        "starts": ({**good, "motion_start": good["motion_start"] + 1}, "motion_start", "must tile"),
        "shape": ({**good, "dof_vel": good["dof_vel"][:, :3]}, "dof_vel", "expected shape"),
        "weights": ({**good, "motion_weight": np.zeros_like(good["motion_weight"])}, "motion_weight", "not all 0"),
    }
    for name, (arrays, field, match) in cases.items():
        p = tmp_path / f"{name}.npz"
        np.savez(p, **arrays)
        with pytest.raises(MotionLibFormatError, match=rf"{name}\.npz, field '{field}': .*{match}"):
            load_library(p)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MotionLibFormatError, match="junk.npz: not a readable npz"):
        load_library(tmp_path / "junk.npz")


@pytest.mark.parametrize("which", ["smpl", "g1"])
def test_protomotions_export_loads_back_with_weights_only(which, request, tmp_path):
    torch = pytest.importorskip("torch")
    from retarget_jax.motionlib.export import export_protomotions

    built = request.getfixturevalue(which)
    lib = load_library(built["summary"].libraries["train"][0])
    path = export_protomotions(lib, tmp_path / "amass_train.pt")
    d = torch.load(path, weights_only=True)
    N, B = lib.total_frames, len(lib.body_names)
    assert d["gts"].shape == (N, B, 3) and d["grs"].dtype == torch.float32 and d["contacts"].shape == (N, B)
    np.testing.assert_array_equal(d["grs"].numpy(), lib.frames["body_quat_w"][..., [1, 2, 3, 0]])  # xyzw
    np.testing.assert_array_equal(d["dvs"].numpy(), lib.frames["dof_vel"])
    np.testing.assert_array_equal(d["length_starts"].numpy(), lib.motion_start)
    np.testing.assert_allclose(d["motion_lengths"].numpy(), lib.motion_duration_s, rtol=1e-6)
    assert d["motion_files"] == lib.motion_name and d["motion_weights"].tolist() == TRAIN_WEIGHTS
    foot = lib.body_names.index(lib.contact_body_names[0])
    np.testing.assert_array_equal(d["contacts"][:, foot].numpy(), lib.frames["contacts"][:, 0])
    assert ("lrs" in d) == (which == "smpl")


def test_cli_info_and_hydra_compose(smpl, capsys):
    from retarget_jax.cli import main

    assert main(["motionlib", "info", smpl["summary"].libraries["val"][0]]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["motions"] == 3 and info["metadata"]["target"] == "smpl" and info["bodies"] == 24
    assert (
        main(["motionlib", "build", "/nonexistent", "/tmp/x", "-m", "a.yaml", "--target", "smpl", "--shards", "0"]) == 2
    )
    assert "ConfigError: shards must be >= 1" in capsys.readouterr().err

    from hydra import compose as hcompose
    from hydra import initialize

    from retarget_jax.motionlib import run as hrun

    with initialize(version_base="1.3", config_path=None):
        cfg = hcompose(
            config_name="motionlib",
            overrides=[
                "source_root=/data",
                "output_dir=/out",
                "motion_configs=[a.yaml,b.yaml]",
                "target=unitree_g1",
                "shards=4",
                "max_iters=3",
            ],
        )
    typed = hrun.typed_config(cfg)
    opts = hrun.build_options(typed)
    assert typed.motion_configs == ["a.yaml", "b.yaml"]
    assert (opts.target, opts.shards, opts.max_iters, opts.output_fps) == ("unitree_g1", 4, 3, 30.0)
    with initialize(version_base="1.3", config_path=None), pytest.raises(Exception, match="Could not override 'shard'"):
        hcompose(config_name="motionlib", overrides=["shard=4"])


def test_smplx_target_poses_the_fingers_from_the_hand_parameters(tree, tmp_path):
    from retarget_jax.body_models.neutral import XML_TO_CANONICAL

    cfg = write_config(tmp_path / "hands.yaml", [TRAIN[4]])  # SMPL-X standing, 'pose_hand' layout
    s = build_libraries(tree["root"], tmp_path / "out", [cfg], BuildOptions(target="smplx"), progress=False)
    lib = load_library(s.libraries["hands"][0])
    fig = figure("smplx")
    assert lib.body_names == fig.body_names and len(lib.body_names) == 52 and lib.infos[0]["hand_bodies_posed"] == 30
    hand = np.linspace(-0.2, 0.2, 90).reshape(30, 3)  # as written by write_tree, constant over time
    for k, name in ((0, "L_Index1"), (14, "L_Thumb3"), (15, "R_Index1")):
        b = lib.body_names.index(name)
        np.testing.assert_allclose(
            lib.frames["dof_pos"][:, 3 * (b - 1) : 3 * b],
            np.tile(hand[k] @ XML_TO_CANONICAL, (lib.total_frames, 1)),
            atol=1e-6,
        )
