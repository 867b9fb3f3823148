"""Batch jobs: one motion file -> one result, found by a glob under an input folder (host).

A job's id is its input path relative to the input folder (``subject_a/walk.npz``), so
equal file names in different folders never collide, and its output keeps that relative
path under the output folder with the result suffix (``results/subject_a/walk.npz``).
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from retarget_jax.errors import ConfigError
from retarget_jax.formats import output_suffix

#: the job id and motion of the embedded demo walk (a run without input files)
DEMO_JOB = "demo_walk"


@dataclasses.dataclass(frozen=True)
class BatchJob:
    """One unit of a batch run.

    Attributes:
        id: unique in the run; the input path relative to the input folder (POSIX).
        motion: the input motion file (or :data:`DEMO_JOB` for the embedded demo).
        output: the primary result file (the first output format; it is written last, so
            it existing means the job's outputs are complete).
        name: a short display name (the file stem).
        motion_format: the input format name (``retarget_jax.formats``).
        robot: the robot name or MJCF path.
        config_path: the run's config file, if one was given.
        provenance: extra JSON-able facts copied into the job's record.
    """

    id: str
    motion: str
    output: str
    name: str = ""
    motion_format: str | None = None
    robot: str | None = None
    config_path: str | None = None
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False, compare=False)

    def outputs(self, formats: Sequence[str]) -> list[Path]:
        """Every output file of the job, one per format, the primary (``output``) last."""
        primary = Path(self.output)
        stem = _strip(primary.name, output_suffix(formats[0])) if formats else primary.stem
        rest = [primary.with_name(stem + output_suffix(f)) for f in formats[1:]]
        return [*rest, primary]


def _strip(name: str, suffix: str) -> str:
    return name[: -len(suffix)] if suffix and name.endswith(suffix) else Path(name).stem


def output_path(output_dir: str | os.PathLike, job_id: str, fmt: str = "npz") -> Path:
    """``output_dir/<job id without its suffix><format suffix>``."""
    rel = PurePosixPath(job_id)
    return Path(output_dir) / rel.parent / (rel.stem + output_suffix(fmt))


def find_inputs(input_dir: str | os.PathLike, pattern: str) -> list[Path]:
    """Files under ``input_dir`` matching ``pattern`` (``**`` recurses), sorted."""
    root = Path(input_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(f"input folder {root} does not exist or is not a folder")
    files = sorted(Path(f) for f in glob.glob(str(root / pattern), recursive=True) if Path(f).is_file())
    if not files:
        raise ConfigError(f"no files matching '{pattern}' in {root}")
    return files


def make_jobs(
    files: Iterable[str | os.PathLike],
    input_dir: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    *,
    formats: Sequence[str] = ("npz",),
    motion_format: str | None = None,
    robot: str | None = None,
    config_path: str | None = None,
) -> list[BatchJob]:
    """One job per file: id = path relative to ``input_dir`` (the file name without one);
    two inputs mapping to one output (``walk.bvh`` and ``walk.npz``) are a ConfigError."""
    jobs, seen = [], {}
    base = Path(input_dir).expanduser() if input_dir is not None else None
    for f in files:
        f = Path(f)
        rel = f.relative_to(base) if base is not None else Path(f.name)
        job_id = rel.as_posix()
        out = output_path(output_dir, job_id, formats[0] if formats else "npz")
        if out in seen:
            raise ConfigError(
                f"inputs {seen[out]} and {job_id} would both write {out}; rename one or narrow the pattern"
            )
        seen[out] = job_id
        jobs.append(
            BatchJob(
                id=job_id,
                motion=str(f),
                output=str(out),
                name=rel.stem,
                motion_format=motion_format,
                robot=robot,
                config_path=config_path,
            )
        )
    return jobs


def discover_jobs(
    input_dir: str | os.PathLike, pattern: str, output_dir: str | os.PathLike, **kwargs
) -> list[BatchJob]:
    """:func:`find_inputs` then :func:`make_jobs`."""
    return make_jobs(find_inputs(input_dir, pattern), input_dir, output_dir, **kwargs)


def share(jobs: Sequence[BatchJob], process_index: int, process_count: int) -> list[BatchJob]:
    """This process's deterministic share of the jobs: every ``process_count``-th job of
    the list sorted by id, starting at ``process_index``. Every job is in exactly one share."""
    if not 0 <= process_index < process_count:
        raise ConfigError(f"process index {process_index} is not in 0..{process_count - 1}")
    ordered = sorted(jobs, key=lambda j: j.id)
    mine = {j.id for j in ordered[process_index::process_count]}
    return [j for j in jobs if j.id in mine]
