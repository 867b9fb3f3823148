"""Build a training dataset from a spec: sources -> clips -> filters -> hash split -> shards (host).

Stage: dataset, after the batch driver. Host code; the solves are the batch driver's.

    spec.yaml -> load_spec() -> DatasetSpec
      stage 1, per source (BatchRunner, resumable):
        human formats  -> RetargetWorker: read, resample to target_fps, solve  -> clips/<source>/<path>.npz
        robot formats  -> RetargetWorker: read (MuJoCo FK), convert            -> clips/<source>/<path>.npz
        npz            -> validate our result npz / read mjlab npz             -> clips/<source>/<path>.npz
      stage 2, per split (train, then val), one clip at a time, in spec order:
        load clip -> preprocess (resample, truncate, normalize, ground, velocities,
        contacts) -> filters -> check-fk -> ShardWriter -> <split>/shard_NNNNN.npz
      -> manifest_resolved.csv (one row per input file) and build_info.json

Guarantees:

- **Every input is on record.** Each input file is one manifest row: ``kept``, ``dropped``
  (the filters it failed, with the figures) or ``failed`` (the typed error's
  ``error_type`` and message). A bad file never stops the build.
- **Resumable and kill-safe.** Stage 1 is the batch driver: a clip whose intermediate
  exists is not solved again, and every file is written atomically. Stage 2 rebuilds all
  shards from the intermediates on every run (host work only), so shards after a kill and
  a rerun equal those of an uninterrupted build, byte for byte. An intermediate is reused
  only if the settings it depends on (robot, format, target_fps, solver, recipe, ...)
  are those it was made with (``clips/<source>/clip_settings.json``); otherwise the
  source is redone.
- **One writer.** A build is the only writer of its dataset folder; two builds of one
  spec into one output root at the same time are not supported.
- **Bounded memory.** Stage 1 holds at most the batch driver's prefetch (a few device
  batches); stage 2 holds one shard being filled plus ``jobs`` clips being preprocessed,
  whatever the dataset's size. Train and val are packed one after the other.
- **Split by hash.** A clip's split is a salted hash of its id (:mod:`.split`).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import retarget_jax
from retarget_jax.batch.jobs import find_inputs, make_jobs
from retarget_jax.batch.runner import BatchRunner, CallableWorker
from retarget_jax.batch.worker import RetargetWorker
from retarget_jax.buckets import DEFAULT_BUCKETS
from retarget_jax.dataset.fk import FK_THRESHOLDS, fk_figures
from retarget_jax.dataset.preprocess import (
    FILTERS,
    SoleModel,
    default_feet,
    filter_reasons,
    process_clip,
)
from retarget_jax.dataset.shards import FRAME_DTYPES, ShardClip, ShardMeta, ShardWriter, read_npz
from retarget_jax.dataset.spec import NPZ_AUTO, SPLITS, DatasetSpec, SourceSpec, load_spec
from retarget_jax.dataset.split import split_of
from retarget_jax.errors import ConfigError, DatasetSpecError, FkCheckError, MotionFormatError
from retarget_jax.files.atomic import atomic_write_text, is_temp_file
from retarget_jax.formats import DEFAULT_PATTERNS
from retarget_jax.io import load_result, read_mjlab_npz, save_result
from retarget_jax.manifest import BATCH_MANIFEST_NAME, utc_now
from retarget_jax.pipeline import ProblemSettings
from retarget_jax.result import SolveStatus
from retarget_jax.robots import load_robot
from retarget_jax.solve.gauss_newton import SolverOptions

MANIFEST_NAME = "manifest_resolved.csv"
BUILD_INFO_NAME = "build_info.json"
CLIP_SETTINGS_NAME = "clip_settings.json"
DEFAULT_OUTPUT_ROOT = "outputs/datasets"
MANIFEST_COLUMNS = (
    "clip_id",
    "source",
    "input",
    "status",
    "reason",
    "error_type",
    "filters",
    "frames",
    "fps",
    "weight",
    "split",
    "shard",
    "offset",
    "source_frames",
    "source_fps",
    "fk_pos_max_m",
    "fk_quat_mean_rad",
    "fk_quat_p95_rad",
)


@dataclasses.dataclass
class _Clip:
    """One input file on its way through the build, then its manifest row."""

    clip_id: str
    source: SourceSpec
    input: str
    intermediate: Path
    split: str
    status: str = ""
    reason: str = ""
    error_type: str = ""
    filters: str = ""
    frames: int | None = None
    fps: float | None = None
    shard: str = ""
    offset: int | None = None
    source_frames: int | None = None
    source_fps: float | None = None
    fk: dict[str, float] | None = None

    def row(self) -> dict[str, str]:
        kept = self.status == "kept"
        fk = self.fk or {}
        return {
            "clip_id": self.clip_id,
            "source": self.source.name,
            "input": self.input,
            "status": self.status,
            "reason": self.reason,
            "error_type": self.error_type,
            "filters": self.filters,
            "frames": _num(self.frames),
            "fps": _num(self.fps),
            "weight": _num(self.source.weight),
            "split": self.split if kept else "",
            "shard": self.shard,
            "offset": _num(self.offset),
            "source_frames": _num(self.source_frames),
            "source_fps": _num(self.source_fps),
            "fk_pos_max_m": _num(fk.get("pos_max")),
            "fk_quat_mean_rad": _num(fk.get("quat_mean")),
            "fk_quat_p95_rad": _num(fk.get("quat_p95")),
        }


def _num(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, int | np.integer):
        return str(int(x))
    return f"{float(x):.6g}"


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def dataset_dir(spec: DatasetSpec, output_root: str | os.PathLike | None = None) -> Path:
    """``<output_root>/<spec.name>`` (default root: ``outputs/datasets``)."""
    return Path(output_root or DEFAULT_OUTPUT_ROOT).expanduser() / spec.name


def build_dataset(
    spec: DatasetSpec | str | os.PathLike,
    output_root: str | os.PathLike | None = None,
    *,
    force: bool = False,
    jobs: int | None = None,
    max_shard_mb: float | None = None,
    progress: bool = False,
    log: Callable[[str], None] = _log_stderr,
) -> dict[str, Any]:
    """Build the dataset of ``spec`` (a :class:`DatasetSpec` or a YAML path); returns the
    build info (also written as ``build_info.json``). See the module docstring.

    ``force`` redoes every intermediate; ``jobs`` is the number of host threads reading
    and preparing clips (default: Python's thread-pool default); ``max_shard_mb``
    overrides the spec's shard size bound.
    """
    t0 = time.perf_counter()
    started = utc_now()
    if not isinstance(spec, DatasetSpec):
        spec = load_spec(spec)
    where = spec.path or "<spec>"
    robot = load_robot(spec.robot)
    try:
        options = SolverOptions(**spec.solver)
    except (TypeError, ValueError) as e:
        raise DatasetSpecError(where, "solver", f"not valid solver options: {e}") from None
    feet = spec.preprocess.feet or default_feet(robot, where)
    soles = SoleModel.of(robot, feet, where)
    shard_mb = float(max_shard_mb) if max_shard_mb is not None else spec.max_shard_mb
    if not shard_mb > 0:
        raise DatasetSpecError(where, "max_shard_mb", f"expected a number > 0, found {shard_mb:g}")
    if jobs is not None and jobs < 1:
        raise DatasetSpecError(where, None, f"--jobs must be >= 1, got {jobs}")
    out = dataset_dir(spec, output_root)
    # every input is found before any work: a missing folder or an empty pattern fails now
    plan = [(src, _source_jobs(spec, i, src, out)) for i, src in enumerate(spec.sources)]
    total = sum(len(j) for _, j in plan)
    log(f"[retarget_jax.dataset] {spec.name}: {total} input file(s) in {len(plan)} source(s) -> {out}")

    # ---- stage 1: retarget / convert each source into clips/<source>/ (resumable)
    clips: list[_Clip] = []
    stage1: dict[str, Any] = {}
    for src, src_jobs in plan:
        t1 = time.perf_counter()
        records, reused = _stage1(spec, src, src_jobs, out, robot, options, force, jobs, progress, log)
        failed = sum(r.status == "failed" for r in records.values())
        stage1[src.name] = {
            "inputs": len(src_jobs),
            "reused": reused,
            "done_now": len(src_jobs) - reused - failed,
            "failed": failed,
            "seconds": round(time.perf_counter() - t1, 3),
        }
        for job in src_jobs:
            c = _Clip(
                f"{src.name}/{job.id}",
                src,
                job.motion,
                Path(job.output),
                split_of(f"{src.name}/{job.id}", spec.val_percent, spec.hash_salt),
            )
            rec = records.get(job.id)
            if rec is None or rec.status == "failed":
                c.status = "failed"
                c.error_type = (rec.error_type if rec else None) or "missing"
                c.reason = (rec.message if rec else None) or "no record from the batch driver"
            clips.append(c)

    # ---- stage 2: preprocess, filter, check-fk and pack, one split after the other
    t2 = time.perf_counter()
    meta = dict(
        robot=robot.name, joint_names=robot.dof_names, body_names=robot.body_names, contact_body_names=tuple(feet)
    )
    shards: dict[str, list] = {}
    for split in SPLITS:
        writer = ShardWriter(out / split, ShardMeta(split=split, **meta), int(shard_mb * 1e6))
        todo = [c for c in clips if c.split == split and not c.status]
        for c, outcome in _ordered(todo, lambda c: _finish(c, spec, robot, soles), jobs, progress, split):
            _record(c, outcome, writer, split)
        shards[split] = [dataclasses.asdict(s) for s in writer.close()]
    stage2_s = time.perf_counter() - t2

    # ---- records
    _write_manifest(out / MANIFEST_NAME, clips)
    info = _build_info(spec, robot, out, clips, shards, stage1, feet, started, t0, stage2_s)
    atomic_write_text(out / BUILD_INFO_NAME, json.dumps(info, indent=2, sort_keys=False) + "\n")
    c = info["counts"]
    log(
        f"[retarget_jax.dataset] {c['kept']} kept, {c['dropped']} dropped, {c['failed']} failed of {c['inputs']}; "
        f"{info['frames']} frames ({info['hours']:.3f} h) in {sum(len(v) for v in shards.values())} shard(s); "
        f"{info['wall_time_s']:.1f} s, peak RSS {info['peak_rss_mib']:.0f} MiB"
    )
    return info


# --------------------------------------------------------------------------- stage 1


def _source_jobs(spec: DatasetSpec, i: int, src: SourceSpec, out: Path):
    key = f"sources[{i}]"
    if src.input.is_dir():
        pattern = src.pattern or DEFAULT_PATTERNS.get(src.format, "**/*.npz")
        try:
            files, base = find_inputs(src.input, pattern), src.input
        except ConfigError as e:
            raise DatasetSpecError(spec.path or "<spec>", f"{key}.input", str(e)) from None
    else:
        files, base = [src.input], src.input.parent
    try:
        return make_jobs(
            files, base, out / "clips" / src.name, formats=("npz",), motion_format=src.format, robot=spec.robot
        )
    except ConfigError as e:
        raise DatasetSpecError(spec.path or "<spec>", f"{key}.input", str(e)) from None


def _clip_settings(spec: DatasetSpec, src: SourceSpec, robot) -> dict[str, Any]:
    """What a source's intermediates depend on: a change redoes the source."""
    d: dict[str, Any] = {
        "package_version": retarget_jax.__version__,
        "robot": robot.name,
        "mjcf": str(robot.mjcf_path),
        "type": src.type,
        "format": src.format,
        "input": str(src.input),
    }
    if src.is_human:
        b = spec.batch
        d.update(
            target_fps=spec.target_fps,
            solver=dict(sorted(spec.solver.items())),
            recipe=src.recipe,
            joint_map=src.joint_map,
            body_model_dir=src.body_model_dir,
            gender=src.gender,
            window=b.window,
            overlap=b.overlap,
            buckets=list(b.buckets) if b.buckets else None,
        )
    return d


def _stage1(
    spec: DatasetSpec,
    src: SourceSpec,
    jobs,
    out: Path,
    robot,
    options,
    force: bool,
    threads: int | None,
    progress: bool,
    log,
) -> tuple[dict, int]:
    folder = out / "clips" / src.name
    mpath = folder / BATCH_MANIFEST_NAME
    settings = _clip_settings(spec, src, robot)
    spath = folder / CLIP_SETTINGS_NAME
    redo = force
    if not force and spath.exists():
        try:
            old = json.loads(spath.read_text())
        except (OSError, ValueError):
            old = None
        if old != settings:
            changed = sorted(k for k in set(settings) | set(old or {}) if (old or {}).get(k) != settings.get(k))
            log(f"[retarget_jax.dataset] source {src.name}: settings changed ({', '.join(changed)}); redoing its clips")
            redo = True
    elif not spath.exists() and any(folder.rglob("*.npz")):
        redo = True  # intermediates of unknown settings
    # the settings go to disk before any clip, so a killed run's clips are known to match them
    atomic_write_text(spath, json.dumps(settings, indent=2, sort_keys=True) + "\n")
    # temporary files of writes a kill interrupted (a build is the folder's only writer)
    for f in folder.rglob(".*"):
        if f.is_file() and is_temp_file(f):
            f.unlink(missing_ok=True)
    if src.format == NPZ_AUTO:
        worker: Any = CallableWorker(lambda job: _convert_npz(job, robot))
    else:
        worker = _retarget_worker(spec, src, robot, options, mpath)
    reused = 0 if redo else sum(Path(j.output).exists() for j in jobs)
    # prefetch one batch: a build holds at most one batch of prepared clips (and one shard)
    runner = BatchRunner(chunk_size=spec.batch.max_batch, prefetch=spec.batch.max_batch, progress=progress, log=log)
    manifest = runner.run(
        jobs, worker, mpath, max_workers=threads, force=redo, input_dir=str(src.input), output_dir=str(folder)
    )
    return {r.job_id: r for r in manifest.records}, reused


def _retarget_worker(spec: DatasetSpec, src: SourceSpec, robot, options, mpath: Path):
    b = spec.batch
    return RetargetWorker(
        robot=robot,
        motion_format=src.format,
        manifest_path=mpath,
        settings=ProblemSettings(fps=spec.target_fps),
        options=options,
        recipe=src.recipe,
        formats=("npz",),
        joint_map=src.joint_map,
        body_model_dir=src.body_model_dir,
        gender=src.gender,
        buckets=tuple(b.buckets) if b.buckets else DEFAULT_BUCKETS,
        max_batch=b.max_batch,
        window=b.window,
        overlap=b.overlap,
    )


def _convert_npz(job, robot) -> None:
    """``type: npz``: our result npz (validated, checked to be this robot's) or an mjlab
    npz (read with its FK check), written as the clip's intermediate."""
    path = Path(job.motion)
    keys = read_npz(path).keys()
    if "schema_version" in keys:
        res = load_result(path)
        if tuple(res.dof_names) != robot.dof_names:
            raise MotionFormatError(
                path, f"joints are not robot '{robot.name}''s (the file is for '{res.robot}')", field="dof_names"
            )
        if tuple(res.body_names) != robot.body_names:
            raise MotionFormatError(path, f"bodies are not robot '{robot.name}''s", field="body_names")
        if not SolveStatus.ok(res.status):
            raise MotionFormatError(
                path,
                f"the result's solve status is '{SolveStatus.name(res.status)}', not usable for training",
                field="status",
            )
    elif "joint_pos" in keys:
        res = read_mjlab_npz(path, robot)
    else:
        raise MotionFormatError(
            path, "neither a retarget_jax result npz (key schema_version) nor an mjlab npz (key joint_pos)"
        )
    Path(job.output).parent.mkdir(parents=True, exist_ok=True)
    save_result(res, job.output)


# --------------------------------------------------------------------------- stage 2


def _ordered(items: list, fn: Callable, threads: int | None, progress: bool, desc: str) -> Iterator[tuple]:
    """``(item, fn(item) or the exception it raised)`` in input order, at most ``threads``
    (default 2) computed ahead: the memory bound of stage 2."""
    from tqdm import tqdm

    def safe(it):
        try:
            return fn(it)
        except Exception as e:  # one clip's failure never stops the build
            return e

    ahead = max(1, threads or 2)
    bar = tqdm(total=len(items), desc=f"pack {desc}", unit="clip", file=sys.stderr, disable=not progress)
    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="dataset-pack") as pool:
        pending: collections.deque = collections.deque()
        it = iter(items)
        try:
            while True:
                while len(pending) < ahead:
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    pending.append((nxt, pool.submit(safe, nxt)))
                if not pending:
                    break
                item, fut = pending.popleft()
                yield item, fut.result()
                bar.update(1)
        finally:
            for _, f in pending:
                f.cancel()
            bar.close()


