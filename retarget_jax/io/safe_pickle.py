"""Restricted unpickling for third-party motion pickles (GMR .pkl and the like). Host code.

Stage: readers/writers. ``pickle.load`` on a downloaded file runs whatever the file
names (``os.system``, ``subprocess.Popen``, ``builtins.eval``...). :func:`restricted_load`
resolves globals from an allowlist only, so a pickle can rebuild plain containers,
numbers, strings and numpy arrays/scalars, and nothing else.

Allowed globals (``module.name`` as written in the pickle):

- numpy arrays: ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``
  (protocols 2-4), ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer``
  (protocol 5), ``numpy.ndarray``, ``numpy.dtype``;
- numpy scalars: ``numpy.core.multiarray.scalar`` / ``numpy._core.multiarray.scalar``;
- builtins for plain data: ``dict list tuple set frozenset bytearray bytes str int float
  complex bool slice range`` (``__builtin__`` is accepted as the Python 2 alias);
- ``_codecs.encode``, which protocol-2 pickles use for ``bytes``, but only with the
  ``latin1`` encoding (other codecs such as ``zlib_codec`` are refused at call time).

Everything else is refused, including harmless classes such as
``collections.OrderedDict`` or ``numpy.dtypes.StringDType``: the list is an allowlist
so it stays auditable, and GMR-style files need nothing more. The allowed names are
mapped to the objects of the running numpy directly (never imported by the name found
in the file), so a numpy-1 pickle loads under numpy 2 without touching the ``numpy.core``
shim. Object-dtype arrays may still appear, but their elements go through the same
allowlist.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from typing import IO, Any

import numpy as np

from retarget_jax.errors import MotionFormatError

_reconstruct = np.empty(0).__reduce__()[0]
_frombuffer = np.empty(0).__reduce_ex__(5)[0]
_scalar = np.float64(0.0).__reduce__()[0]


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol 2 stores bytes as _codecs.encode(str, "latin1"); refuse any other codec
    # (bytes-to-bytes codecs such as zlib_codec would turn this into a decompressor).
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(obj, str):
        raise pickle.UnpicklingError(
            f"_codecs.encode is only allowed with latin1, got {encoding!r}"
        )
    return codecs.encode(obj, "latin1", errors)


_NUMPY: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY[(_mod, "_reconstruct")] = _reconstruct
    _NUMPY[(_mod, "scalar")] = _scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _NUMPY[(_mod, "_frombuffer")] = _frombuffer
_NUMPY[("numpy", "ndarray")] = np.ndarray
_NUMPY[("numpy", "dtype")] = np.dtype

_BUILTINS: dict[str, Any] = {
    t.__name__: t
    for t in (
        dict,
        list,
        tuple,
        set,
        frozenset,
        bytearray,
        bytes,
        str,
        int,
        float,
        complex,
        bool,
        slice,
        range,
    )
}

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **_NUMPY,
    **{("builtins", k): v for k, v in _BUILTINS.items()},
    **{("__builtin__", k): v for k, v in _BUILTINS.items()},
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose globals come from :data:`ALLOWED_GLOBALS` only."""

    def __init__(self, file: IO[bytes], *, where: object = "<stream>") -> None:
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise MotionFormatError(
                self.where,
                f"refusing to load class {module}.{name}: only numpy arrays/scalars and plain "
                "builtin containers are allowed in a motion pickle",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise MotionFormatError(self.where, "refusing persistent id in a motion pickle")


def restricted_load(path_or_file: str | os.PathLike[str] | IO[bytes]) -> Any:
    """Unpickle a file (path or binary handle) allowing only numpy and builtin data.

    Raises MotionFormatError for a refused global and for any malformed/truncated
    pickle; FileNotFoundError propagates for a missing path.
    """
    if isinstance(path_or_file, str | os.PathLike):
        where: object = os.fspath(path_or_file)
        with open(path_or_file, "rb") as fh:
            return _load(fh, where)
    where = getattr(path_or_file, "name", "<stream>")
    return _load(path_or_file, where)


def restricted_loads(data: bytes) -> Any:
    """:func:`restricted_load` for an in-memory pickle."""
    return _load(io.BytesIO(data), "<bytes>")


def _load(fh: IO[bytes], where: object) -> Any:
    try:
        return RestrictedUnpickler(fh, where=where).load()
    except MotionFormatError:
        raise
    except Exception as e:  # UnpicklingError, EOFError, ValueError, TypeError, MemoryError...
        raise MotionFormatError(
            where, f"malformed or truncated pickle: {type(e).__name__}: {e}"
        ) from None
