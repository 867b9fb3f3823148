"""RetargetingResult <-> pickle-free NPZ, the package's own result format (host, numpy).

Stage: writers (after the solve and metrics). Host code only.

The archive loads with ``np.load(path, allow_pickle=False)``: names are fixed-width
unicode arrays (dtype ``<U..``), the provenance dict is a JSON string in a 0-d unicode
array, and no key holds an object array. Arrays keep the dtype they had in the result,
so a save/load round trip is exact.

Schema version 1 (T frames, n actuated DoF, B bodies, K targets):

===================== ============ ===========================================
key                   shape        dtype
===================== ============ ===========================================
schema_version        ()           int
fps                   ()           float, finite, > 0
root_pos              (T, 3)       float
root_quat_wxyz        (T, 4)       float
dof_pos               (T, n)       float
dof_names             (n,)         unicode
body_names            (B,)         unicode
body_pos_w            (T, B, 3)    float
body_quat_w           (T, B, 4)    float, wxyz
status                ()           int (SolveStatus code)
status_name           ()           unicode (informative; ``status`` is authoritative)
final_cost            ()           float
iterations            ()           int
robot                 ()           unicode
provenance_json       ()           unicode, a JSON object
source_path           ()           unicode, ``provenance["source_path"]`` or ""
config_hash           ()           unicode, ``provenance["config_hash"]`` or ""
package_version       ()           unicode, ``provenance["package_version"]`` or ""
target_pos_w          (T, K, 3)    float, optional
target_body_names     (K,) or (0,) unicode, optional (written with target_pos_w)
target_offset_b       (K, 3)       float, optional: tracked point in the body frame
contacts              (T, F)       bool, optional: the ContactPlan's stance flags
contact_body_names    (F,)         unicode, required with contacts
limb_names            (L,)         unicode, optional: the recipe's limbs
limb_body_names       (L, 2)       unicode, with limb_names: bodies at each limb's ends
limb_offset_b         (L, 2, 3)    float, with limb_names: the end points in their bodies
limb_human_dir        (T, L, 3)    float, with limb_names: unit human bone directions (NaN: missing)
===================== ============ ===========================================

Values are not checked beyond ``fps`` (a diverged clip legitimately holds NaN).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from retarget_jax.errors import MotionFormatError
from retarget_jax.files.atomic import atomic_write
from retarget_jax.files.npz import load_npz
from retarget_jax.result import RetargetingResult, SolveStatus

SCHEMA_VERSION = 1

# Provenance entries duplicated as top-level strings so batch tools can read them
# without parsing JSON.
PROVENANCE_KEYS = ("source_path", "config_hash", "package_version")

_FLOAT_ARRAYS = ("root_pos", "root_quat_wxyz", "dof_pos", "body_pos_w", "body_quat_w")
_NAME_ARRAYS = ("dof_names", "body_names")
_LIMB_KEYS = ("limb_names", "limb_body_names", "limb_offset_b", "limb_human_dir")
_SCALARS = {  # key -> (numpy dtype kinds accepted, in words)
    "schema_version": ("iu", "integer"),
    "fps": ("fiu", "number"),
    "status": ("iu", "integer"),
    "final_cost": ("fiu", "number"),
    "iterations": ("iu", "integer"),
}
_STRINGS = ("status_name", "robot", "provenance_json") + PROVENANCE_KEYS

REQUIRED_KEYS: tuple[str, ...] = (
    ("schema_version",) + _FLOAT_ARRAYS + _NAME_ARRAYS + tuple(k for k in _SCALARS if k != "schema_version") + _STRINGS
)
OPTIONAL_KEYS: tuple[str, ...] = (
    "target_pos_w",
    "target_body_names",
    "target_offset_b",
    "contacts",
    "contact_body_names",
    *_LIMB_KEYS,
)


# --------------------------------------------------------------------------- encoding helpers


def str_array(names: Any) -> np.ndarray:
    """Sequence of str -> (N,) fixed-width unicode array ('<U1' when empty), never object."""
    arr = np.array([str(s) for s in names], dtype=np.str_)
    return arr.reshape(len(arr))


def _str0(s: Any) -> np.ndarray:
    return np.array("" if s is None else str(s), dtype=np.str_)


def result_to_arrays(result: RetargetingResult, where: object = "<result>") -> dict[str, np.ndarray]:
    """The archive content for ``result`` (schema-checked), as a dict of numpy arrays."""
    prov = dict(result.provenance or {})
    try:
        prov_json = json.dumps(prov, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise MotionFormatError(where, f"provenance is not JSON-serialisable: {e}", field="provenance") from None
    arrays: dict[str, np.ndarray] = {
        "schema_version": np.array(SCHEMA_VERSION, dtype=np.int64),
        "fps": np.array(result.fps, dtype=np.float64),
        "root_pos": np.asarray(result.root_pos),
        "root_quat_wxyz": np.asarray(result.root_quat_wxyz),
        "dof_pos": np.asarray(result.dof_pos),
        "dof_names": str_array(result.dof_names),
        "body_names": str_array(result.body_names),
        "body_pos_w": np.asarray(result.body_pos_w),
        "body_quat_w": np.asarray(result.body_quat_w),
        "status": np.array(int(result.status), dtype=np.int64),
        "status_name": _str0(SolveStatus.name(result.status)),
        "final_cost": np.array(result.final_cost, dtype=np.float64),
        "iterations": np.array(int(result.iterations), dtype=np.int64),
        "robot": _str0(result.robot),
        "provenance_json": _str0(prov_json),
    }
    for key in PROVENANCE_KEYS:
        arrays[key] = _str0(prov.get(key))
    if result.target_pos_w is not None:
        arrays["target_pos_w"] = np.asarray(result.target_pos_w)
        arrays["target_body_names"] = str_array(result.target_body_names)
    elif len(result.target_body_names):
        arrays["target_body_names"] = str_array(result.target_body_names)
    if result.target_offset_b is not None:
        arrays["target_offset_b"] = np.asarray(result.target_offset_b)
    if result.contacts is not None:
        arrays["contacts"] = np.asarray(result.contacts, dtype=bool)
        arrays["contact_body_names"] = str_array(result.contact_body_names)
    if result.limb_names:
        arrays["limb_names"] = str_array(result.limb_names)
        arrays["limb_body_names"] = np.array(
            [[str(a), str(b)] for a, b in result.limb_body_names], dtype=np.str_
        ).reshape(-1, 2)
        arrays["limb_offset_b"] = np.asarray(result.limb_offset_b, np.float64)
        arrays["limb_human_dir"] = np.asarray(result.limb_human_dir, np.float64)
    check_result_arrays(arrays, where)
    return arrays


# --------------------------------------------------------------------------- schema check


def check_result_arrays(arrays: Mapping[str, np.ndarray], where: object) -> None:
    """Raise MotionFormatError (naming the field) unless ``arrays`` follows schema v1."""
    keys = set(arrays)
    for key in REQUIRED_KEYS:
        if key not in keys:
            raise MotionFormatError(where, f"missing required key (schema v{SCHEMA_VERSION})", field=key)
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise MotionFormatError(where, "object arrays are not allowed", field=key)

    def fail(key: str, expected: str, found: object) -> MotionFormatError:
        return MotionFormatError(where, f"expected {expected}, found {found}", field=key)

    for key, (kinds, word) in _SCALARS.items():
        a = arrays[key]
        if a.shape != () or a.dtype.kind not in kinds:
            raise fail(key, f"a 0-d {word} array", f"shape {a.shape} dtype {a.dtype}")
    version = int(arrays["schema_version"])
    if version != SCHEMA_VERSION:
        raise fail("schema_version", f"schema version {SCHEMA_VERSION}", version)
    fps = float(arrays["fps"])
    if not np.isfinite(fps) or fps <= 0:
        raise fail("fps", "a finite fps > 0", fps)
    for key in _STRINGS:
        a = arrays[key]
        if a.shape != () or a.dtype.kind != "U":
            raise fail(key, "a 0-d unicode array", f"shape {a.shape} dtype {a.dtype}")
    try:
        prov = json.loads(arrays["provenance_json"].item())
    except ValueError as e:
        raise fail("provenance_json", "a JSON object", f"invalid JSON ({e})") from None
    if not isinstance(prov, dict):
        raise fail("provenance_json", "a JSON object", type(prov).__name__)
    for key in (*_NAME_ARRAYS, "target_body_names", "contact_body_names"):
        if key in arrays:
            a = arrays[key]
            if a.ndim != 1 or (a.dtype.kind != "U" and a.size):
                raise fail(key, "a (N,) unicode array", f"shape {a.shape} dtype {a.dtype}")
    for key in (*_FLOAT_ARRAYS, "target_pos_w", "target_offset_b", "limb_offset_b", "limb_human_dir"):
        if key in arrays and arrays[key].dtype.kind != "f":
            raise fail(key, "a floating-point array", f"dtype {arrays[key].dtype}")

    rp = arrays["root_pos"]
    if rp.ndim != 2 or rp.shape[1] != 3:
        raise fail("root_pos", "shape (T, 3)", f"shape {rp.shape}")
    T = rp.shape[0]
    n = arrays["dof_names"].shape[0]
    B = arrays["body_names"].shape[0]
    # key -> (symbolic shape for the message, concrete shape)
    expected = {
        "root_quat_wxyz": ("(T, 4)", (T, 4)),
        "dof_pos": ("(T, n)", (T, n)),
        "body_pos_w": ("(T, B, 3)", (T, B, 3)),
        "body_quat_w": ("(T, B, 4)", (T, B, 4)),
    }
    if "target_pos_w" in arrays:
        tp = arrays["target_pos_w"]
        K = tp.shape[1] if tp.ndim == 3 else -1
        expected["target_pos_w"] = ("(T, K, 3)", (T, K, 3))
        names = arrays.get("target_body_names")
        if names is None:
            raise MotionFormatError(where, "required when target_pos_w is present", field="target_body_names")
        if K >= 0 and names.shape[0] not in (0, K):
            raise fail(
                "target_body_names",
                f"({K},) names, one per target (or none)",
                f"shape {names.shape}",
            )
    if "target_offset_b" in arrays:
        K = arrays["target_body_names"].shape[0] if "target_body_names" in arrays else -1
        expected["target_offset_b"] = ("(K, 3)", (K, 3))
    if "contacts" in arrays:
        c = arrays["contacts"]
        if c.dtype != bool:
            raise fail("contacts", "a bool array", f"dtype {c.dtype}")
        names = arrays.get("contact_body_names")
        if names is None:
            raise MotionFormatError(where, "required when contacts is present", field="contact_body_names")
        expected["contacts"] = ("(T, F)", (T, names.shape[0]))
    present = [k for k in _LIMB_KEYS if k in arrays]
    if present and len(present) != len(_LIMB_KEYS):
        missing = [k for k in _LIMB_KEYS if k not in arrays][0]
        raise MotionFormatError(where, f"required with {present[0]}", field=missing)
    if present:
        if arrays["limb_names"].ndim != 1 or arrays["limb_body_names"].dtype.kind != "U":
            raise fail(
                "limb_body_names",
                "(L, 2) unicode names with (L,) limb_names",
                f"shape {arrays['limb_body_names'].shape} dtype {arrays['limb_body_names'].dtype}",
            )
        L = arrays["limb_names"].shape[0]
        expected["limb_body_names"] = ("(L, 2)", (L, 2))
        expected["limb_offset_b"] = ("(L, 2, 3)", (L, 2, 3))
        expected["limb_human_dir"] = ("(T, L, 3)", (T, L, 3))
    for key, (symbolic, shape) in expected.items():
        found = arrays[key].shape
        if found != shape:
            raise fail(key, f"shape {symbolic} = {shape} (T={T}, n={n}, B={B})", f"shape {found}")


# --------------------------------------------------------------------------- public API


def save_result(result: RetargetingResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` to ``path`` as a pickle-free NPZ (schema v1), atomically.

    The file is written exactly at ``path`` (no ``.npz`` is appended). Provenance must
    be JSON-serialisable; tuples in it come back as lists. Returns the path written.
    """
    path = Path(path)
    arrays = result_to_arrays(result, where=path)
    with atomic_write(path, suffix=".npz") as fh:
        np.savez(fh, **arrays)
    return path


