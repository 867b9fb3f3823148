"""Tests for retarget_jax.motion.keypoints: npz keypoint sequences -> HumanMotion."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from retarget_jax.errors import MotionFormatError
from retarget_jax.io.bvh import write_bvh
from retarget_jax.motion.bvh import BvhClip, read_bvh_format
from retarget_jax.motion.joint_maps import load_joint_map
from retarget_jax.motion.keypoints import detect_joint_map, read_keypoints
from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP, HumanJoint, canonical_parents

OMOMO = "omomo_sub3_largebox_003_joints.npz"
_PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 12, 11, 14, 15, 16, 11, 18, 19, 20)
_OFFSETS = (
    (0, 0, 0),
    (0.1, 1.9, 10.5),
    (43.5, 0, 0),
    (42.4, 0, 0),
    (17.3, 0, 0),
    (0.1, 1.9, -10.5),
    (43.5, 0, 0),
    (42.4, 0, 0),
    (17.3, 0, 0),
    (6.9, -2.6, 0),
    (12.6, 0, 0),
    (12.3, 0, 0),
    (25.8, 0, 0),
    (11.8, 0, 0),
    (19.7, -1.5, 6.0),
    (11.3, 0, 0),
    (33.0, 0, 0),
    (25.2, 0, 0),
    (19.7, -1.5, -6.0),
    (11.3, 0, 0),
    (33.0, 0, 0),
    (25.2, 0, 0),
)


@pytest.fixture(scope="module")
def bvh_motion(tmp_path_factory):
    """A LAFAN1-named BVH written here (cm, Y-up, random joint angles), read as a motion."""
    rng = np.random.default_rng(7)
    T = 6
    chans = tuple(
        ("Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Xrotation")
        if p < 0
        else ("Zrotation", "Yrotation", "Xrotation")
        for p in _PARENTS
    )
    frames = np.round(rng.uniform(-35.0, 35.0, size=(T, 69)), 4)
    frames[:, :3] = [10.0, 92.0, 5.0]
    clip = BvhClip(
        "",
        tuple(LAFAN1_JOINT_MAP),
        np.asarray(_PARENTS),
        np.asarray(_OFFSETS, float),
        chans,
        np.asarray([0] + [6 + 3 * i for i in range(21)]),
        frames,
        1.0 / 25.0,
    )
    p = tmp_path_factory.mktemp("kp") / "src.bvh"
    write_bvh(p, clip)
    return read_bvh_format(p, "bvh_lafan1")


def _save(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _names_in(map_name: str, roles) -> list[str]:
    src_of = {r: s for s, r in load_joint_map(map_name).joints.items()}
    return [src_of[r] for r in roles]


# --------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("map_name", ["lafan1", "smpl_phc", "smpl"])
def test_bvh_positions_written_as_keypoints_read_back_the_same(tmp_path, bvh_motion, map_name):
    m = bvh_motion
    names = _names_in(map_name, m.joint_names)
    perm = np.random.default_rng(1).permutation(len(names))  # file order need not be canonical
    p = _save(
        tmp_path / "kp.npz", positions=m.positions[:, perm], joint_names=np.asarray(names)[perm], fps=np.float32(25.0)
    )
    k = read_keypoints(p)
    assert k.joint_names == m.joint_names == tuple(HumanJoint)  # canonical order
    np.testing.assert_array_equal(k.positions, m.positions)
    np.testing.assert_array_equal(k.parents, m.parents)  # LAFAN1's tree is the canonical one
    assert k.source_joint_names == tuple(names)
    assert k.orientations is None and k.conventions is None and k.valid is None
    assert k.fps == 25.0 and k.source_format == "keypoints" and k.source_path == str(p)
    np.testing.assert_allclose(k.timestamps, m.timestamps, atol=1e-12)
    assert k.chain_length("left_ankle", "left_hip") == pytest.approx(m.chain_length("left_ankle", "left_hip"))
    assert detect_joint_map(names).name == map_name


def test_explicit_joint_map_by_name_object_or_dict(tmp_path, bvh_motion):
    m = bvh_motion
    names = _names_in("smpl_phc", m.joint_names)
    p = _save(tmp_path / "kp.npz", positions=m.positions, joint_names=np.asarray(names), fps=25)
    a = read_keypoints(p, joint_map="smpl_phc")
    b = read_keypoints(p, joint_map=load_joint_map("smpl_phc"))
    c = read_keypoints(p, joint_map={"Pelvis": "pelvis", "L_Wrist": "left_wrist", "Head": HumanJoint.HEAD})
    np.testing.assert_array_equal(a.positions, b.positions)
    assert c.joint_names == (HumanJoint.PELVIS, HumanJoint.HEAD, HumanJoint.LEFT_WRIST)
    assert c.parents.tolist() == [-1, 0, 0]
    np.testing.assert_array_equal(c.positions[:, 2], m.positions[:, m.index("left_wrist")])


def test_subset_of_joints_hangs_from_the_nearest_present_ancestor(tmp_path, bvh_motion):
    m = bvh_motion
    roles = [HumanJoint.HEAD, HumanJoint.LEFT_ANKLE, HumanJoint.PELVIS, HumanJoint.RIGHT_ELBOW, HumanJoint.NECK]
    names = _names_in("smpl_phc", roles) + ["L_Index1", "Jaw"]  # unmapped names are ignored
    pos = np.concatenate([m.positions[:, [m.index(r) for r in roles]], np.zeros((6, 2, 3))], axis=1)
    k = read_keypoints(_save(tmp_path / "sub.npz", positions=pos, joint_names=np.asarray(names), fps=25.0))
    assert k.joint_names == (
        HumanJoint.PELVIS,
        HumanJoint.LEFT_ANKLE,
        HumanJoint.NECK,
        HumanJoint.HEAD,
        HumanJoint.RIGHT_ELBOW,
    )
    assert k.parents.tolist() == [-1, 0, 0, 2, 0]
    assert k.parents.tolist() == canonical_parents(k.joint_names).tolist()
    for r in roles:
        np.testing.assert_array_equal(k.positions[:, k.index(r)], m.positions[:, m.index(r)])


# --------------------------------------------------------------------------------------
# Validity


def test_nan_marks_joint_frames_invalid(tmp_path, bvh_motion):
    m = bvh_motion
    pos = m.positions.copy()
    li, hi = m.index("left_wrist"), m.index("head")
    pos[1, li] = np.nan
    pos[3, hi, 2] = np.inf
    pos[4, li, 0] = np.nan
    p = _save(tmp_path / "nan.npz", positions=pos, joint_names=np.asarray(list(LAFAN1_JOINT_MAP)), fps=25.0)
    k = read_keypoints(p)
    expect = np.ones((6, 22), dtype=bool)
    expect[[1, 4], li] = False
    expect[3, hi] = False
    np.testing.assert_array_equal(k.valid, expect)
    np.testing.assert_array_equal(k.valid_mask, expect)
    assert np.isnan(k.positions[1, li]).all()  # the data is not invented
    np.testing.assert_array_equal(k.positions[k.valid], m.positions[expect])


@pytest.mark.parametrize("key, dtype", [("valid", bool), ("mask", bool), ("valid", np.uint8)])
def test_a_given_mask_is_combined_with_nan(tmp_path, bvh_motion, key, dtype):
    m = bvh_motion
    pos = m.positions.copy()
    pos[0, 3] = np.nan
    given = np.ones((6, 22), dtype=bool)
    given[5, 7] = False
    p = _save(
        tmp_path / "m.npz",
        positions=pos,
        joint_names=np.asarray(list(LAFAN1_JOINT_MAP)),
        fps=25.0,
        **{key: given.astype(dtype)},
    )
    k = read_keypoints(p)
    want = given.copy()
    want[0, 3] = False
    np.testing.assert_array_equal(k.valid, want)


def test_root_missing_in_some_frames_is_fine(tmp_path, bvh_motion):
    pos = bvh_motion.positions.copy()
    pos[:5, 0] = np.nan
    k = read_keypoints(
        _save(tmp_path / "r.npz", positions=pos, joint_names=np.asarray(list(LAFAN1_JOINT_MAP)), fps=25.0)
    )
    assert k.valid[:, 0].tolist() == [False] * 5 + [True]


def test_timestamps_are_kept(tmp_path, bvh_motion):
    ts = np.array([0.0, 0.04, 0.09, 0.12, 0.2, 0.21])
    k = read_keypoints(
        _save(
            tmp_path / "t.npz",
            positions=bvh_motion.positions,
            joint_names=np.asarray(list(LAFAN1_JOINT_MAP)),
            fps=25.0,
            timestamps=ts,
        )
    )
    np.testing.assert_array_equal(k.timestamps, ts)
    np.testing.assert_array_equal(k.times, ts)


# --------------------------------------------------------------------------------------
# Malformed files: MotionFormatError naming the file and the field


def _good(bvh_motion) -> dict:
    return {
        "positions": bvh_motion.positions,
        "joint_names": np.asarray(list(LAFAN1_JOINT_MAP)),
        "fps": np.float64(25.0),
    }


def _raises(path: Path, field: str | None, *patterns: str) -> MotionFormatError:
    with pytest.raises(MotionFormatError) as ei:
        read_keypoints(path)
    err = ei.value
    assert err.path == str(path) and err.field == field, (err.field, str(err))
    assert str(err).startswith(str(path))
    for pat in patterns:
        assert pat in str(err), (pat, str(err))
    return err


@pytest.mark.parametrize("key", ["positions", "joint_names", "fps"])
def test_missing_key(tmp_path, bvh_motion, key):
    arrays = _good(bvh_motion)
    del arrays[key]
    _raises(_save(tmp_path / "k.npz", **arrays), key, f"missing required array '{key}'", "the file has: ")


@pytest.mark.parametrize(
    "field, value, pattern",
    [
        ("positions", np.zeros((6, 22)), "expected shape (T, J, 3)"),
        ("positions", np.zeros((6, 22, 2)), "expected shape (T, J, 3) with T, J >= 1, found (6, 22, 2)"),
        ("positions", np.zeros((0, 22, 3)), "found (0, 22, 3)"),
        ("positions", np.full((6, 22, 3), "x"), "expected a float array, found dtype <U1"),
        ("positions", np.zeros((6, 22, 3), dtype=bool), "expected a float array, found dtype bool"),
        ("joint_names", np.asarray(list(LAFAN1_JOINT_MAP))[:21], "21 names for 22 joints"),
        ("joint_names", np.arange(22), "expected a 1-D array of strings"),
        ("joint_names", np.asarray([["Hips"] * 22]), "expected a 1-D array of strings"),
        ("joint_names", np.asarray(["Hips"] * 2 + list(LAFAN1_JOINT_MAP)[2:]), "duplicated joint names: Hips"),
        ("joint_names", np.asarray([f"marker{i}" for i in range(22)]), "no shipped joint map matches"),
        ("fps", np.asarray("thirty"), "expected one number, found dtype <U6"),
        ("fps", np.asarray([25.0, 30.0]), "expected one number, found dtype float64 with shape (2,)"),
        ("fps", np.asarray(0.0), "must be a positive finite number, found 0.0"),
        ("fps", np.asarray(np.nan), "must be a positive finite number, found nan"),
        ("fps", np.asarray(True), "expected one number, found dtype bool"),
        ("valid", np.ones((6, 21), dtype=bool), "expected shape (6, 22), found (6, 21)"),
        ("valid", np.full((6, 22), 0.5), "expected a bool array, found dtype float64"),
        ("mask", np.full((6, 22), 2), "expected a bool array, found dtype int64"),
        ("timestamps", np.arange(5.0), "expected (6,) numbers"),
        ("timestamps", np.array([0, 1, 1, 2, 3, 4.0]), "must be finite and strictly increasing"),
        ("timestamps", np.asarray(["a"] * 6), "expected (6,) numbers"),
    ],
)
def test_bad_arrays(tmp_path, bvh_motion, field, value, pattern):
    arrays = _good(bvh_motion)
    arrays[field] = value
    _raises(_save(tmp_path / "bad.npz", **arrays), field, pattern)


def test_unknown_names_list_the_shipped_maps(tmp_path, bvh_motion):
    arrays = _good(bvh_motion)
    arrays["joint_names"] = np.asarray([f"marker{i}" for i in range(22)])
    _raises(
        _save(tmp_path / "bad.npz", **arrays),
        "joint_names",
        "shipped maps: hc_mocap, lafan1, mixamo, mocapbank_19, nokov, smpl, smpl_phc",
        "marker0, marker1",
    )


def test_both_valid_and_mask(tmp_path, bvh_motion):
    ok = np.ones((6, 22), dtype=bool)
    _raises(_save(tmp_path / "b.npz", **_good(bvh_motion), valid=ok, mask=ok), "mask", "both 'valid' and 'mask'")


def test_root_never_valid(tmp_path, bvh_motion):
    arrays = _good(bvh_motion)
    arrays["positions"] = arrays["positions"].copy()
    arrays["positions"][:, 0, 1] = np.nan
    _raises(_save(tmp_path / "r.npz", **arrays), "positions", "root joint 'Hips' (pelvis) is never valid")
    valid = np.ones((6, 22), dtype=bool)
    valid[:, 0] = False
    _raises(_save(tmp_path / "r2.npz", **_good(bvh_motion), valid=valid), "positions", "never valid")


def test_no_pelvis_in_the_file(tmp_path, bvh_motion):
    names = np.asarray(list(LAFAN1_JOINT_MAP))
    keep = [i for i, n in enumerate(names) if n != "Hips"]
    p = _save(tmp_path / "np.npz", positions=bvh_motion.positions[:, keep], joint_names=names[keep], fps=25.0)
    _raises(p, "joint_names", "no shipped joint map matches")  # detection needs a pelvis
    with pytest.raises(MotionFormatError, match=r"field 'joint_names': no joint maps to the pelvis"):
        read_keypoints(p, joint_map="lafan1")


def test_no_name_in_an_explicit_map(tmp_path, bvh_motion):
    p = _save(tmp_path / "x.npz", **_good(bvh_motion))
    with pytest.raises(MotionFormatError, match=r"x\.npz, field 'joint_names': no joint name is in the joint map"):
        read_keypoints(p, joint_map="smpl")


def test_corrupt_and_foreign_files(tmp_path, bvh_motion):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00\x01 definitely not a zip archive" * 10)
    _raises(garbage, None, "not a readable npz archive")

    good = _save(tmp_path / "good.npz", **_good(bvh_motion))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _raises(cut, None, "not a readable npz archive")

    npy = tmp_path / "single.npz"
    with open(npy, "wb") as f:
        np.save(f, bvh_motion.positions)
    _raises(npy, None, "a single .npy array of shape (6, 22, 3), not an npz archive of named arrays")

    # One byte of a stored member flipped on disk: the archive opens, the CRC check fails.
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("positions.npy")
        assert info.compress_type == zipfile.ZIP_STORED
    raw = bytearray(good.read_bytes())
    h = info.header_offset  # local header: name and extra lengths at bytes 26 and 28
    at = h + 30 + int.from_bytes(raw[h + 26 : h + 28], "little") + int.from_bytes(raw[h + 28 : h + 30], "little") + 300
    raw[at] ^= 0xFF
    bad = tmp_path / "crc.npz"
    bad.write_bytes(bytes(raw))
    _raises(bad, "positions", "corrupt array")


def test_object_arrays_are_refused_not_unpickled(tmp_path, bvh_motion):
    arrays = _good(bvh_motion)
    arrays["joint_names"] = np.asarray(list(LAFAN1_JOINT_MAP), dtype=object)
    p = tmp_path / "obj.npz"
    np.savez(p, **arrays)  # stored pickled
    _raises(p, "joint_names", "cannot be read without pickle")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_keypoints(tmp_path / "missing.npz")


# --------------------------------------------------------------------------------------
# The real OMOMO clip (shared data; skipped where absent)


def test_omomo_keypoints_read_upright_and_not_mirrored(shared_data_dir):
    path = shared_data_dir / OMOMO
    if not path.is_file():
        pytest.skip(f"{OMOMO} not found in {shared_data_dir}")
    m = read_keypoints(path)
    assert m.num_frames == 196 and m.fps == 30.0 and m.joint_names == tuple(HumanJoint)
    assert m.source_joint_names[:5] == ("Pelvis", "L_Hip", "L_Knee", "L_Ankle", "L_Toe")
    assert m.valid is None and m.orientations is None and m.conventions is None
    P = m.positions
    z = P[..., 2]
    head, pelvis = z[:, m.index("head")], z[:, m.index("pelvis")]
    ankles = np.maximum(z[:, m.index("left_ankle")], z[:, m.index("right_ankle")])
    assert np.all(head > pelvis) and np.all(pelvis > ankles)
    # Facing from the feet (ankle -> toe), left from facing x up: the left hip is on it.
    fwd = (
        P[:, m.index("left_toe")]
        - P[:, m.index("left_ankle")]
        + P[:, m.index("right_toe")]
        - P[:, m.index("right_ankle")]
    )
    fwd[:, 2] = 0.0
    left = np.cross([0.0, 0.0, 1.0], fwd / np.linalg.norm(fwd, axis=-1, keepdims=True))
    side = np.sum((P[:, m.index("left_hip")] - P[:, m.index("right_hip")]) * left, axis=-1)
    assert np.mean(side > 0) > 0.95
    # Metres: a 1.94 m subject's head sits 1.4 - 1.9 m above the floor when standing.
    assert 1.3 < np.percentile(head - np.minimum(z[:, m.index("left_toe")], z[:, m.index("right_toe")]), 90) < 1.9
