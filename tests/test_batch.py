"""The batch runner's bookkeeping, without a solver: jobs from globs, resume, force, failed
jobs, atomic manifest after every chunk, bounded prefetch, grouping and multi-process
parts. (The solver end of the driver is in test_batch_driver.py.)"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from retarget_jax.batch import (
    BatchJob,
    BatchManifest,
    BatchRunner,
    BatchRunRecord,
    discover_jobs,
    make_jobs,
    part_path,
    share,
)
from retarget_jax.errors import ConfigError, MotionFormatError
from retarget_jax.manifest import relative_to_manifest, utc_now


def _tree(root: Path, rels) -> None:
    for r in rels:
        (root / r).parent.mkdir(parents=True, exist_ok=True)
        (root / r).write_text(r)


def _jobs(tmp_path: Path, rels, pattern: str):
    """Input files ``rels`` under tmp/in, their jobs into tmp/out, and the manifest path."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, rels)
    return inp, out, discover_jobs(inp, pattern, out), out / "batch_manifest.json"


def _runner(**kw) -> BatchRunner:
    return BatchRunner(progress=False, log=lambda _: None, **kw)


class Writer:
    """A worker that writes each job's output (the input text, upper-cased) and counts calls;
    jobs whose input says "bad" raise in prepare, "crash" in process."""

    def __init__(self, manifest: Path, group=lambda text: 0, slots=lambda text: 1) -> None:
        self.manifest = manifest
        self.prepared: list[str] = []
        self.processed: list[list[str]] = []
        self.held_max = 0
        self._held = 0
        self._lock = threading.Lock()
        self._group, self._slots = group, slots

    def prepare(self, job: BatchJob):
        text = Path(job.motion).read_text()
        if "bad" in text:
            raise MotionFormatError(job.motion, "this file is bad", field="positions")
        with self._lock:
            self.prepared.append(job.id)
            self._held += 1
            self.held_max = max(self.held_max, self._held)
        return text

    def group(self, item):
        return self._group(item)

    def slots(self, item):
        return self._slots(item)

    def frames(self, item):
        return len(item)

    def process(self, jobs, items):
        with self._lock:
            self._held -= len(items)
        self.processed.append([j.id for j in jobs])
        if any("crash" in t for t in items):
            raise RuntimeError("device fell over")
        out = []
        for job, text in zip(jobs, items, strict=True):
            Path(job.output).parent.mkdir(parents=True, exist_ok=True)
            Path(job.output).write_text(text.upper())
            out.append(
                BatchRunRecord(
                    job.id,
                    job.motion,
                    relative_to_manifest(self.manifest, job.output),
                    "success",
                    utc_now(),
                    utc_now(),
                    "ok",
                    provenance={"frames": len(text)},
                )
            )
        return out


def test_jobs_keep_the_relative_layout_and_ids_never_collide(tmp_path):
    _tree(tmp_path / "motions", ["subject_a/walk.npz", "subject_b/walk.npz", "top.npz", "skip.txt"])
    jobs = discover_jobs(tmp_path / "motions", "**/*.npz", tmp_path / "results", formats=["npz", "mjlab_npz"])
    assert [j.id for j in jobs] == ["subject_a/walk.npz", "subject_b/walk.npz", "top.npz"]
    assert Path(jobs[0].output) == tmp_path / "results" / "subject_a" / "walk.npz"
    assert jobs[0].outputs(["npz", "mjlab_npz"]) == [
        tmp_path / "results/subject_a/walk.mjlab.npz",
        tmp_path / "results/subject_a/walk.npz",
    ]
    # a non-recursive pattern only sees the top folder
    assert [j.id for j in discover_jobs(tmp_path / "motions", "*.npz", tmp_path / "r")] == ["top.npz"]
    with pytest.raises(ConfigError, match="no files matching"):
        discover_jobs(tmp_path / "motions", "**/*.bvh", tmp_path / "r")
    with pytest.raises(ConfigError, match="does not exist"):
        discover_jobs(tmp_path / "nowhere", "*.npz", tmp_path / "r")
    # two inputs that would write one output are refused up front
    _tree(tmp_path / "m2", ["walk.bvh", "walk.npz"])
    with pytest.raises(ConfigError, match="would both write"):
        make_jobs(sorted((tmp_path / "m2").iterdir()), tmp_path / "m2", tmp_path / "r")


