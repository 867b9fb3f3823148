"""Tests for retarget_jax.io: result NPZ round trip, tracker writers, restricted unpickling."""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from retarget_jax.errors import MotionFormatError, UnknownNameError
from retarget_jax.io import (
    WRITERS,
    atomic_write,
    load_result,
    restricted_load,
    restricted_loads,
    save_result,
    validate_result_npz,
    write_gmr_pkl,
    write_mjlab_npz,
    write_result,
)
from retarget_jax.io.result_npz import REQUIRED_KEYS
from retarget_jax.result import RetargetingResult, SolveStatus
from retarget_jax.rotations import (
    axis_angle_to_quat,
    quat_exp,
    quat_mul,
    quat_normalize,
    quat_to_mat,
)

T, N, B, K = 20, 3, 4, 2
FPS = 30.0


def _random_quats(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    q = quat_normalize(rng.normal(size=shape + (4,)))
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


@pytest.fixture
def result() -> RetargetingResult:
    rng = np.random.default_rng(0)
    root_pos = rng.normal(size=(T, 3))
    root_quat = _random_quats(rng, (T,))
    body_pos = rng.normal(size=(T, B, 3))
    body_pos[:, 0] = root_pos
    body_quat = _random_quats(rng, (T, B))
    body_quat[:, 0] = root_quat
    return RetargetingResult(
        fps=FPS,
        root_pos=root_pos,
        root_quat_wxyz=root_quat,
        dof_pos=rng.uniform(-1, 1, size=(T, N)),
        dof_names=("left_knee", "right_knee", "waist_yaw"),
        body_names=("pelvis", "left_foot", "right_foot", "torso_link"),
        body_pos_w=body_pos,
        body_quat_w=body_quat,
        status=SolveStatus.MAX_ITERATIONS,
        final_cost=0.0123456789,
        iterations=57,
        robot="unitree_g1",
        provenance={
            "source_path": "data/lafan1/walk1_subject1.bvh",
            "config_hash": "abc123",
            "recipe": {"name": "lafan1_to_g1", "weights": [1.0, 0.5]},
            "seed": 3,
        },
        target_pos_w=rng.normal(size=(T, K, 3)),
        target_body_names=("left_foot", "right_foot"),
    )


def assert_results_equal(a: RetargetingResult, b: RetargetingResult) -> None:
    for f in dataclasses.fields(RetargetingResult):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x is not None and y is not None, f.name
            assert x.dtype == y.dtype, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name, strict=True)
        else:
            assert x == y, f.name
            assert type(x) is type(y), f.name


def _rewrite_npz(src, dst, *, drop=(), replace=None):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k not in drop}
    arrays.update(replace or {})
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


# --------------------------------------------------------------------------- result NPZ


def test_round_trip_exact(result, tmp_path):
    path = save_result(result, tmp_path / "clip.npz")
    assert path == tmp_path / "clip.npz"
    assert_results_equal(load_result(path), result)
    validate_result_npz(path)


def test_round_trip_without_targets_and_float32(result, tmp_path):
    r = dataclasses.replace(
        result,
        target_pos_w=None,
        target_body_names=(),
        provenance={},
        root_pos=result.root_pos.astype(np.float32),
        dof_pos=result.dof_pos.astype(np.float32),
        status=SolveStatus.DIVERGED,
    )
    r.dof_pos[3, 1] = np.nan  # diverged clips hold NaN; that is data, not a format error
    back = load_result(save_result(r, tmp_path / "c.npz"))
    assert_results_equal(back, r)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        assert "target_pos_w" not in z.files and "target_body_names" not in z.files


def test_empty_dof_names_round_trip(result, tmp_path):
    r = dataclasses.replace(result, dof_names=(), dof_pos=np.zeros((T, 0)))
    assert_results_equal(load_result(save_result(r, tmp_path / "c.npz")), r)


