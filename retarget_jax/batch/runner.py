"""The batch runner: resumable, streaming, bucketed execution of many jobs (host).

:class:`BatchRunner` owns what every batch shares, whatever the work is:

- **Resume.** Before anything runs, a job whose output file exists is skipped (its earlier
  record is kept, or a ``skipped`` record is written); a job with no output, or a failed
  one, runs again. ``force`` reruns everything.
- **Streaming.** A thread pool reads and prepares the next files (``worker.prepare``) while
  the device solves the current chunk (``worker.process``). Prepared items wait in groups
  (one per length bucket) and a group is processed as soon as it fills a chunk. At most
  ``prefetch`` items are held at once, whatever the size of the dataset: when the limit is
  reached the fullest group is processed early.
- **Bookkeeping.** After every completed chunk the manifest (``batch_manifest.json`` in
  the output folder) is rewritten atomically, so a kill loses at most the chunk in
  flight, and an output written just before a kill is found and skipped by the rerun.
  A job that raises is recorded as ``failed`` with its error type and message; every
  other job still finishes.
- **Many processes.** With ``process_count > 1`` each process takes a deterministic share
  of the jobs (:func:`~retarget_jax.batch.jobs.share`) and writes its own manifest part;
  process 0 waits for every part and merges them into one manifest in submission order.

The work itself is a :class:`BatchWorker` (``retarget_jax.batch.worker.RetargetWorker``
solves motions); any callable ``job -> BatchRunRecord | None`` also works.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from retarget_jax.batch.jobs import BatchJob, share
from retarget_jax.errors import ConfigError, MotionFormatError
from retarget_jax.files.atomic import atomic_write_text
from retarget_jax.manifest import BatchManifest, BatchRunRecord, relative_to_manifest, utc_now


class BatchWorker(Protocol):
    """The work of a batch, in two stages.

    ``prepare(job)`` runs on the host, in parallel threads (read and preprocess one file;
    raise to fail the job). ``group(item)`` says which items may be processed together
    (same length bucket), ``slots(item)`` how many batch rows an item takes and
    ``frames(item)`` how many frames it has (for the progress bar).
    ``process(jobs, items)`` runs one chunk of a group (solve on the device and write) and
    returns one record per job, in order.
    """

    def prepare(self, job: BatchJob) -> Any: ...

    def group(self, item: Any) -> Hashable: ...

    def slots(self, item: Any) -> int: ...

    def frames(self, item: Any) -> int: ...

    def process(self, jobs: Sequence[BatchJob], items: Sequence[Any]) -> list[BatchRunRecord]: ...


class CallableWorker:
    """A worker from a plain function ``job -> BatchRunRecord | None`` (None = success)."""

    def __init__(self, fn: Callable[[BatchJob], BatchRunRecord | None]) -> None:
        self.fn = fn

    def prepare(self, job: BatchJob) -> BatchJob:
        return job

    def group(self, item: Any) -> Hashable:
        return 0

    def slots(self, item: Any) -> int:
        return 1

    def frames(self, item: Any) -> int:
        return 0

    def process(self, jobs: Sequence[BatchJob], items: Sequence[Any]) -> list[BatchRunRecord]:
        out = []
        for job in jobs:
            started = utc_now()
            try:
                rec = self.fn(job)
            except Exception as e:  # one job's failure never stops the batch
                rec = failed_record(job, e, started)
            out.append(rec or BatchRunRecord(job.id, job.motion, job.output, "success", started, utc_now()))
        return out


def error_type(e: BaseException) -> str:
    """The typed error's ``error_type`` (``motion_format``, ...), else the class name."""
    return str(getattr(e, "error_type", None) or type(e).__name__)


def failed_record(
    job: BatchJob, e: BaseException, started: str | None = None, provenance: dict[str, Any] | None = None
) -> BatchRunRecord:
    return BatchRunRecord(
        job_id=job.id,
        motion=job.motion,
        output=None,
        status="failed",
        started_at=started,
        finished_at=utc_now(),
        message=str(e) or type(e).__name__,
        error_type=error_type(e),
        provenance=dict(provenance or {}),
    )


def part_path(manifest_path: str | Path, process_index: int, process_count: int) -> Path:
    """The manifest part of one process: ``batch_manifest.part-00001-of-00004.json``."""
    p = Path(manifest_path)
    return p.with_name(f"{p.stem}.part-{process_index:05d}-of-{process_count:05d}{p.suffix}")


def _done_path(part: Path) -> Path:
    return part.with_name(part.name + ".done")


