"""Tests for retarget_jax.body_models: neutral figures, model files, FK, smplx parity,
and the restricted unpickler's scipy.sparse mode."""

from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse
from scipy.spatial.transform import Rotation

from retarget_jax.body_models import (
    SMPL_BODY_JOINT_NAMES,
    SMPL_BODY_PARENTS,
    find_model_file,
    load_body_model,
    model_skeleton,
    neutral_skeleton,
    smpl_joint_poses,
)
from retarget_jax.body_models.neutral import XML_BODY_TO_SMPL, figure_path, parse_figure
from retarget_jax.errors import MotionFormatError
from retarget_jax.files.safe_pickle import restricted_load, restricted_loads
from retarget_jax.motion.conventions import SMPL_FRAME

# AMASS-style root orientation that turns the canonical body (Y-up, Z-forward) upright in
# a Z-up world facing +X, and the common one facing -Y (+90 degrees about X).
ROOT_FACE_X = Rotation.from_matrix(SMPL_FRAME).as_rotvec()
ROOT_Y_TO_Z = np.array([np.pi / 2, 0.0, 0.0])
J = {n: i for i, n in enumerate(SMPL_BODY_JOINT_NAMES)}


def reference_fk(rest, pose, trans):
    """Rotation-matrix FK in numpy (the smplx rule), independent of the JAX quaternion code."""
    R = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(*pose.shape[:2], 3, 3)
    T = pose.shape[0]
    G = np.zeros((T, 22, 3, 3))
    p = np.zeros((T, 22, 3))
    G[:, 0], p[:, 0] = R[:, 0], rest[0] + trans
    for j in range(1, 22):
        k = SMPL_BODY_PARENTS[j]
        G[:, j] = G[:, k] @ R[:, j]
        p[:, j] = p[:, k] + np.einsum("tab,b->ta", G[:, k], rest[j] - rest[k])
    return p, G


def pose_with_root(root, T=1, body=None):
    pose = np.zeros((T, 22, 3))
    pose[:, 0] = root
    if body is not None:
        pose[:, 1:] = body
    return pose


def walk_pose(T):
    """A gait-like pose: legs and arms swing about the body's lateral (canonical x) axis;
    frame 0 is the zero pose."""
    phase = np.linspace(0.0, 2 * np.pi, T, endpoint=False)
    swing = 0.5 * np.sin(phase)
    pose = np.zeros((T, 22, 3))
    pose[:, J["left_hip"], 0], pose[:, J["right_hip"], 0] = -swing, swing
    pose[:, J["left_knee"], 0] = pose[:, J["right_knee"], 0] = 0.6 * (1 - np.cos(phase)) / 2
    pose[:, J["left_shoulder"], 0], pose[:, J["right_shoulder"], 0] = swing, -swing
    pose[:, J["left_elbow"], 1] = 0.4 * (1 - np.cos(phase)) / 2
    return pose


def quat_wxyz_to_mat(q):
    return Rotation.from_quat(q.reshape(-1, 4)[:, [1, 2, 3, 0]]).as_matrix().reshape(*q.shape[:-1], 3, 3)


# ---------------------------------------------------------------------------------------
# Neutral skeletons


@pytest.mark.parametrize("family", ["smpl", "smplh", "smplx"])
@pytest.mark.parametrize("root", [ROOT_FACE_X, ROOT_Y_TO_Z], ids=["face_x", "y_up_to_z_up"])
def test_neutral_left_is_left_and_upright(family, root):
    pose = pose_with_root(root, T=5, body=walk_pose(5)[:, 1:])
    pos, _ = smpl_joint_poses(neutral_skeleton(family).rest_joints, pose, np.zeros((5, 3)))
    Rroot = Rotation.from_rotvec(root).as_matrix()
    left, up = Rroot @ [1.0, 0.0, 0.0], Rroot @ [0.0, 1.0, 0.0]  # the body's own axes in the world
    assert np.allclose(up, [0, 0, 1], atol=1e-12)  # both roots stand the body up in Z-up
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for part in ("hip", "shoulder", "wrist", "ankle"):
            rel = pos[:, J[f"{side}_{part}"]] - pos[:, J["pelvis"]]
            assert np.all(sign * rel @ left > 0.03), (side, part)
    if np.allclose(root, ROOT_FACE_X):
        assert np.all(pos[:, J["left_hip"], 1] > pos[:, J["pelvis"], 1])  # left is +Y
    z = pos[0, :, 2]
    assert z[J["head"]] > z[J["neck"]] > z[J["spine3"]] > z[J["pelvis"]]
    assert z[J["pelvis"]] > z[J["left_knee"]] > z[J["left_ankle"]]
    assert z[J["pelvis"]] > z[J["right_knee"]] > z[J["right_ankle"]]
    # toes point forward: the body's forward axis (canonical +z) in the world
    fwd = Rroot @ [0.0, 0.0, 1.0]
    assert (pos[0, J["left_foot"]] - pos[0, J["left_ankle"]]) @ fwd > 0.05


