"""Build motion libraries: motion configs -> per-motion states -> one library per config
(stage: motion libraries, host code driving the jitted FK and solve).

    configs (rows) -> per-motion states files (resumable) -> <prefix>_<config>[_k].npz
                                                          -> motionlib_manifest.json

:func:`build_libraries` is the whole build; the CLI (``retarget-jax motionlib build``) and
the Hydra entry (``python -m retarget_jax.motionlib.run``) both call it.

Guarantees:

- **Bad rows do not stop a build.** A missing file, an unreadable one, a slice outside its
  clip or a failed solve is a ``failed`` record in the manifest (error type and reason);
  every other row builds, and each library holds its config's good rows.
- **Resumable, and the same library after a kill.** Each motion's states are written
  atomically to ``motions/<target>/<file>@<start>-<end>.npz`` with a *build key* (a hash
  of the source file's bytes, the slice and every setting that changes the states). A
  rerun reuses a states file whose key matches and recomputes the rest; libraries are
  packed from the states files alone, deterministically, and written atomically. A
  library whose content key (its motions' build keys, weights and order) is unchanged
  is not rewritten.
- ``force_remake`` recomputes every states file and rewrites every library.
- Rows of several configs with the same file, slice and rate share one states file, and
  the robot solves of all configs run together (one compile per length bucket).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

import retarget_jax
from retarget_jax.body_models import model_skeleton, neutral_skeleton
from retarget_jax.errors import ConfigError, RetargetError, SolveError
from retarget_jax.formats import MotionFormat, default_recipe
from retarget_jax.io import read_robot_motion
from retarget_jax.manifest import BatchManifest, BatchRunRecord, relative_to_manifest, utc_now
from retarget_jax.metrics import metric_summary
from retarget_jax.motion import read_motion
from retarget_jax.motion.amass import parse_amass
from retarget_jax.motion.resample import resample_at
from retarget_jax.motionlib.config import BuildOptions, MotionConfig, MotionRow, load_motion_config
from retarget_jax.motionlib.library import (
    LIBRARY_SCHEMA_VERSION,
    load_library,
    pack_library,
    save_library,
    shard_assignment,
)
from retarget_jax.motionlib.states import (
    STATES_SCHEMA_VERSION,
    MotionStates,
    body_model_states,
    figure,
    load_states,
    qpos_at,
    robot_states,
    save_states,
    slice_times,
)
from retarget_jax.pipeline import ClipFailure, retarget_motions
from retarget_jax.problem import load_recipe
from retarget_jax.result import SolveStatus
from retarget_jax.robots import load_robot
from retarget_jax.solve import SolverOptions

__all__ = ["MANIFEST_NAME", "BuildSummary", "build_libraries", "library_paths"]

MANIFEST_NAME = "motionlib_manifest.json"
_SMPL_FORMATS = ("amass", "smpl", "smplh", "smplx")


@dataclasses.dataclass
class BuildSummary:
    """What a build did: libraries written (or kept), rows by status, the manifest, time."""

    libraries: dict[str, list[str]]  # config name -> library files (one per shard)
    written: list[str]  # library files written by this run (the others were kept)
    success: int  # rows whose states were computed by this run
    reused: int  # rows whose states file was reused
    failed: int
    manifest: str
    seconds: float
    frames: int  # frames in all libraries
    bytes: int  # size of all library files

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def library_paths(output_dir: str | os.PathLike, prefix: str, config: str, shards: int) -> list[Path]:
    """Library files of one config: ``<prefix>_<config>.npz`` or ``..._0.npz`` ... ``_<N-1>.npz``."""
    out = Path(output_dir)
    if shards == 1:
        return [out / f"{prefix}_{config}.npz"]
    return [out / f"{prefix}_{config}_{k}.npz" for k in range(shards)]


@dataclasses.dataclass
class _Source:
    """One unique (file, slice, rate, format): the rows that use it and its states file."""

    rows: list[MotionRow]
    states_path: Path
    build_key: str | None = None
    status: str = ""  # success | skipped (reused) | failed
    error_type: str | None = None
    message: str = ""
    frames: int = 0

    @property
    def row(self) -> MotionRow:
        return self.rows[0]


def _safe_rel(file: str) -> PurePosixPath:
    """A config's file path as a relative path that stays inside the states folder."""
    parts = [p for p in PurePosixPath(file.replace("\\", "/")).parts if p not in ("/", "")]
    return PurePosixPath(*[("__" if p == ".." else p) for p in parts])