def previous_records(manifest_path: str | Path) -> dict[str, BatchRunRecord]:
    """Records of earlier runs into the same folder: the merged manifest and any parts
    left by a run that did not finish. An unreadable manifest is reported and ignored
    (the outputs on disk still tell which jobs are done)."""
    p = Path(manifest_path)
    out: dict[str, BatchRunRecord] = {}
    for f in [p, *sorted(p.parent.glob(f"{p.stem}.part-*{p.suffix}"))]:
        if not f.exists():
            continue
        try:
            m = BatchManifest.load(f)
        except (MotionFormatError, OSError) as e:
            warnings.warn(f"ignoring an unreadable manifest from an earlier run: {e}", stacklevel=2)
            continue
        for r in m.records:
            if r.job_id not in out or r.status != "failed":
                out[r.job_id] = r
    return out


@dataclasses.dataclass
class BatchRunner:
    """Runs jobs through a worker; see the module docstring.

    Attributes:
        chunk_size: batch rows processed together (the device batch).
        prefetch: prepared items held at most (memory bound); default 4 chunks.
        progress: show a progress bar (clips, frames/s, ETA) on stderr.
        process_index, process_count: this process's share in a multi-process run.
        barrier: called with a name to wait for every process (multi-process runs; the
            default waits for the other parts' ``.done`` files).
        merge_timeout_s: how long process 0 waits for the other parts.
    """

    chunk_size: int = 64
    prefetch: int | None = None
    progress: bool = True
    process_index: int = 0
    process_count: int = 1
    barrier: Callable[[str], None] | None = None
    merge_timeout_s: float = 24 * 3600.0
    log: Callable[[str], None] = dataclasses.field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    def run(
        self,
        jobs: Sequence[BatchJob],
        worker: BatchWorker | Callable[[BatchJob], Any],
        manifest_path: str | Path,
        max_workers: int | None = None,
        force: bool = False,
        input_dir: str | None = None,
        output_dir: str | None = None,
        pattern: str | None = None,
    ) -> BatchManifest:
        """Run ``jobs``; returns the manifest (merged, on process 0 of a multi-process run;
        this process's part on the others)."""
        if not hasattr(worker, "process"):
            worker = CallableWorker(worker)  # type: ignore[arg-type]
        jobs = list(jobs)
        order = self._check(jobs)
        manifest_path = Path(manifest_path)
        multi = self.process_count > 1
        target = part_path(manifest_path, self.process_index, self.process_count) if multi else manifest_path
        if multi:
            _done_path(target).unlink(missing_ok=True)
        mine = share(jobs, self.process_index, self.process_count) if multi else jobs
        meta = {"input_dir": input_dir, "output_dir": output_dir, "pattern": pattern}
        state = _State(target, order, meta)

        previous = {} if force else previous_records(manifest_path)
        todo = []
        for job in mine:
            out = Path(job.output)
            if not force and out.exists():
                prev = previous.get(job.id)
                state.add(
                    prev
                    if prev is not None and prev.status != "failed" and prev.output
                    else BatchRunRecord(
                        job.id,
                        job.motion,
                        relative_to_manifest(manifest_path, out),
                        "skipped",
                        utc_now(),
                        utc_now(),
                        "the output exists (kept; use force to redo)",
                    )
                )
            else:
                todo.append(job)
        if len(mine) > len(todo):
            self.log(f"[retarget_jax] {len(mine) - len(todo)} of {len(mine)} job(s) already done, skipped")
        state.save()
        self._stream(todo, worker, state, max_workers)
        state.save()
        if not multi:
            return state.manifest()
        atomic_write_text(_done_path(target), utc_now() + "\n")
        if self.barrier is not None:
            self.barrier("retarget_jax.batch.parts_written")
        if self.process_index != 0:
            return state.manifest()
        return self._merge(manifest_path, order, meta)

    # ----------------------------------------------------------------------- internals

    def _check(self, jobs: Sequence[BatchJob]) -> dict[str, int]:
        order: dict[str, int] = {}
        for i, j in enumerate(jobs):
            if j.id in order:
                raise ConfigError(f"job id {j.id!r} appears twice (jobs {order[j.id]} and {i})")
            order[j.id] = i
        if self.chunk_size < 1:
            raise ConfigError(f"batch.max_batch must be >= 1, got {self.chunk_size}")
        return order

    def _stream(self, todo: list[BatchJob], worker: BatchWorker, state: _State, max_workers: int | None) -> None:
        if not todo:
            return
        from tqdm import tqdm

        limit = max(self.prefetch or 4 * self.chunk_size, self.chunk_size)
        futures: collections.deque[tuple[BatchJob, Future]] = collections.deque()
        groups: dict[Hashable, list[tuple[BatchJob, Any]]] = {}
        held = 0
        frames_done, t0 = 0, time.perf_counter()
        jobs = iter(todo)
        bar = tqdm(
            total=len(todo),
            desc="retarget",
            unit="clip",
            file=sys.stderr,
            disable=not self.progress,
            dynamic_ncols=True,
        )

        def flush(key: Hashable) -> None:
            nonlocal held, frames_done
            items = groups.pop(key)
            chunk, rest, used = [], [], 0
            for it in items:  # take items in arrival order until the chunk is full
                if used >= self.chunk_size:
                    rest.append(it)
                else:
                    chunk.append(it)
                    used += worker.slots(it[1])
            if rest:
                groups[key] = rest
            held -= len(chunk)
            started = utc_now()
            try:
                records = worker.process([c[0] for c in chunk], [c[1] for c in chunk])
                if len(records) != len(chunk):
                    raise RuntimeError(f"the worker returned {len(records)} records for {len(chunk)} jobs")
            except Exception as e:  # a chunk that cannot run fails its own jobs only
                records = [failed_record(job, e, started) for job, _ in chunk]
            for (_, item), rec in zip(chunk, records, strict=True):
                state.add(rec)
                if rec.status == "success":
                    frames_done += worker.frames(item)
            state.save()
            bar.update(len(chunk))
            bar.set_postfix_str(
                f"{frames_done / max(time.perf_counter() - t0, 1e-9):,.0f} frames/s, {state.failed} failed"
            )

        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="retarget-prepare") as pool:
            try:
                while True:
                    while len(futures) + held < limit:
                        job = next(jobs, None)
                        if job is None:
                            break
                        futures.append((job, pool.submit(worker.prepare, job)))
                    if futures:
                        job, fut = futures.popleft()
                        try:
                            item = fut.result()
                        except Exception as e:  # a bad file fails its own job only
                            state.add(failed_record(job, e))
                            bar.update(1)
                            continue
                        key = worker.group(item)
                        groups.setdefault(key, []).append((job, item))
                        held += 1
                        if sum(worker.slots(it) for _, it in groups[key]) >= self.chunk_size:
                            flush(key)
                        elif held >= limit:  # memory bound: process the fullest group now
                            flush(max(groups, key=lambda k: len(groups[k])))
                    elif groups:
                        flush(next(iter(sorted(groups, key=str))))
                    else:
                        break
            finally:
                for _, fut in futures:
                    fut.cancel()
                bar.close()

    def _merge(self, manifest_path: Path, order: dict[str, int], meta: dict) -> BatchManifest:
        parts = [part_path(manifest_path, k, self.process_count) for k in range(self.process_count)]
        deadline = time.monotonic() + self.merge_timeout_s
        while not all(_done_path(p).exists() for p in parts):
            if time.monotonic() > deadline:
                missing = [p.name for p in parts if not _done_path(p).exists()]
                raise ConfigError(
                    f"manifest parts not finished after {self.merge_timeout_s:.0f} s: "
                    f"{', '.join(missing)}; rerun to resume"
                )
            time.sleep(0.2)
        records: dict[str, BatchRunRecord] = {}
        created = []
        for p in parts:
            m = BatchManifest.load(p)
            created.append(m.created_at)
            for r in m.records:
                if r.job_id in records:
                    raise ConfigError(f"job {r.job_id!r} is in two manifest parts ({p.name})")
                records[r.job_id] = r
        merged = BatchManifest.from_records(
            sorted(records.values(), key=lambda r: order.get(r.job_id, len(order))), created_at=min(created), **meta
        )
        merged.save_json(manifest_path)
        for p in parts:
            p.unlink(missing_ok=True)
            _done_path(p).unlink(missing_ok=True)
        return merged


class _State:
    """The records so far, in submission order, and their atomic saving."""

    def __init__(self, path: Path, order: dict[str, int], meta: dict) -> None:
        self.path, self.order, self.meta = path, order, meta
        self.records: dict[str, BatchRunRecord] = {}
        self.created = utc_now()
        self.failed = 0
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, rec: BatchRunRecord) -> None:
        old = self.records.get(rec.job_id)
        self.failed += (rec.status == "failed") - (old is not None and old.status == "failed")
        self.records[rec.job_id] = rec

    def manifest(self) -> BatchManifest:
        recs = sorted(self.records.values(), key=lambda r: self.order[r.job_id])
        return BatchManifest.from_records(recs, created_at=self.created, **self.meta)

    def save(self) -> None:
        self.manifest().save_json(self.path)
