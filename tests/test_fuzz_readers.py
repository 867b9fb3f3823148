"""Every reader fuzzed with hypothesis: random bytes and mutated valid files.

The property: a reader either returns or raises one of our typed errors
(:class:`~retarget_jax.errors.RetargetError`), naming the file; it never raises anything
else, never hangs (a per-example deadline, and a timeout per test) and never takes the
process down (the examples run in this process). Runs are derandomized (the same examples
every run, no example database) and sized for CI: a few hundred examples in all, seconds
per reader.

Seeds: each reader's valid file is written by our own writers or the format's own shape
(keypoint npz, AMASS npz, result npz, mjlab npz, GMR pkl, BVH, SEED CSV, manifest JSON,
body-model npz and pkl, joint-map and run-config YAML).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import pickle
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inputs import TINY_BVH

from retarget_jax.errors import RetargetError
from retarget_jax.motion.demo import demo_motion

FUZZ = settings(
    max_examples=int(os.environ.get("RETARGET_JAX_FUZZ_EXAMPLES", "150")),
    deadline=timedelta(seconds=10),
    derandomize=not os.environ.get("RETARGET_JAX_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

_counter = itertools.count()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, data: bytes, suffix: str) -> Path:
    # a fresh name per example: some loaders cache by (path, mtime, size)
    p = folder / f"case{next(_counter):05d}{suffix}"
    p.write_bytes(data)
    return p


def _check(read: Callable[[Path], object], path: Path) -> None:
    try:
        read(path)
    except RetargetError as e:  # typed: fine, and it must say which file
        assert path.name in str(e), str(e)


@st.composite
def mutated(draw, base: bytes, alphabet: bytes | None = None) -> bytes:
    """``base`` with 1-6 random edits: byte flips, deletions, insertions, duplicated
    spans and a truncation; ``alphabet`` (for text formats) picks inserted bytes."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "delete", "insert", "dup", "truncate"]))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif op == "insert":
            chunk = (
                draw(st.lists(st.sampled_from(list(alphabet)), min_size=1, max_size=8))
                if alphabet
                else list(draw(st.binary(min_size=1, max_size=8)))
            )
            data[i:i] = bytes(chunk)
        elif op == "dup":
            j = min(len(data), i + draw(st.integers(1, 64)))
            data[i:i] = data[i:j]
        else:
            del data[i:]
    return bytes(data)


def random_or_mutated(base: bytes, alphabet: bytes | None = None):
    return st.one_of(st.binary(max_size=512), mutated(base, alphabet))


TEXT = b"0123456789 .-+eE{}:\n\tnaNinfHIERARCHYROOTJOINTOFFSETCHANNELSMOTIONFrames,=[]\"'#"


# --------------------------------------------------------------------------- seeds


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npz_compressed(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


_M = demo_motion(num_frames=8)
KEYPOINTS = _npz(positions=_M.positions, joint_names=np.array([j.value for j in _M.joint_names]), fps=np.float64(30))
KEYPOINTS_Z = _npz_compressed(
    positions=_M.positions, joint_names=np.array([j.value for j in _M.joint_names]), fps=np.float64(30)
)
AMASS = _npz(
    poses=np.zeros((6, 165)),
    trans=np.zeros((6, 3)),
    mocap_frame_rate=np.float64(30),
    gender=np.array("neutral"),
    betas=np.zeros(10),
)
BVH = TINY_BVH.encode()


@pytest.fixture(scope="module")
def robot_files(g1, fuzz_dir):
    """Valid result npz, mjlab npz, GMR pkl and SEED CSV of a 6-frame G1 trajectory."""
    from retarget_jax.io import write_result
    from retarget_jax.result import RetargetingResult
    from retarget_jax.robots.kinematics import host_body_poses

    T = 6
    rng = np.random.default_rng(0)
    lo, hi = g1.dof_ranges[:, 0], g1.dof_ranges[:, 1]
    dof = lo + (hi - lo) * rng.uniform(0.3, 0.7, size=(T, g1.num_dof))
    root = np.c_[np.linspace(0, 0.2, T), np.zeros(T), np.full(T, 0.78)]
    quat = np.tile([1.0, 0, 0, 0], (T, 1))
    pos, rot = host_body_poses(g1, np.concatenate([root, quat, dof], axis=-1))
    r = RetargetingResult(
        fps=30.0,
        root_pos=root,
        root_quat_wxyz=quat,
        dof_pos=dof,
        dof_names=g1.dof_names,
        body_names=g1.body_names,
        body_pos_w=pos,
        body_quat_w=rot,
        status=0,
        final_cost=0.0,
        iterations=3,
        robot=g1.name,
        provenance={"source_path": "x"},
    )
    out = {}
    for fmt, name in (("npz", "r.npz"), ("mjlab_npz", "r.mjlab.npz"), ("gmr_pkl", "r.pkl")):
        out[fmt] = write_result(r, fuzz_dir / name, fmt).read_bytes()
    header = [
        "Frame",
        "root_translateX",
        "root_translateY",
        "root_translateZ",
        "root_rotateX",
        "root_rotateY",
        "root_rotateZ",
    ] + [f"{n}_dof" for n in g1.dof_names]
    rows = [",".join(header)] + [
        ",".join([str(t), *(f"{v:.4f}" for v in [*(root[t] * 100), 0, 0, 0, *np.degrees(dof[t])])]) for t in range(T)
    ]
    out["seed_csv"] = ("\n".join(rows) + "\n").encode()
    return out


# --------------------------------------------------------------------------- human motion


@FUZZ
@given(data=st.one_of(random_or_mutated(KEYPOINTS), mutated(KEYPOINTS_Z)))
def test_fuzz_keypoints_npz(data, fuzz_dir):
    from retarget_jax.motion.keypoints import read_keypoints

    _check(read_keypoints, _write(fuzz_dir, data, ".npz"))


@FUZZ
@given(data=random_or_mutated(AMASS))
def test_fuzz_amass_npz(data, fuzz_dir):
    from retarget_jax.motion import read_motion

    _check(lambda p: read_motion(p, "amass"), _write(fuzz_dir, data, ".npz"))


@FUZZ
@given(data=st.one_of(random_or_mutated(BVH, TEXT), mutated(BVH)))
def test_fuzz_bvh(data, fuzz_dir):
    from retarget_jax.motion import read_motion

    _check(lambda p: read_motion(p, "bvh_lafan1"), _write(fuzz_dir, data, ".bvh"))


# --------------------------------------------------------------------------- results and robot space


@FUZZ
@given(data=st.data())
def test_fuzz_result_npz(data, robot_files, fuzz_dir):
    from retarget_jax.io import load_result

    blob = data.draw(random_or_mutated(robot_files["npz"]))
    _check(load_result, _write(fuzz_dir, blob, ".npz"))


@FUZZ
@given(data=st.data())
def test_fuzz_mjlab_npz(data, robot_files, fuzz_dir, g1):
    from retarget_jax.io import read_mjlab_npz

    blob = data.draw(random_or_mutated(robot_files["mjlab_npz"]))
    _check(lambda p: read_mjlab_npz(p, g1), _write(fuzz_dir, blob, ".npz"))


@FUZZ
@given(data=st.data())
def test_fuzz_gmr_pkl(data, robot_files, fuzz_dir, g1):
    from retarget_jax.io import read_gmr_pkl

    blob = data.draw(
        st.one_of(
            random_or_mutated(robot_files["gmr_pkl"]),
            mutated(pickle.dumps(pickle.loads(robot_files["gmr_pkl"]), protocol=0)),
        )
    )
    _check(lambda p: read_gmr_pkl(p, g1), _write(fuzz_dir, blob, ".pkl"))


@FUZZ
@given(data=st.data())
def test_fuzz_seed_csv(data, robot_files, fuzz_dir, g1):
    from retarget_jax.io import read_seed_csv

    blob = data.draw(random_or_mutated(robot_files["seed_csv"], TEXT))
    _check(lambda p: read_seed_csv(p, g1), _write(fuzz_dir, blob, ".csv"))


# --------------------------------------------------------------------------- pickles, models, manifests, configs


PICKLE_OPS = bytes(range(0x20, 0x9A))  # printable opcodes and arguments, protocol 0-5 opcodes


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=256), mutated(pickle.dumps({"a": np.arange(6.0), "b": [1, "x"]}, protocol=2), PICKLE_OPS)
    )
)
def test_fuzz_restricted_unpickler(data, fuzz_dir):
    from retarget_jax.io import restricted_load

    _check(restricted_load, _write(fuzz_dir, data, ".pkl"))


