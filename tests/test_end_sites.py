"""Sources as studios and tools export them: BVH rigs whose wrists and toes exist only as
End Sites (named in a user joint map as ``<joint>/End``), and skeletons without a scale
chain's end joint (measured on the part of the chain they have).

The rigs are written by the tests: the demo walk as a LAFAN1-layout BVH
(``scripts/make_demo_motion.py``), then re-rigged with studio names and its hands and
toes turned into End Sites of their parents. Solves use the shipped lafan1 recipes,
50-frame clips in bucket 64 and the default solver options: the shape
tests/test_sources_e2e.py compiles for the G1.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import mujoco
import numpy as np
import pytest

from retarget_jax.errors import ConfigError, InvalidMotionError, UnknownNameError
from retarget_jax.io.bvh import write_bvh
from retarget_jax.metrics import metric_summary
from retarget_jax.motion.bvh import BvhClip, parse_bvh, read_bvh_format
from retarget_jax.motion.canonical import canonical_index
from retarget_jax.motion.conventions import get_conventions
from retarget_jax.motion.demo import demo_motion
from retarget_jax.motion.joint_maps import joint_map_from_dict, load_joint_map
from retarget_jax.motion.skeleton import HumanJoint as J
from retarget_jax.pipeline import retarget_motions
from retarget_jax.problem import RetargetingProblem, compile_problem, load_recipe
from retarget_jax.problem.compile import measured_chain
from retarget_jax.result import SolveStatus
from retarget_jax.robots import load_robot
from retarget_jax.rotations import quat_rotate, quat_to_mat

REPO = Path(__file__).resolve().parents[1]
T = 50  # bucket 64
ROBOTS = {"unitree_g1": "lafan1_g1", "unitree_h1": "lafan1_h1", "booster_t1": "lafan1_t1"}

#: LAFAN1 names -> a studio's (Blender-like) names; hands and toes are End Sites there
STUDIO_NAMES = {
    "Hips": "hips",
    "LeftUpLeg": "thigh.L",
    "LeftLeg": "shin.L",
    "LeftFoot": "foot.L",
    "RightUpLeg": "thigh.R",
    "RightLeg": "shin.R",
    "RightFoot": "foot.R",
    "Spine": "spine",
    "Spine1": "spine.001",
    "Spine2": "chest",
    "Neck": "neck",
    "Head": "head",
    "LeftShoulder": "shoulder.L",
    "LeftArm": "upper_arm.L",
    "LeftForeArm": "forearm.L",
    "RightShoulder": "shoulder.R",
    "RightArm": "upper_arm.R",
    "RightForeArm": "forearm.R",
}
ENDS = ("LeftHand", "RightHand", "LeftToe", "RightToe")
STUDIO_ROLES = {
    "hips": "pelvis",
    "thigh.L": "left_hip",
    "shin.L": "left_knee",
    "foot.L": "left_ankle",
    "thigh.R": "right_hip",
    "shin.R": "right_knee",
    "foot.R": "right_ankle",
    "spine": "spine_lower",
    "spine.001": "spine_mid",
    "chest": "spine_upper",
    "neck": "neck",
    "head": "head",
    "shoulder.L": "left_collar",
    "upper_arm.L": "left_shoulder",
    "forearm.L": "left_elbow",
    "shoulder.R": "right_collar",
    "upper_arm.R": "right_shoulder",
    "forearm.R": "right_elbow",
}
END_ROLES = {
    "forearm.L/End": "left_wrist",
    "forearm.R/End": "right_wrist",
    "foot.L/End": "left_toe",
    "foot.R/End": "right_toe",
}


def _lafan1_clip(tmp: Path) -> BvhClip:
    """The demo walk as a LAFAN1-layout BVH (cm, Y-up, LAFAN1 names and joint frames)."""
    spec = importlib.util.spec_from_file_location("make_demo_motion", REPO / "scripts" / "make_demo_motion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp / "lafan1_walk.bvh"
    mod.write_bvh(path, demo_motion(num_frames=T))
    return parse_bvh(path)


def rerig(clip: BvhClip, ends: tuple[str, ...] = ENDS, remove: tuple[str, ...] = ()) -> BvhClip:
    """``clip`` with each joint of ``ends`` (a leaf) turned into an End Site of its parent
    (at its OFFSET, its channels gone), the joints of ``remove`` and their subtrees dropped
    (:func:`write_bvh` closes a joint left without children with a zero End Site), and
    studio names."""
    gone = set(ends) | set(remove)
    keep = [j for j, n in enumerate(clip.joint_names) if not any(a in gone for a in _ancestry(clip, j))]
    new = {j: i for i, j in enumerate(keep)}
    site_parents, site_offsets = [], []
    for e, p in zip(clip.end_site_parents, clip.end_site_offsets, strict=True):
        if int(e) in new:
            site_parents.append(new[int(e)])
            site_offsets.append(p)
    for j, n in enumerate(clip.joint_names):
        if n in ends and int(clip.parents[j]) in new:
            assert all(int(p) != j for p in clip.parents), f"{n} is not a leaf"
            site_parents.append(new[int(clip.parents[j])])
            site_offsets.append(clip.offsets[j])
    cols = [np.arange(clip.channel_start[j], clip.channel_start[j] + len(clip.channels[j])) for j in keep]
    counts = [len(clip.channels[j]) for j in keep]
    return dataclasses.replace(
        clip,
        joint_names=tuple(STUDIO_NAMES[clip.joint_names[j]] for j in keep),
        parents=np.array([new[int(clip.parents[j])] if clip.parents[j] >= 0 else -1 for j in keep]),
        offsets=clip.offsets[keep],
        channels=tuple(clip.channels[j] for j in keep),
        channel_start=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        frames=clip.frames[:, np.concatenate(cols)],
        end_site_parents=np.asarray(site_parents, np.int64),
        end_site_offsets=np.reshape(site_offsets, (-1, 3)),
    )


def _ancestry(clip: BvhClip, j: int) -> list[str]:
    out = []
    while j >= 0:
        out.append(clip.joint_names[j])
        j = int(clip.parents[j])
    return out


def studio_map(
    tmp: Path, ends: dict[str, str] | None = None, name: str = "studio", joints: dict[str, str] | None = None
) -> Path:
    """A user joint map YAML for the studio rig (LAFAN1 joint frames: the same rig):
    ``joints``, by default its joints and ``ends`` (default: hands and toes)."""
    import yaml

    joints = joints or {**STUDIO_ROLES, **(END_ROLES if ends is None else ends)}
    path = tmp / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": name, "length_unit": "centimetre", "up_axis": "y", "conventions": "lafan1", "joints": joints}
        )
    )
    return path


@pytest.fixture(scope="module")
def rigs(tmp_path_factory):
    """(the LAFAN1 rig's file, the End Site rig's file, its joint map)."""
    tmp = tmp_path_factory.mktemp("rigs")
    clip = _lafan1_clip(tmp)
    studio = tmp / "studio_walk.bvh"
    write_bvh(studio, rerig(clip))
    return tmp / "lafan1_walk.bvh", studio, studio_map(tmp)


# --------------------------------------------------------------------------- reading


def test_end_sites_are_parsed_and_written_back(rigs):
    _, studio, _ = rigs
    clip = parse_bvh(studio)
    assert "forearm.L/End" in clip.end_site_names and "foot.R/End" in clip.end_site_names
    assert "hand.L" not in clip.joint_names and len(clip.joint_names) == 18
    k = clip.end_site_names.index("forearm.L/End")
    assert clip.joint_names[clip.end_site_parents[k]] == "forearm.L"
    assert np.linalg.norm(clip.end_site_offsets[k]) > 10.0  # the hand's bone, cm
    again = studio.with_name("again.bvh")
    write_bvh(again, clip)
    back = parse_bvh(again)
    assert back.end_site_names == clip.end_site_names
    np.testing.assert_array_equal(back.end_site_offsets, clip.end_site_offsets)
    np.testing.assert_array_equal(back.end_site_parents, clip.end_site_parents)


def test_end_site_is_its_joint_pose_plus_its_offset(rigs):
    """An End Site named in the map is a joint at its parent's FK plus its OFFSET: the
    same point the LAFAN1 rig has a real hand / toe joint at."""
    lafan1, studio, jmap = rigs
    m = read_bvh_format(studio, "bvh", joint_map=jmap)
    ref = read_bvh_format(lafan1, "bvh_lafan1")
    clip = parse_bvh(studio)
    assert set(m.joint_names) == set(ref.joint_names)
    for end, role in END_ROLES.items():
        site = clip.end_site_names.index(end)
        parent = m.index(STUDIO_ROLES[clip.joint_names[clip.end_site_parents[site]]])
        w = m.index(role)
        assert m.parents[w] == parent and m.source_joint_names[w] == end
        # p = p_parent + R_parent (offset in metres); Y-up -> Z-up is in R_parent already
        want = m.positions[:, parent] + quat_rotate(m.orientations[:, parent], clip.end_site_offsets[site] * 0.01)
        np.testing.assert_allclose(m.positions[:, w], want, atol=1e-12)
        np.testing.assert_allclose(m.positions[:, w], ref.positions[:, ref.index(role)], atol=1e-6)
        # no orientation of its own: its parent's frame, and no entry in the frame table
        np.testing.assert_array_equal(m.orientations[:, w], m.orientations[:, parent])
        assert role not in m.conventions
    lafan = get_conventions("lafan1")
    assert set(m.conventions) == set(lafan) - {J(r) for r in END_ROLES.values()}
    np.testing.assert_array_equal(m.conventions[J.LEFT_ELBOW], lafan[J.LEFT_ELBOW])
    assert m.valid is None


def test_unnamed_end_sites_are_ignored(rigs):
    _, studio, _ = rigs
    m = read_bvh_format(studio, "bvh", joint_map=studio_map(studio.parent, {}, "no_ends"))
    assert J.LEFT_WRIST not in m.joint_names and J.LEFT_TOE not in m.joint_names
    assert len(m.joint_names) == len(STUDIO_ROLES)


def test_unknown_end_site_lists_the_files_end_sites(rigs, tmp_path):
    _, studio, _ = rigs
    joints = {k: v for k, v in {**STUDIO_ROLES, **END_ROLES}.items() if k != "head"}
    jmap = studio_map(tmp_path, name="typo", joints={**joints, "hand.L/End": "head"})
    with pytest.raises(
        UnknownNameError,
        match=r"studio_walk\.bvh, joint map .*typo\.yaml, field 'joints\.hand\.L/End': "
        r"BVH End Site 'hand\.L/End' not found; valid: .*forearm\.L/End",
    ) as e:
        read_bvh_format(studio, "bvh", joint_map=jmap)
    assert {"foot.L/End", "head/End", "forearm.R", "hips"} <= set(e.value.valid)
    # a joint's name without its /End is no End Site
    with pytest.raises(ConfigError, match=r"field 'joints\./End'.*names no joint"):
        joint_map_from_dict(
            {"name": "m", "length_unit": "cm", "up_axis": "y", "joints": {"hips": "pelvis", "/End": "head"}},
            where="m.yaml",
        )


def test_shipped_maps_name_no_end_sites():
    """Nothing changes for the shipped maps: they name joints only."""
    from retarget_jax.motion.joint_maps import is_end_site_name, shipped_joint_maps

    for name in shipped_joint_maps():
        assert not any(is_end_site_name(n) for n in load_joint_map(name).joints), name


# --------------------------------------------------------------------------- solving


def _torso_up(res, recipe) -> float:
    body = next(t.body for t in recipe.targets if t.human is J.SPINE_UPPER)
    b = res.body_names.index(body)
    return float(quat_to_mat(res.body_quat_w[:, b])[:, 2, 2].min())


@pytest.mark.parametrize("robot_name", list(ROBOTS))
def test_end_site_rig_retargets_upright(rigs, robot_name):
    """The End Site rig with its user map retargets upright with grounded feet, its wrist
    and toe targets tracked, and nearly as the LAFAN1 rig of the same walk does."""
    lafan1, studio, jmap = rigs
    robot, recipe = load_robot(robot_name), load_recipe(ROBOTS[robot_name])
    (res,) = retarget_motions([read_bvh_format(studio, "bvh", joint_map=jmap)], recipe, robot)
    (ref,) = retarget_motions([read_bvh_format(lafan1, "bvh_lafan1")], recipe, robot)
    m = metric_summary(res, robot)
    assert SolveStatus.ok(res.status)
    assert m["upright"] > 0.8 and _torso_up(res, recipe) > 0.8
    assert m["joint_limit_violation.max_rad"] < 1e-6
    for b in recipe.ground_bodies:
        assert abs(m[f"stance_feet.{b}_stance_sole_height_mean"]) < 0.03
    pos_targets = [t.human for t in recipe.targets if t.position_weight > 0]
    ends = [pos_targets.index(J(r)) for r in END_ROLES.values()]
    assert np.isfinite(res.target_pos_w[:, ends]).all()
    np.testing.assert_allclose(res.target_pos_w[:, ends], ref.target_pos_w[:, ends], atol=1e-4)
    # the wrists lose only their weak orientation target: the robot moves nearly the same
    d = np.linalg.norm(res.body_pos_w - ref.body_pos_w, axis=-1)
    assert d.mean() < 0.005 and d.max() < 0.03


# --------------------------------------------------------------------------- partial scale chains


def _robot_point(robot, recipe, body: str, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A body point in the world at the recipe's reference pose, by MuJoCo itself."""
    d = mujoco.MjData(robot.mj_model)
    d.qpos[:] = robot.mj_model.qpos0
    for name, v in recipe.robot_reference_pose.items():
        d.qpos[robot.mj_model.jnt_qposadr[mujoco.mj_name2id(robot.mj_model, mujoco.mjtObj.mjOBJ_JOINT, name)]] = v
    mujoco.mj_kinematics(robot.mj_model, d)
    i = mujoco.mj_name2id(robot.mj_model, mujoco.mjtObj.mjOBJ_BODY, body)
    return d.xpos[i] + d.xmat[i].reshape(3, 3) @ np.asarray(offset)


