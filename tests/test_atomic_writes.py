"""Outputs and manifests are written atomically, and pickles are never loaded with numpy.

- A write that fails or is killed half way leaves the old file as it was (and no partial
  file under the final name), whether it fails inside the writer or the process is killed
  with SIGKILL in the middle of writing.
- A reader polling a result and a manifest while another process rewrites them many times
  only ever sees complete files.
- Source audits: no numpy load that allows pickles anywhere, and no write of a file in the package
  or the scripts that bypasses :mod:`retarget_jax.files.atomic`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from retarget_jax.files.atomic import atomic_write, atomic_write_text, is_temp_file
from retarget_jax.io import load_result, save_result, write_result
from retarget_jax.manifest import BatchManifest, BatchRunRecord

REPO_ROOT = Path(__file__).resolve().parents[1]


def _manifest(n: int) -> BatchManifest:
    return BatchManifest.from_records(
        [
            BatchRunRecord(
                f"clip{i:03d}.npz", f"in/clip{i:03d}.npz", f"clip{i:03d}.npz", "success", "t0", "t1", "converged"
            )
            for i in range(n)
        ]
    )


@pytest.mark.parametrize("fmt", ["npz", "mjlab_npz", "gmr_pkl"])
def test_a_writer_that_fails_half_way_leaves_the_old_file(fmt, g1_trajectory, tmp_path, monkeypatch):
    path = tmp_path / f"clip.{fmt}"
    write_result(g1_trajectory, path, fmt)
    old = path.read_bytes()

    import retarget_jax.files.atomic as atomic

    real_fsync = atomic.os.fsync

    def crash(fd):  # the data are written, then the process "dies" before the rename
        raise OSError(5, "simulated I/O error")

    monkeypatch.setattr(atomic.os, "fsync", crash)
    changed = g1_trajectory
    changed.root_pos = changed.root_pos + 1.0
    with pytest.raises(OSError, match="simulated"):
        write_result(changed, path, fmt)
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the temporary file is removed


def test_manifest_save_that_fails_leaves_the_old_manifest(tmp_path, monkeypatch):
    path = tmp_path / "batch_manifest.json"
    _manifest(3).save_json(path)
    old = path.read_bytes()
    import retarget_jax.files.atomic as atomic

    def crash(src, dst):
        raise OSError(28, "simulated: no space left on device")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="no space"):
        _manifest(5).save_json(path)
    monkeypatch.undo()
    assert path.read_bytes() == old and BatchManifest.load(path).total == 3
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_sigkill_in_the_middle_of_a_write_leaves_the_old_file(tmp_path):
    """A child writes 40 MB through atomic_write in small slow chunks and is killed with
    SIGKILL half way: the target still holds the old bytes; the cut write is only a hidden
    temporary file that is recognised as such."""
    target = tmp_path / "out.bin"
    atomic_write_text(target, "old content\n")
    child = textwrap.dedent(f"""
        import sys, time
        from retarget_jax.files.atomic import atomic_write
        with atomic_write({str(target)!r}) as fh:
            for i in range(400):
                fh.write(b"x" * 100_000)
                fh.flush()
                if i == 20:
                    print("writing", flush=True)
                time.sleep(0.01)
        """)
    p = subprocess.Popen(
        [sys.executable, "-c", child],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert p.stdout.readline().strip() == "writing"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p.stdout.close()
    assert p.returncode == -signal.SIGKILL
    assert target.read_text() == "old content\n"
    leftovers = [q for q in tmp_path.iterdir() if q != target]
    assert len(leftovers) == 1 and is_temp_file(leftovers[0]) and leftovers[0].stat().st_size > 2_000_000


def test_a_polling_reader_never_sees_a_partial_result_or_manifest(g1_trajectory, tmp_path):
    """One process rewrites a result and a manifest 150 times; this one reads both as fast
    as it can meanwhile. Every read is a complete, schema-valid file."""
    result_path, manifest_path = tmp_path / "clip.npz", tmp_path / "batch_manifest.json"
    save_result(g1_trajectory, result_path)
    BatchManifest.from_records([BatchRunRecord("c0", "m", None, "failed", message="x")]).save_json(manifest_path)
    writer = textwrap.dedent(f"""
        from retarget_jax.io import load_result, save_result
        from retarget_jax.manifest import BatchManifest, BatchRunRecord
        r = load_result({str(result_path)!r})
        for i in range(150):
            r.final_cost = float(i)
            save_result(r, {str(result_path)!r})
            BatchManifest.from_records([BatchRunRecord(f"c{{k}}", "m", None, "failed", message="x" * 500)
                                        for k in range(i + 1)]).save_json({str(manifest_path)!r})
        print("done", flush=True)
        """)
    p = subprocess.Popen(
        [sys.executable, "-c", writer],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "JAX_PLATFORMS": "cpu"},
    )
    reads, costs, totals = 0, set(), set()
    t0 = time.monotonic()
    while p.poll() is None:
        costs.add(load_result(result_path).final_cost)  # raises on a partial file
        m = BatchManifest.load(manifest_path)  # raises on a partial file or inconsistent counts
        assert m.failed_count == m.total
        totals.add(m.total)
        reads += 1
        assert time.monotonic() - t0 < 300
    out, err = p.communicate()
    assert p.returncode == 0 and out.strip() == "done", err[-2000:]
    assert reads > 20 and len(costs) > 5 and len(totals) > 5  # the reads did overlap the rewrites
    assert not [q for q in tmp_path.iterdir() if is_temp_file(q)]


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "one")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as fh:
            fh.write(b"two, half written")
            raise RuntimeError("writer failed")
    assert path.read_text() == "one"
    atomic_write_text(path, "three")
    assert path.read_text() == "three" and len(list(tmp_path.iterdir())) == 1


# --------------------------------------------------------------------------- source audits


def _sources(*folders: str, suffixes=(".py",)) -> list[Path]:
    out = []
    for f in folders:
        out += [p for p in (REPO_ROOT / f).rglob("*") if p.suffix in suffixes and "__pycache__" not in p.parts]
    return out


def test_no_allow_pickle_true_anywhere():
    files = _sources(
        "retarget_jax", "scripts", "benchmarks", "tests", "configs", "docs", suffixes=(".py", ".md", ".yaml")
    )
    files += [REPO_ROOT / "README.md"]
    needle = "allow_pickle" + "=True"  # split so this file does not match itself
    hits = [
        f"{p.relative_to(REPO_ROOT)}:{i}"
        for p in files
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"allow_pickle\s*=\s*True", line) or needle in line
    ]
    assert not hits, hits


# a write that does not go through retarget_jax.files.atomic: open for writing, write_text /
# write_bytes, numpy's savers and json/pickle dumps given anything but the atomic handle
_RAW_WRITE = re.compile(
    r"open\([^)]*['\"][wax]b?\+?['\"]|\.write_(text|bytes)\(|\bjson\.dump\(|"
    r"np\.(savez|savez_compressed|save|savetxt)\((?!fh\b)|pickle\.dump\((?![^,]+, fh\b)|\.tofile\("
)


def test_every_file_write_in_the_package_and_scripts_is_atomic():
    hits = []
    for p in _sources("retarget_jax", "scripts"):
        if p.name == "atomic.py":
            continue
        text = p.read_text()
        # writing a member of a zip archive is a write to the archive's handle: allowed
        # where that archive is itself opened on an atomic handle (dataset shards)
        zip_on_atomic = "with atomic_write(" in text and re.search(r"zipfile\.ZipFile\(fh, ['\"]w['\"]", text)
        for i, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if zip_on_atomic and re.search(r"\bzf\.open\(", code):
                continue
            if _RAW_WRITE.search(code) and '"""' not in code and not code.lstrip().startswith(("``", "-")):
                hits.append(f"{p.relative_to(REPO_ROOT)}:{i}: {line.strip()}")
    assert not hits, "non-atomic writes:\n" + "\n".join(hits)