def _motion_name(row: MotionRow) -> str:
    stem = str(_safe_rel(row.file).with_suffix(""))
    name = f"{stem}@{row.start:g}-{'end' if row.end is None else f'{row.end:g}'}"
    if row.fps is not None:
        name += f"@{row.fps:g}fps"
    if row.format is not None:
        name += f"@{row.format}"
    return name


def _target_name(target: str) -> str:
    return Path(target).stem if target.lower().endswith(".xml") else target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _settings(options: BuildOptions, model_hash: str) -> dict[str, Any]:
    """Every setting that changes a motion's states (part of each build key)."""
    s: dict[str, Any] = {
        "states_schema": STATES_SCHEMA_VERSION,
        "target": options.target,
        "model": model_hash,
        "output_fps": float(options.output_fps),
        "format": options.format,
    }
    if options.is_body_model:
        s.update(
            body_model_dir=str(Path(options.body_model_dir).resolve()) if options.body_model_dir else None,
            gender=options.gender,
            contacts=dataclasses.asdict(options.contacts),
        )
    else:
        s.update(
            recipe=options.recipe,
            max_iters=options.max_iters,
            window=options.window,
            overlap=int(options.overlap),
            body_model_dir=options.body_model_dir,
            gender=options.gender,
            joint_map=options.joint_map,
        )
    return s


