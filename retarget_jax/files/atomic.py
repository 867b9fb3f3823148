"""Atomic file replacement: the one way this package writes an output or a manifest (host).

Stage: base (:mod:`retarget_jax.files`: every stage that writes uses it). A reader of a
path written here sees either the old file or the complete new one, never a partial
write, and a crash (kill -9, power loss after the rename) at any moment leaves one of the
two: the data go to a hidden temporary file in the same directory (so :func:`os.replace`
is a same-filesystem rename), are flushed and fsync'd, renamed onto the path, and the
directory is fsync'd so the rename itself is durable. On error the temporary file is
removed and the old file is untouched.

A kill between the temporary file's creation and the rename leaves a hidden
``.<name>.<random>.tmp<suffix>`` beside the output; it is never read as an output (the
batch driver globs inputs, not outputs, and its resume check looks at the final name).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "is_temp_file"]

_TMP_MARK = ".tmp"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[IO[bytes]]:
    """Open a binary handle whose content replaces ``path`` only if the block succeeds.

    Parent directories are created. The temporary name ends with ``suffix`` (default:
    the suffix of ``path``), because some writers (``np.savez`` given a *name*) append
    one. The file is created with mode 0o666 minus the umask, like ``open(path, "wb")``.
    """
    with atomic_path(path, suffix) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as fh:
            yield fh


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """A temporary path that replaces ``path`` only if the block succeeds, for writers that
    take a file name rather than a handle (an external encoder such as ffmpeg).

    The block must have written the file when it ends; it is then fsync'd, renamed onto
    ``path`` and the directory fsync'd. On error the temporary file is removed and the old
    file is untouched. :func:`atomic_write` is this with an open handle.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = final.suffix if suffix is None else suffix
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}{_TMP_MARK}{suffix}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)  # the inode's data, whichever descriptor wrote it
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(final.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; returns the path."""
    with atomic_write(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically (no newline translation); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def is_temp_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_write` (left by a kill)."""
    name = Path(path).name
    return name.startswith(".") and _TMP_MARK in name


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable (POSIX; directories cannot be opened on Windows)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
