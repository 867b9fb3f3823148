"""Every motion on the one canonical skeleton: missing joints filled and masked."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from retarget_jax.errors import InvalidMotionError
from retarget_jax.motion.canonical import CANONICAL_JOINTS, CANONICAL_PARENTS, canonicalize
from retarget_jax.motion.demo import demo_motion
from retarget_jax.motion.skeleton import HumanJoint as J
from retarget_jax.problem import RetargetingProblem, compile_problem


def _drop(m, roles):
    """The motion without ``roles``, parents re-indexed to the nearest kept ancestor."""
    keep = [i for i, j in enumerate(m.joint_names) if j not in roles]
    names = tuple(m.joint_names[i] for i in keep)
    parents = []
    for i in keep:
        p = int(m.parents[i])
        while p >= 0 and m.joint_names[p] in roles:
            p = int(m.parents[p])
        parents.append(-1 if p < 0 else names.index(m.joint_names[p]))
    return dataclasses.replace(
        m,
        joint_names=names,
        parents=np.array(parents),
        positions=m.positions[:, keep],
        orientations=m.orientations[:, keep],
        source_joint_names=(),
    )


def test_canonical_parent_table_is_a_tree_in_order():
    assert CANONICAL_PARENTS[0] == -1
    assert all(0 <= p < i for i, p in enumerate(CANONICAL_PARENTS) if i)


def test_full_motion_is_reordered_exactly():
    m = demo_motion(num_frames=10)
    pos, quat, valid = canonicalize(m)
    for c, role in enumerate(CANONICAL_JOINTS):
        np.testing.assert_array_equal(pos[:, c], m.positions[:, m.index(role)])
        np.testing.assert_array_equal(quat[:, c], m.orientations[:, m.index(role)])
    assert valid.all()


def test_missing_joints_copy_their_parent_and_are_invalid():
    m = demo_motion(num_frames=10)
    m2 = _drop(m, {J.LEFT_TOE, J.SPINE_MID})
    pos, quat, valid = canonicalize(m2)
    toe, ankle = CANONICAL_JOINTS.index(J.LEFT_TOE), CANONICAL_JOINTS.index(J.LEFT_ANKLE)
    mid, low = CANONICAL_JOINTS.index(J.SPINE_MID), CANONICAL_JOINTS.index(J.SPINE_LOWER)
    np.testing.assert_array_equal(pos[:, toe], m.positions[:, m.index(J.LEFT_ANKLE)])
    np.testing.assert_array_equal(pos[:, mid], pos[:, low])
    np.testing.assert_array_equal(quat[:, mid], quat[:, low])
    assert not valid[:, [toe, mid]].any() and valid[:, [ankle, low]].all()


def test_invalid_samples_are_interpolated_in_time_and_stay_masked():
    m = demo_motion(num_frames=10)
    w = m.index(J.LEFT_WRIST)
    valid = np.ones((10, len(m.joint_names)), bool)
    valid[3:6, w] = False
    pos = m.positions.copy()
    pos[3:6, w] = np.nan  # what a keypoint source puts where it has nothing
    m2 = dataclasses.replace(m, positions=pos, valid=valid)
    p, _, v = canonicalize(m2)
    c = CANONICAL_JOINTS.index(J.LEFT_WRIST)
    assert np.isfinite(p).all() and not v[3:6, c].any() and v[[0, 1, 2, 6, 7, 8, 9], c].all()
    np.testing.assert_allclose(p[4, c], m.positions[2, w] + 0.5 * (m.positions[6, w] - m.positions[2, w]))


def test_a_motion_without_its_root_is_rejected():
    m = _drop(demo_motion(num_frames=5), {J.PELVIS})
    with pytest.raises(InvalidMotionError, match="pelvis"):
        canonicalize(m)


def test_compiled_layout_is_the_same_for_every_source(g1, lafan1_g1_recipe):
    """The static part of a compiled problem does not depend on which joints a source has,
    nor on whether it has orientations: one compiled solver serves every source."""
    import equinox as eqx

    m = demo_motion(num_frames=12)
    few = _drop(m, {J.LEFT_TOE, J.RIGHT_TOE, J.SPINE_MID, J.LEFT_COLLAR})
    pos_only = dataclasses.replace(m, orientations=None, conventions=None)
    cps = [compile_problem(RetargetingProblem(x, lafan1_g1_recipe, g1)) for x in (m, few, pos_only)]
    statics = [eqx.partition(cp, eqx.is_array)[1] for cp in cps]
    assert statics[0] == statics[1] == statics[2]
    shapes = [
        [a.shape for a in eqx.filter(cp, eqx.is_array).clip.__dict__.values() if hasattr(a, "shape")] for cp in cps
    ]
    assert shapes[0] == shapes[1] == shapes[2]
    # what differs is data: the masks
    toe_targets = [k for k, j in enumerate(cps[1].pos_joint) if CANONICAL_JOINTS[j] in (J.LEFT_TOE, J.RIGHT_TOE)]
    assert toe_targets and not np.asarray(cps[1].clip.pos_valid)[:, toe_targets].any()
    assert np.asarray(cps[0].clip.rot_valid).all()
    # without joint frames only the targets that ask to stay level remain (the ankles)
    rot_targets = [t for t in lafan1_g1_recipe.targets if t.orientation_weight > 0]
    kept = np.asarray(cps[2].clip.rot_valid).all(axis=0)
    assert kept.tolist() == [t.level_if_unknown for t in rot_targets] and kept.sum() == 2
