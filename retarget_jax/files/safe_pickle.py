"""Restricted unpickling for third-party motion pickles (GMR .pkl and the like). Host code.

Stage: base (:mod:`retarget_jax.files`: the robot-motion readers and the body models use
it). ``pickle.load`` on a downloaded file runs whatever the file names (``os.system``,
``subprocess.Popen``, ``builtins.eval``...). :func:`restricted_load` resolves globals from
an allowlist only, so a pickle can rebuild plain containers, numbers, strings and numpy
arrays/scalars, and nothing else.

Allowed globals (``module.name`` as written in the pickle):

- numpy arrays: ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``
  (protocols 2-4), ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer``
  (protocol 5), ``numpy.ndarray``, ``numpy.dtype``;
- numpy scalars: ``numpy.core.multiarray.scalar`` / ``numpy._core.multiarray.scalar``;
- builtins for plain data: ``dict list tuple set frozenset bytearray bytes str int float
  complex bool slice range`` (``__builtin__`` is accepted as the Python 2 alias);
- ``_codecs.encode``, which protocol-2 pickles use for ``bytes``, but only with the
  ``latin1`` encoding (other codecs such as ``zlib_codec`` are refused at call time).

Calls are bounded: a container, ``bytes``/``bytearray`` or ``range`` argument of more than
:data:`MAX_CALL_ITEMS` items and an array call asking for more than
:data:`MAX_CALL_ARRAY_BYTES` are refused, so a few bytes of pickle cannot ask for
terabytes (``list(range(10**12))``).

Everything else is refused, including harmless classes such as
``collections.OrderedDict`` or ``numpy.dtypes.StringDType``: the list is an allowlist
so it stays auditable, and GMR-style files need nothing more. The allowed names are
mapped to the objects of the running numpy directly (never imported by the name found
in the file), so a numpy-1 pickle loads under numpy 2 without touching the ``numpy.core``
shim. Object-dtype arrays may still appear, but their elements go through the same
allowlist.

Opt-in, for body-model files (SMPL ``.pkl``): ``allow_scipy_sparse=True`` also accepts
``scipy.sparse`` CSC/CSR matrices. Their class names resolve to inert stand-ins that
only collect the pickled state (``copyreg._reconstructor`` / ``copy_reg._reconstructor``
and ``object`` are accepted for that, with stand-ins only); after loading, each stand-in
is rebuilt through the scipy constructor from its ``data``/``indices``/``indptr``/shape
arrays and fully format-checked, so no scipy code runs on the file's say-so. A chumpy
object in such a file is refused with a message saying how to convert the model.
``encoding="latin1"`` reads Python 2 pickles (the official SMPL files).
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
        raise pickle.UnpicklingError(f"_codecs.encode is only allowed with latin1, got {encoding!r}")
    return codecs.encode(obj, "latin1", errors)


#: Most elements a container, ``bytes(n)`` or ``range`` argument may have, and most bytes
#: an array made by a call in the pickle may take. Data the pickle carries is bounded by
#: the file's size; these bound what a few bytes of *calls* can ask for: without them,
#: ``list(range(10**12))`` or ``bytes(10**12)`` in a 40-byte file would exhaust the
#: machine's memory instead of failing one clip.
MAX_CALL_ITEMS = 1 << 24
MAX_CALL_ARRAY_BYTES = 1 << 31


def _check_call_args(name: str, args: tuple, kwargs: dict) -> None:
    for a in (*args, *kwargs.values()):
        if (
            isinstance(a, range | bytes | bytearray | str | list | tuple | set | frozenset | dict)
            and len(a) > MAX_CALL_ITEMS
        ):
            raise pickle.UnpicklingError(f"{name}() called with {len(a)} items (at most {MAX_CALL_ITEMS})")
        if name in ("bytes", "bytearray") and isinstance(a, int) and a > MAX_CALL_ITEMS:
            raise pickle.UnpicklingError(f"{name}({a}) asks for more than {MAX_CALL_ITEMS} bytes")


def _bounded(fn: Any, name: str) -> Any:
    """``fn`` called only with arguments of bounded size (see :data:`MAX_CALL_ITEMS`)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        _check_call_args(name, args, kwargs)
        return fn(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def _check_array_size(shape: Any, dtype: Any) -> None:
    """Refuse an array call whose shape and dtype ask for more than MAX_CALL_ARRAY_BYTES."""
    try:
        dims = (int(shape),) if isinstance(shape, int | np.integer) else tuple(int(n) for n in shape)
        itemsize = np.dtype(dtype).itemsize
    except (TypeError, ValueError) as e:
        raise pickle.UnpicklingError(f"bad array shape or dtype: {e}") from None
    if any(n < 0 for n in dims):
        raise pickle.UnpicklingError(f"negative array dimension in {dims}")
    total = itemsize
    for n in dims:
        total *= n
    if total > MAX_CALL_ARRAY_BYTES:
        raise pickle.UnpicklingError(f"array of shape {shape} asks for more than {MAX_CALL_ARRAY_BYTES} bytes")


def _reconstruct_bounded(subtype: Any, shape: Any, dtype: Any) -> Any:
    if subtype is _ndarray_bounded:  # what the pickle's ``numpy.ndarray`` resolves to
        subtype = np.ndarray
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"_reconstruct of {subtype!r}, not a numpy array")
    _check_array_size(shape, dtype)
    return _reconstruct(subtype, shape, dtype)


