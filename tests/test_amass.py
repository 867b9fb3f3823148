"""Tests for retarget_jax.motion.amass: every SMPL-family layout, conventions, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from test_body_models import reference_fk  # the numpy FK reference, independent of the JAX code

from retarget_jax.body_models import SMPL_BODY_JOINT_NAMES, SMPL_BODY_PARENTS, neutral_skeleton
from retarget_jax.errors import MotionFormatError, UnknownNameError
from retarget_jax.motion.amass import SMPL_JOINT_MAP, parse_amass, read_amass
from retarget_jax.motion.conventions import SMPL_FRAME, get_conventions
from retarget_jax.motion.skeleton import HumanJoint

ROOT_FACE_X = Rotation.from_matrix(SMPL_FRAME).as_rotvec()
ROOT_Y_TO_Z = np.array([np.pi / 2, 0.0, 0.0])
J = {n: i for i, n in enumerate(SMPL_BODY_JOINT_NAMES)}
WIDTH = {"smpl": 72, "smplh": 156, "smplx": 165}


def random_clip(T=6, seed=0):
    rng = np.random.default_rng(seed)
    body = rng.normal(scale=0.4, size=(T, 22, 3))
    body[:, 0] = ROOT_Y_TO_Z + rng.normal(scale=0.1, size=(T, 3))
    trans = np.array([0.0, 0.0, 0.9]) + rng.normal(scale=0.05, size=(T, 3))
    return body, trans, rng


def write_clip(path, family, body, trans, rng, *, layout="poses", fps_key=None, **extra):
    """An AMASS-style file: 22 body joints in ``body``, random hand/face values after them."""
    T = body.shape[0]
    fields = {"trans": trans, "betas": np.zeros(16), "gender": np.array("neutral")}
    fps_key = fps_key or ("mocap_frame_rate" if family == "smplx" else "mocap_framerate")
    fields[fps_key] = np.array(60.0)
    if layout == "poses":
        rest = rng.normal(scale=0.3, size=(T, WIDTH[family] - 66))
        fields["poses"] = np.concatenate([body.reshape(T, 66), rest], axis=1)
    else:
        fields["root_orient"] = body[:, 0]
        fields["pose_body"] = body[:, 1:].reshape(T, 63)
    fields.update(extra)
    fields = {k: v for k, v in fields.items() if v is not None}
    np.savez(path, **fields)
    return str(path)


def quat_wxyz_to_mat(q):
    return Rotation.from_quat(q.reshape(-1, 4)[:, [1, 2, 3, 0]]).as_matrix().reshape(*q.shape[:-1], 3, 3)


# ---------------------------------------------------------------------------------------
# Layouts


@pytest.mark.parametrize(
    "family,layout", [("smpl", "poses"), ("smplh", "poses"), ("smplx", "poses"), ("smplx", "split")]
)
def test_layouts_read_back(tmp_path, family, layout):
    body, trans, rng = random_clip()
    path = write_clip(tmp_path / "clip.npz", family, body, trans, rng, layout=layout)
    m = read_amass(path)
    assert m.source_format == family and m.source_path == path
    assert m.fps == 60.0 and m.num_frames == 6
    np.testing.assert_allclose(m.times, np.arange(6) / 60.0)
    np.testing.assert_allclose(m.timestamps, np.arange(6) / 60.0)
    assert m.source_joint_names == SMPL_BODY_JOINT_NAMES
    assert m.joint_names == tuple(SMPL_JOINT_MAP[n] for n in SMPL_BODY_JOINT_NAMES)
    assert set(m.joint_names) == set(HumanJoint)
    np.testing.assert_array_equal(m.parents, SMPL_BODY_PARENTS)
    assert m.conventions is not None
    for role, frame in get_conventions("smpl").items():
        np.testing.assert_array_equal(m.conventions[role], frame)
    p_ref, G_ref = reference_fk(neutral_skeleton(family).rest_joints, body, trans)
    np.testing.assert_allclose(m.positions, p_ref, atol=2e-6)
    np.testing.assert_allclose(quat_wxyz_to_mat(m.orientations), G_ref, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(m.orientations, axis=-1), 1.0, atol=1e-12)
    # An explicit family reads the same.
    m2 = read_amass(path, family)
    np.testing.assert_array_equal(m2.positions, m.positions)


def test_smplx_layouts_agree_and_hands_are_ignored(tmp_path):
    body, trans, rng = random_clip(seed=1)
    a = read_amass(write_clip(tmp_path / "a.npz", "smplx", body, trans, rng))
    b = read_amass(write_clip(tmp_path / "b.npz", "smplx", body, trans, rng, layout="split"))
    c = read_amass(write_clip(tmp_path / "c.npz", "smplx", body, trans, rng))  # other hand values
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.positions, c.positions)
    np.testing.assert_array_equal(a.orientations, c.orientations)


@pytest.mark.parametrize("fps_key", ["mocap_framerate", "mocap_frame_rate"])
@pytest.mark.parametrize("family", ["smpl", "smplh", "smplx"])
def test_either_fps_key(tmp_path, family, fps_key):
    body, trans, rng = random_clip(T=2)
    m = read_amass(write_clip(tmp_path / "c.npz", family, body, trans, rng, fps_key=fps_key))
    assert m.fps == 60.0 and m.source_format == family


def test_split_layout_family_from_surface_model_type(tmp_path):
    body, trans, rng = random_clip(T=2)
    p = write_clip(tmp_path / "h.npz", "smplh", body, trans, rng, layout="split", surface_model_type=np.array("smplh"))
    assert parse_amass(p).family == "smplh"
    assert read_amass(p).source_format == "smplh"


# ---------------------------------------------------------------------------------------
# Orientation convention, left/right, ground


def test_zero_pose_facing_x_is_the_smpl_frame(tmp_path):
    T = 3
    body = np.zeros((T, 22, 3))
    body[:, 0] = ROOT_FACE_X
    _, _, rng = random_clip()
    m = read_amass(write_clip(tmp_path / "z.npz", "smplx", body, np.zeros((T, 3)), rng))
    R = quat_wxyz_to_mat(m.orientations)
    for role in m.joint_names:
        np.testing.assert_allclose(R[:, m.index(role)], np.broadcast_to(m.conventions[role], (T, 3, 3)), atol=1e-6)
    # Facing +X: the left hip is on +Y, the right hip on -Y.
    pelvis = m.positions[:, m.index("pelvis")]
    assert np.all(m.positions[:, m.index("left_hip"), 1] - pelvis[:, 1] > 0.05)
    assert np.all(m.positions[:, m.index("right_hip"), 1] - pelvis[:, 1] < -0.05)


@pytest.mark.parametrize("family", ["smplh", "smplx"])
def test_standing_clip_is_upright_with_feet_on_the_ground(tmp_path, family):
    # AMASS root orientation of a subject standing in the Z-up world, facing -Y, and its
    # usual translation, ~0.9 m (the pelvis is at trans + J_0: the root rotates about J_0,
    # and J_0 is not rotated, so its canonical y = -0.22 / -0.35 m lands on world Y, not Z).
    T = 2
    body = np.zeros((T, 22, 3))
    body[:, 0] = ROOT_Y_TO_Z
    trans = np.array([[0.3, -1.0, 0.92]] * T)
    _, _, rng = random_clip()
    m = read_amass(write_clip(tmp_path / "s.npz", family, body, trans, rng))
    z = m.positions[0, :, 2]
    assert z[J["head"]] > z[J["spine3"]] > z[J["pelvis"]] > z[J["left_knee"]] > z[J["left_ankle"]]
    assert 0.8 < z[J["pelvis"]] < 1.1
    assert 1.4 < z[J["head"]] < 1.8
    for foot in ("left_foot", "right_foot"):
        assert abs(z[J[foot]]) < 0.05
    # Facing -Y (canonical +z -> world -Y), the body's left (canonical +x) is world +X.
    dx = m.positions[0, :, 0] - m.positions[0, J["pelvis"], 0]
    assert dx[J["left_hip"]] > 0.05 and dx[J["right_hip"]] < -0.05
    assert dx[J["left_wrist"]] > 0.5 and dx[J["right_wrist"]] < -0.5


# ---------------------------------------------------------------------------------------
# Betas, gender, model files


def test_betas_ignored_by_the_neutral_skeleton_with_a_warning(tmp_path):
    body, trans, rng = random_clip(T=2)
    p0 = write_clip(tmp_path / "a.npz", "smplh", body, trans, rng)
    p1 = write_clip(tmp_path / "b.npz", "smplh", body, trans, rng, betas=np.linspace(-2, 2, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m0 = read_amass(p0)  # zero betas: silent
    with pytest.warns(UserWarning, match="betas are ignored"):
        m1 = read_amass(p1)
    np.testing.assert_array_equal(m0.positions, m1.positions)


def write_model(path, seed, V=30):
    """The four fields the loader reads, official npz layout, SMPL-H sizes."""
    rng = np.random.default_rng(seed)
    reg = rng.random((52, V))
    parents = np.array(list(SMPL_BODY_PARENTS) + [20] * 15 + [21] * 15)
    parents[0] = 4294967295
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "v_template": rng.normal(scale=0.3, size=(V, 3)),
        "shapedirs": rng.normal(scale=0.02, size=(V, 3, 16)),
        "J_regressor": reg / reg.sum(1, keepdims=True),
        "kintree_table": np.stack([parents, np.arange(52)]),
    }
    np.savez(path, **data)
    return data


def model_rest(data, betas):
    return (data["J_regressor"] @ (data["v_template"] + data["shapedirs"] @ betas))[:22]


@pytest.mark.parametrize(
    "gender_field", [np.array("female"), np.array(b"female"), np.array(["female"])], ids=["unicode", "bytes", "1d"]
)
def test_gender_from_file_and_override(tmp_path, gender_field):
    models = tmp_path / "models"
    female = write_model(models / "smplh" / "SMPLH_FEMALE.npz", seed=1)
    male = write_model(models / "smplh" / "SMPLH_MALE.npz", seed=2)
    body, trans, rng = random_clip(T=3)
    betas = np.linspace(-1, 1, 16)
    p = write_clip(tmp_path / "g.npz", "smplh", body, trans, rng, betas=betas, gender=gender_field)
    assert parse_amass(p).gender == "female"
    m = read_amass(p, body_model_dir=models)
    np.testing.assert_allclose(m.positions, reference_fk(model_rest(female, betas), body, trans)[0], atol=2e-6)
    m = read_amass(p, body_model_dir=models, gender="male")
    np.testing.assert_allclose(m.positions, reference_fk(model_rest(male, betas), body, trans)[0], atol=2e-6)
    with pytest.raises(FileNotFoundError, match="no smplh model file for gender 'neutral'"):
        read_amass(p, body_model_dir=models, gender="neutral")


def test_bad_gender(tmp_path):
    body, trans, rng = random_clip(T=2)
    p = write_clip(tmp_path / "g.npz", "smplh", body, trans, rng, gender=np.array("robot"))
    read_amass(p)  # gender is not needed without model files
    write_model(tmp_path / "m" / "SMPLH_NEUTRAL.npz", seed=3)
    with pytest.raises(MotionFormatError, match="found 'robot'") as e:
        read_amass(p, body_model_dir=tmp_path / "m")
    assert e.value.field == "gender"
    read_amass(p, body_model_dir=tmp_path / "m", gender="neutral")
    with pytest.raises(UnknownNameError, match="gender 'other' not found; valid: female, male, neutral"):
        read_amass(p, gender="other")


# ---------------------------------------------------------------------------------------
# Errors


def test_stagei_shape_file_is_not_motion(tmp_path):
    p = tmp_path / "subject_stagei.npz"
    np.savez(
        p,
        betas=np.zeros(16),
        gender=np.array("male"),
        surface_model_type=np.array("smplx"),
        markers_latent=np.zeros((53, 3)),
        num_betas=np.array(16),
    )
    with pytest.raises(MotionFormatError, match=r"subject_stagei\.npz.*not a motion file.*stagei") as e:
        read_amass(p)
    assert e.value.field == "poses" and e.value.path == str(p)


@pytest.mark.parametrize(
    "change,field,message",
    [
        ({"poses": None}, "poses", "not a motion file"),
        ({"trans": None}, "trans", "missing field 'trans'"),
        ({"mocap_framerate": None}, "mocap_framerate", "missing frame rate"),
        ({"mocap_framerate": np.array(0.0)}, "mocap_framerate", "positive"),
        ({"mocap_framerate": np.array([30.0, 60.0])}, "mocap_framerate", "one number"),
        ({"poses": np.zeros((4, 100))}, "poses", r"\(T, 72\), \(T, 156\) or \(T, 165\)"),
        ({"poses": np.zeros((4, 52, 3))}, "poses", "found \\(4, 52, 3\\)"),
        ({"poses": np.zeros((0, 156))}, "poses", "zero frames"),
        ({"poses": np.array([["a"] * 156] * 4)}, "poses", "expected numbers"),
        ({"poses": np.array([None] * 4, dtype=object)}, "poses", "cannot be read without pickle"),
        ({"trans": np.zeros((3, 3))}, "trans", r"expected shape \(4, 3\), found \(3, 3\)"),
        ({"trans": np.full((4, 3), np.nan)}, "trans", "NaN or infinite value at frame 0"),
        ({"betas": np.zeros((4, 16))}, "betas", r"expected shape \(N\)"),
        ({"betas": np.array([0.0, np.inf])}, "betas", "NaN or infinite"),
    ],
)
def test_malformed_files_name_file_and_field(tmp_path, change, field, message):
    rng = np.random.default_rng(0)
    fields = {
        "poses": rng.normal(size=(4, 156)),
        "trans": np.zeros((4, 3)),
        "betas": np.zeros(16),
        "gender": np.array("male"),
        "mocap_framerate": np.array(120.0),
    }
    fields.update(change)
    p = tmp_path / "bad_clip.npz"
    np.savez(p, **{k: v for k, v in fields.items() if v is not None})
    with pytest.raises(MotionFormatError, match=message) as e:
        read_amass(p)
    assert e.value.field == field, e.value
    assert e.value.path == str(p) and "bad_clip.npz" in str(e.value)


def test_nan_in_poses_names_the_frame(tmp_path):
    body, trans, rng = random_clip(T=5)
    body[3, 7, 1] = np.nan
    p = write_clip(tmp_path / "n.npz", "smplx", body, trans, rng)
    with pytest.raises(MotionFormatError, match="field 'poses': NaN or infinite value at frame 3"):
        read_amass(p)
    p = write_clip(tmp_path / "n2.npz", "smplx", body, trans, rng, layout="split")
    with pytest.raises(MotionFormatError, match="field 'pose_body'.*frame 3"):
        read_amass(p)


def test_split_layout_needs_both_fields(tmp_path):
    p = tmp_path / "half.npz"
    np.savez(p, root_orient=np.zeros((3, 3)), trans=np.zeros((3, 3)), mocap_frame_rate=np.array(30.0))
    with pytest.raises(MotionFormatError, match="missing field 'pose_body'") as e:
        read_amass(p)
    assert e.value.field == "pose_body"
    np.savez(
        p,
        root_orient=np.zeros((3, 3)),
        pose_body=np.zeros((2, 63)),
        trans=np.zeros((3, 3)),
        mocap_frame_rate=np.array(30.0),
    )
    with pytest.raises(MotionFormatError, match=r"expected shape \(3, 63\), found \(2, 63\)"):
        read_amass(p)


def test_explicit_family_must_match_the_width(tmp_path):
    body, trans, rng = random_clip(T=2)
    p = write_clip(tmp_path / "h.npz", "smplh", body, trans, rng)
    with pytest.raises(MotionFormatError, match=r"\(T, 165\) for smplx, found \(2, 156\).*smplh's") as e:
        read_amass(p, "smplx")
    assert e.value.field == "poses"
    with pytest.raises(UnknownNameError, match="valid: amass, smpl, smplh, smplx"):
        read_amass(p, "bvh")


@pytest.mark.parametrize(
    "content",
    [b"", b"definitely not numpy", b"PK\x03\x04truncated zip", b"\x93NUMPY\x01\x00garbage"],
    ids=["empty", "text", "zip", "npy"],
)
def test_non_npz_files(tmp_path, content):
    p = tmp_path / "broken.npz"
    p.write_bytes(content)
    with pytest.raises(MotionFormatError, match=r"broken\.npz: not a readable npz archive"):
        read_amass(p)


def test_npy_file_is_not_an_archive(tmp_path):
    p = tmp_path / "poses.npy"
    np.save(p, np.zeros((3, 156)))
    with pytest.raises(MotionFormatError, match=r"poses\.npy: a single \.npy array"):
        read_amass(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_amass(tmp_path / "nope.npz")