@pytest.mark.parametrize("family", ["smpl", "smplx"])
def test_neutral_offsets_are_the_figures(family):
    names, parents, xml_pos = parse_figure(figure_path(family))
    index = {n: i for i, n in enumerate(names)}
    smpl_to_xml = {v: k for k, v in XML_BODY_TO_SMPL.items()}
    xml_off = np.array([xml_pos[index[smpl_to_xml[n]]] for n in SMPL_BODY_JOINT_NAMES])
    rest = neutral_skeleton(family).rest_joints
    # Facing +X in a Z-up world is the figure's own frame: offsets come back unchanged.
    pos, _ = smpl_joint_poses(rest, pose_with_root(ROOT_FACE_X), np.zeros((1, 3)))
    seg = pos[0, 1:] - pos[0, list(SMPL_BODY_PARENTS[1:])]
    np.testing.assert_allclose(seg, xml_off[1:], atol=1e-6)
    # Segment lengths are kept in any pose.
    rng = np.random.default_rng(1)
    pose = rng.normal(scale=0.8, size=(6, 22, 3))
    pos, _ = smpl_joint_poses(rest, pose, rng.normal(size=(6, 3)))
    lengths = np.linalg.norm(pos[:, 1:] - pos[:, list(SMPL_BODY_PARENTS[1:])], axis=-1)
    np.testing.assert_allclose(lengths, np.broadcast_to(np.linalg.norm(xml_off[1:], axis=-1), lengths.shape), atol=1e-6)
    # The root body's pos is the canonical pelvis J_0, kept as is.
    np.testing.assert_allclose(rest[0], xml_off[0])


def test_zero_pose_orientations_are_smpl_frame():
    pos, quat = smpl_joint_poses(neutral_skeleton("smplx").rest_joints, pose_with_root(ROOT_FACE_X), np.zeros((1, 3)))
    np.testing.assert_allclose(quat_wxyz_to_mat(quat[0]), np.broadcast_to(SMPL_FRAME, (22, 3, 3)), atol=1e-6)


def test_fk_matches_numpy_reference():
    rng = np.random.default_rng(2)
    rest = neutral_skeleton("smpl").rest_joints
    pose = rng.normal(scale=1.0, size=(7, 22, 3))
    pose[0] = 0.0  # exactly zero rotations take the Taylor branch
    trans = rng.normal(size=(7, 3))
    pos, quat = smpl_joint_poses(rest, pose, trans)
    p_ref, G_ref = reference_fk(rest, pose, trans)
    np.testing.assert_allclose(pos, p_ref, atol=2e-6)
    np.testing.assert_allclose(quat_wxyz_to_mat(quat), G_ref, atol=2e-6)


# ---------------------------------------------------------------------------------------
# Synthetic model files in the official layouts

NUM_JOINTS = {"smpl": 24, "smplh": 52, "smplx": 55}
NUM_SHAPE = {"smpl": 10, "smplh": 16, "smplx": 400}


def full_parents(family):
    parents = list(SMPL_BODY_PARENTS)
    if family == "smpl":
        return parents + [20, 21]
    if family == "smplx":
        parents += [15, 15, 15]  # jaw, left eye, right eye
    for wrist in (20, 21):  # 5 fingers x 3 joints per hand
        for _ in range(5):
            base = len(parents)
            parents += [wrist, base, base + 1]
    assert len(parents) == NUM_JOINTS[family]
    return parents