def _ndarray_bounded(shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> Any:
    _check_array_size(shape, dtype)
    return np.ndarray(shape, dtype, *args, **kwargs)


_NUMPY: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY[(_mod, "_reconstruct")] = _reconstruct_bounded
    _NUMPY[(_mod, "scalar")] = _scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _NUMPY[(_mod, "_frombuffer")] = _frombuffer  # its data come from the pickle: bounded by the file
_NUMPY[("numpy", "ndarray")] = _ndarray_bounded
_NUMPY[("numpy", "dtype")] = np.dtype

_BUILTINS: dict[str, Any] = {
    t.__name__: _bounded(t, t.__name__)
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


class _SparseStub:
    """Inert stand-in for a pickled scipy.sparse matrix: it only keeps the state."""

    fmt = ""

    def __init__(self) -> None:  # the unpickler makes stubs with __new__; this is for clarity
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class _CscStub(_SparseStub):
    fmt = "csc"


class _CsrStub(_SparseStub):
    fmt = "csr"


_SPARSE_GLOBALS: dict[tuple[str, str], type[_SparseStub]] = {}
for _mod in ("scipy.sparse", "scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr"):
    _SPARSE_GLOBALS[(_mod, "csc_matrix")] = _CscStub
    _SPARSE_GLOBALS[(_mod, "csc_array")] = _CscStub
    _SPARSE_GLOBALS[(_mod, "csr_matrix")] = _CsrStub
    _SPARSE_GLOBALS[(_mod, "csr_array")] = _CsrStub


def _stub_reconstructor(cls: Any, base: Any, state: Any) -> _SparseStub:
    # copyreg._reconstructor (protocols 0/1) for the stand-ins only, never a general one.
    if not (isinstance(cls, type) and issubclass(cls, _SparseStub)) or base is not object or state is not None:
        raise pickle.UnpicklingError("copyreg._reconstructor is only allowed for scipy.sparse data")
    return cls.__new__(cls)


_SPARSE_HELPERS: dict[tuple[str, str], Any] = {
    ("copyreg", "_reconstructor"): _stub_reconstructor,
    ("copy_reg", "_reconstructor"): _stub_reconstructor,
    ("builtins", "object"): object,
    ("__builtin__", "object"): object,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose globals come from :data:`ALLOWED_GLOBALS` only.

    ``allow_scipy_sparse=True`` adds the scipy.sparse stand-ins (see the module doc);
    the caller must pass the result through :func:`_rebuild_sparse`.
    """

    def __init__(
        self, file: IO[bytes], *, where: object = "<stream>", allow_scipy_sparse: bool = False, encoding: str = "ASCII"
    ) -> None:
        super().__init__(file, encoding=encoding)
        self.where = where
        self.allow_scipy_sparse = allow_scipy_sparse

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            pass
        if self.allow_scipy_sparse:
            found = _SPARSE_GLOBALS.get((module, name)) or _SPARSE_HELPERS.get((module, name))
            if found is not None:
                return found
            if module.split(".")[0] == "chumpy":
                raise MotionFormatError(
                    self.where,
                    f"the file holds a chumpy object ({module}.{name}); chumpy is not "
                    "supported: convert the model to plain numpy arrays first (e.g. with the "
                    "smplx repository's tools/clean_ch.py, or save it as .npz)",
                )
        raise MotionFormatError(
            self.where,
            f"refusing to load class {module}.{name}: only numpy arrays/scalars and plain "
            "builtin containers are allowed in a motion pickle"
            + (" (and scipy.sparse CSC/CSR matrices here)" if self.allow_scipy_sparse else ""),
        ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise MotionFormatError(self.where, "refusing persistent id in a motion pickle")


def restricted_load(
    path_or_file: str | os.PathLike[str] | IO[bytes], *, allow_scipy_sparse: bool = False, encoding: str = "ASCII"
) -> Any:
    """Unpickle a file (path or binary handle) allowing only numpy and builtin data.

    ``allow_scipy_sparse=True`` also accepts scipy.sparse CSC/CSR matrices (rebuilt and
    checked, see the module doc); ``encoding="latin1"`` reads Python 2 pickles.

    Raises MotionFormatError for a refused global and for any malformed/truncated
    pickle; FileNotFoundError propagates for a missing path.
    """
    if isinstance(path_or_file, str | os.PathLike):
        where: object = os.fspath(path_or_file)
        with open(path_or_file, "rb") as fh:
            return _load(fh, where, allow_scipy_sparse=allow_scipy_sparse, encoding=encoding)
    where = getattr(path_or_file, "name", "<stream>")
    return _load(path_or_file, where, allow_scipy_sparse=allow_scipy_sparse, encoding=encoding)


def restricted_loads(data: bytes) -> Any:
    """:func:`restricted_load` for an in-memory pickle."""
    return _load(io.BytesIO(data), "<bytes>")


def _load(fh: IO[bytes], where: object, *, allow_scipy_sparse: bool = False, encoding: str = "ASCII") -> Any:
    try:
        obj = RestrictedUnpickler(fh, where=where, allow_scipy_sparse=allow_scipy_sparse, encoding=encoding).load()
        if allow_scipy_sparse:
            obj = _rebuild_sparse(obj, where)
        return obj
    except MotionFormatError:
        raise
    except Exception as e:  # UnpicklingError, EOFError, ValueError, TypeError, MemoryError...
        raise MotionFormatError(where, f"malformed or truncated pickle: {type(e).__name__}: {e}") from None


def _sparse_from_stub(stub: _SparseStub, where: object) -> Any:
    import scipy.sparse

    state = getattr(stub, "state", None)  # absent when the pickle has no BUILD for it
    if not isinstance(state, dict):
        raise MotionFormatError(where, f"scipy.sparse {stub.fmt} matrix without its state")
    shape = state.get("_shape", state.get("shape"))
    parts = [state.get(k) for k in ("data", "indices", "indptr")]
    if not all(isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype.kind in "biuf" for a in parts):
        raise MotionFormatError(
            where, f"scipy.sparse {stub.fmt} matrix: data/indices/indptr must be 1-D numeric arrays"
        )
    if not (
        isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(n, int | np.integer) and n >= 0 for n in shape)
    ):
        raise MotionFormatError(where, f"scipy.sparse {stub.fmt} matrix: bad shape {shape!r}")
    data, indices, indptr = parts
    if indices.dtype.kind == "f" or indptr.dtype.kind == "f":
        raise MotionFormatError(where, f"scipy.sparse {stub.fmt} matrix: float indices")
    cls = scipy.sparse.csc_matrix if stub.fmt == "csc" else scipy.sparse.csr_matrix
    try:
        m = cls((data, indices, indptr), shape=(int(shape[0]), int(shape[1])))
        m.check_format(full_check=True)  # indices in range, indptr monotone
    except (ValueError, TypeError) as e:
        raise MotionFormatError(where, f"invalid scipy.sparse {stub.fmt} matrix: {e}") from None
    return m


def _rebuild_sparse(obj: Any, where: object, depth: int = 0) -> Any:
    """Replace the sparse stand-ins in plain containers by checked scipy matrices."""
    if depth > 100:
        raise MotionFormatError(where, "containers nested deeper than 100 levels")
    if isinstance(obj, _SparseStub):
        return _sparse_from_stub(obj, where)
    if isinstance(obj, dict):
        return {k: _rebuild_sparse(v, where, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        out = [_rebuild_sparse(v, where, depth + 1) for v in obj]
        return out if isinstance(obj, list) else tuple(out)
    return obj
