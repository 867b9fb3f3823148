"""Peer baseline: per-frame differential IK with ``mink`` in the GMR style (host, numpy).

This is what the benchmarks compare retarget_jax against. It solves the *same* targets
our solver sees (the compiled problem's scaled human positions and orientations, same
mapped bodies, same weights, same robot model), one frame at a time:

* one ``mink.FrameTask`` per position target, on a site placed at the target's offset
  in its body (position cost sqrt(w): mink squares its costs, our residuals are
  sqrt(w) * error), and one per orientation target on the body itself;
* a ``mink.PostureTask`` towards the recipe's default pose with our posture weight;
* ``mink.ConfigurationLimit`` (joint ranges) and the QP solved by daqp, with
  Levenberg-Marquardt damping 0.5 as GMR uses;
* each frame starts from the previous frame's solution (the first from our own initial
  guess) and iterates ``solve_ik`` + integrate until the weighted task error drops by
  less than ``tol`` or ``max_iters`` steps were taken (GMR: 1e-3 and 10).

Nothing of the peer runs in JAX; ``mink`` is a benchmark-only dependency (the ``bench``
and ``test`` extras).
"""

from __future__ import annotations

import dataclasses
import time

import mujoco
import numpy as np


@dataclasses.dataclass
class PeerRun:
    qpos: np.ndarray  # (T, nq)
    seconds: float  # wall time of the per-frame loop (set-up excluded)
    iterations: int  # solve_ik calls over the clip

    @property
    def fps(self) -> float:
        return self.qpos.shape[0] / max(self.seconds, 1e-12)


def _model_with_sites(robot, pos_body, pos_offset) -> tuple[mujoco.MjModel, list[str]]:
    """The robot's model with one site per position target (at its offset in its body)."""
    spec = mujoco.MjSpec.from_file(str(robot.mjcf_path))
    names = []
    for k, (b, off) in enumerate(zip(pos_body, pos_offset, strict=True)):
        body = spec.body(robot.body_names[b])
        name = f"peer_target_{k}"
        body.add_site(name=name, pos=[float(x) for x in off])
        names.append(name)
    model = spec.compile()
    if model.nq != robot.mj_model.nq or model.nbody != robot.mj_model.nbody:
        raise RuntimeError(f"{robot.mjcf_path}: adding target sites changed the model layout")
    return model, names


def solve_clip(
    compiled, robot, *, max_iters: int = 10, tol: float = 1e-3, damping: float = 0.5, solver: str = "daqp"
) -> PeerRun:
    """Per-frame mink IK of one compiled problem (``CompiledProblem`` of ``robot``)."""
    import jax
    import mink

    from retarget_jax.solve.costs import targets
    from retarget_jax.solve.gauss_newton import _project, initial_guess

    cp = jax.tree.map(np.asarray, compiled)
    tpos, tquat = targets(cp)
    tpos, tquat = np.asarray(tpos, np.float64), np.asarray(tquat, np.float64)
    c = cp.clip
    T = int(np.sum(np.asarray(c.frame_mask) > 0))
    model, sites = _model_with_sites(robot, cp.pos_body, np.asarray(c.pos_offset, np.float64))
    pos_tasks = [
        mink.FrameTask(s, "site", position_cost=float(np.sqrt(w)), orientation_cost=0.0, lm_damping=0.0)
        for s, w in zip(sites, np.asarray(c.pos_weight), strict=True)
    ]
    rot_tasks = [
        mink.FrameTask(robot.body_names[b], "body", position_cost=0.0, orientation_cost=float(np.sqrt(w)))
        for b, w in zip(cp.rot_body, np.asarray(c.rot_weight), strict=True)
    ]
    post_w = np.concatenate([np.zeros(6), np.sqrt(np.asarray(c.posture_weight, np.float64))])
    posture = mink.PostureTask(model, cost=post_w)
    q_default = np.concatenate([np.zeros(3), [1.0, 0.0, 0.0, 0.0], np.asarray(cp.robot.q_default, np.float64)])
    posture.set_target(q_default)
    limits = [mink.ConfigurationLimit(model)]
    tasks = [*pos_tasks, *rot_tasks, posture]

    q0 = np.asarray(_project(compiled, initial_guess(compiled, *targets(compiled))), np.float64)[0]
    config = mink.Configuration(model, q0)
    dt = 1.0  # velocities are per unit time step: q <- q + v * dt
    pvalid, rvalid = np.asarray(c.pos_valid) > 0, np.asarray(c.rot_valid) > 0
    pw, rw = np.asarray(c.pos_weight), np.asarray(c.rot_weight)

    def error() -> float:
        e = 0.0
        for k, task in enumerate(pos_tasks):
            if pw[k] > 0:
                e += pw[k] * float(np.sum(task.compute_error(config)[:3] ** 2))
        for k, task in enumerate(rot_tasks):
            if rw[k] > 0:
                e += rw[k] * float(np.sum(task.compute_error(config)[3:] ** 2))
        return e

    def aim_points(t: int) -> None:
        # A position-only target takes the site's current orientation: the SE3 error's
        # translation part is then the plain position error, not coupled to rotation.
        for k, task in enumerate(pos_tasks):
            rot = mink.SO3.from_matrix(config.data.site_xmat[site_ids[k]].reshape(3, 3))
            task.set_target(mink.SE3.from_rotation_and_translation(rot, tpos[t, k]))

    site_ids = [model.site(s).id for s in sites]
    out = np.zeros((T, model.nq))
    iters = 0
    t0 = time.perf_counter()
    for t in range(T):
        for k, task in enumerate(pos_tasks):
            task.set_position_cost(float(np.sqrt(pw[k])) if pvalid[t, k] else 0.0)
        for k, task in enumerate(rot_tasks):
            task.set_orientation_cost(float(np.sqrt(rw[k])) if rvalid[t, k] else 0.0)
            task.set_target(mink.SE3.from_rotation_and_translation(mink.SO3(tquat[t, k]), np.zeros(3)))
        aim_points(t)
        prev = error()
        for _ in range(max_iters):
            v = mink.solve_ik(config, tasks, dt, solver, damping=damping, limits=limits)
            config.integrate_inplace(v, dt)
            iters += 1
            aim_points(t)
            cur = error()
            if prev - cur < tol:
                break
            prev = cur
        out[t] = config.q
    return PeerRun(qpos=out, seconds=time.perf_counter() - t0, iterations=iters)