def _finish(c: _Clip, spec: DatasetSpec, robot, soles: SoleModel):
    """Load, preprocess, filter and check one clip: a ShardClip, or (filters, reasons, clip)
    for a dropped one. Raises the typed error of a clip that cannot be used."""
    res = load_result(c.intermediate)
    clip = process_clip(
        res, robot, spec.preprocess, soles, spec.target_fps, c.source.max_frames, where=f"{c.input} (clip {c.clip_id})"
    )
    reasons = filter_reasons(clip, spec.preprocess)
    if reasons:
        return ("dropped", reasons, clip)
    frames = {k: np.ascontiguousarray(v, dtype=FRAME_DTYPES[k]) for k, v in clip.frames.items()}
    # check-fk on the arrays exactly as they go into the shard (float32)
    fk = fk_figures(
        robot,
        frames["root_pos"],
        frames["root_quat_wxyz"],
        frames["joint_pos"],
        frames["body_pos_w"],
        frames["body_quat_w"],
    )
    if not fk.passed:
        raise FkCheckError(
            f"{c.input} (clip {c.clip_id}): body poses disagree with MuJoCo FK of the joint "
            f"positions: {'; '.join(fk.failures())}"
        )
    return ShardClip(c.clip_id, c.source.name, clip.fps, c.source.weight, frames), clip, fk