def make_model(family, seed, V=60):
    rng = np.random.default_rng(seed)
    nj, S = NUM_JOINTS[family], NUM_SHAPE[family]
    reg = rng.random((nj, V)) * (rng.random((nj, V)) < 0.25)
    reg[np.arange(nj), rng.integers(0, V, nj)] += 0.5  # no empty row
    reg /= reg.sum(1, keepdims=True)
    weights = rng.random((V, nj))
    parents = np.array(full_parents(family), dtype=np.int64)
    parents[0] = 4294967295  # as in the official files
    data = {
        "v_template": rng.normal(scale=0.3, size=(V, 3)),
        "shapedirs": rng.normal(scale=0.02, size=(V, 3, S)),
        "J_regressor": reg,
        "kintree_table": np.stack([parents, np.arange(nj)]),
        "weights": weights / weights.sum(1, keepdims=True),
        "posedirs": rng.normal(scale=0.01, size=(V, 3, 9 * (nj - 1))),
        "f": rng.integers(0, V, size=(80, 3)).astype(np.int64),
    }
    if family in ("smplh", "smplx"):
        for s in "lr":
            data[f"hands_components{s}"] = np.linalg.qr(rng.normal(size=(45, 45)))[0]
            data[f"hands_mean{s}"] = rng.normal(scale=0.1, size=45)
    if family == "smplx":
        data["lmk_faces_idx"] = rng.integers(0, 80, size=51).astype(np.int64)
        bary = rng.random((51, 3))
        data["lmk_bary_coords"] = bary / bary.sum(1, keepdims=True)
    return data


def write_model(path, data, *, sparse_regressor=False):
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith(".npz"):
        np.savez(path, **data)
    else:
        d = dict(data)
        if sparse_regressor:
            d["J_regressor"] = scipy.sparse.csc_matrix(d["J_regressor"])
        with open(path, "wb") as f:
            pickle.dump(d, f, protocol=2)
    return path


def numpy_rest_joints(data, betas):
    nb = len(betas)
    v = data["v_template"] + data["shapedirs"][..., :nb] @ betas
    return (data["J_regressor"] @ v)[:22]


@pytest.mark.parametrize("ext,sparse", [("npz", False), ("pkl", False), ("pkl", True)])
def test_load_body_model_rest_joints(tmp_path, ext, sparse):
    data = make_model("smplh", seed=3)
    path = write_model(tmp_path / f"SMPLH_MALE.{ext}", data, sparse_regressor=sparse)
    model = load_body_model(path, "smplh")
    assert model.num_betas == 16 and model.num_joints == 52
    betas = np.random.default_rng(4).normal(size=16)
    np.testing.assert_allclose(model.rest_joints(betas), numpy_rest_joints(data, betas), atol=1e-12)
    with pytest.warns(UserWarning, match="betas 16..19 are ignored"):
        extra = model.rest_joints(np.concatenate([betas, [1.0, 0, 0, 0]]))
    np.testing.assert_allclose(extra, numpy_rest_joints(data, betas), atol=1e-12)


def test_smplx_shape_space_excludes_expression(tmp_path):
    data = make_model("smplx", seed=5)
    model = load_body_model(write_model(tmp_path / "SMPLX_NEUTRAL.npz", data), "smplx")
    assert model.num_betas == 300  # 300 shape + 100 expression directions in the file