@pytest.fixture(scope="module")
def handless(rigs):
    """A rig with no hands at all: the forearm's End Site is not in the map."""
    _, studio, _ = rigs
    toes = {k: v for k, v in END_ROLES.items() if "foot" in k}
    return read_bvh_format(studio, "bvh", joint_map=studio_map(studio.parent, toes, "handless"))


@pytest.mark.parametrize("robot_name", list(ROBOTS))
def test_arms_without_wrists_are_measured_shoulder_to_elbow(handless, rigs, robot_name):
    """The arms group (shoulder -> wrist) of a skeleton without wrists is the upper arm's
    ratio: the human shoulder-elbow median length against the robot's shoulder-to-elbow
    length at the reference pose (the bodies the recipe's elbow target tracks)."""
    robot, recipe = load_robot(robot_name), load_recipe(ROBOTS[robot_name])
    assert J.LEFT_WRIST not in handless.joint_names
    p = compile_problem(RetargetingProblem(handless, recipe, robot))
    g = next(g for g in recipe.scale_groups if g.name == "arms")
    elbow = next(t for t in recipe.targets if t.human is J.LEFT_ELBOW and t.position_weight > 0)
    robot_len = np.linalg.norm(
        _robot_point(robot, recipe, elbow.body, elbow.offset)
        - _robot_point(robot, recipe, g.robot_chain[0], g.robot_offset)
    )
    human_len = np.median(
        np.linalg.norm(
            handless.positions[:, handless.index(J.LEFT_ELBOW)]
            - handless.positions[:, handless.index(J.LEFT_SHOULDER)],
            axis=-1,
        )
    )
    scale = np.asarray(p.clip.bone_scale)
    for b in g.bones:
        assert scale[canonical_index(b)] == pytest.approx(robot_len / human_len, rel=1e-5)
    # sensible: near the full chain's ratio of the rig with hands (robot arms are not
    # built like human ones: within 15% on the three robots)
    full = compile_problem(RetargetingProblem(read_bvh_format(rigs[0], "bvh_lafan1"), recipe, robot))
    ratio = scale[canonical_index(J.LEFT_ELBOW)] / float(
        np.asarray(full.clip.bone_scale)[canonical_index(J.LEFT_ELBOW)]
    )
    assert 0.8 < ratio < 1.25 and np.isfinite(scale).all()