def _key(settings: dict, row: MotionRow, file_hash: str) -> str:
    payload = {
        "settings": settings,
        "file_sha256": file_hash,
        "fps": row.fps,
        "start": row.start,
        "end": row.end,
        "format": row.format,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- per-row work


def _body_model_row(src: _Source, path: Path, options: BuildOptions) -> MotionStates:
    row = src.row
    fmt = row.format or options.format
    if fmt not in _SMPL_FORMATS:
        raise ConfigError(
            f"{path}: target '{options.target}' poses the SMPL body model from SMPL-family files "
            f"(formats {', '.join(_SMPL_FORMATS)}); format '{fmt}' has no pose parameters"
        )
    clip = parse_amass(path, fmt)
    fps = float(row.fps or clip.fps)
    last = (clip.num_frames - 1) / fps
    times = slice_times(
        last,
        clip.num_frames / fps,
        row.start,
        row.end,
        options.output_fps,
        str(path),
        f"{clip.num_frames} frames at {fps:g} fps",
    )
    if options.body_model_dir:
        gender = options.gender or (clip.gender if clip.gender in ("neutral", "male", "female") else "neutral")
        skeleton = model_skeleton(options.body_model_dir, clip.family, gender, clip.betas)
    else:
        skeleton = neutral_skeleton(options.target)
    return body_model_states(clip, options.target, skeleton, times, options.output_fps, options.contacts, clip_fps=fps)


def _human_motion(src: _Source, path: Path, options: BuildOptions):
    """The row's human motion sampled at the output rate on the slice (clock from 0), and
    the source's rate."""
    row = src.row
    motion = read_motion(
        path,
        row.format or options.format,
        joint_map=options.joint_map,
        body_model_dir=options.body_model_dir,
        gender=options.gender,
    )
    if row.fps is not None:
        motion = dataclasses.replace(
            motion, fps=float(row.fps), timestamps=np.arange(motion.num_frames, dtype=np.float64) / row.fps
        )
    t0 = float(motion.times[0])
    last = float(motion.times[-1]) - t0
    times = slice_times(
        last,
        last + 1.0 / motion.fps,
        row.start,
        row.end,
        options.output_fps,
        str(path),
        f"{motion.num_frames} frames at {motion.fps:g} fps",
    )
    out = resample_at(motion, times + t0, options.output_fps)
    return (
        dataclasses.replace(out, timestamps=np.arange(times.shape[0], dtype=np.float64) / options.output_fps),
        float(motion.fps),
    )


def _robot_space_row(src: _Source, path: Path, options: BuildOptions, robot) -> MotionStates:
    row = src.row
    result = read_robot_motion(path, row.format or options.format, robot)
    fps = float(row.fps or result.fps)
    last = (result.num_frames - 1) / fps
    times = slice_times(
        last,
        result.num_frames / fps,
        row.start,
        row.end,
        options.output_fps,
        str(path),
        f"{result.num_frames} frames at {fps:g} fps",
    )
    q = qpos_at(result.qpos, fps, times)
    return robot_states(robot, q, options.output_fps, info={"source_fps": fps, "solved": False})


def _solve_rows(
    items: list[tuple[_Source, Any, float]], options: BuildOptions, robot
) -> list[MotionStates | Exception]:
    """Retarget prepared human motions (grouped by recipe, one batched call per group)."""
    out: list[MotionStates | Exception] = [None] * len(items)  # type: ignore[list-item]
    groups: dict[str, list[int]] = {}
    for i, (src, motion, _) in enumerate(items):
        try:
            name = options.recipe or default_recipe(src.row.format or options.format, robot.name, motion)
            groups.setdefault(name, []).append(i)
        except RetargetError as e:
            out[i] = e
    for name, idx in groups.items():
        try:
            recipe = load_recipe(name)
        except (RetargetError, FileNotFoundError) as e:
            for i in idx:
                out[i] = e
            continue
        results = retarget_motions(
            [items[i][1] for i in idx],
            recipe,
            robot,
            options=SolverOptions() if options.max_iters is None else SolverOptions(max_iters=int(options.max_iters)),
            window=options.window,
            overlap=int(options.overlap),
            max_batch=int(options.max_batch),
        )
        for i, res in zip(idx, results, strict=True):
            if isinstance(res, ClipFailure):
                err = RetargetError(res.message)
                err.error_type = res.error_type
                out[i] = err
            elif not res.ok:
                out[i] = SolveError(
                    f"{res.provenance.get('source_path')}: the solve returned status '{SolveStatus.name(res.status)}'"
                )
            else:
                info = {
                    "solved": True,
                    "status": SolveStatus.name(res.status),
                    "final_cost": float(res.final_cost),
                    "iterations": int(res.iterations),
                    "recipe": recipe.name,
                    "source_fps": items[i][2],
                    "metrics": metric_summary(res, robot),
                }
                out[i] = robot_states(
                    robot,
                    res.qpos,
                    res.fps,
                    contacts=res.contacts,
                    contact_body_names=res.contact_body_names,
                    info=info,
                )
    return out


# --------------------------------------------------------------------------- the build


def build_libraries(
    source_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    motion_configs: Sequence[str | os.PathLike | MotionConfig],
    options: BuildOptions,
    *,
    progress: bool = True,
) -> BuildSummary:
    """Build one library (or ``options.shards`` shards) per motion config; see the module
    docstring. Raises only for problems of the whole build (a bad config, an unknown
    target); problems of single rows are failed records in the manifest."""
    t0 = time.perf_counter()
    root, out = Path(source_root), Path(output_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"source root not found (or not a folder): {root}")
    configs = [c if isinstance(c, MotionConfig) else load_motion_config(c) for c in motion_configs]
    if not configs:
        raise ConfigError("motionlib build: give at least one motion config")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"motion configs must have distinct file names (library names come from them): {names}")

    robot = None
    if options.is_body_model:
        fig = figure(options.target)
        model_hash = _sha256(Path(fig.mjcf_path))
        model = {"kind": "body_model", "family": options.target, "mjcf": Path(fig.mjcf_path).name}
    else:
        robot = load_robot(options.target)
        model_hash = _sha256(Path(robot.mjcf_path))
        model = {"kind": "robot", "name": robot.name, "mjcf": str(robot.mjcf_path)}
    settings = _settings(options, model_hash)
    states_dir = out / "motions" / _target_name(options.target)

    sources: dict[tuple, _Source] = {}
    for c in configs:
        for row in c.rows:
            key = row.source_key
            if key not in sources:
                sources[key] = _Source([], states_dir / (_motion_name(row) + ".npz"))
            sources[key].rows.append(row)

    manifest_path = out / MANIFEST_NAME
    out.mkdir(parents=True, exist_ok=True)
    todo: list[_Source] = []
    hashes: dict[str, str] = {}
    for src in sources.values():
        path = root / src.row.file
        try:
            if str(path) not in hashes:
                hashes[str(path)] = _sha256(path)
        except FileNotFoundError:
            _fail(src, "file_not_found", f"{path}: file not found")
            continue
        except OSError as e:
            _fail(src, "io", f"{path}: cannot read ({type(e).__name__}: {e})")
            continue
        src.build_key = _key(settings, src.row, hashes[str(path)])
        if not options.force_remake and src.states_path.is_file():
            try:
                states, key = load_states(src.states_path)
                if key == src.build_key:
                    src.status, src.frames = "skipped", states.num_frames
                    continue
            except (RetargetError, OSError):
                pass  # unreadable or stale: recompute
        todo.append(src)

    from tqdm import tqdm

    bar = tqdm(
        total=len(todo), desc=f"motionlib {options.target}", unit="motion", file=sys.stderr, disable=not progress
    )
    chunk = 64 if options.is_body_model else int(options.chunk)
    for s in range(0, len(todo), chunk):
        part = todo[s : s + chunk]
        if options.is_body_model:
            for src in part:
                _run(src, lambda src=src: _body_model_row(src, root / src.row.file, options))
                bar.update(1)
        else:
            _robot_chunk(part, root, options, robot)
            bar.update(len(part))
        _save_manifest(manifest_path, sources, out, root, {})
    bar.close()

    libraries: dict[str, list[str]] = {}
    written: list[str] = []
    where: dict[str, str] = {}  # job id -> library file
    total_frames = total_bytes = 0
    ours = {p.name for c in configs for p in library_paths(out, options.prefix, c.name, options.shards)}
    for c in configs:
        ok = [r for r in c.rows if sources[r.source_key].status in ("success", "skipped")]
        paths = _stale_cleanup(out, options, c.name, ours)
        if not ok:
            warnings.warn(f"{c.path}: no motion of this config could be built; no library written", stacklevel=2)
            continue
        shards = options.shards
        if len(ok) < shards:
            raise ConfigError(f"{c.path}: --shards {shards} needs at least {shards} motions; {len(ok)} built")
        frames = [sources[r.source_key].frames for r in ok]
        parts = shard_assignment(frames, shards)
        for k, (lib_path, members) in enumerate(zip(paths, parts, strict=True)):
            rows = [ok[i] for i in members]
            content = hashlib.sha256(
                json.dumps(
                    [[sources[r.source_key].build_key, r.weight, r.file, r.start, r.end] for r in rows]
                    + [LIBRARY_SCHEMA_VERSION, model],
                    sort_keys=True,
                ).encode()
            ).hexdigest()[:32]
            metadata = {
                "target": options.target,
                "model": model,
                "config": c.name,
                "config_file": str(c.path),
                "shard": k,
                "num_shards": shards,
                "output_fps": float(options.output_fps),
                "quaternion_order": "wxyz",
                "package_version": retarget_jax.__version__,
                "content_key": content,
                "settings": settings,
            }
            if options.force_remake or not _library_is(lib_path, content):
                motions = [load_states(sources[r.source_key].states_path)[0] for r in rows]
                lib = pack_library(
                    motions,
                    names=[_motion_name(r) for r in rows],
                    files=[r.file for r in rows],
                    weights=[r.weight for r in rows],
                    slices=[
                        (r.start, r.start + (m.num_frames - 1) / m.fps) for r, m in zip(rows, motions, strict=True)
                    ],
                    metadata=metadata,
                )
                save_library(lib, lib_path)
                written.append(str(lib_path))
            for r in rows:
                where[r.job_id] = lib_path.name
            total_frames += sum(sources[r.source_key].frames for r in rows)
            total_bytes += lib_path.stat().st_size
        libraries[c.name] = [str(p) for p in paths]
    _save_manifest(manifest_path, sources, out, root, where)
    rows_all = [r for c in configs for r in c.rows]
    status = [sources[r.source_key].status for r in rows_all]
    return BuildSummary(
        libraries=libraries,
        written=written,
        success=status.count("success"),
        reused=status.count("skipped"),
        failed=status.count("failed"),
        manifest=str(manifest_path),
        seconds=round(time.perf_counter() - t0, 3),
        frames=total_frames,
        bytes=total_bytes,
    )