def test_find_model_file_layouts_and_fallback(tmp_path):
    d = tmp_path / "models"
    write_model(d / "smplx" / "SMPLX_NEUTRAL.npz", {"x": np.zeros(1)})
    write_model(d / "SMPLH_male.pkl", {"x": np.zeros(1)})  # MANO site spelling
    write_model(d / "smplh" / "neutral" / "model.npz", {"x": np.zeros(1)})  # AMASS layout
    write_model(d / "smpl" / "SMPL_FEMALE.pkl", {"x": np.zeros(1)})
    write_model(d / "smpl" / "SMPL_FEMALE.npz", {"x": np.zeros(1)})

    assert find_model_file(d, "smplx", "neutral") == (d / "smplx" / "SMPLX_NEUTRAL.npz", "neutral")
    assert find_model_file(d, "smplh", "male") == (d / "SMPLH_male.pkl", "male")
    assert find_model_file(d, "smpl", "female") == (d / "smpl" / "SMPL_FEMALE.npz", "female")
    with pytest.warns(UserWarning, match="no smplh model file for gender 'female'"):
        assert find_model_file(d, "smplh", "female") == (d / "smplh" / "neutral" / "model.npz", "neutral")
    with pytest.raises(FileNotFoundError, match=r"SMPL_NEUTRAL\.npz"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        find_model_file(d, "smpl", "male")
    with pytest.raises(FileNotFoundError, match="not found"):
        find_model_file(tmp_path / "nowhere", "smpl", "male")
    # A file given directly is used as is.
    assert find_model_file(d / "SMPLH_male.pkl", "smplh", "female")[0] == d / "SMPLH_male.pkl"


def test_model_skeleton_picks_gender(tmp_path):
    male, neutral = make_model("smpl", seed=6), make_model("smpl", seed=7)
    write_model(tmp_path / "smpl" / "SMPL_MALE.pkl", male, sparse_regressor=True)
    write_model(tmp_path / "smpl" / "SMPL_NEUTRAL.pkl", neutral, sparse_regressor=True)
    betas = np.linspace(-1, 1, 10)
    skel = model_skeleton(tmp_path, "smpl", "male", betas)
    assert skel.gender == "male"
    np.testing.assert_allclose(skel.rest_joints, numpy_rest_joints(male, betas), atol=1e-12)
    with pytest.warns(UserWarning, match="using the neutral one"):
        skel = model_skeleton(tmp_path, "smpl", "female", betas)
    np.testing.assert_allclose(skel.rest_joints, numpy_rest_joints(neutral, betas), atol=1e-12)


def test_model_file_errors(tmp_path):
    good = make_model("smpl", seed=8)
    bad_tree = dict(good)
    kt = good["kintree_table"].copy()
    kt[0, 5] = 1  # right knee hung on the left hip
    bad_tree["kintree_table"] = kt
    p = write_model(tmp_path / "a" / "tree.npz", bad_tree)
    with pytest.raises(MotionFormatError, match="not the SMPL body tree") as e:
        load_body_model(p, "smpl")
    assert e.value.field == "kintree_table" and e.value.path == p

    p = write_model(tmp_path / "b" / "nov.npz", {k: v for k, v in good.items() if k != "v_template"})
    with pytest.raises(MotionFormatError, match="missing v_template") as e:
        load_body_model(p, "smpl")
    assert e.value.field == "v_template"

    p = write_model(tmp_path / "c" / "shape.npz", {**good, "J_regressor": good["J_regressor"][:, :5]})
    with pytest.raises(MotionFormatError, match=r"expected \(24, 60\)") as e:
        load_body_model(p, "smpl")
    assert e.value.field == "J_regressor"

    p = write_model(tmp_path / "d" / "SMPLH_MALE.npz", make_model("smplh", seed=8))
    with pytest.warns(UserWarning, match="52 joints, but smplx model files have 55"):
        load_body_model(p, "smplx")

    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip at all")
    with pytest.raises(MotionFormatError, match="junk.npz"):
        load_body_model(p, "smpl")
    with pytest.raises(FileNotFoundError):
        load_body_model(tmp_path / "missing.npz", "smpl")


def test_chumpy_model_is_refused_with_a_hint(tmp_path):
    # PROTO 2, GLOBAL chumpy.ch.Ch, EMPTY_TUPLE, NEWOBJ, EMPTY_DICT, BUILD, STOP: what a
    # pickled chumpy array starts with; the unpickler must stop at the GLOBAL.
    p = tmp_path / "SMPL_NEUTRAL.pkl"
    p.write_bytes(b"\x80\x02}q\x00X\t\x00\x00\x00shapedirsq\x01cchumpy.ch\nCh\n)\x81}bs.")
    with pytest.raises(MotionFormatError, match=r"chumpy object \(chumpy\.ch\.Ch\).*convert"):
        load_body_model(p, "smpl")


# ---------------------------------------------------------------------------------------
# Restricted unpickler, scipy.sparse mode


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


@pytest.mark.parametrize("sparse_mode", [False, True])
def test_restricted_load_refuses_code(tmp_path, sparse_mode):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"J_regressor": _Evil(f"touch {marker}")}, protocol=2)
    with pytest.raises(MotionFormatError, match=r"refusing to load class (posix|nt)\.system"):
        restricted_load(__import__("io").BytesIO(payload), allow_scipy_sparse=sparse_mode)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("kind", ["csc", "csr"])