def test_handless_rig_retargets_upright(handless):
    robot, recipe = load_robot("unitree_g1"), load_recipe("lafan1_g1")
    (res,) = retarget_motions([handless], recipe, robot)
    m = metric_summary(res, robot)
    assert SolveStatus.ok(res.status) and m["upright"] > 0.8
    pos_targets = [t.human for t in recipe.targets if t.position_weight > 0]
    assert np.isnan(res.target_pos_w[:, pos_targets.index(J.LEFT_WRIST)]).all()


def test_measured_chain_prefers_the_full_chain_then_its_mirror_then_the_longer_part():
    recipe = load_recipe("lafan1_g1")
    arms = next(g for g in recipe.scale_groups if g.name == "arms")
    every = set(J)
    left_arm = {J.LEFT_SHOULDER, J.LEFT_ELBOW, J.LEFT_WRIST}
    right_arm = {J.RIGHT_SHOULDER, J.RIGHT_ELBOW, J.RIGHT_WRIST}
    mc = measured_chain(arms, every, recipe.targets)
    assert mc.human == (J.LEFT_SHOULDER, J.LEFT_WRIST) and mc.robot_body == arms.robot_chain[1] and not mc.partial
    mc = measured_chain(arms, every - {J.LEFT_WRIST}, recipe.targets)
    assert mc.human == (J.RIGHT_SHOULDER, J.RIGHT_WRIST) and not mc.partial
    # no wrists: the elbow, whose robot point is the left elbow target's on either side
    mc = measured_chain(arms, every - {J.LEFT_WRIST, J.RIGHT_WRIST}, recipe.targets)
    assert (mc.human, mc.robot_body, mc.partial) == ((J.LEFT_SHOULDER, J.LEFT_ELBOW), "left_elbow_link", True)
    mc = measured_chain(arms, every - left_arm - {J.RIGHT_WRIST} | {J.LEFT_SHOULDER}, recipe.targets)
    assert (mc.human, mc.robot_body) == ((J.RIGHT_SHOULDER, J.RIGHT_ELBOW), "left_elbow_link")
    # a missing joint on the way is spanned: shoulder -> wrist with no elbow is the full chain
    assert measured_chain(arms, every - {J.LEFT_ELBOW}, recipe.targets).human == (J.LEFT_SHOULDER, J.LEFT_WRIST)
    assert measured_chain(arms, every - left_arm - right_arm, recipe.targets) is None
    assert (
        measured_chain(arms, every - {J.LEFT_ELBOW, J.LEFT_WRIST, J.RIGHT_ELBOW, J.RIGHT_WRIST}, recipe.targets) is None
    )
    # only a position target places the joint on the robot: spine_upper's is orientation-only
    torso = next(g for g in recipe.scale_groups if g.name == "torso")
    assert measured_chain(torso, every - {J.LEFT_SHOULDER, J.RIGHT_SHOULDER}, recipe.targets) is None