_MODEL = {
    "J_regressor": np.eye(24, 30),
    "kintree_table": np.array([np.r_[-1, np.arange(23)], np.arange(24)]),
    "v_template": np.zeros((30, 3)),
    "shapedirs": np.zeros((30, 3, 10)),
}


@FUZZ
@given(
    data=st.one_of(
        mutated(_npz(**_MODEL)), mutated(_npz_compressed(**_MODEL)), mutated(pickle.dumps(_MODEL, protocol=2))
    )
)
def test_fuzz_body_model_files(data, fuzz_dir):
    from retarget_jax.body_models.model_files import load_body_model

    suffix = ".pkl" if data[:1] == b"\x80" else ".npz"
    _check(lambda p: load_body_model(p, "smpl"), _write(fuzz_dir, data, suffix))


@FUZZ
@given(data=st.data())
def test_fuzz_batch_manifest(data, fuzz_dir):
    from retarget_jax.manifest import BatchManifest, BatchRunRecord

    good = BatchManifest.from_records(
        [
            BatchRunRecord("a.npz", "in/a.npz", "a.npz", "success", "t0", "t1", "converged"),
            BatchRunRecord("b.npz", "in/b.npz", None, "failed", "t0", "t1", "bad fps", "motion_format"),
        ]
    )
    base = json.dumps(good.to_json(), indent=2).encode()
    blob = data.draw(random_or_mutated(base, TEXT))
    _check(BatchManifest.load, _write(fuzz_dir, blob, ".json"))


JOINT_MAP = (
    b"name: m\nlength_unit: centimetre\nup_axis: y\nconventions: null\njoints: {Hips: pelvis, LeftUpLeg: left_hip}\n"
)


@FUZZ
@given(data=random_or_mutated(JOINT_MAP, TEXT))
def test_fuzz_joint_map_yaml(data, fuzz_dir):
    from retarget_jax.motion.joint_maps import load_joint_map

    _check(load_joint_map, _write(fuzz_dir, data, ".yaml"))


RUN_CONFIG = (
    b"solver: {max_iters: 30, weights: {smooth: 2.0}}\nbatch: {max_batch: 4, window: 64, overlap: 16}\n"
    b"output: {formats: [npz, mjlab_npz]}\n"
)


@FUZZ
@given(data=random_or_mutated(RUN_CONFIG, TEXT))
def test_fuzz_run_config_yaml(data, fuzz_dir):
    from retarget_jax.cli import batch_config, build_parser

    def read(p: Path):
        return batch_config(
            build_parser().parse_args(
                [
                    "batch",
                    "--input-dir",
                    str(fuzz_dir),
                    "--format",
                    "keypoints",
                    "--robot",
                    "unitree_g1",
                    "--config",
                    str(p),
                    "--output-dir",
                    str(fuzz_dir / "out"),
                ]
            )
        )

    _check(read, _write(fuzz_dir, data, ".yaml"))
