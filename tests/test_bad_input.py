"""The bad-input corpus: every kind of broken file a dataset run meets gets a typed error
naming the file and the field, and in a batch run costs its own job only.

Each case below is generated here (nothing ships with the repository). The first test
reads each case through the entry point a run uses and pins the error class, the file and
the field; the "Bad input and the errors it gets" table of docs/batch.md lists the same cases.
The driver tests then run bad files beside good ones through ``retarget-jax batch`` (in
process, one device, the 64-frame bucket and batch of 4 of tests/test_batch_driver.py, so
the solver program comes from the persistent compilation cache) and check that every bad
file is a failed record with its ``error_type`` and message, and that every good clip's
result is bitwise equal to the one of a run without the bad files.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from inputs import TINY_BVH

from retarget_jax.cli import main as cli_main
from retarget_jax.errors import (
    ConfigError,
    InvalidMotionError,
    MotionFormatError,
    RetargetError,
    RobotModelError,
    UnknownNameError,
)
from retarget_jax.io import load_result, write_gmr_pkl
from retarget_jax.manifest import BatchManifest
from retarget_jax.motion.demo import demo_motion

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = os.environ.get("RETARGET_JAX_CACHE_DIR") or str(REPO_ROOT / ".jax_cache")
G1_XML = REPO_ROOT / "retarget_jax" / "robots" / "assets" / "unitree_g1" / "g1.xml"

# --------------------------------------------------------------------------- builders


def _names(m) -> np.ndarray:
    return np.array([j.value for j in m.joint_names])


def write_keypoints(path: Path, T: int = 40, shift: float = 0.0, **override) -> Path:
    """A valid keypoint npz of the demo walk (LAFAN1-like names, 30 fps); ``override``
    replaces or (with None) drops keys."""
    m = demo_motion(num_frames=T)
    arrays = {
        "positions": m.positions + np.array([shift, -0.5 * shift, 0.0]),
        "joint_names": _names(m),
        "fps": np.float64(m.fps),
    }
    arrays.update(override)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


BVH = TINY_BVH


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _amass(path: Path, T: int = 10, **override) -> Path:
    arrays = {
        "poses": np.zeros((T, 165)),
        "trans": np.zeros((T, 3)),
        "mocap_frame_rate": np.float64(30),
        "gender": np.array("neutral"),
    }
    arrays.update(override)
    np.savez(path, **arrays)
    return path


class RunsCode:
    """A pickle payload that would create ``marker`` if it were ever run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickle(path: Path, obj, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _g1_without(path: Path, body: str) -> Path:
    """The G1 MJCF with one body renamed: a robot the lafan1_g1 recipe cannot use."""
    xml = G1_XML.read_text()
    assert f'name="{body}"' in xml
    path.write_text(xml.replace(f'name="{body}"', f'name="{body}_renamed"'))
    return path


# --------------------------------------------------------------------------- entry points


def _read_human(fmt: str) -> Callable:
    """Read as a run does, then prepare the clip (frame count, names, recipe)."""

    def run(path: Path, g1, recipe):
        from retarget_jax.motion import read_motion
        from retarget_jax.pipeline import prepare_clip

        return prepare_clip(read_motion(path, fmt), recipe, g1)

    return run


def _read_robot(fmt: str) -> Callable:
    def run(path: Path, g1, recipe):
        from retarget_jax.io import read_robot_motion

        return read_robot_motion(path, fmt, g1)

    return run


def _body_model(path: Path, g1, recipe):
    from retarget_jax.body_models.model_files import load_body_model

    return load_body_model(path, "smpl")


def _robot_and_recipe(path: Path, g1, recipe):
    from retarget_jax.pipeline import prepare_clip
    from retarget_jax.robots import load_robot

    return prepare_clip(demo_motion(num_frames=20), recipe, load_robot(path))


def _run_config(path: Path, g1, recipe):
    from retarget_jax.cli import batch_config, build_parser

    args = build_parser().parse_args(
        [
            "batch",
            "--input-dir",
            str(path.parent),
            "--format",
            "keypoints",
            "--robot",
            "unitree_g1",
            "--config",
            str(path),
            "--output-dir",
            str(path.parent / "out"),
        ]
    )
    return batch_config(args)


def _recipe_file(path: Path, g1, recipe):
    from retarget_jax.problem import load_recipe

    return load_recipe(path)


def _joint_map_file(path: Path, g1, recipe):
    from retarget_jax.motion.joint_maps import load_joint_map

    return load_joint_map(path)


def _recipe_yaml(**change) -> str:
    import yaml

    d = yaml.safe_load((REPO_ROOT / "configs" / "recipes" / "lafan1_g1.yaml").read_text())
    d.update(change)
    return yaml.safe_dump(d)


# --------------------------------------------------------------------------- the corpus

# id -> (file name, builder(path) -> path, entry point, error class, pattern the message must hold)
# The file's path is always checked in the message as well.
Case = tuple[str, Callable[[Path], Path], Callable, type[RetargetError], str]


def _corrupt(p: Path) -> Path:
    raw = bytearray(write_keypoints(p).read_bytes())
    mid = raw.index(b"positions.npy") + 300  # inside the positions member's data (its local header is first)
    raw[mid : mid + 8] = bytes(b ^ 0xFF for b in raw[mid : mid + 8])
    p.write_bytes(bytes(raw))
    return p


def _truncated(p: Path) -> Path:
    raw = write_keypoints(p).read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    return p


_DEMO = demo_motion(num_frames=40)
_DUP = _names(_DEMO).copy()
_DUP[3] = _DUP[2]
KP = _read_human("keypoints")

CORPUS: dict[str, Case] = {
    # keypoint npz
    "npz_truncated": ("trunc.npz", _truncated, KP, MotionFormatError, r"not a readable npz archive"),
    "npz_corrupt_member": ("corrupt.npz", _corrupt, KP, MotionFormatError, r"field 'positions'.*(corrupt|CRC)"),
    "npz_not_a_zip": (
        "text.npz",
        lambda p: _text(p, "positions,joint_names\n1,2\n"),
        KP,
        MotionFormatError,
        r"not a readable npz archive",
    ),
    "npz_object_array_pickle": (
        "obj.npz",
        lambda p: write_keypoints(p, joint_names=_names(_DEMO).astype(object)),
        KP,
        MotionFormatError,
        r"field 'joint_names'.*without pickle",
    ),
    "npz_missing_key": (
        "nokey.npz",
        lambda p: write_keypoints(p, positions=None),
        KP,
        MotionFormatError,
        r"field 'positions'.*missing",
    ),
    "poses_all_nan": (
        "nan.npz",
        lambda p: write_keypoints(p, positions=np.full((40, 22, 3), np.nan)),
        KP,
        MotionFormatError,
        r"field 'positions'.*never valid",
    ),
    "poses_all_inf": (
        "inf.npz",
        lambda p: write_keypoints(p, positions=np.full((40, 22, 3), np.inf)),
        KP,
        MotionFormatError,
        r"field 'positions'.*never valid",
    ),
    "poses_wrong_shape": (
        "shape.npz",
        lambda p: write_keypoints(p, positions=np.zeros((40, 22, 2))),
        KP,
        MotionFormatError,
        r"field 'positions'.*\(T, J, 3\).*\(40, 22, 2\)",
    ),
    "zero_frames": (
        "zero.npz",
        lambda p: write_keypoints(p, positions=np.zeros((0, 22, 3))),
        KP,
        MotionFormatError,
        r"field 'positions'.*\(0, 22, 3\)",
    ),
    "one_frame": (
        "one.npz",
        lambda p: write_keypoints(p, positions=_DEMO.positions[:1]),
        KP,
        InvalidMotionError,
        r"field 'frames'.*at least 2 frames.*found 1",
    ),
    "fps_negative": (
        "negfps.npz",
        lambda p: write_keypoints(p, fps=np.float64(-30)),
        KP,
        MotionFormatError,
        r"field 'fps'.*positive",
    ),
    "fps_absurd": (
        "absurdfps.npz",
        lambda p: write_keypoints(p, fps=np.float64(1e12)),
        KP,
        MotionFormatError,
        r"field 'fps'.*between 1 and 10000",
    ),
    "fps_not_a_number": (
        "strfps.npz",
        lambda p: write_keypoints(p, fps=np.array("thirty")),
        KP,
        MotionFormatError,
        r"field 'fps'.*one number",
    ),
    "joint_names_unknown": (
        "unknown.npz",
        lambda p: write_keypoints(p, joint_names=np.array([f"marker{i}" for i in range(22)])),
        KP,
        MotionFormatError,
        r"field 'joint_names'.*no shipped joint map",
    ),
    "joint_names_duplicated": (
        "dup.npz",
        lambda p: write_keypoints(p, joint_names=_DUP),
        KP,
        MotionFormatError,
        r"field 'joint_names'.*duplicated joint names: " + _DUP[2],
    ),
    "joint_names_count": (
        "count.npz",
        lambda p: write_keypoints(p, joint_names=_names(_DEMO)[:-1]),
        KP,
        MotionFormatError,
        r"field 'joint_names'.*21 names for 22 joints",
    ),
    # BVH
    "bvh_syntax_error": (
        "syntax.bvh",
        lambda p: _text(p, BVH.replace("  {\n    OFFSET 10", "    OFFSET 10", 1)),
        _read_human("bvh_lafan1"),
        MotionFormatError,
        r"line 7: expected '\{' after JOINT",
    ),
    "bvh_missing_channels": (
        "nochan.bvh",
        lambda p: _text(p, BVH.replace("    CHANNELS 3 Zrotation Yrotation Xrotation\n", "")),
        _read_human("bvh_lafan1"),
        MotionFormatError,
        r"line 18, field 'frames'.*expected 6 \(sum of CHANNELS\), found 9",
    ),
    "bvh_truncated": (
        "trunc.bvh",
        lambda p: _text(p, BVH.rsplit("0 90", 1)[0]),
        _read_human("bvh_lafan1"),
        MotionFormatError,
        r"field 'frames'.*truncated file: expected 2 frames",
    ),
    "bvh_zero_frames": (
        "zero.bvh",
        lambda p: _text(p, BVH.replace("Frames: 2", "Frames: 0")),
        _read_human("bvh_lafan1"),
        MotionFormatError,
        r"field 'Frames'.*zero frames",
    ),
    "bvh_negative_frame_time": (
        "negft.bvh",
        lambda p: _text(p, BVH.replace("0.033333", "-0.03")),
        _read_human("bvh_lafan1"),
        MotionFormatError,
        r"field 'Frame Time'.*positive finite",
    ),
    "bvh_absurd_frame_time": (
        "tinyft.bvh",
        lambda p: _text(p, BVH.replace("0.033333", "1e-9")),
        _read_human("bvh_lafan1"),
        MotionFormatError,
        r"field 'Frame Time'.*between 1 and 10000",
    ),
    "bvh_binary": (
        "binary.bvh",
        lambda p: (p.write_bytes(b"HIERARCHY\n\x00\x01\x02"), p)[1],
        _read_human("bvh_lafan1"),
        MotionFormatError,
        r"NUL bytes",
    ),
    # AMASS
    "amass_nan_pose": (
        "nan_amass.npz",
        lambda p: _amass(p, poses=np.where(np.arange(165) == 5, np.nan, np.zeros((10, 165)))),
        _read_human("amass"),
        MotionFormatError,
        r"field 'poses'.*NaN or infinite value at frame 0",
    ),
    "amass_wrong_width": (
        "width_amass.npz",
        lambda p: _amass(p, poses=np.zeros((10, 100))),
        _read_human("amass"),
        MotionFormatError,
        r"field 'poses'.*\(10, 100\)",
    ),
    "amass_absurd_fps": (
        "fps_amass.npz",
        lambda p: _amass(p, mocap_frame_rate=np.float64(1e9)),
        _read_human("amass"),
        MotionFormatError,
        r"field 'mocap_frame_rate'.*between 1 and 10000",
    ),
    # pickles: never run, only data
    "gmr_pkl_runs_code": (
        "evil.pkl",
        lambda p: _pickle(p, {"fps": 30.0, "root_pos": RunsCode(p.with_suffix(".PWNED"))}),
        _read_robot("gmr_pkl"),
        MotionFormatError,
        r"refusing to load class (posix|os)\.system",
    ),
    "gmr_pkl_runs_code_protocol0": (
        "evil0.pkl",
        lambda p: _pickle(p, RunsCode(p.with_suffix(".PWNED")), 0),
        _read_robot("gmr_pkl"),
        MotionFormatError,
        r"refusing to load class",
    ),
    "gmr_pkl_unexpected_class": (
        "odict.pkl",
        lambda p: _pickle(p, collections.OrderedDict(fps=30.0)),
        _read_robot("gmr_pkl"),
        MotionFormatError,
        r"refusing to load class collections\.OrderedDict",
    ),
    "gmr_pkl_memory_bomb": (
        "bomb.pkl",
        lambda p: (
            p.write_bytes(
                b"\x80\x02c__builtin__\nlist\nc__builtin__\nrange\nK\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x86R\x85R."
            ),
            p,
        )[1],
        _read_robot("gmr_pkl"),
        MotionFormatError,
        r"list\(\) called with 1099511627776 items",
    ),
    "gmr_pkl_truncated": (
        "trunc.pkl",
        lambda p: (p.write_bytes(pickle.dumps({"fps": 30.0, "x": list(range(50))})[:-20]), p)[1],
        _read_robot("gmr_pkl"),
        MotionFormatError,
        r"malformed or truncated pickle",
    ),
    "gmr_pkl_missing_field": (
        "nofps.pkl",
        lambda p: _pickle(p, {"root_pos": np.zeros((3, 3))}),
        _read_robot("gmr_pkl"),
        MotionFormatError,
        r"field 'fps'",
    ),
    "model_pkl_unexpected_class": (
        "SMPL_NEUTRAL.pkl",
        lambda p: _pickle(p, {"J_regressor": collections.Counter(a=1)}, 2),
        _body_model,
        MotionFormatError,
        r"refusing to load class collections\.Counter",
    ),
    "model_pkl_runs_code": (
        "SMPL_MALE.pkl",
        lambda p: _pickle(p, {"kintree_table": RunsCode(p.with_suffix(".PWNED"))}, 2),
        _body_model,
        MotionFormatError,
        r"refusing to load class (posix|os)\.system",
    ),
    # robots
    "mjcf_missing_body": (
        "unitree_g1.xml",
        lambda p: _g1_without(p, "left_ankle_roll_link"),
        _robot_and_recipe,
        UnknownNameError,
        r"left_ankle_roll_link",
    ),
    "mjcf_not_xml": (
        "broken.xml",
        lambda p: _text(p, "<mujoco><worldbody><body name='a'>"),
        _robot_and_recipe,
        RobotModelError,
        r"cannot load MJCF",
    ),
    "mjcf_no_free_joint": (
        "fixed.xml",
        lambda p: _text(
            p, "<mujoco><worldbody><body name='a'><joint type='hinge'/><geom size='0.1'/></body></worldbody></mujoco>"
        ),
        _robot_and_recipe,
        RobotModelError,
        r"expected exactly one free joint",
    ),
    # configs
    "config_unknown_key": (
        "run.yaml",
        lambda p: _text(p, "solver:\n  max_itres: 3\n"),
        _run_config,
        ConfigError,
        r"max_itres",
    ),
    "config_wrong_type": (
        "run.yaml",
        lambda p: _text(p, "solver:\n  max_iters: many\n"),
        _run_config,
        ConfigError,
        r"solver\.max_iters",
    ),
    "config_not_yaml": ("run.yaml", lambda p: _text(p, "solver: [\n"), _run_config, ConfigError, r"not valid YAML"),
    "recipe_unknown_key": (
        "my_recipe.yaml",
        lambda p: _text(p, _recipe_yaml(bogus_key=1)),
        _recipe_file,
        ConfigError,
        r"unknown key\(s\) \['bogus_key'\]",
    ),
    "joint_map_unknown_role": (
        "my_map.yaml",
        lambda p: _text(p, "name: m\nlength_unit: metre\nup_axis: z\njoints: {Hips: pelvis, Knee: kneecap}\n"),
        _joint_map_file,
        UnknownNameError,
        r"kneecap",
    ),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_input_gets_a_typed_error_naming_file_and_field(case, tmp_path, g1, lafan1_g1_recipe):
    name, build, entry, error, pattern = CORPUS[case]
    path = build(tmp_path / name)
    with pytest.raises(error) as ei:
        entry(path, g1, lafan1_g1_recipe)
    msg = str(ei.value)
    assert str(path) in msg or path.name in msg, msg
    assert re.search(pattern, msg, re.S), (pattern, msg)
    assert not list(tmp_path.glob("*.PWNED")), "a pickle payload ran"


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 25


# --------------------------------------------------------------------------- in a batch run


def _config(path: Path) -> Path:
    cfg = {
        "recipe": "lafan1_g1",
        "solver": {"max_iters": 50},
        "batch": {"max_batch": 4, "buckets": [64], "window": 64, "overlap": 16, "progress": False, "max_workers": 2},
        "output": {"formats": ["npz"]},
        "jax_cache_dir": CACHE,
    }
    path.write_text(json.dumps(cfg))
    return path


def _batch(inp: Path, out: Path, config: Path, fmt: str = "keypoints") -> int:
    return cli_main(
        [
            "batch",
            "--input-dir",
            str(inp),
            "--format",
            fmt,
            "--robot",
            "unitree_g1",
            "--config",
            str(config),
            "--output-dir",
            str(out),
            "--no-progress",
        ]
    )


GOOD = {
    f"good{i}.npz": (30 + 9 * i, 0.07 * i) for i in range(3)
}  # frames, shift: with the diverging clip, one batch of 4
BAD_IN_DRIVER = [c for c, (name, *_rest) in CORPUS.items() if CORPUS[c][2] is KP]


def _diverging(path: Path) -> Path:
    """Finite but absurd: one wrist 1e25 m away in a few frames. Every reader check passes;
    inside the solve the tracking residual's square overflows float32, the cost is not
    finite, and the solve returns ``diverged``."""
    m = demo_motion(num_frames=40)
    pos = m.positions.copy()
    pos[10:14, [j.value for j in m.joint_names].index("left_wrist")] = 1e25
    return write_keypoints(path, positions=pos)


def bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (NaN where a target is masked compares equal to itself)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k not in ("provenance_json", "source_path")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The good clips alone, then the same clips with every keypoint corpus case and a
    diverging clip beside them (names sorted so bad files fall between good ones)."""
    tmp = tmp_path_factory.mktemp("corpus_runs")
    config = _config(tmp / "run.yaml")
    alone, mixed = tmp / "alone", tmp / "mixed"
    mixed.mkdir()
    for name, (T, shift) in GOOD.items():
        shutil.copy(write_keypoints(alone / name, T=T, shift=shift), mixed / name)
    for case in BAD_IN_DRIVER:
        name, build, *_ = CORPUS[case]
        build(mixed / f"good{case}_{name}")  # sorts among the good clips
    _diverging(mixed / "good2_diverges.npz")
    rc_alone = _batch(alone, tmp / "out_alone", config)
    rc_mixed = _batch(mixed, tmp / "out_mixed", config)
    return tmp, rc_alone, rc_mixed


def test_bad_files_are_failed_records_and_good_clips_are_bitwise_equal(runs):
    tmp, rc_alone, rc_mixed = runs
    assert rc_alone == 0 and rc_mixed == 1  # the CLI exits 1 when any job failed
    alone = BatchManifest.load(tmp / "out_alone" / "batch_manifest.json")
    mixed = BatchManifest.load(tmp / "out_mixed" / "batch_manifest.json")
    assert alone.success_count == alone.total == len(GOOD)
    by_id = mixed.records_by_id()
    assert mixed.total == len(GOOD) + len(BAD_IN_DRIVER) + 1
    assert mixed.success_count == len(GOOD) and mixed.failed_count == len(BAD_IN_DRIVER) + 1
    for case in BAD_IN_DRIVER:
        name, _, _, error, pattern = CORPUS[case]
        rec = by_id[f"good{case}_{name}"]
        assert rec.status == "failed" and rec.output is None, case
        assert rec.error_type == error.error_type, (case, rec.error_type)
        assert f"good{case}_{name}" in rec.message and re.search(pattern, rec.message, re.S), (case, rec.message)
        assert not (tmp / "out_mixed" / f"good{case}_{name}").exists()
    for name in GOOD:
        a, b = _arrays(tmp / "out_alone" / name), _arrays(tmp / "out_mixed" / name)
        assert a.keys() == b.keys()
        for k in a:
            assert bitwise_equal(a[k], b[k]), (name, k)
        assert load_result(tmp / "out_mixed" / name).provenance["status_name"] == "converged"


def test_a_clip_that_diverges_in_the_solve_is_failed_with_its_status(runs):
    tmp, _, _ = runs
    rec = BatchManifest.load(tmp / "out_mixed" / "batch_manifest.json").records_by_id()["good2_diverges.npz"]
    assert rec.status == "failed" and rec.error_type == "solve" and rec.output is None
    assert rec.provenance["status_name"] == "diverged", rec.provenance
    assert "good2_diverges.npz" in rec.message and "status 'diverged'" in rec.message
    assert not (tmp / "out_mixed" / "good2_diverges.npz").exists()  # nothing written: a rerun retries it


def test_robot_space_and_bvh_runs_record_bad_files(tmp_path, g1_trajectory):
    """Formats that need no solve for their bad files: a run of a code-running GMR pickle
    beside a good one, and of broken BVH files, records each bad file as failed; the
    payload never runs."""
    inp = tmp_path / "pkl"
    inp.mkdir()
    write_gmr_pkl(g1_trajectory, inp / "good.pkl")
    marker = tmp_path / "PWNED"
    _pickle(inp / "evil.pkl", {"fps": 30.0, "dof_pos": RunsCode(marker)})
    _pickle(inp / "evil0.pkl", RunsCode(marker), 0)
    config = _config(tmp_path / "run.yaml")
    assert _batch(inp, tmp_path / "out_pkl", config, fmt="gmr_pkl") == 1
    m = BatchManifest.load(tmp_path / "out_pkl" / "batch_manifest.json").records_by_id()
    assert m["good.pkl"].status == "success" and load_result(tmp_path / "out_pkl" / "good.npz").num_frames == 12
    for bad in ("evil.pkl", "evil0.pkl"):
        assert m[bad].status == "failed" and m[bad].error_type == "motion_format"
        assert "refusing to load class" in m[bad].message and bad in m[bad].message
    assert not marker.exists()

    bvh = tmp_path / "bvh"
    bvh.mkdir()
    for case in ("bvh_syntax_error", "bvh_missing_channels", "bvh_truncated", "bvh_absurd_frame_time"):
        name, build, *_ = CORPUS[case]
        build(bvh / f"{case}.bvh")
    assert _batch(bvh, tmp_path / "out_bvh", config, fmt="bvh_lafan1") == 1
    m = BatchManifest.load(tmp_path / "out_bvh" / "batch_manifest.json")
    assert m.failed_count == m.total == 4
    for rec in m.records:
        case = rec.job_id[:-4]
        assert rec.error_type == "motion_format" and re.search(CORPUS[case][4], rec.message, re.S), rec


def test_worker_fails_every_non_ok_status_and_writes_nothing(tmp_path, g1, g1_trajectory):
    """The driver's rule for statuses, without a solve: invalid_input (non-finite input,
    e.g. NaN in a BVH channel, which the BVH reader keeps for the solve to flag) and
    diverged are failed records with their status; converged and max_iterations are
    written."""
    import dataclasses

    from retarget_jax.batch.jobs import BatchJob
    from retarget_jax.batch.worker import RetargetWorker, _Loaded
    from retarget_jax.result import SolveStatus

    worker = RetargetWorker(robot=g1, motion_format="gmr_pkl", manifest_path=tmp_path / "batch_manifest.json")
    statuses = [SolveStatus.CONVERGED, SolveStatus.INVALID_INPUT, SolveStatus.MAX_ITERATIONS, SolveStatus.DIVERGED]
    jobs = [
        BatchJob(id=f"clip{s}.pkl", motion=f"in/clip{s}.pkl", output=str(tmp_path / f"clip{s}.npz")) for s in statuses
    ]
    items = [_Loaded(dataclasses.replace(g1_trajectory, status=s), "t0") for s in statuses]
    records = worker.process(jobs, items)
    for s, job, rec in zip(statuses, jobs, records, strict=True):
        name = SolveStatus.name(s)
        if SolveStatus.ok(s):
            assert rec.status == "success" and load_result(job.output).status == s
        else:
            assert rec.status == "failed" and rec.error_type == "solve" and rec.output is None
            assert rec.provenance["status_name"] == name and f"status '{name}'" in rec.message
            assert job.motion in rec.message and not Path(job.output).exists()


def test_single_file_cli_writes_nothing_for_a_failed_solve(tmp_path, monkeypatch, g1_trajectory, capsys):
    import dataclasses

    import retarget_jax.pipeline as pipeline
    from retarget_jax.result import SolveStatus

    failed = dataclasses.replace(g1_trajectory, status=SolveStatus.DIVERGED, provenance={"status_name": "diverged"})
    monkeypatch.setattr(pipeline, "retarget_motions", lambda motions, *a, **k: [failed])  # no solve needed
    src = write_keypoints(tmp_path / "clip.npz")
    out = tmp_path / "out.npz"
    assert (
        cli_main(
            [
                "retarget",
                str(src),
                "--format",
                "keypoints",
                "--robot",
                "unitree_g1",
                "--recipe",
                "lafan1_g1",
                "--output",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "SolveError" in err and str(src) in err and "status 'diverged'" in err
    assert not out.exists()
