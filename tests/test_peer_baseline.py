"""The peer baseline of the benchmarks (per-frame mink IK, ``benchmarks/peer_mink.py``):
it must be a fair peer, i.e. really track the same targets on the same robot."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from peer_mink import _model_with_sites, solve_clip  # noqa: E402

from retarget_jax.motion.demo import demo_motion  # noqa: E402
from retarget_jax.problem.compile import RetargetingProblem, compile_problem  # noqa: E402
from retarget_jax.robots.kinematics import host_body_poses  # noqa: E402
from retarget_jax.rotations import quat_rotate  # noqa: E402
from retarget_jax.solve.costs import targets  # noqa: E402


@pytest.fixture(scope="module")
def compiled(g1, lafan1_g1_recipe):
    return compile_problem(RetargetingProblem(demo_motion(num_frames=12), lafan1_g1_recipe, g1))


def test_target_sites_sit_at_the_tracked_points(g1, compiled):
    import mujoco

    offsets = np.asarray(compiled.clip.pos_offset, np.float64)
    model, sites = _model_with_sites(g1, compiled.pos_body, offsets)
    d = mujoco.MjData(model)
    d.qpos[:] = g1.mj_model.qpos0
    d.qpos[7:] += 0.2
    mujoco.mj_kinematics(model, d)
    xpos, xquat = host_body_poses(g1, d.qpos)
    for k, s in enumerate(sites):
        b = compiled.pos_body[k]
        np.testing.assert_allclose(
            d.site_xpos[model.site(s).id], xpos[b] + quat_rotate(xquat[b], offsets[k]), atol=1e-9
        )


def test_peer_tracks_the_same_targets_within_joint_ranges(g1, compiled):
    run = solve_clip(compiled, g1)
    T = compiled.num_frames
    assert run.qpos.shape == (T, g1.nq) and np.all(np.isfinite(run.qpos))
    assert T <= run.iterations <= 10 * T  # at least one IK step per frame, at most the cap
    lo, hi = g1.dof_ranges[:, 0], g1.dof_ranges[:, 1]
    assert np.all(run.qpos[:, 7:] >= lo - 1e-6) and np.all(run.qpos[:, 7:] <= hi + 1e-6)
    xpos, xquat = host_body_poses(g1, run.qpos)
    tpos = np.asarray(targets(compiled)[0], np.float64)
    pb = list(compiled.pos_body)
    pts = xpos[:, pb] + quat_rotate(xquat[:, pb], np.asarray(compiled.clip.pos_offset, np.float64))
    err = np.linalg.norm(pts - tpos, axis=-1)
    w = np.asarray(compiled.clip.pos_weight) > 0
    # a per-frame IK that converged puts the heavily weighted points (pelvis, feet) within
    # a few cm of the demo walk's targets; the start pose (default joints) is much further
    assert np.mean(err[:, w]) < 0.05, np.mean(err[:, w], axis=0)
    q0 = run.qpos[0].copy()
    q0[7:] = np.asarray(compiled.robot.q_default)
    x0, r0 = host_body_poses(g1, q0)
    start = np.linalg.norm(x0[pb] + quat_rotate(r0[pb], np.asarray(compiled.clip.pos_offset)) - tpos[0], axis=-1)
    assert np.mean(err[0, w]) < 0.5 * np.mean(start[w])
