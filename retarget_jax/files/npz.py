"""Pickle-free npz loading: the one way the readers open a third-party ``.npz`` (host, numpy).

Stage: base (:mod:`retarget_jax.files`: the result, keypoints, AMASS and body-model
readers use it). ``np.load`` runs with ``allow_pickle=False``, so an object array in the
archive is refused, never unpickled; every member is read at once (the archive is closed
on return), and whatever goes wrong is a :class:`~retarget_jax.errors.MotionFormatError`
naming the file and, for a member, its field. A file that does not exist raises the
ordinary :class:`FileNotFoundError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from retarget_jax.errors import MotionFormatError

__all__ = ["load_npz", "read_npz"]


def read_npz(
    path: str | os.PathLike, keys: Iterable[str] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of an npz archive, and why each refused member was refused.

    ``keys`` reads only those members (the ones present); None reads all. A member that
    is an object array (it needs pickle) is not an error here: it is left out of the
    arrays and its reason kept, so a reader can refuse it only if it needs that field.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        MotionFormatError: not a zip of ``.npy`` members (a single ``.npy`` array, a
            truncated or garbled file), or a corrupt member (CRC, truncation, bad header).
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as e:  # zip and npy header parsing raise many kinds (BadZipFile, TokenError, ...)
        raise MotionFormatError(path, f"not a readable npz archive: {type(e).__name__}: {e}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise MotionFormatError(
            path, f"a single .npy array of shape {np.shape(archive)}, not an npz archive of named arrays"
        )
    arrays: dict[str, np.ndarray] = {}
    refused: dict[str, str] = {}
    with archive:
        wanted = archive.files if keys is None else [k for k in keys if k in archive.files]
        for key in wanted:
            try:
                arrays[key] = archive[key]
            except ValueError as e:
                if "allow_pickle" not in str(e):
                    raise MotionFormatError(path, f"corrupt array: {e}", field=key) from None
                refused[key] = (
                    "object arrays are not allowed (one cannot be read without pickle); re-save it "
                    "as a plain numeric or string array"
                )
            except Exception as e:  # CRC, truncation, a garbled npy header (TokenError, SyntaxError), ...
                raise MotionFormatError(path, f"corrupt array: {type(e).__name__}: {e}", field=key) from None
    return arrays, refused


def load_npz(path: str | os.PathLike, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """:func:`read_npz` that refuses the archive for any object array among ``keys``
    (MotionFormatError naming the field)."""
    arrays, refused = read_npz(path, keys)
    for key, why in refused.items():
        raise MotionFormatError(path, why, field=key)
    return arrays