def _record(c: _Clip, outcome, writer: ShardWriter, split: str) -> None:
    if isinstance(outcome, BaseException):
        c.status = "failed"
        c.error_type = str(getattr(outcome, "error_type", None) or type(outcome).__name__)
        c.reason = str(outcome) or type(outcome).__name__
        return
    if outcome[0] == "dropped":
        _, reasons, clip = outcome
        c.status = "dropped"
        c.filters = ";".join(f for f, _ in reasons)
        c.reason = "; ".join(r for _, r in reasons)
        _facts(c, clip)
        return
    shard_clip, clip, fk = outcome
    name, offset = writer.add(shard_clip)
    c.status = "kept"
    c.shard, c.offset = f"{split}/{name}", offset
    c.fk = {"pos_max": fk.pos_max, "quat_mean": fk.quat_mean, "quat_p95": fk.quat_p95}
    _facts(c, clip)
    if clip.truncated_from is not None:
        c.reason = f"truncated from {clip.truncated_from} to {clip.num_frames} frames (max_frames)"


def _facts(c: _Clip, clip) -> None:
    c.frames, c.fps = clip.num_frames, clip.fps
    c.source_frames, c.source_fps = clip.source_frames, clip.source_fps


# --------------------------------------------------------------------------- records


def _write_manifest(path: Path, clips: list[_Clip]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    w.writeheader()
    for c in clips:
        w.writerow(c.row())
    atomic_write_text(path, buf.getvalue())


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a ``manifest_resolved.csv`` (MotionFormatError for a file that is not one)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        if tuple(r.fieldnames or ()) != MANIFEST_COLUMNS:
            raise MotionFormatError(
                path,
                f"expected the columns {', '.join(MANIFEST_COLUMNS)}, found {', '.join(r.fieldnames or [])}",
                field="header",
            )
        return list(r)


def _build_info(
    spec: DatasetSpec,
    robot,
    out: Path,
    clips: list[_Clip],
    shards: dict,
    stage1: dict,
    feet,
    started: str,
    t0: float,
    stage2_s: float,
) -> dict[str, Any]:
    status = collections.Counter(c.status for c in clips)
    kept = [c for c in clips if c.status == "kept"]
    frames = sum(c.frames or 0 for c in kept)
    seconds = sum((c.frames or 0) / (c.fps or 1.0) for c in kept)
    per_source: dict[str, Any] = {}
    for src in spec.sources:
        mine = [c for c in clips if c.source.name == src.name]
        k = [c for c in mine if c.status == "kept"]
        per_source[src.name] = {
            "inputs": len(mine),
            "kept": len(k),
            "dropped": sum(c.status == "dropped" for c in mine),
            "failed": sum(c.status == "failed" for c in mine),
            "frames": sum(c.frames or 0 for c in k),
            "hours": sum((c.frames or 0) / (c.fps or 1.0) for c in k) / 3600.0,
            "train": sum(c.split == "train" for c in k),
            "val": sum(c.split == "val" for c in k),
        }
    per_split = {}
    for split in SPLITS:
        k = [c for c in kept if c.split == split]
        per_split[split] = {
            "clips": len(k),
            "frames": sum(c.frames or 0 for c in k),
            "hours": sum((c.frames or 0) / (c.fps or 1.0) for c in k) / 3600.0,
            "shards": shards.get(split, []),
        }
    drops = {f: 0 for f in FILTERS}
    for c in clips:
        if c.status == "dropped":
            for f in c.filters.split(";"):
                drops[f] += 1
    failed_types = collections.Counter(c.error_type for c in clips if c.status == "failed")
    fks = [c.fk for c in kept if c.fk]
    return {
        "format": "retarget_jax.dataset.build_info",
        "name": spec.name,
        "package_version": retarget_jax.__version__,
        "config_hash": spec.config_hash(),
        "spec": spec.to_dict(),
        "spec_path": str(spec.path) if spec.path else None,
        "robot": robot.name,
        "feet": list(feet),
        "output": str(out),
        "counts": {
            "inputs": len(clips),
            "kept": status["kept"],
            "dropped": status["dropped"],
            "failed": status["failed"],
        },
        "per_source": per_source,
        "per_split": per_split,
        "frames": frames,
        "hours": seconds / 3600.0,
        "drops_per_filter": drops,
        "failed_per_error_type": dict(sorted(failed_types.items())),
        "fk_check": {
            "thresholds": FK_THRESHOLDS,
            "clips_checked": len(fks),
            "pos_max_m": max((f["pos_max"] for f in fks), default=None),
            "quat_mean_rad_max": max((f["quat_mean"] for f in fks), default=None),
            "quat_p95_rad_max": max((f["quat_p95"] for f in fks), default=None),
        },
        "stage1": stage1,
        "stage2_seconds": round(stage2_s, 3),
        "started_at": started,
        "finished_at": utc_now(),
        "wall_time_s": round(time.perf_counter() - t0, 3),
        "peak_rss_mib": peak_rss_mib(),
    }


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)


__all__ = ["BUILD_INFO_NAME", "MANIFEST_COLUMNS", "MANIFEST_NAME", "build_dataset", "dataset_dir", "read_manifest"]