def test_npz_is_pickle_free_with_flat_keys(result, tmp_path):
    save_result(result, tmp_path / "clip.npz")
    with np.load(tmp_path / "clip.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert set(REQUIRED_KEYS) <= set(arrays)
    for key, a in arrays.items():
        assert a.dtype != object, key
    for key in ("dof_names", "body_names", "target_body_names"):
        assert arrays[key].dtype.kind == "U", key
    for key in (
        "robot",
        "status_name",
        "provenance_json",
        "source_path",
        "config_hash",
        "package_version",
    ):
        assert arrays[key].shape == () and arrays[key].dtype.kind == "U", key
    assert arrays["fps"].shape == () and arrays["fps"].dtype == np.float64
    assert arrays["status"].shape == () and int(arrays["status"]) == SolveStatus.MAX_ITERATIONS
    assert str(arrays["status_name"]) == "max_iterations"
    assert int(arrays["schema_version"]) == 1
    assert str(arrays["source_path"]) == "data/lafan1/walk1_subject1.bvh"
    assert str(arrays["config_hash"]) == "abc123"
    assert str(arrays["package_version"]) == ""  # absent from provenance
    assert arrays["body_pos_w"].shape == (T, B, 3)
    assert arrays["target_pos_w"].shape == (T, K, 3)


@pytest.mark.parametrize(
    "key",
    [
        "fps",
        "body_pos_w",
        "dof_names",
        "status",
        "provenance_json",
        "config_hash",
        "schema_version",
    ],
)
def test_missing_key_names_field(result, tmp_path, key):
    save_result(result, tmp_path / "good.npz")
    _rewrite_npz(tmp_path / "good.npz", tmp_path / "bad.npz", drop=(key,))
    with pytest.raises(MotionFormatError, match=f"field '{key}': missing required key") as ei:
        load_result(tmp_path / "bad.npz")
    assert ei.value.field == key and ei.value.path == str(tmp_path / "bad.npz")
    with pytest.raises(MotionFormatError, match=f"field '{key}'"):
        validate_result_npz(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("body_pos_w", np.zeros((T, B + 1, 3)), r"shape \(T, B, 3\)"),
        ("dof_pos", np.zeros((T, N + 1)), r"shape \(T, n\)"),
        ("root_quat_wxyz", np.zeros((T - 1, 4)), r"shape \(T, 4\)"),
        ("target_pos_w", np.zeros((T, K, 2)), r"shape \(T, K, 3\)"),
        ("target_body_names", np.array(["a", "b", "c"]), r"\(2,\) names, one per target"),
        ("root_pos", np.zeros((T, 4)), r"shape \(T, 3\)"),
        ("fps", np.array(-1.0), r"fps > 0"),
        ("fps", np.array([30.0]), r"0-d"),
        ("schema_version", np.array(2), r"schema version 1"),
        ("dof_names", np.array([1.0, 2.0, 3.0]), r"unicode"),
        ("provenance_json", np.array("[1, 2]"), r"JSON object"),
    ],
)
def test_bad_field_names_field(result, tmp_path, key, value, match):
    save_result(result, tmp_path / "good.npz")
    _rewrite_npz(tmp_path / "good.npz", tmp_path / "bad.npz", replace={key: value})
    with pytest.raises(MotionFormatError, match=f"field '{key}': expected .*{match}"):
        load_result(tmp_path / "bad.npz")


