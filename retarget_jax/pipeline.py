"""The whole path in one place (host code driving the jitted stages).

    motion file -> HumanMotion -> RetargetingProblem -> compile_problem() -> CompiledProblem
      -> solve_many() (bucketed jit + vmap) -> RetargetingResult -> metrics -> writers

A newcomer can read :func:`retarget_motions` first: every other module is one stage of it.
:func:`read_motion` (from :mod:`retarget_jax.motion`) is named here too, so the whole path
imports from one place: ``from retarget_jax.pipeline import read_motion, retarget_motions``.
Bad input never stops a batch: a clip that fails on the host becomes a ``ClipFailure``;
a clip that fails inside the solve comes back with a non-ok status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

import retarget_jax
from retarget_jax.buckets import DEFAULT_BUCKETS
from retarget_jax.errors import InvalidMotionError, RetargetError
from retarget_jax.motion.canonical import canonical_index, masked_samples
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.reader import read_motion
from retarget_jax.motion.resample import resample
from retarget_jax.problem.compile import (
    CompiledProblem,
    CostWeights,
    JointVelocityLimits,
    RetargetingProblem,
    compile_problem,
)
from retarget_jax.problem.contacts import ContactPlan, ContactThresholds, stance_foot_speed
from retarget_jax.problem.limbs import recipe_limbs, unit
from retarget_jax.problem.recipe import Recipe
from retarget_jax.result import RetargetingResult, SolveStatus
from retarget_jax.robots.collision import HeightField
from retarget_jax.robots.spec import RobotSpec
from retarget_jax.solve.batch import solve_many
from retarget_jax.solve.costs import scaled_human, targets
from retarget_jax.solve.gauss_newton import SolverOptions
from retarget_jax.solve.windows import solve_windowed

__all__ = [
    "MIN_FRAMES",
    "ClipFailure",
    "PreparedClip",
    "ProblemSettings",
    "finish_clip",
    "prepare_clip",
    "read_motion",
    "retarget_motions",
    "solve_clips",
]

#: Fewest frames a clip may have: velocity, acceleration and contact terms need neighbours.
MIN_FRAMES = 2


@dataclasses.dataclass(frozen=True)
class ClipFailure:
    """A clip that could not be solved, with the typed error that says why."""

    source: str
    error_type: str
    message: str


@dataclasses.dataclass(frozen=True)
class ProblemSettings:
    """What every clip of a run shares besides recipe and robot: cost weights, the rate to
    resample to (None keeps each clip's own), contact detection thresholds, joint speed
    limits and the terrain."""

    weights: CostWeights = dataclasses.field(default_factory=CostWeights)
    fps: float | None = None
    contact_thresholds: ContactThresholds = dataclasses.field(default_factory=ContactThresholds)
    joint_velocity_limits: JointVelocityLimits = dataclasses.field(default_factory=JointVelocityLimits)
    terrain: HeightField | None = None


@dataclasses.dataclass
class PreparedClip:
    """One clip ready for the device: its host problem and the compiled pytree."""

    problem: RetargetingProblem
    compiled: CompiledProblem
    source_fps: float

    @property
    def num_frames(self) -> int:
        return self.compiled.num_frames


def prepare_clip(
    motion: HumanMotion,
    recipe: Recipe,
    robot: RobotSpec,
    settings: ProblemSettings | None = None,
    contacts: ContactPlan | None = None,
) -> PreparedClip:
    """Resample, build the problem and compile it (host; raises RetargetError subclasses)."""
    settings = settings or ProblemSettings()
    resampled = resample(motion, settings.fps)
    if resampled.num_frames < MIN_FRAMES:
        where = motion.source_path or "<motion>"
        at = f" (at {settings.fps:g} fps)" if resampled is not motion else ""
        raise InvalidMotionError(
            f"{where}, field 'frames': a clip needs at least {MIN_FRAMES} frames to retarget (velocities, "
            f"contacts and smoothness are defined between frames), found {resampled.num_frames}{at}"
        )
    prob = RetargetingProblem(
        resampled,
        recipe,
        robot,
        settings.weights,
        contacts=_resample_plan(contacts, motion, resampled),
        contact_thresholds=settings.contact_thresholds,
        joint_velocity_limits=settings.joint_velocity_limits,
        terrain=settings.terrain,
    )
    return PreparedClip(prob, compile_problem(prob), float(motion.fps))


def finish_clip(clip: PreparedClip, solved) -> RetargetingResult:
    """The result of a prepared clip from its ``(SolveOutput, body_pos_w, body_quat_w)``."""
    so, xpos, xquat = solved
    res = _to_result(clip.problem, clip.compiled, so, xpos, xquat)
    res.provenance["source_fps"] = clip.source_fps
    return res


def solve_clips(
    clips: Sequence[PreparedClip],
    options: SolverOptions | None = None,
    *,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    max_batch: int = 64,
    window: int | None = None,
    overlap: int = 32,
    fixed_batch: bool = False,
) -> list[RetargetingResult]:
    """Solve prepared clips in bucketed batches; a clip longer than ``window`` frames is
    split into overlapping windows solved in the same batches and stitched
    (:mod:`retarget_jax.solve.windows`). ``window=None`` solves every clip whole.
    ``fixed_batch`` pads every batch to a power of two of at most ``max_batch`` clips
    (:func:`~retarget_jax.solve.batch.batch_rows`: a few programs per bucket)."""
    options = options or SolverOptions()
    problems = [c.compiled for c in clips]
    if window is None:
        solved = solve_many(problems, options, buckets=buckets, max_batch=max_batch, fixed_batch=fixed_batch)
    else:
        solved = solve_windowed(
            problems,
            options,
            robot=clips[0].problem.robot,
            window=window,
            overlap=overlap,
            buckets=buckets,
            max_batch=max_batch,
            fixed_batch=fixed_batch,
        )
    return [finish_clip(c, s) for c, s in zip(clips, solved, strict=True)]


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
    contacts: Sequence[ContactPlan | None] | None = None,
    contact_thresholds: ContactThresholds | None = None,
    joint_velocity_limits: JointVelocityLimits | None = None,
    terrain: HeightField | None = None,
    window: int | None = None,
    overlap: int = 32,
    fixed_batch: bool = False,
) -> list[RetargetingResult | ClipFailure]:
    """Retarget many clips of one recipe; one entry per input, in order.

    ``fps`` resamples every clip to that rate on exact times first (None keeps each
    clip's own rate); the result records the source rate in its provenance.
    ``contacts``: an explicit ContactPlan per clip (None entries, or None for all, are
    detected from the source with ``contact_thresholds``); a plan follows its clip through
    resampling (nearest source frame). ``window``/``overlap``/``fixed_batch``: see
    :func:`solve_clips`.
    """
    settings = ProblemSettings(
        weights or CostWeights(),
        fps,
        contact_thresholds or ContactThresholds(),
        joint_velocity_limits or JointVelocityLimits(),
        terrain,
    )
    plans = list(contacts) if contacts is not None else [None] * len(motions)
    if len(plans) != len(motions):
        raise ValueError(f"{len(plans)} contact plans for {len(motions)} motions")
    out: list = [None] * len(motions)
    clips, ok_idx = [], []
    for i, m in enumerate(motions):
        try:
            clips.append(prepare_clip(m, recipe, robot, settings, plans[i]))
            ok_idx.append(i)
        except RetargetError as e:
            out[i] = ClipFailure(m.source_path, e.error_type, str(e))
    if clips:
        results = solve_clips(
            clips,
            options,
            buckets=buckets,
            max_batch=max_batch,
            window=window,
            overlap=overlap,
            fixed_batch=fixed_batch,
        )
        for i, res in zip(ok_idx, results, strict=True):
            out[i] = res
    return out


def _resample_plan(plan: ContactPlan | None, src: HumanMotion, dst: HumanMotion) -> ContactPlan | None:
    """The plan on ``dst``'s frames (the nearest ``src`` frame in time), or None."""
    if plan is None or dst is src:
        return plan
    if plan.num_frames != src.num_frames:
        raise RetargetError(
            f"{src.source_path or '<motion>'}: the contact plan has {plan.num_frames} frames, "
            f"the motion {src.num_frames}"
        )
    idx = np.clip(np.searchsorted(src.times, dst.times), 0, src.num_frames - 1)
    prev = np.clip(idx - 1, 0, src.num_frames - 1)
    idx = np.where(np.abs(src.times[prev] - dst.times) <= np.abs(src.times[idx] - dst.times), prev, idx)
    return ContactPlan(plan.stance[idx], plan.feet, plan.source, plan.thresholds)


def _contact_summary(prob: RetargetingProblem, cp, stance: np.ndarray) -> dict:
    """The plan's summary plus the human source's own stance-foot speed (m/s), raw and as
    scaled for the robot: what the robot's ``foot_sliding`` is judged against."""
    summary = ContactPlan(stance, prob.recipe.ground_joints, *_plan_meta(prob)).summary()
    joints = [canonical_index(j) for j in prob.recipe.ground_joints]
    motion = prob.motion
    raw = np.stack(
        [
            motion.positions[:, motion.index(j)] if j in motion.joint_names else np.full((motion.num_frames, 3), np.nan)
            for j in prob.recipe.ground_joints
        ],
        axis=1,
    )
    ok = np.isfinite(raw).all(axis=-1)
    scaled = np.asarray(scaled_human(cp), np.float64)[:, joints]
    summary["human_stance_foot_speed_mps"] = stance_foot_speed(np.nan_to_num(raw), stance & ok, motion.fps)
    summary["human_stance_foot_speed_scaled_mps"] = stance_foot_speed(scaled, stance & ok, motion.fps)
    return summary


def _plan_meta(prob: RetargetingProblem):
    if prob.contacts is not None:
        return prob.contacts.source, prob.contacts.thresholds
    return "detected", prob.contact_thresholds


def _to_result(prob: RetargetingProblem, cp, so, xpos, xquat) -> RetargetingResult:
    q = np.asarray(so.qpos, np.float64)
    quat = q[:, 3:7] / np.linalg.norm(q[:, 3:7], axis=-1, keepdims=True)
    cp = jax.tree.map(np.asarray, cp)  # one device->host copy; targets() then runs in numpy
    tpos, _ = targets(cp)
    # a target whose human joint the source lacks in a frame was not tracked there: NaN
    tpos = np.where(np.asarray(cp.clip.pos_valid, bool)[..., None], np.asarray(tpos, np.float64), np.nan)
    robot = prob.robot
    stance = np.asarray(cp.clip.stance) > 0.5
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
            "weights": dataclasses.asdict(prob.weights),
            "contact_plan": _contact_summary(prob, cp, stance),
            # samples masked out of the targets and interpolated for the scaled figure
            **masked_samples(prob.motion),
        },
        target_pos_w=np.asarray(tpos, np.float64),
        target_body_names=tuple(robot.body_names[b] for b in cp.pos_body),
        target_offset_b=np.asarray(cp.clip.pos_offset, np.float64),
        contacts=stance,
        contact_body_names=tuple(prob.recipe.ground_bodies),
        **_limb_fields(prob, cp),
    )


def _limb_fields(prob: RetargetingProblem, cp) -> dict:
    """The result's limb fields: names, end bodies and points, and the unscaled human
    bone directions per frame (NaN where a joint is missing)."""
    names = tuple(lb.limb.name for lb in recipe_limbs(prob.recipe))
    if not names:
        return {}
    ja = [a for a, _ in cp.limb_joint]
    jb = [b for _, b in cp.limb_joint]
    h = np.asarray(cp.clip.human_pos, np.float64)
    hdir = unit(h[:, jb] - h[:, ja])
    hdir = np.where(np.asarray(cp.clip.limb_valid, bool)[..., None], hdir, np.nan)
    bodies = prob.robot.body_names
    return {
        "limb_names": names,
        "limb_body_names": tuple((bodies[a], bodies[b]) for a, b in cp.limb_body),
        "limb_offset_b": np.asarray(cp.clip.limb_offset, np.float64),
        "limb_human_dir": hdir,
    }