def test_shares_partition_the_jobs():
    jobs = [BatchJob(f"j{i:02d}", f"m{i}", f"o{i}") for i in range(23)]
    for n in (1, 2, 3, 7):
        shares = [share(jobs, k, n) for k in range(n)]
        ids = [j.id for s in shares for j in s]
        assert sorted(ids) == sorted(j.id for j in jobs) and len(ids) == len(set(ids))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(ConfigError):
        share(jobs, 2, 2)


def test_run_writes_every_output_records_failures_and_resumes(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    names = [f"s{i % 3}/clip{i:02d}.txt" for i in range(10)] + ["s0/bad.txt"]
    _tree(inp, names)
    (inp / "s0/bad.txt").write_text("bad")
    jobs = discover_jobs(inp, "**/*.txt", out)
    mpath = out / "batch_manifest.json"
    w = Writer(mpath)
    m = _runner(chunk_size=3).run(
        jobs, w, mpath, max_workers=2, input_dir=str(inp), output_dir=str(out), pattern="**/*.txt"
    )
    assert (m.total, m.success_count, m.skipped_count, m.failed_count) == (11, 10, 0, 1)
    assert [r.job_id for r in m.records] == [j.id for j in jobs]  # submission order
    bad = m.records_by_id()["s0/bad.txt"]
    assert bad.error_type == "motion_format" and "positions" in bad.message and bad.output is None
    assert all(len(c) <= 3 for c in w.processed)
    loaded = BatchManifest.load(mpath)
    assert loaded.records_by_id()["s1/clip01.txt"].output == "s1/clip01.npz"  # the result suffix
    assert (out / "s1/clip01.npz").read_text() == "S1/CLIP01.TXT"

    # rerun: every existing output is kept, the failed job is retried (and fails again)
    w2 = Writer(mpath)
    m2 = _runner(chunk_size=3).run(jobs, w2, mpath)
    assert w2.prepared == [] and w2.processed == []
    assert (m2.success_count, m2.failed_count) == (10, 1)
    # the earlier records are kept as they were (not downgraded to skipped)
    assert m2.records_by_id()["s2/clip02.txt"].finished_at == m.records_by_id()["s2/clip02.txt"].finished_at

    # a missing output is redone; a fixed input succeeds; an output without a record is skipped
    (out / "s0/clip03.npz").unlink()
    (inp / "s0/bad.txt").write_text("now good")
    mpath.unlink()
    w3 = Writer(mpath)
    m3 = _runner(chunk_size=3).run(jobs, w3, mpath)
    assert sorted(w3.prepared) == ["s0/bad.txt", "s0/clip03.txt"]
    assert (m3.success_count, m3.skipped_count, m3.failed_count) == (2, 9, 0)

    # force redoes everything
    w4 = Writer(mpath)
    m4 = _runner(chunk_size=3).run(jobs, w4, mpath, force=True)
    assert sorted(w4.prepared) == sorted(j.id for j in jobs) and m4.success_count == 11


def test_manifest_is_rewritten_after_every_chunk(tmp_path):
    inp, out, jobs, mpath = _jobs(tmp_path, [f"c{i}.txt" for i in range(7)], "*.txt")
    seen = []

    class Spy(Writer):
        def process(self, jobs, items):
            # the manifest on disk always parses and its counts add up, between chunks too
            if mpath.exists():
                seen.append(BatchManifest.load(mpath).success_count)
            return super().process(jobs, items)

    _runner(chunk_size=2).run(jobs, Spy(mpath), mpath)
    assert seen == [0, 2, 4, 6]
    assert BatchManifest.load(mpath).success_count == 7


def test_a_chunk_that_raises_fails_only_its_own_jobs(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, [f"c{i}.txt" for i in range(6)])
    (inp / "c4.txt").write_text("crash")
    jobs = discover_jobs(inp, "*.txt", out)
    mpath = out / "batch_manifest.json"
    m = _runner(chunk_size=2).run(jobs, Writer(mpath), mpath)
    failed = {r.job_id for r in m.records if r.status == "failed"}
    assert failed == {"c4.txt", "c5.txt"}  # the chunk holding the crash
    assert m.records_by_id()["c4.txt"].error_type == "RuntimeError"
    assert m.success_count == 4


def test_groups_are_processed_together_and_memory_stays_bounded(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    # the length of the text stands for a clip length; two "buckets"
    _tree(inp, [f"c{i:02d}.txt" for i in range(40)])
    for i in range(40):
        (inp / f"c{i:02d}.txt").write_text("x" * (10 if i % 3 else 100))
    jobs = discover_jobs(inp, "*.txt", out)
    mpath = out / "batch_manifest.json"
    w = Writer(mpath, group=lambda t: len(t) > 50, slots=lambda t: 2 if len(t) > 50 else 1)
    m = _runner(chunk_size=4, prefetch=6).run(jobs, w, mpath, max_workers=3)
    assert m.success_count == 40
    for chunk in w.processed:
        sizes = [len((inp / j).read_text()) for j in chunk]
        assert len(set(sizes)) == 1  # one bucket per chunk
        assert sum(2 if n > 50 else 1 for n in sizes) <= 4 + 1  # a chunk stops once it holds 4 slots
    assert w.held_max <= 6 + 3  # prefetch limit (+ the threads' items in flight)


def test_duplicate_job_ids_are_refused(tmp_path):
    jobs = [BatchJob("a", "x", str(tmp_path / "o1")), BatchJob("a", "y", str(tmp_path / "o2"))]
    with pytest.raises(ConfigError, match="twice"):
        _runner().run(jobs, lambda j: None, tmp_path / "m.json")


def test_a_corrupt_manifest_from_an_earlier_run_is_ignored_with_a_warning(tmp_path):
    inp, out, jobs, mpath = _jobs(tmp_path, ["a.txt", "b.txt"], "*.txt")
    _runner().run(jobs, Writer(mpath), mpath)
    mpath.write_text('{"schema_version": 1, "records": [')  # torn by something else
    with pytest.warns(UserWarning, match="unreadable manifest"):
        m = _runner().run(jobs, Writer(mpath), mpath)
    assert m.skipped_count == 2 and BatchManifest.load(mpath).total == 2


def test_process_parts_merge_into_one_manifest(tmp_path):
    inp, out, jobs, mpath = _jobs(tmp_path, [f"d{i % 2}/c{i:02d}.txt" for i in range(9)], "**/*.txt")
    calls = []
    # process 1 first (it returns its own part), then process 0 merges
    part1 = _runner(chunk_size=2, process_index=1, process_count=2, barrier=calls.append).run(
        jobs, Writer(mpath), mpath
    )
    assert part_path(mpath, 1, 2).exists() and not mpath.exists()
    merged = _runner(chunk_size=2, process_index=0, process_count=2, barrier=calls.append).run(
        jobs, Writer(mpath), mpath
    )
    assert calls == ["retarget_jax.batch.parts_written"] * 2
    assert [r.job_id for r in merged.records] == [j.id for j in jobs]
    assert merged.success_count == 9 and part1.total == 4
    assert not part_path(mpath, 0, 2).exists() and not part_path(mpath, 1, 2).exists()
    data = json.loads(mpath.read_text())
    assert data["total"] == 9 and len({r["job_id"] for r in data["records"]}) == 9
