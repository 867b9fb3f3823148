"""Robot-space inputs (GMR pkl, mjlab npz, BONES-SEED CSV) read into RetargetingResult.

Round trips go through the package's own writers from a random in-range G1 trajectory;
body poses are compared with MuJoCo C forward kinematics computed here (``mj_forward``).
The SEED CSVs are written by the tests from known trajectories (quaternion -> extrinsic
XYZ Euler degrees, metres -> centimetres, radians -> degrees).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pickle

import mujoco
import numpy as np
import pytest

from retarget_jax.errors import MotionFormatError, UnknownNameError
from retarget_jax.io import (
    ROBOT_MOTION_READERS,
    load_result,
    read_gmr_pkl,
    read_mjlab_npz,
    read_robot_motion,
    read_seed_csv,
    save_result,
    write_gmr_pkl,
    write_mjlab_npz,
)
from retarget_jax.io.readers import SEED_ROOT_COLUMNS, seed_euler_to_quat
from retarget_jax.result import RetargetingResult, SolveStatus
from retarget_jax.rotations import quat_to_mat

T = 15
FPS = 30.0


# --------------------------------------------------------------------------- fixtures


def mujoco_fk(robot, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, B, 3), (T, B, 4) world body poses from MuJoCo C (world body dropped)."""
    m = robot.mj_model
    d = mujoco.MjData(m)
    pos, quat = [], []
    for q in qpos:
        d.qpos[:] = q
        mujoco.mj_forward(m, d)
        pos.append(d.xpos[1:].copy())
        quat.append(d.xquat[1:].copy())
    return np.array(pos), np.array(quat)