def validate_result_npz(path: str | os.PathLike[str]) -> None:
    """Raise MotionFormatError (naming the field) unless ``path`` is a valid result NPZ."""
    path = Path(path)
    check_result_arrays(load_npz(path), path)


def load_result(path: str | os.PathLike[str]) -> RetargetingResult:
    """Read a result NPZ written by :func:`save_result` (exact round trip), schema-checked."""
    path = Path(path)
    a = load_npz(path)
    check_result_arrays(a, path)
    target_pos = a.get("target_pos_w")
    target_names = a.get("target_body_names")
    return RetargetingResult(
        fps=float(a["fps"]),
        root_pos=a["root_pos"],
        root_quat_wxyz=a["root_quat_wxyz"],
        dof_pos=a["dof_pos"],
        dof_names=tuple(a["dof_names"].tolist()),
        body_names=tuple(a["body_names"].tolist()),
        body_pos_w=a["body_pos_w"],
        body_quat_w=a["body_quat_w"],
        status=int(a["status"]),
        final_cost=float(a["final_cost"]),
        iterations=int(a["iterations"]),
        robot=a["robot"].item(),
        provenance=json.loads(a["provenance_json"].item()),
        target_pos_w=target_pos,
        target_body_names=() if target_names is None else tuple(target_names.tolist()),
        target_offset_b=a.get("target_offset_b"),
        contacts=a.get("contacts"),
        contact_body_names=tuple(a["contact_body_names"].tolist()) if "contact_body_names" in a else (),
        limb_names=tuple(a["limb_names"].tolist()) if "limb_names" in a else (),
        limb_body_names=tuple((str(x), str(y)) for x, y in a["limb_body_names"].tolist()) if "limb_names" in a else (),
        limb_offset_b=a.get("limb_offset_b"),
        limb_human_dir=a.get("limb_human_dir"),
    )
