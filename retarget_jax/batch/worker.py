"""The retargeting worker of a batch run: read -> prepare (host threads) -> solve (device) ->
write (host). See :class:`~retarget_jax.batch.runner.BatchWorker` for the protocol.

``prepare`` reads a file and compiles its problem (numpy only, safe in threads);
items are grouped by (recipe, length bucket), where a clip longer than ``window`` counts
in the window's bucket and takes one batch row per window. ``process`` solves a chunk in
one batched call (:func:`retarget_jax.pipeline.solve_clips`) and writes every output
format, the primary one last, each atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retarget_jax.batch.jobs import DEMO_JOB, BatchJob
from retarget_jax.batch.runner import failed_record
from retarget_jax.buckets import DEFAULT_BUCKETS, bucket_length
from retarget_jax.errors import SolveError
from retarget_jax.formats import MotionFormat, default_recipe
from retarget_jax.io import read_robot_motion, write_result
from retarget_jax.manifest import BatchRunRecord, relative_to_manifest, utc_now
from retarget_jax.motion import read_motion
from retarget_jax.motion.demo import demo_motion
from retarget_jax.pipeline import PreparedClip, ProblemSettings, prepare_clip, solve_clips
from retarget_jax.problem import load_recipe
from retarget_jax.problem.contacts import load_contact_plan
from retarget_jax.result import SolveStatus
from retarget_jax.robots.spec import RobotSpec
from retarget_jax.solve.gauss_newton import SolverOptions
from retarget_jax.solve.windows import check_window_args, plan_windows

PROVENANCE_KEYS = (
    "config_hash",
    "recipe",
    "robot",
    "package_version",
    "status_name",
    "source_fps",
    "masked_frames",
    "masked_joints",
    "masked_per_joint",
)


@dataclasses.dataclass
class _Loaded:
    """A robot-space file: already a result, nothing to solve."""

    result: Any
    started: str


@dataclasses.dataclass
class _ToSolve:
    clip: PreparedClip
    recipe: str
    slots: int
    started: str


@dataclasses.dataclass
class RetargetWorker:
    """Retargets motion files to one robot (see the module docstring).

    Attributes:
        robot: the robot.
        motion_format: the input format (a robot-space format is loaded, not solved).
        manifest_path: the batch manifest (record paths are relative to its folder).
        settings: weights, resampling, contact thresholds, limits, terrain.
        options: solver settings.
        recipe: recipe name or YAML file; None = the shipped recipe for each clip's family.
        formats: output formats (``npz``, ``mjlab_npz``, ``gmr_pkl``), the first primary.
        joint_map, body_model_dir, gender: reader options (``retarget_jax.formats``).
        contacts_path: an explicit contact plan (only for a run of one clip).
        buckets, max_batch: padding lengths and the device batch.
        window, overlap: clips longer than ``window`` frames are solved as overlapping
            windows and stitched; None solves every clip whole.
        demo_frames: length of the embedded demo walk (job :data:`DEMO_JOB`).
    """

    robot: RobotSpec
    motion_format: MotionFormat
    manifest_path: Path
    settings: ProblemSettings = dataclasses.field(default_factory=ProblemSettings)
    options: SolverOptions = dataclasses.field(default_factory=SolverOptions)
    recipe: str | None = None
    formats: Sequence[str] = ("npz",)
    joint_map: str | None = None
    body_model_dir: str | None = None
    gender: str | None = None
    contacts_path: str | None = None
    buckets: Sequence[int] = DEFAULT_BUCKETS
    max_batch: int = 64
    window: int | None = 1024
    overlap: int = 64
    demo_frames: int = 150

    def __post_init__(self) -> None:
        self.motion_format = MotionFormat.parse(self.motion_format, where="input.format")
        if self.window is not None:
            check_window_args(self.window, self.overlap)
            bucket_length(self.window, self.buckets)

    # ----------------------------------------------------------------------- protocol

    def prepare(self, job: BatchJob) -> _Loaded | _ToSolve:
        started = utc_now()
        if self.motion_format.is_robot_space:
            return _Loaded(read_robot_motion(job.motion, self.motion_format, self.robot), started)
        if job.motion == DEMO_JOB:
            motion = demo_motion(num_frames=self.demo_frames)
            fmt = MotionFormat.BVH_LAFAN1  # the demo's skeleton is LAFAN1-like
        else:
            motion = read_motion(
                job.motion,
                self.motion_format,
                joint_map=self.joint_map,
                body_model_dir=self.body_model_dir,
                gender=self.gender,
            )
            fmt = self.motion_format
        recipe = _recipe(self.recipe or default_recipe(fmt, self.robot.name, motion))
        plan = (
            load_contact_plan(self.contacts_path, recipe.ground_joints, motion.num_frames)
            if self.contacts_path
            else None
        )
        clip = prepare_clip(motion, recipe, self.robot, self.settings, plan)
        T = clip.num_frames
        slots = len(plan_windows(T, self.window, self.overlap)) if self.window and T > self.window else 1
        return _ToSolve(clip, recipe.name, slots, started)

    def group(self, item: _Loaded | _ToSolve) -> Hashable:
        if isinstance(item, _Loaded):
            return ("loaded",)
        T = item.clip.num_frames
        return (item.recipe, bucket_length(min(T, self.window) if self.window else T, self.buckets))

    def slots(self, item: _Loaded | _ToSolve) -> int:
        return item.slots if isinstance(item, _ToSolve) else 1

    def frames(self, item: _Loaded | _ToSolve) -> int:
        return item.clip.num_frames if isinstance(item, _ToSolve) else item.result.num_frames

    def process(self, jobs: Sequence[BatchJob], items: Sequence[_Loaded | _ToSolve]) -> list[BatchRunRecord]:
        solve = [it for it in items if isinstance(it, _ToSolve)]
        solved = iter(
            solve_clips(
                [it.clip for it in solve],
                self.options,
                buckets=self.buckets,
                max_batch=self.max_batch,
                window=self.window,
                overlap=self.overlap,
                fixed_batch=True,
            )
            if solve
            else []
        )
        records = []
        for job, item in zip(jobs, items, strict=True):
            result = next(solved) if isinstance(item, _ToSolve) else item.result
            try:
                records.append(self._write(job, result, item.started))
            except Exception as e:  # a write that fails loses this job only
                records.append(failed_record(job, e, item.started, _status_provenance(result)))
        return records

    # ----------------------------------------------------------------------- writing

    def _write(self, job: BatchJob, result, started: str) -> BatchRunRecord:
        # A clip the solve could not use (invalid_input: non-finite targets; diverged: a
        # non-finite cost or pose) fails its own job and writes nothing; a rerun retries it.
        name = SolveStatus.name(result.status)
        if not SolveStatus.ok(result.status):
            raise SolveError(
                f"{job.motion}: the solve returned status '{name}' "
                f"({_STATUS_WHY.get(int(result.status), 'not an ok status')}); nothing written"
            )
        if not np.all(np.isfinite(result.qpos)):
            raise SolveError(
                f"{job.motion}: the solve produced non-finite joint values (status '{name}'); nothing written"
            )
        outputs = job.outputs(self.formats)
        for fmt, path in zip([*self.formats[1:], self.formats[0]], outputs, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_result(result, path, fmt)
        prov = {k: result.provenance[k] for k in PROVENANCE_KEYS if k in result.provenance}
        prov.update(frames=int(result.num_frames), iterations=int(result.iterations), **job.provenance)
        if len(outputs) > 1:
            prov["outputs"] = [relative_to_manifest(self.manifest_path, p) for p in outputs]
        return BatchRunRecord(
            job_id=job.id,
            motion=job.motion,
            output=relative_to_manifest(self.manifest_path, outputs[-1]),
            status="success",
            started_at=started,
            finished_at=utc_now(),
            message=str(result.provenance.get("status_name", "loaded")),
            provenance=prov,
        )


_STATUS_WHY = {
    SolveStatus.INVALID_INPUT: "non-finite targets: the clip was not solved",
    SolveStatus.DIVERGED: "the cost or the pose became non-finite during the solve",
}


def _status_provenance(result) -> dict[str, Any]:
    """What a failed record keeps of a solve: its status and iterations (JSON-safe)."""
    if result is None or not hasattr(result, "status"):
        return {}
    return {
        "status": int(result.status),
        "status_name": SolveStatus.name(result.status),
        "iterations": int(result.iterations),
    }


@functools.lru_cache(maxsize=32)
def _recipe_cached(name: str, mtime: float):
    return load_recipe(name)


def _recipe(name: str):
    """A recipe loaded once per run (it is the same for every clip of a family)."""
    p = Path(name)
    return _recipe_cached(name, os.path.getmtime(p) if p.suffix in (".yaml", ".yml") and p.exists() else 0.0)