def test_restricted_load_rebuilds_sparse(protocol, kind):
    rng = np.random.default_rng(9)
    dense = rng.random((5, 7)) * (rng.random((5, 7)) < 0.4)
    m = getattr(scipy.sparse, f"{kind}_matrix")(dense)
    data = pickle.dumps({"J_regressor": m, "v": np.arange(3.0), "items": [m]}, protocol=protocol)
    with pytest.raises(MotionFormatError, match="refusing to load class (scipy.sparse|copy_reg)"):
        restricted_loads(data)  # the default mode is unchanged
    import io

    out = restricted_load(io.BytesIO(data), allow_scipy_sparse=True)
    assert type(out["J_regressor"]) is type(m)
    np.testing.assert_array_equal(out["J_regressor"].toarray(), dense)
    np.testing.assert_array_equal(out["items"][0].toarray(), dense)
    np.testing.assert_array_equal(out["v"], np.arange(3.0))


def test_restricted_load_checks_sparse_indices():
    import io

    # PROTO 2, GLOBAL scipy.sparse._csc.csc_matrix, EMPTY_TUPLE, NEWOBJ, STOP: no state.
    with pytest.raises(MotionFormatError, match="csc matrix without its state"):
        restricted_load(io.BytesIO(b"\x80\x02cscipy.sparse._csc\ncsc_matrix\n)\x81."), allow_scipy_sparse=True)

    m = scipy.sparse.csc_matrix(np.eye(3))
    m.indices = m.indices.copy()
    m.indices[1] = 99  # out of range: would read past the buffer if trusted
    data = pickle.dumps(m, protocol=2)
    with pytest.raises(MotionFormatError, match="invalid scipy.sparse csc matrix"):
        restricted_load(io.BytesIO(data), allow_scipy_sparse=True)


# ---------------------------------------------------------------------------------------
# Parity with the smplx package (an optional extra of the package, installed by the test extras)


PARITY_CASES = [("smpl", "pkl", True), ("smplh", "npz", False), ("smplh", "pkl", True), ("smplx", "npz", False)]


@pytest.mark.parametrize("family,ext,sparse", PARITY_CASES)
def test_joints_match_smplx_package(tmp_path, family, ext, sparse):
    import smplx  # in the test extras (with the CPU torch build): this test must run, not skip
    import torch

    prefix = {"smpl": "SMPL", "smplh": "SMPLH", "smplx": "SMPLX"}[family]
    data = make_model(family, seed=10)
    write_model(tmp_path / family / f"{prefix}_NEUTRAL.{ext}", data, sparse_regressor=sparse)
    B = 4
    rng = np.random.default_rng(11)
    betas = rng.normal(size=10)
    pose = rng.normal(scale=0.7, size=(B, 22, 3))
    trans = rng.normal(size=(B, 3))

    kwargs = {} if family == "smpl" else {"ext": ext, "use_pca": False}
    model = smplx.create(str(tmp_path), model_type=family, gender="neutral", num_betas=10, batch_size=B, **kwargs)

    class NoExtraJoints(torch.nn.Module):  # the synthetic mesh has no vertices at the
        def forward(self, vertices, joints):  # landmark ids smplx picks extra joints from
            return joints

    model.vertex_joint_selector = NoExtraJoints()
    n_body = 69 if family == "smpl" else 63  # SMPL's body_pose also holds the 2 hand joints
    body = np.concatenate([pose[:, 1:].reshape(B, 63), rng.normal(size=(B, n_body - 63))], 1)
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        out = model(betas=t(np.tile(betas, (B, 1))), global_orient=t(pose[:, 0]), body_pose=t(body), transl=t(trans))
    expected = out.joints[:, :22].numpy().astype(np.float64)

    skel = model_skeleton(tmp_path, family, "neutral", betas)
    pos, _ = smpl_joint_poses(skel.rest_joints, pose, trans)
    np.testing.assert_allclose(pos, expected, atol=1e-5)

    # The same through the AMASS reader: poses in the file's full width, hands included.
    from retarget_jax.motion.amass import POSE_WIDTH, read_amass

    width = POSE_WIDTH[family]
    poses = np.concatenate([pose.reshape(B, 66), rng.normal(size=(B, width - 66))], 1)
    if family == "smpl":
        poses[:, 66:] = body[:, 63:]
    clip = tmp_path / "clip.npz"
    np.savez(clip, poses=poses, trans=trans, betas=betas, gender=np.array("neutral"), mocap_framerate=np.array(30.0))
    motion = read_amass(clip, body_model_dir=tmp_path)
    assert motion.source_format == family
    np.testing.assert_allclose(motion.positions, expected, atol=1e-5)