def random_trajectory(robot, seed: int = 0, frames: int = T) -> RetargetingResult:
    """Random root poses and joint angles inside the MJCF ranges, with FK body poses."""
    rng = np.random.default_rng(seed)
    root_pos = rng.uniform([-1.5, -1.5, 0.5], [1.5, 1.5, 1.0], size=(frames, 3))
    q = rng.normal(size=(frames, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    lo, hi = robot.dof_ranges.T
    dof = rng.uniform(lo, hi, size=(frames, robot.num_dof))
    body_pos, body_quat = mujoco_fk(robot, np.concatenate([root_pos, q, dof], axis=1))
    return RetargetingResult(
        fps=FPS,
        root_pos=root_pos,
        root_quat_wxyz=q,
        dof_pos=dof,
        dof_names=robot.dof_names,
        body_names=robot.body_names,
        body_pos_w=body_pos,
        body_quat_w=body_quat,
        status=SolveStatus.MAX_ITERATIONS,
        final_cost=0.5,
        iterations=7,
        robot=robot.name,
    )


@pytest.fixture(scope="module")
def traj(g1) -> RetargetingResult:
    return random_trajectory(g1)


def same_quat(a: np.ndarray, b: np.ndarray, atol: float) -> None:
    """Equal up to the sign of each quaternion (q and -q are the same rotation)."""
    sign = np.where(np.sum(a * b, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    np.testing.assert_allclose(a, sign * b, atol=atol)


def check_read(res: RetargetingResult, robot, ref: RetargetingResult, fmt: str, path, atol: float = 1e-6) -> None:
    """qpos equal to ``ref`` (atol), body poses equal to MuJoCo FK, fields of a non-solve."""
    assert res.num_frames == ref.num_frames
    np.testing.assert_allclose(res.root_pos, ref.root_pos, atol=atol)
    same_quat(res.root_quat_wxyz, ref.root_quat_wxyz, atol)
    np.testing.assert_allclose(res.dof_pos, ref.dof_pos, atol=atol)
    np.testing.assert_allclose(np.linalg.norm(res.root_quat_wxyz, axis=-1), 1.0, atol=1e-12)
    pos, quat = mujoco_fk(robot, res.qpos)
    np.testing.assert_allclose(res.body_pos_w, pos, atol=1e-12)
    same_quat(res.body_quat_w, quat, 1e-12)
    # ... and equal to FK of the reference trajectory.
    np.testing.assert_allclose(res.body_pos_w, ref.body_pos_w, atol=10 * atol)
    same_quat(res.body_quat_w, ref.body_quat_w, 10 * atol)
    assert res.dof_names == robot.dof_names and res.body_names == robot.body_names
    assert res.status == SolveStatus.CONVERGED and res.ok
    assert math.isnan(res.final_cost) and res.iterations == 0
    assert res.robot == robot.name
    assert res.target_pos_w is None and res.target_body_names == ()
    assert res.provenance["source_path"] == str(path)
    assert res.provenance["source_format"] == fmt
    assert res.provenance["solved"] is False
    json.dumps(res.provenance, allow_nan=False)  # JSON-able


def expect_error(fn, path, field: str | None, match: str, line: int | None = None):
    with pytest.raises(MotionFormatError, match=match) as ei:
        fn()
    err = ei.value
    assert err.path == str(path), err
    assert str(path) in str(err)
    if field is not None:
        assert err.field == field, err
        assert f"field '{field}'" in str(err)
    if line is not None:
        assert err.line == line, err
        assert f"line {line}" in str(err)
    return err


# --------------------------------------------------------------------------- GMR pkl


def test_gmr_round_trip(g1, traj, tmp_path):
    path = write_gmr_pkl(traj, tmp_path / "clip.pkl")
    res = read_gmr_pkl(path, g1)
    check_read(res, g1, traj, "gmr_pkl", path)
    assert res.fps == FPS
    assert res.provenance["local_body_pos_max_err_m"] < 1e-9
    # Same through the dispatcher, with the robot given by name.
    res2 = read_robot_motion(path, "gmr_pkl", "unitree_g1")
    np.testing.assert_array_equal(res2.qpos, res.qpos)


def test_gmr_xyzw_is_converted(g1, traj, tmp_path):
    a = 0.9  # yaw about z: xyzw (0, 0, sin a/2, cos a/2)
    root_quat = traj.root_quat_wxyz.copy()
    root_quat[:] = [math.cos(a / 2), 0.0, 0.0, math.sin(a / 2)]
    r = dataclasses.replace(traj, root_quat_wxyz=root_quat)
    r = dataclasses.replace(r, body_pos_w=mujoco_fk(g1, r.qpos)[0])
    path = write_gmr_pkl(r, tmp_path / "yaw.pkl")
    assert np.allclose(pickle.loads(path.read_bytes())["root_rot"][0], [0, 0, math.sin(a / 2), math.cos(a / 2)])
    res = read_gmr_pkl(path, g1)
    np.testing.assert_allclose(
        res.root_quat_wxyz, np.tile([math.cos(a / 2), 0, 0, math.sin(a / 2)], (T, 1)), atol=1e-12
    )
    # The pelvis frame's x axis is the world x axis yawed by a.
    pelvis = g1.body_names.index("pelvis")
    R = quat_to_mat(res.body_quat_w[:, pelvis])
    np.testing.assert_allclose(R[:, :, 0], np.tile([math.cos(a), math.sin(a), 0], (T, 1)), atol=1e-12)


def test_gmr_minimal_dict_as_gmr_writes_it(g1, traj, tmp_path):
    """GMR stores None for local_body_pos / link_body_list; an int fps; plain lists load too."""
    data = {
        "fps": 30,
        "root_pos": traj.root_pos.tolist(),
        "root_rot": traj.root_quat_wxyz[:, [1, 2, 3, 0]].astype(np.float32),
        "dof_pos": traj.dof_pos,
        "local_body_pos": None,
        "link_body_list": None,
    }
    path = tmp_path / "gmr.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    res = read_gmr_pkl(path, g1)
    check_read(res, g1, traj, "gmr_pkl", path, atol=1e-6)
    assert res.fps == 30.0 and type(res.fps) is float


def test_gmr_extra_bodies_of_gmr_models_are_skipped(g1, traj, tmp_path):
    data = pickle.loads(write_gmr_pkl(traj, tmp_path / "g.pkl").read_bytes())
    data["link_body_list"] = data["link_body_list"] + ["left_toe_link", "imu_in_torso"]
    data["local_body_pos"] = np.concatenate([data["local_body_pos"], np.ones((T, 2, 3))], axis=1)
    path = tmp_path / "extra.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    res = read_gmr_pkl(path, g1)
    check_read(res, g1, traj, "gmr_pkl", path)
    assert res.provenance["link_bodies_skipped"] == ["left_toe_link", "imu_in_torso"]
    assert res.provenance["link_bodies_on_robot"] == len(g1.body_names)


def _gmr_variant(traj, tmp_path, name, mutate):
    data = pickle.loads(write_gmr_pkl(traj, tmp_path / "base.pkl").read_bytes())
    mutate(data)
    path = tmp_path / name
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def _del(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value(d) if callable(value) else value)


def _nan_at(key, index):
    def mutate(d):
        d[key] = d[key].copy()
        d[key][index] = np.nan

    return mutate


@pytest.mark.parametrize(
    ("mutate", "field", "match"),
    [
        (_del("dof_pos"), "dof_pos", "missing required key"),
        (_del("fps"), "fps", "missing required key"),
        (
            _set("root_rot", lambda d: d["root_rot"][:, :3]),
            "root_rot",
            r"expected shape \(T, 4\) xyzw = \(15, 4\).*found \(15, 3\)",
        ),
        (
            _set("root_pos", lambda d: d["root_pos"][:, None]),
            "root_pos",
            r"expected shape \(T, 3\), found \(15, 1, 3\)",
        ),
        (_set("root_pos", np.zeros((0, 3))), "root_pos", "at least one frame"),
        (_set("root_rot", lambda d: d["root_rot"][:-2]), "root_rot", r"found \(13, 4\)"),
        (_nan_at("root_pos", (4, 1)), "root_pos", "finite values, found nan at frame 4"),
        (
            _set("dof_pos", lambda d: np.where(np.arange(29) == 3, np.inf, d["dof_pos"])),
            "dof_pos",
            "found inf at frame 0",
        ),
        (
            _set("root_rot", lambda d: 2.0 * d["root_rot"]),
            "root_rot",
            "expected unit quaternions, found norm 2",
        ),
        (_set("fps", -30.0), "fps", "finite fps > 0"),
        (_set("fps", "30"), "fps", "expected one number"),
        (
            _set("dof_pos", lambda d: d["dof_pos"].astype(str)),
            "dof_pos",
            "expected a numeric array",
        ),
        (
            _set("local_body_pos", lambda d: d["local_body_pos"][:, :-1]),
            "local_body_pos",
            r"expected shape \(T, L, 3\)",
        ),
        (_set("link_body_list", [1, 2]), "link_body_list", "expected names"),
        (
            _set("link_body_list", lambda d: [f"h1_{b}" for b in d["link_body_list"]]),
            "link_body_list",
            "names none of robot unitree_g1's bodies",
        ),
    ],
)
def test_gmr_malformed(g1, traj, tmp_path, mutate, field, match):
    path = _gmr_variant(traj, tmp_path, "bad.pkl", mutate)
    expect_error(lambda: read_gmr_pkl(path, g1), path, field, match)


def test_gmr_wrong_robot_dof_count(g1, traj, tmp_path):
    path = _gmr_variant(traj, tmp_path, "h1.pkl", _set("dof_pos", lambda d: d["dof_pos"][:, :23]))
    err = expect_error(
        lambda: read_gmr_pkl(path, g1),
        path,
        "dof_pos",
        r"expected 29 joint values per frame \(robot unitree_g1\), found 23",
    )
    assert "another robot" in str(err)


def test_gmr_permuted_joints_fail_the_fk_check(g1, traj, tmp_path):
    """Same DoF count, other joint order: local_body_pos no longer matches FK."""
    perm = np.arange(29)
    perm[[0, 6]] = perm[[6, 0]]  # swap left / right hip pitch
    path = _gmr_variant(traj, tmp_path, "perm.pkl", _set("dof_pos", lambda d: d["dof_pos"][:, perm]))
    expect_error(
        lambda: read_gmr_pkl(path, g1),
        path,
        "local_body_pos",
        "disagrees with robot unitree_g1's forward kinematics",
    )


def test_gmr_not_a_dict_empty_truncated(g1, traj, tmp_path):
    p = tmp_path / "list.pkl"
    p.write_bytes(pickle.dumps([1, 2, 3]))
    expect_error(lambda: read_gmr_pkl(p, g1), p, None, "expected a dict of motion arrays, found list")
    p = tmp_path / "empty.pkl"
    p.write_bytes(b"")
    expect_error(lambda: read_gmr_pkl(p, g1), p, None, "empty file")
    p = tmp_path / "trunc.pkl"
    p.write_bytes(write_gmr_pkl(traj, tmp_path / "g.pkl").read_bytes()[:-40])
    expect_error(lambda: read_gmr_pkl(p, g1), p, None, "malformed or truncated pickle")
    with pytest.raises(FileNotFoundError):
        read_gmr_pkl(tmp_path / "missing.pkl", g1)


class _Evil:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_gmr_malicious_pickle_is_refused_not_run(g1, traj, tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.loads(write_gmr_pkl(traj, tmp_path / "g.pkl").read_bytes())
    data["fps"] = _Evil(f"touch {marker}")
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    expect_error(lambda: read_gmr_pkl(path, g1), path, None, r"refusing to load class (posix|nt|os)\.system")
    assert not marker.exists()


# --------------------------------------------------------------------------- mjlab npz


def test_mjlab_round_trip_float64(g1, traj, tmp_path):
    path = write_mjlab_npz(traj, tmp_path / "clip.npz", dtype=np.float64)
    res = read_mjlab_npz(path, g1)
    check_read(res, g1, traj, "mjlab_npz", path)
    assert res.fps == FPS
    assert res.provenance["joint_order"] == "by_name" and res.provenance["body_match"] == "by_name"
    assert res.provenance["fk_max_pos_err_m"] < 1e-9


def test_mjlab_round_trip_float32_default(g1, traj, tmp_path):
    path = write_mjlab_npz(traj, tmp_path / "clip32.npz")
    with np.load(path, allow_pickle=False) as z:
        assert z["joint_pos"].dtype == np.float32
    res = read_robot_motion(path, "mjlab_npz", g1)
    check_read(res, g1, traj, "mjlab_npz", path, atol=1e-6)


def _rewrite(src, dst, *, drop=(), replace=None):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k not in drop}
    for k, v in (replace or {}).items():
        arrays[k] = v(arrays) if callable(v) else v
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)
    return dst


def test_mjlab_without_names_assumes_mjcf_order(g1, traj, tmp_path):
    src = write_mjlab_npz(traj, tmp_path / "m.npz", dtype=np.float64)
    path = _rewrite(
        src,
        tmp_path / "plain.npz",
        drop=("joint_names", "body_names"),
        replace={"fps": np.array(30, dtype=np.int32)},
    )
    res = read_mjlab_npz(path, g1)
    check_read(res, g1, traj, "mjlab_npz", path)
    assert res.provenance["joint_order"] == "assumed_mjcf"


def test_mjlab_joint_names_in_another_order_are_matched(g1, traj, tmp_path):
    src = write_mjlab_npz(traj, tmp_path / "m.npz", dtype=np.float64)
    perm = np.random.default_rng(3).permutation(29)
    names = np.array(g1.dof_names)[perm]
    path = _rewrite(
        src,
        tmp_path / "perm.npz",
        replace={
            "joint_names": names,
            "joint_pos": lambda a: a["joint_pos"][:, perm],
            "joint_vel": lambda a: a["joint_vel"][:, perm],
        },
    )
    check_read(read_mjlab_npz(path, g1), g1, traj, "mjlab_npz", path)


def test_mjlab_subset_of_bodies_by_name(g1, traj, tmp_path):
    src = write_mjlab_npz(traj, tmp_path / "m.npz", dtype=np.float64)
    keep = [0, 6, 12, 15, 22, 29]  # pelvis, feet, torso, hands
    path = _rewrite(
        src,
        tmp_path / "sub.npz",
        replace={
            k: (lambda key: lambda a: a[key][:, keep])(k)
            for k in ("body_pos_w", "body_quat_w", "body_lin_vel_w", "body_ang_vel_w")
        }
        | {"body_names": np.array(g1.body_names)[keep]},
    )
    res = read_mjlab_npz(path, g1)
    check_read(res, g1, traj, "mjlab_npz", path)
    assert res.body_pos_w.shape == (T, 30, 3) and res.provenance["bodies_checked"] == 6


@pytest.mark.parametrize(
    ("replace", "drop", "field", "match"),
    [
        ({}, ("body_quat_w",), "body_quat_w", "missing required key"),
        ({}, ("joint_vel",), "joint_vel", "missing required key"),
        (
            {"body_pos_w": lambda a: a["body_pos_w"][:-1]},
            (),
            "body_pos_w",
            r"expected shape \(T, B, 3\) = \(15, 30, 3\) \(T=15\), found \(14, 30, 3\)",
        ),
        (
            {"body_quat_w": lambda a: a["body_quat_w"][..., :3]},
            (),
            "body_quat_w",
            r"expected shape \(T, B, 4\)",
        ),
        (
            {"body_ang_vel_w": lambda a: a["body_ang_vel_w"][:, :5]},
            (),
            "body_ang_vel_w",
            r"found \(15, 5, 3\)",
        ),
        (
            {"joint_vel": lambda a: a["joint_vel"][:, :4]},
            (),
            "joint_vel",
            r"expected shape \(T, n\)",
        ),
        (
            {"body_lin_vel_w": lambda a: np.where(np.arange(15)[:, None, None] == 9, np.nan, a["body_lin_vel_w"])},
            (),
            "body_lin_vel_w",
            "found nan at frame 9",
        ),
        (
            {"joint_pos": lambda a: np.where(np.arange(15)[:, None] == 2, np.inf, a["joint_pos"])},
            (),
            "joint_pos",
            "found inf at frame 2",
        ),
        ({"fps": np.array([0.0])}, (), "fps", "finite fps > 0"),
        ({"fps": np.array([30.0, 60.0])}, (), "fps", "expected one number"),
        (
            {"joint_pos": lambda a: a["joint_pos"][:, 0]},
            (),
            "joint_pos",
            r"expected shape \(T, n\), found \(15,\)",
        ),
        (
            {"body_quat_w": lambda a: a["body_quat_w"] * 0.5},
            (),
            "body_quat_w",
            "expected unit quaternions",
        ),
        (
            {"body_names": lambda a: a["body_names"][::-1]},
            (),
            "body_names",
            "expected body 0 to be the floating base 'pelvis', found 'right_wrist_yaw_link'",
        ),
        (
            {"body_names": lambda a: np.array(["pelvis"] + [f"x{i}" for i in range(29)])},
            (),
            "body_names",
            "found 29 it does not have",
        ),
        (
            {"body_names": lambda a: a["body_names"][:5]},
            (),
            "body_names",
            "expected 30 names, one per body",
        ),
        (
            {"joint_names": lambda a: np.array([n.replace("waist", "torso") for n in a["joint_names"]])},
            (),
            "joint_names",
            r"missing \['waist_yaw_joint'",
        ),
    ],
)
def test_mjlab_malformed(g1, traj, tmp_path, replace, drop, field, match):
    src = write_mjlab_npz(traj, tmp_path / "m.npz", dtype=np.float64)
    path = _rewrite(src, tmp_path / "bad.npz", drop=drop, replace=replace)
    expect_error(lambda: read_mjlab_npz(path, g1), path, field, match)


def test_mjlab_wrong_robot_dof_count(g1, traj, tmp_path):
    src = write_mjlab_npz(traj, tmp_path / "m.npz")
    # With joint names: 23 names, 6 of the robot's joints missing.
    path = _rewrite(
        src,
        tmp_path / "g1_23.npz",
        replace={
            "joint_names": lambda a: a["joint_names"][:23],
            "joint_pos": lambda a: a["joint_pos"][:, :23],
            "joint_vel": lambda a: a["joint_vel"][:, :23],
        },
    )
    expect_error(
        lambda: read_mjlab_npz(path, g1),
        path,
        "joint_names",
        r"expected the 29 joints of robot unitree_g1, found 23 names; missing",
    )
    # Without names: the count alone.
    path = _rewrite(path, tmp_path / "g1_23_plain.npz", drop=("joint_names", "body_names"))
    expect_error(
        lambda: read_mjlab_npz(path, g1),
        path,
        "joint_pos",
        "expected 29 joint values per frame .robot unitree_g1., found 23",
    )


def test_mjlab_body_count_without_names(g1, traj, tmp_path):
    src = write_mjlab_npz(traj, tmp_path / "m.npz")
    path = _rewrite(
        src,
        tmp_path / "b.npz",
        drop=("body_names",),
        replace={
            k: (lambda key: lambda a: a[key][:, :14])(k)
            for k in ("body_pos_w", "body_quat_w", "body_lin_vel_w", "body_ang_vel_w")
        },
    )
    expect_error(
        lambda: read_mjlab_npz(path, g1),
        path,
        "body_pos_w",
        "expected 30 bodies .robot unitree_g1, MJCF order. since the file has no body_names, found 14",
    )


def test_mjlab_body_poses_must_agree_with_fk(g1, traj, tmp_path):
    src = write_mjlab_npz(traj, tmp_path / "m.npz")
    # Joint columns in another order (no names to fix it): the stored bodies disagree.
    perm = np.arange(29)
    perm[[3, 9]] = perm[[9, 3]]  # left / right knee
    path = _rewrite(
        src,
        tmp_path / "perm.npz",
        drop=("joint_names",),
        replace={"joint_pos": lambda a: a["joint_pos"][:, perm]},
    )
    err = expect_error(
        lambda: read_mjlab_npz(path, g1),
        path,
        "body_pos_w",
        "disagrees with robot unitree_g1's forward kinematics",
    )
    assert "knee" in str(err) or "ankle" in str(err)
    # Another robot's link lengths: bodies 2 cm off.
    shifted = tmp_path / "shifted.npz"
    _rewrite(
        src,
        shifted,
        replace={
            "body_pos_w": lambda a: (
                a["body_pos_w"] + np.where((np.arange(30)[:, None] == 4) & (np.arange(3) == 0), 0.02, 0.0)
            )
        },
    )
    expect_error(
        lambda: read_mjlab_npz(shifted, g1),
        shifted,
        "body_pos_w",
        r"body 'left_knee_link' at frame \d+ is off by 0.02 m \(tolerance 0.005 m\)",
    )

    # Orientation only: a body turned by 0.1 rad about its own z.
    def turn(a):
        q = a["body_quat_w"].copy()
        dq = np.array([math.cos(0.05), 0, 0, math.sin(0.05)])
        w, v = q[:, 20, :1].copy(), q[:, 20, 1:].copy()
        q[:, 20, 0] = w[:, 0] * dq[0] - v[:, 2] * dq[3]
        q[:, 20, 1:] = w * dq[1:] + dq[0] * v + np.cross(v, dq[1:])
        return q

    turned = _rewrite(src, tmp_path / "turned.npz", replace={"body_quat_w": turn})
    expect_error(
        lambda: read_mjlab_npz(turned, g1),
        turned,
        "body_quat_w",
        r"body 'left_wrist_roll_link' at frame \d+ is off by 0.1 rad",
    )
    # A looser tolerance accepts it.
    read_mjlab_npz(turned, g1, rot_tol=0.2)


def test_mjlab_pickled_empty_corrupt(g1, traj, tmp_path):
    src = write_mjlab_npz(traj, tmp_path / "m.npz")
    path = _rewrite(
        src,
        tmp_path / "obj.npz",
        replace={"joint_names": np.array(list(g1.dof_names), dtype=object)},
    )
    expect_error(lambda: read_mjlab_npz(path, g1), path, "joint_names", "object arrays are not allowed")
    p = tmp_path / "empty.npz"
    p.write_bytes(b"")
    expect_error(lambda: read_mjlab_npz(p, g1), p, None, "empty file")
    p = tmp_path / "trunc.npz"
    p.write_bytes(src.read_bytes()[:300])
    expect_error(lambda: read_mjlab_npz(p, g1), p, None, "not a readable npz archive")


# --------------------------------------------------------------------------- SEED csv


def quat_to_extrinsic_xyz(q_wxyz: np.ndarray) -> np.ndarray:
    """(T, 4) wxyz -> (T, 3) angles [x, y, z] with R = Rz(z) Ry(y) Rx(x), radians."""
    R = quat_to_mat(q_wxyz)
    x = np.arctan2(R[:, 2, 1], R[:, 2, 2])
    y = np.arcsin(np.clip(-R[:, 2, 0], -1.0, 1.0))
    z = np.arctan2(R[:, 1, 0], R[:, 0, 0])
    return np.stack([x, y, z], axis=-1)


def seed_rows(traj: RetargetingResult, columns: list[str] | None = None, first: int = 0):
    robot_cols = columns or [f"{j}_dof" for j in traj.dof_names]
    header = list(SEED_ROOT_COLUMNS) + robot_cols
    euler = np.rad2deg(quat_to_extrinsic_xyz(traj.root_quat_wxyz))
    rows = []
    for t in range(traj.num_frames):
        vals = [*(traj.root_pos[t] * 100.0), *euler[t], *np.rad2deg(traj.dof_pos[t])]
        rows.append([str(first + t)] + [repr(float(v)) for v in vals])
    return header, rows


def write_seed(path, header, rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_seed_round_trip(g1, traj, tmp_path):
    path = tmp_path / "walk__A001.csv"
    write_seed(path, *seed_rows(traj))
    res = read_seed_csv(path, g1)
    check_read(res, g1, traj, "seed_csv", path, atol=1e-9)
    assert res.fps == 120.0
    assert res.provenance["joint_column_naming"] == "<joint>_dof"
    assert res.provenance["ignored_columns"] == []
    assert read_seed_csv(path, g1, fps=30).fps == 30.0
    # Saved in our own result format and back: NaN final_cost, JSON provenance, all fine.
    back = load_result(save_result(res, tmp_path / "r.npz"))
    np.testing.assert_array_equal(back.qpos, res.qpos)
    assert back.provenance["solved"] is False and math.isnan(back.final_cost)


def test_seed_columns_by_name_short_spelling_and_extras(g1, traj, tmp_path):
    """Columns are matched by name: any order, '<joint minus _joint>_dof' too, extras ignored."""
    short = [f"{j.removesuffix('_joint')}_dof" for j in g1.dof_names]
    header, rows = seed_rows(traj, columns=short, first=1)
    perm = [0, 1, 2, 3, 4, 5, 6] + list(7 + np.random.default_rng(1).permutation(29))
    header = [header[i] for i in perm] + ["comment"]
    rows = [[r[i] for i in perm] + ["x"] for r in rows]
    path = tmp_path / "short.csv"
    write_seed(path, header, rows)
    res = read_seed_csv(path, g1)
    check_read(res, g1, traj, "seed_csv", path, atol=1e-9)
    assert res.provenance["joint_column_naming"] == "<joint minus _joint>_dof"
    assert res.provenance["ignored_columns"] == ["comment"]
    assert res.provenance["first_frame_index"] == 1


def test_seed_euler_convention_is_extrinsic_xyz():
    # About world X by 90 deg, then about world Z by 90 deg: R = Rz(90) Rx(90).
    q = seed_euler_to_quat(np.deg2rad(np.array([[90.0, 0.0, 90.0]])))
    Rx = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    Rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
    np.testing.assert_allclose(quat_to_mat(q)[0], Rz @ Rx, atol=1e-12)
    assert not np.allclose(quat_to_mat(q)[0], Rx @ Rz)  # not the intrinsic reading
    # Against SciPy's lowercase (extrinsic) 'xyz'.
    from scipy.spatial.transform import Rotation  # scipy comes with jax

    eul = np.random.default_rng(2).uniform(-180, 180, size=(50, 3))
    ref = Rotation.from_euler("xyz", eul, degrees=True).as_quat()[:, [3, 0, 1, 2]]
    same_quat(seed_euler_to_quat(np.deg2rad(eul)), ref, 1e-12)


def _seed_case(traj, tmp_path, mutate):
    header, rows = seed_rows(traj)
    header, rows = mutate(header, [list(r) for r in rows])
    path = tmp_path / "bad.csv"
    write_seed(path, header, rows)
    return path


def _cell(row, col, value):
    def mutate(header, rows):
        rows[row][header.index(col)] = value
        return header, rows

    return mutate


def _drop_col(col):
    def mutate(header, rows):
        i = header.index(col)
        return header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in rows]

    return mutate


# Data row r is on line r + 2 (line 1 is the header).
@pytest.mark.parametrize(
    ("mutate", "field", "line", "match"),
    [
        (_drop_col("root_rotateY"), "root_rotateY", 1, "missing required column"),
        (_drop_col("Frame"), "Frame", 1, "missing required column"),
        (
            _cell(4, "left_knee_joint_dof", "12.5abc"),
            "left_knee_joint_dof",
            6,
            "cannot parse '12.5abc' as a number",
        ),
        (_cell(0, "root_translateZ", ""), "root_translateZ", 2, "cannot parse '' as a number"),
        (
            _cell(7, "waist_yaw_joint_dof", "nan"),
            "waist_yaw_joint_dof",
            9,
            "expected a finite number, found 'nan'",
        ),
        (_cell(3, "root_rotateX", "-inf"), "root_rotateX", 5, "found '-inf'"),
        (
            _cell(5, "Frame", "3"),
            "Frame",
            7,
            r"expected Frame to increase by 1 per row \(5\), found 3",
        ),
        (_cell(5, "Frame", "4"), "Frame", 7, r"\(5\), found 4"),
        (_cell(2, "Frame", "2.5"), "Frame", 4, "expected an integer frame index"),
        (
            lambda h, r: (h + ["right_wrist_yaw_joint_dof"], [x + ["0"] for x in r]),
            "right_wrist_yaw_joint_dof",
            1,
            "duplicate column",
        ),
    ],
)
def test_seed_malformed(g1, traj, tmp_path, mutate, field, line, match):
    path = _seed_case(traj, tmp_path, mutate)
    expect_error(lambda: read_seed_csv(path, g1), path, field, match, line=line)


def test_seed_ragged_row_empty_header_only(g1, traj, tmp_path):
    path = _seed_case(traj, tmp_path, lambda h, r: (h, r[:3] + [r[3][:-2]] + r[4:]))
    expect_error(
        lambda: read_seed_csv(path, g1),
        path,
        None,
        "expected 36 values .one per header column., found 34",
        line=5,
    )
    p = tmp_path / "empty.csv"
    p.write_text("")
    expect_error(lambda: read_seed_csv(p, g1), p, None, "empty file")
    p = tmp_path / "blank.csv"
    p.write_text("\n\n")
    expect_error(lambda: read_seed_csv(p, g1), p, None, "no header row")
    p = tmp_path / "header.csv"
    write_seed(p, seed_rows(traj)[0], [])
    expect_error(lambda: read_seed_csv(p, g1), p, None, "no frames: the file has a header row only")
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"Frame,root_translateX\xff\n")
    expect_error(lambda: read_seed_csv(p, g1), p, None, "not a UTF-8 text CSV")


def test_seed_wrong_robot(g1, traj, tmp_path):
    # A 23-DoF G1 file: the 6 wrist columns are missing.
    wrists = [f"{j}_dof" for j in g1.dof_names if "wrist" in j]

    def drop_wrists(header, rows):
        keep = [i for i, h in enumerate(header) if h not in wrists]
        return [header[i] for i in keep], [[r[i] for i in keep] for r in rows]

    path = _seed_case(traj, tmp_path, drop_wrists)
    err = expect_error(
        lambda: read_seed_csv(path, g1),
        path,
        "left_wrist_roll_joint_dof",
        "expected 29 joint columns '<joint>_dof' for robot unitree_g1, found 23; missing",
        line=1,
    )
    assert "another robot" in str(err)
    # Another robot's joint: refused, not ignored.
    path = _seed_case(traj, tmp_path, lambda h, r: (h + ["head_yaw_joint_dof"], [x + ["0"] for x in r]))
    expect_error(
        lambda: read_seed_csv(path, g1),
        path,
        "head_yaw_joint_dof",
        r"found 30; not joints of unitree_g1: \['head_yaw_joint_dof'\]",
        line=1,
    )


# --------------------------------------------------------------------------- dispatch


def test_dispatch(g1, traj, tmp_path):
    assert set(ROBOT_MOTION_READERS) == {"gmr_pkl", "mjlab_npz", "seed_csv"}
    path = tmp_path / "c.csv"
    write_seed(path, *seed_rows(traj))
    res = read_robot_motion(path, "seed_csv", g1, fps=60)
    assert res.fps == 60.0 and res.provenance["fps_source"] == "argument"
    with pytest.raises(
        UnknownNameError,
        match="robot motion format 'bvh' not found; valid: gmr_pkl, mjlab_npz, seed_csv",
    ):
        read_robot_motion(path, "bvh", g1)