def _fail(src: _Source, error_type: str, message: str) -> None:
    src.status, src.error_type, src.message, src.frames = "failed", error_type, message, 0


def _done(src: _Source, states: MotionStates) -> None:
    states.info.update(build_key=src.build_key)
    save_states(states, src.states_path, src.build_key or "")
    src.status, src.error_type, src.message, src.frames = "success", None, "", states.num_frames


def _run(src: _Source, compute) -> None:
    try:
        _done(src, compute())
    except (RetargetError, FileNotFoundError) as e:
        _fail(src, getattr(e, "error_type", type(e).__name__), str(e))
    except OSError as e:
        _fail(src, "io", f"{type(e).__name__}: {e}")


def _robot_chunk(part: list[_Source], root: Path, options: BuildOptions, robot) -> None:
    human: list[tuple[_Source, Any, float]] = []
    for src in part:
        path = root / src.row.file
        try:
            fmt = MotionFormat.parse(src.row.format or options.format, where=str(path))
            if fmt.is_robot_space:
                _run(src, lambda src=src, path=path: _robot_space_row(src, path, options, robot))
            else:
                human.append((src, *_human_motion(src, path, options)))
        except (RetargetError, FileNotFoundError) as e:
            _fail(src, getattr(e, "error_type", type(e).__name__), str(e))
        except OSError as e:
            _fail(src, "io", f"{type(e).__name__}: {e}")
    if not human:
        return
    for (src, _, _), res in zip(human, _solve_rows(human, options, robot), strict=True):
        if isinstance(res, Exception):
            _fail(src, getattr(res, "error_type", type(res).__name__), str(res))
        else:
            _run(src, lambda res=res: res)