def test_a_rig_without_one_bone_of_a_chain_is_refused(tmp_path):
    """Arms that end at the shoulders (no elbows, no wrists) leave nothing to measure the
    arms group on: a typed error naming the file and the group."""
    clip = rerig(_lafan1_clip(tmp_path), ends=("LeftToe", "RightToe"), remove=("LeftForeArm", "RightForeArm"))
    path = tmp_path / "armless.bvh"
    write_bvh(path, clip)
    toes = {k: v for k, v in END_ROLES.items() if "foot" in k}
    roles = {k: v for k, v in STUDIO_ROLES.items() if not k.startswith("forearm")}
    m = read_bvh_format(
        path,
        "bvh",
        joint_map=joint_map_from_dict(
            {
                "name": "armless",
                "length_unit": "cm",
                "up_axis": "y",
                "conventions": "lafan1",
                "joints": {**roles, **toes},
            }
        ),
    )
    assert J.LEFT_ELBOW not in m.joint_names and J.LEFT_SHOULDER in m.joint_names
    with pytest.raises(
        InvalidMotionError,
        match=r"armless\.bvh: scale group 'arms' is measured on "
        r"left_shoulder->left_wrist .*not even one bone",
    ):
        compile_problem(RetargetingProblem(m, load_recipe("lafan1_g1"), load_robot("unitree_g1")))