def test_save_refuses_bad_shapes_before_writing(result, tmp_path):
    bad = dataclasses.replace(result, body_quat_w=result.body_quat_w[:, :2])
    with pytest.raises(MotionFormatError, match=r"field 'body_quat_w': expected shape \(T, B, 4\)"):
        save_result(bad, tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_non_json_provenance(result, tmp_path):
    bad = dataclasses.replace(result, provenance={"x": object()})
    with pytest.raises(MotionFormatError, match="field 'provenance': provenance is not JSON"):
        save_result(bad, tmp_path / "x.npz")


def test_object_array_in_npz_is_refused(result, tmp_path):
    save_result(result, tmp_path / "good.npz")
    _rewrite_npz(
        tmp_path / "good.npz",
        tmp_path / "bad.npz",
        replace={"robot": np.array(["g1", None], dtype=object)},
    )
    with pytest.raises(MotionFormatError, match="field 'robot': object arrays are not allowed"):
        load_result(tmp_path / "bad.npz")


def test_corrupt_and_truncated_files(result, tmp_path):
    good = save_result(result, tmp_path / "good.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.npz").write_bytes(b"not an archive at all")
    np.save(tmp_path / "single.npy", np.zeros(3))
    for name in ("trunc.npz", "junk.npz", "single.npy"):
        with pytest.raises(MotionFormatError, match=name):
            load_result(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_result(tmp_path / "missing.npz")


def test_atomic_write_replaces_and_leaves_no_temp(result, tmp_path):
    out = tmp_path / "deep" / "dir" / "clip.npz"  # parents are created
    save_result(result, out)
    other = dataclasses.replace(result, robot="booster_t1", iterations=3)
    save_result(other, out)  # existing file replaced
    assert_results_equal(load_result(out), other)
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.npz"]
    # Every writer: only the final file remains.
    for fmt, name in (("mjlab_npz", "m.npz"), ("gmr_pkl", "g.pkl"), ("npz", "n.npz")):
        write_result(result, tmp_path / "w" / name, fmt)
        write_result(result, tmp_path / "w" / name, fmt)
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["g.pkl", "m.npz", "n.npz"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "x.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as fh:
        fh.write(b"partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_save_without_npz_suffix_writes_exact_path(result, tmp_path):
    path = save_result(result, tmp_path / "clip.result")
    assert path.exists() and not (tmp_path / "clip.result.npz").exists()
    assert_results_equal(load_result(path), result)


# --------------------------------------------------------------------------- mjlab


def test_mjlab_npz_layout(result, tmp_path):
    write_mjlab_npz(result, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    assert set(a) == {
        "fps",
        "joint_pos",
        "joint_vel",
        "body_pos_w",
        "body_quat_w",
        "body_lin_vel_w",
        "body_ang_vel_w",
        "joint_names",
        "body_names",
    }
    assert a["fps"].shape == (1,) and a["fps"][0] == FPS
    assert a["joint_pos"].shape == a["joint_vel"].shape == (T, N)
    for key in ("body_pos_w", "body_lin_vel_w", "body_ang_vel_w"):
        assert a[key].shape == (T, B, 3), key
    assert a["body_quat_w"].shape == (T, B, 4)
    np.testing.assert_allclose(a["body_quat_w"], result.body_quat_w, atol=1e-6)  # wxyz kept
    assert a["joint_names"].dtype.kind == "U" and tuple(a["joint_names"]) == result.dof_names
    assert tuple(a["body_names"]) == result.body_names
    assert all(v.dtype != object for v in a.values())


def _trajectory_result(result, body_pos, body_quat, dof_pos) -> RetargetingResult:
    return dataclasses.replace(
        result,
        body_pos_w=body_pos,
        body_quat_w=body_quat,
        dof_pos=dof_pos,
        target_pos_w=None,
        target_body_names=(),
    )


def test_mjlab_velocities_on_analytic_trajectories(result, tmp_path):
    rng = np.random.default_rng(1)
    t = np.arange(T) / FPS
    v = rng.normal(size=(B, 3))  # constant linear velocity per body
    p0 = rng.normal(size=(B, 3)) * 5.0
    body_pos = p0 + t[:, None, None] * v
    axis = rng.normal(size=(B, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    omega = axis * rng.uniform(0.5, 3.0, size=(B, 1))  # rad/s, world frame
    q0 = _random_quats(rng, (B,))
    body_quat = quat_mul(quat_exp(t[:, None, None] * omega), q0)  # q(t) = exp(omega t) q0
    body_quat[1::2] *= -1.0  # hemisphere flips between frames must not matter
    qd = rng.normal(size=N)
    dof_pos = rng.normal(size=N) + t[:, None] * qd
    r = _trajectory_result(result, body_pos, body_quat, dof_pos)
    write_mjlab_npz(r, tmp_path / "m.npz", dtype=np.float64)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        np.testing.assert_allclose(z["body_lin_vel_w"], np.broadcast_to(v, (T, B, 3)), atol=1e-6)
        np.testing.assert_allclose(z["body_ang_vel_w"], np.broadcast_to(omega, (T, B, 3)), atol=1e-6)
        np.testing.assert_allclose(z["joint_vel"], np.broadcast_to(qd, (T, N)), atol=1e-6)
    # Default float32 output stays within tolerance too.
    write_mjlab_npz(r, tmp_path / "m32.npz")
    with np.load(tmp_path / "m32.npz", allow_pickle=False) as z:
        assert z["body_ang_vel_w"].dtype == np.float32
        np.testing.assert_allclose(z["body_ang_vel_w"], np.broadcast_to(omega, (T, B, 3)), atol=1e-6)


def test_mjlab_unit_yaw_rate(result, tmp_path):
    t = np.arange(T) / FPS
    z_axis = np.broadcast_to([0.0, 0.0, 1.0], (T, 3))
    q = axis_angle_to_quat(z_axis, t)  # 1 rad/s about world z
    body_quat = np.repeat(q[:, None], B, axis=1)
    r = _trajectory_result(result, np.zeros((T, B, 3)), body_quat, np.zeros((T, N)))
    write_mjlab_npz(r, tmp_path / "m.npz", dtype=np.float64)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        np.testing.assert_allclose(z["body_ang_vel_w"], np.broadcast_to([0, 0, 1.0], (T, B, 3)), atol=1e-6)
        np.testing.assert_allclose(z["body_lin_vel_w"], 0.0, atol=1e-12)


def test_mjlab_single_frame_has_zero_velocity(result, tmp_path):
    r = dataclasses.replace(
        result,
        root_pos=result.root_pos[:1],
        root_quat_wxyz=result.root_quat_wxyz[:1],
        dof_pos=result.dof_pos[:1],
        body_pos_w=result.body_pos_w[:1],
        body_quat_w=result.body_quat_w[:1],
        target_pos_w=None,
        target_body_names=(),
    )
    write_mjlab_npz(r, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert z["joint_vel"].shape == (1, N) and not z["body_ang_vel_w"].any()


# --------------------------------------------------------------------------- GMR pkl


def test_gmr_pkl_layout_and_xyzw(result, tmp_path):
    a = 0.7
    known = np.array([np.cos(a / 2), 0.0, 0.0, np.sin(a / 2)])  # wxyz, yaw a
    root_quat = result.root_quat_wxyz.copy()
    root_quat[0] = known
    r = dataclasses.replace(result, root_quat_wxyz=root_quat)
    path = write_gmr_pkl(r, tmp_path / "g.pkl")
    raw = path.read_bytes()
    assert raw[:2] == b"\x80\x04"  # protocol 4
    data = pickle.loads(raw)
    assert type(data) is dict
    assert set(data) == {
        "fps",
        "root_pos",
        "root_rot",
        "dof_pos",
        "local_body_pos",
        "link_body_list",
    }
    assert type(data["fps"]) is float and data["fps"] == FPS
    assert type(data["link_body_list"]) is list and data["link_body_list"] == list(r.body_names)
    assert all(type(s) is str for s in data["link_body_list"])
    for key in ("root_pos", "root_rot", "dof_pos", "local_body_pos"):
        assert type(data[key]) is np.ndarray and data[key].dtype == np.float64, key
    np.testing.assert_allclose(data["root_rot"][0], [0.0, 0.0, np.sin(a / 2), np.cos(a / 2)])
    np.testing.assert_allclose(data["root_rot"], r.root_quat_wxyz[:, [1, 2, 3, 0]])
    np.testing.assert_array_equal(data["root_pos"], r.root_pos)
    np.testing.assert_array_equal(data["dof_pos"], r.dof_pos)
    R = quat_to_mat(r.root_quat_wxyz)  # (T, 3, 3), body -> world
    expected = np.einsum("tji,tbj->tbi", R, r.body_pos_w - r.root_pos[:, None])
    np.testing.assert_allclose(data["local_body_pos"], expected, atol=1e-12)
    np.testing.assert_allclose(data["local_body_pos"][:, 0], 0.0, atol=1e-12)  # pelvis = root


def test_gmr_local_body_pos_quarter_turn(result, tmp_path):
    yaw90 = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])
    root_pos = np.tile([1.0, 2.0, 0.8], (T, 1))
    body_pos = np.repeat(root_pos[:, None], B, axis=1).copy()
    body_pos[:, 1] += [0.0, 1.0, 0.0]  # +y in the world is +x in a root yawed by 90 deg
    body_pos[:, 2] += [0.0, 0.0, -0.5]
    r = dataclasses.replace(result, root_pos=root_pos, root_quat_wxyz=np.tile(yaw90, (T, 1)), body_pos_w=body_pos)
    data = restricted_load(write_gmr_pkl(r, tmp_path / "g.pkl"))
    np.testing.assert_allclose(data["local_body_pos"][:, 1], np.tile([1.0, 0, 0], (T, 1)), atol=1e-12)
    np.testing.assert_allclose(data["local_body_pos"][:, 2], np.tile([0, 0, -0.5], (T, 1)), atol=1e-12)


def test_gmr_pkl_loads_with_restricted_unpickler(result, tmp_path):
    path = write_gmr_pkl(result, tmp_path / "g.pkl")
    with open(path, "rb") as fh:
        expected = pickle.load(fh)
    for got in (restricted_load(path), restricted_load(str(path))):
        assert set(got) == set(expected)
        for key, value in expected.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(got[key], value, strict=True)
            else:
                assert got[key] == value
    with open(path, "rb") as fh:  # a binary handle works too
        assert restricted_load(fh)["fps"] == FPS


# --------------------------------------------------------------------------- restricted unpickler


class _Evil:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_restricted_load_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"fps": 30.0, "x": _Evil(f"touch {marker}")}, protocol=4))
    with pytest.raises(MotionFormatError, match=r"refusing to load class (posix|nt|os)\.system"):
        restricted_load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "name"),
    [
        # Not dangerous, but not on the allowlist: refused on purpose (auditable allowlist).
        (collections.OrderedDict(a=1), "collections.OrderedDict"),
        (_Evil("true"), "system"),
        (zipfile.ZipInfo("x"), "zipfile.ZipInfo"),
    ],
)
def test_restricted_load_refuses_other_classes(payload, name):
    with pytest.raises(MotionFormatError, match=f"refusing to load class .*{name}"):
        restricted_loads(pickle.dumps(payload, protocol=4))


@pytest.mark.parametrize(
    "global_name",
    [
        "builtins\neval",
        "builtins\ngetattr",
        "builtins\n__import__",
        "builtins\nexec",
        "subprocess\ncheck_output",
        "numpy\nload",
    ],
)
def test_restricted_load_refuses_dangerous_builtins(global_name):
    # protocol-0 GLOBAL opcode followed by a call: c<module>\n<name>\n (S'1+1'\n tR.
    data = b"c" + global_name.encode() + b"\n(S'1+1'\ntR."
    with pytest.raises(MotionFormatError, match="refusing to load class"):
        restricted_loads(data)


def test_restricted_load_refuses_non_latin1_codecs():
    payload = b"c_codecs\nencode\n(S'x'\nS'zlib_codec'\ntR."
    with pytest.raises(MotionFormatError, match="latin1"):
        restricted_loads(payload)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_load_numpy_all_protocols(protocol):
    data = {
        "a": np.arange(12.0).reshape(3, 4),
        "f32": np.ones((2, 2), dtype=np.float32),
        "s": np.array(["pelvis", "torso"]),
        "i": np.int64(7),
        "x": np.float64(0.5),
        "t": (
            1,
            2.0,
            "three",
            b"four",
            None,
            True,
            {1, 2},
            frozenset({3}),
            bytearray(b"z"),
            complex(1, 2),
        ),
        "nested": [{"k": [1, 2]}],
    }
    got = restricted_loads(pickle.dumps(data, protocol=protocol))
    assert got.keys() == data.keys()
    np.testing.assert_array_equal(got["a"], data["a"], strict=True)
    np.testing.assert_array_equal(got["f32"], data["f32"], strict=True)
    np.testing.assert_array_equal(got["s"], data["s"], strict=True)
    assert got["i"] == 7 and type(got["i"]) is np.int64
    assert got["x"] == 0.5 and type(got["x"]) is np.float64
    assert got["t"] == data["t"] and got["nested"] == data["nested"]


def test_restricted_load_truncated_and_garbage(result, tmp_path):
    raw = pickle.dumps(np.arange(100.0), protocol=4)
    with pytest.raises(MotionFormatError, match="malformed or truncated pickle"):
        restricted_loads(raw[: len(raw) // 2])
    path = tmp_path / "trunc.pkl"
    path.write_bytes(write_gmr_pkl(result, tmp_path / "g.pkl").read_bytes()[:-5])
    with pytest.raises(MotionFormatError, match="trunc.pkl: malformed or truncated"):
        restricted_load(path)
    with pytest.raises(MotionFormatError, match="<stream>"):
        restricted_load(io.BytesIO(b"\x80\x04garbage"))
    with pytest.raises(MotionFormatError):
        restricted_loads(b"")


# --------------------------------------------------------------------------- dispatch


def test_write_result_dispatch(result, tmp_path):
    assert set(WRITERS) == {"npz", "mjlab_npz", "gmr_pkl"}
    assert_results_equal(load_result(write_result(result, tmp_path / "a.npz", "npz")), result)
    with np.load(write_result(result, tmp_path / "b.npz", "mjlab_npz"), allow_pickle=False) as z:
        assert "joint_vel" in z.files
    assert restricted_load(write_result(result, tmp_path / "c.pkl", "gmr_pkl"))["fps"] == FPS
    with pytest.raises(UnknownNameError, match="output format 'bvh' not found; valid: gmr_pkl, mjlab_npz, npz"):
        write_result(result, tmp_path / "d.bvh", "bvh")
    assert not (tmp_path / "d.bvh").exists()


def test_every_output_format_of_the_registry_has_a_writer():
    from retarget_jax.formats import OUTPUT_FORMATS, output_format_of, output_suffix
    from retarget_jax.io import WRITERS

    assert set(WRITERS) == set(OUTPUT_FORMATS)
    for fmt in OUTPUT_FORMATS:  # a file named with a format's suffix asks for that format
        assert output_format_of("walk" + output_suffix(fmt)) == fmt