def _library_is(path: Path, content_key: str) -> bool:
    """Whether ``path`` is a readable library with this content key (then it is kept)."""
    if not path.is_file():
        return False
    try:
        return load_library(path).metadata.get("content_key") == content_key
    except (RetargetError, OSError):
        return False


def _stale_cleanup(out: Path, options: BuildOptions, config: str, keep: set[str]) -> list[Path]:
    """This config's library paths; library files of an earlier build with another shard
    count are removed (never one this build writes: ``keep``), so ``*_slurmrank`` never
    mixes two builds."""
    paths = library_paths(out, options.prefix, config, options.shards)
    stem = f"{options.prefix}_{config}"
    for p in out.glob(f"{stem}*.npz"):
        rest = p.name[len(stem) : -len(".npz")]
        if p.name not in keep and (rest == "" or (rest.startswith("_") and rest[1:].isdigit())):
            p.unlink()
    return paths


def _save_manifest(path: Path, sources: dict[tuple, _Source], out: Path, root: Path, where: dict[str, str]) -> None:
    records = []
    for src in sources.values():
        for row in src.rows:
            if not src.status:
                continue
            prov = {
                "config": row.config,
                "row": row.row,
                "weight": row.weight,
                "slice_start_s": row.start,
                "slice_end_s": row.end,
                "fps": row.fps,
                "frames": src.frames,
                "library": where.get(row.job_id),
            }
            records.append(
                BatchRunRecord(
                    job_id=row.job_id,
                    motion=str(root / row.file),
                    output=relative_to_manifest(path, src.states_path) if src.status != "failed" else None,
                    status=src.status,
                    finished_at=utc_now(),
                    message=src.message,
                    error_type=src.error_type,
                    provenance=prov,
                )
            )
    records.sort(key=lambda r: r.job_id)
    BatchManifest.from_records(records, input_dir=str(root), output_dir=relative_to_manifest(path, out)).save_json(path)
