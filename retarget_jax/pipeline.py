"""The whole path in one place (host code driving the jitted stages).

    motion file -> HumanMotion -> RetargetingProblem -> compile_problem() -> CompiledProblem
      -> solve_many() (bucketed jit + vmap) -> RetargetingResult -> metrics -> writers

A newcomer can read :func:`retarget_motions` first: every other module is one stage of it.
Bad input never stops a batch: a clip that fails on the host becomes a ``ClipFailure``;
a clip that fails inside the solve comes back with a non-ok status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

import retarget_jax
from retarget_jax.errors import RetargetError
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.resample import resample
from retarget_jax.problem.compile import CostWeights, RetargetingProblem, compile_problem
from retarget_jax.problem.recipe import Recipe
from retarget_jax.result import RetargetingResult, SolveStatus
from retarget_jax.robots.spec import RobotSpec
from retarget_jax.solve.batch import DEFAULT_BUCKETS, solve_many
from retarget_jax.solve.costs import targets
from retarget_jax.solve.gauss_newton import SolverOptions


@dataclasses.dataclass(frozen=True)
class ClipFailure:
    """A clip that could not be solved, with the typed error that says why."""

    source: str
    error_type: str
    message: str


def read_motion(path: str | Path, fmt: str, **kwargs) -> HumanMotion:
    """Read one motion file in a named format (host); see :mod:`retarget_jax.formats`."""
    from retarget_jax.formats import read_motion as _read

    return _read(path, fmt, **kwargs)


def retarget_motions(
    motions: Sequence[HumanMotion],
    recipe: Recipe,
    robot: RobotSpec,
    *,
    weights: CostWeights | None = None,
    options: SolverOptions | None = None,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    max_batch: int = 64,
    fps: float | None = None,
) -> list[RetargetingResult | ClipFailure]:
    """Retarget many clips of one recipe; one entry per input, in order.

    ``fps`` resamples every clip to that rate on exact times first (None keeps each
    clip's own rate); the result records the source rate in its provenance.
    """
    options = options or SolverOptions()
    weights = weights or CostWeights()
    compiled, ok_idx, out = [], [], [None] * len(motions)
    problems, source_fps = [], []
    for i, m in enumerate(motions):
        try:
            prob = RetargetingProblem(resample(m, fps), recipe, robot, weights)
            cp = compile_problem(prob)
        except RetargetError as e:
            out[i] = ClipFailure(m.source_path, e.error_type, str(e))
            continue
        compiled.append(cp)
        problems.append(prob)
        ok_idx.append(i)
        source_fps.append(float(m.fps))
    solved = solve_many(compiled, options, buckets=buckets, max_batch=max_batch) if compiled else []
    for i, prob, cp, src_fps, (so, xpos, xquat) in zip(ok_idx, problems, compiled, source_fps, solved, strict=True):
        out[i] = _to_result(prob, cp, so, xpos, xquat)
        out[i].provenance["source_fps"] = src_fps
    return out  # type: ignore[return-value]


def _to_result(prob: RetargetingProblem, cp, so, xpos, xquat) -> RetargetingResult:
    q = np.asarray(so.qpos, np.float64)
    quat = q[:, 3:7] / np.linalg.norm(q[:, 3:7], axis=-1, keepdims=True)
    cp = jax.tree.map(np.asarray, cp)  # one device->host copy; targets() then runs in numpy
    tpos, _ = targets(cp)
    # a target whose human joint the source lacks in a frame was not tracked there: NaN
    tpos = np.where(np.asarray(cp.clip.pos_valid, bool)[..., None], np.asarray(tpos, np.float64), np.nan)
    robot = prob.robot
    return RetargetingResult(
        fps=float(prob.motion.fps),
        root_pos=q[:, :3],
        root_quat_wxyz=quat,
        dof_pos=q[:, 7:],
        dof_names=robot.dof_names,
        body_names=robot.body_names,
        body_pos_w=np.asarray(xpos, np.float64),
        body_quat_w=np.asarray(xquat, np.float64),
        status=int(so.status),
        final_cost=float(so.cost),
        iterations=int(so.iterations),
        robot=robot.name,
        provenance={
            "source_path": prob.motion.source_path,
            "source_format": prob.motion.source_format,
            "fps": float(prob.motion.fps),
            "robot": robot.name,
            "recipe": prob.recipe.name,
            "config_hash": prob.config_hash(),
            "package_version": retarget_jax.__version__,
            "status_name": SolveStatus.name(int(so.status)),
        },
        target_pos_w=np.asarray(tpos, np.float64),
        target_body_names=tuple(robot.body_names[b] for b in cp.pos_body),
    )
