"""Packaged motion libraries: many motions' states in one pickle-free npz (stage: motion
libraries, host code, numpy).

A library concatenates the per-frame arrays of its M motions along one frame axis
(N = total frames) and describes each motion by where it starts and how long it is, so a
query is two gathers (see :mod:`retarget_jax.motionlib.query`). Quaternions are **wxyz**
(the archive says so in ``quaternion_order``). Schema version 1:

========================  ============  ==================================================
key                       shape         what
========================  ============  ==================================================
schema_version            ()            int, 1
quaternion_order          ()            "wxyz"
root_pos                  (N, 3)        float32, floating base position, world, m
root_quat_wxyz            (N, 4)        float32
root_lin_vel_w            (N, 3)        float32, m/s, world
root_ang_vel_w            (N, 3)        float32, rad/s, world
dof_pos, dof_vel          (N, n)        float32, rad, rad/s
body_pos_w                (N, B, 3)     float32
body_quat_w               (N, B, 4)     float32, wxyz
body_lin_vel_w            (N, B, 3)     float32, world, at each body origin
body_ang_vel_w            (N, B, 3)     float32, world
contacts                  (N, F)        bool, foot contacts of ``contact_body_names``
body_names                (B,)          unicode
dof_names                 (n,)          unicode
contact_body_names        (F,)          unicode
motion_start              (M,)          int64, first frame of each motion in the N axis
motion_num_frames         (M,)          int64
motion_fps                (M,)          float64
motion_weight             (M,)          float64, sampling weight (>= 0)
motion_name               (M,)          unicode, ``<file without suffix>@<start>-<end>``
motion_file               (M,)          unicode, the source file as the config wrote it
motion_slice_start_s      (M,)          float64, the slice on the source clip's clock
motion_slice_end_s        (M,)          float64, its last sample's time
motion_info_json          (M,)          unicode, per-motion facts (solve status, metrics)
metadata_json             ()            unicode, target, model, config, shard, settings
========================  ============  ==================================================

``--shards N`` writes ``<name>_0.npz ... <name>_<N-1>.npz``, motions assigned to shards
largest first, each to the shard with the fewest frames so far (balanced by frames).
:func:`resolve_library_path` turns ``<name>_slurmrank.npz`` into this process's shard.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retarget_jax.errors import ConfigError, MotionLibFormatError
from retarget_jax.files.atomic import atomic_write
from retarget_jax.io.result_npz import str_array
from retarget_jax.motionlib.states import FRAME_FIELDS, NAME_FIELDS, MotionStates, _check_shapes

__all__ = [
    "LIBRARY_SCHEMA_VERSION",
    "MOTION_FIELDS",
    "RANK_VARIABLES",
    "MotionLibrary",
    "load_library",
    "pack_library",
    "process_rank",
    "resolve_library_path",
    "save_library",
    "shard_assignment",
]

LIBRARY_SCHEMA_VERSION = 1
#: Per-motion arrays: name -> dtype.
MOTION_FIELDS: dict[str, type] = {
    "motion_start": np.int64,
    "motion_num_frames": np.int64,
    "motion_fps": np.float64,
    "motion_weight": np.float64,
    "motion_slice_start_s": np.float64,
    "motion_slice_end_s": np.float64,
}
_MOTION_STRINGS = ("motion_name", "motion_file", "motion_info_json")
#: Environment variables that name this process's rank, in the order they are read (after an
#: explicit rank and an initialised ``jax.distributed``): torch.distributed / torchrun, then
#: SLURM and Open MPI (the launchers ``jax.distributed.initialize`` reads too).
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK")
RANK_PLACEHOLDER = "slurmrank"


@dataclasses.dataclass
class MotionLibrary:
    """A loaded (or freshly packed) library, host side: see the module docstring.

    ``frames`` maps each per-frame field to its (N, ...) array; the ``motion_*`` arrays
    describe the M motions; ``infos`` are the per-motion JSON objects.
    """

    frames: dict[str, np.ndarray]
    body_names: tuple[str, ...]
    dof_names: tuple[str, ...]
    contact_body_names: tuple[str, ...]
    motion_start: np.ndarray
    motion_num_frames: np.ndarray
    motion_fps: np.ndarray
    motion_weight: np.ndarray
    motion_slice_start_s: np.ndarray
    motion_slice_end_s: np.ndarray
    motion_name: tuple[str, ...]
    motion_file: tuple[str, ...]
    infos: list[dict[str, Any]]
    metadata: dict[str, Any]
    path: str | None = None

    @property
    def num_motions(self) -> int:
        return int(self.motion_start.shape[0])

    @property
    def total_frames(self) -> int:
        return int(self.frames["root_pos"].shape[0])

    @property
    def motion_duration_s(self) -> np.ndarray:
        """(M,) time of each motion's last frame: (frames - 1) / fps."""
        return (self.motion_num_frames - 1) / self.motion_fps

    def motion(self, i: int) -> MotionStates:
        """Motion ``i`` as :class:`MotionStates` (views into the library's arrays)."""
        s, n = int(self.motion_start[i]), int(self.motion_num_frames[i])
        return MotionStates(
            fps=float(self.motion_fps[i]),
            **{k: v[s : s + n] for k, v in self.frames.items()},
            body_names=self.body_names,
            dof_names=self.dof_names,
            contact_body_names=self.contact_body_names,
            info=dict(self.infos[i]),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "schema_version": np.array(LIBRARY_SCHEMA_VERSION, np.int64),
            "quaternion_order": np.array("wxyz"),
            **self.frames,
            "body_names": str_array(self.body_names),
            "dof_names": str_array(self.dof_names),
            "contact_body_names": str_array(self.contact_body_names),
            **{k: np.asarray(getattr(self, k), dt) for k, dt in MOTION_FIELDS.items()},
            "motion_name": str_array(self.motion_name),
            "motion_file": str_array(self.motion_file),
            "motion_info_json": str_array([json.dumps(i, sort_keys=True) for i in self.infos]),
            "metadata_json": np.array(json.dumps(self.metadata, sort_keys=True)),
        }
        return arrays


def pack_library(
    motions: Sequence[MotionStates],
    *,
    names: Sequence[str],
    files: Sequence[str],
    weights: Sequence[float],
    slices: Sequence[tuple[float, float]],
    metadata: Mapping[str, Any],
) -> MotionLibrary:
    """Concatenate motions (all with the same bodies, DoF and contact bodies) into a library."""
    if not motions:
        raise ConfigError("a motion library needs at least one motion")
    first = motions[0]
    for m, name in zip(motions, names, strict=True):
        for k in NAME_FIELDS:
            if getattr(m, k) != getattr(first, k):
                raise ConfigError(
                    f"motion '{name}': its {k} differ from the first motion's ('{names[0]}'); "
                    "one library holds one body"
                )
    lengths = np.array([m.num_frames for m in motions], np.int64)
    return MotionLibrary(
        frames={k: np.concatenate([getattr(m, k) for m in motions]) for k in FRAME_FIELDS},
        body_names=first.body_names,
        dof_names=first.dof_names,
        contact_body_names=first.contact_body_names,
        motion_start=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        motion_num_frames=lengths,
        motion_fps=np.array([m.fps for m in motions], np.float64),
        motion_weight=np.asarray(weights, np.float64),
        motion_slice_start_s=np.array([s[0] for s in slices], np.float64),
        motion_slice_end_s=np.array([s[1] for s in slices], np.float64),
        motion_name=tuple(names),
        motion_file=tuple(files),
        infos=[dict(m.info) for m in motions],
        metadata=dict(metadata),
    )


def save_library(lib: MotionLibrary, path: str | os.PathLike) -> Path:
    """Write a library as a pickle-free npz, atomically (a reader sees the old file or the new)."""
    with atomic_write(path, suffix=".npz") as fh:
        np.savez(fh, **lib.to_arrays())
    return Path(path)


def _fail(path, field: str, msg: str) -> MotionLibFormatError:
    return MotionLibFormatError(path, msg, field=field)


def load_library(path: str | os.PathLike, *, rank: int | None = None) -> MotionLibrary:
    """Read and check a library file (``<name>_slurmrank.npz`` loads this process's shard,
    see :func:`resolve_library_path`). MotionLibFormatError names the file and the field."""
    path = resolve_library_path(path, rank=rank)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"motion library not found: {path}") from None
    except Exception as e:
        raise MotionLibFormatError(path, f"not a readable npz archive ({type(e).__name__}: {e})") from None
    required = (
        "schema_version",
        "quaternion_order",
        *FRAME_FIELDS,
        *NAME_FIELDS,
        *MOTION_FIELDS,
        *_MOTION_STRINGS,
        "metadata_json",
    )
    for k in required:
        if k not in data:
            raise _fail(path, k, f"missing; fields: {', '.join(sorted(data))}")
    if data["schema_version"].shape != () or int(data["schema_version"]) != LIBRARY_SCHEMA_VERSION:
        raise _fail(path, "schema_version", f"expected {LIBRARY_SCHEMA_VERSION}, found {data['schema_version']}")
    if str(data["quaternion_order"]) != "wxyz":
        raise _fail(path, "quaternion_order", f"expected 'wxyz', found {str(data['quaternion_order'])!r}")
    _check_shapes(data, path)
    N = data["root_pos"].shape[0]
    M = data["motion_start"].shape[0] if data["motion_start"].ndim == 1 else -1
    for k, dt in MOTION_FIELDS.items():
        a = data[k]
        if a.shape != (M,) or a.dtype.kind not in ("iu" if np.dtype(dt).kind == "i" else "fiu"):
            raise _fail(path, k, f"expected ({M},) {np.dtype(dt).name}, found {a.shape} {a.dtype}")
    for k in _MOTION_STRINGS:
        if data[k].shape != (M,) or data[k].dtype.kind != "U":
            raise _fail(path, k, f"expected ({M},) unicode, found {data[k].shape} {data[k].dtype}")
    if M < 1:
        raise _fail(path, "motion_start", "the library holds no motion")
    start, length = data["motion_start"].astype(np.int64), data["motion_num_frames"].astype(np.int64)
    expect = np.concatenate([[0], np.cumsum(length)[:-1]])
    if (length < 1).any() or not np.array_equal(start, expect) or int(length.sum()) != N:
        raise _fail(
            path,
            "motion_start",
            f"motions must tile the {N} frames in order (starts {start[:8].tolist()}..., "
            f"lengths {length[:8].tolist()}...)",
        )
    fps, weight = data["motion_fps"].astype(np.float64), data["motion_weight"].astype(np.float64)
    if not (np.isfinite(fps).all() and (fps > 0).all()):
        raise _fail(path, "motion_fps", "every motion's fps must be finite and > 0")
    if not (np.isfinite(weight).all() and (weight >= 0).all() and weight.sum() > 0):
        raise _fail(path, "motion_weight", "weights must be finite, >= 0 and not all 0")
    try:
        infos = [json.loads(s) for s in data["motion_info_json"].tolist()]
        metadata = json.loads(str(data["metadata_json"]))
    except ValueError as e:
        raise _fail(path, "motion_info_json", f"not JSON: {e}") from None
    return MotionLibrary(
        frames={k: data[k] for k in FRAME_FIELDS},
        **{k: tuple(data[k].tolist()) for k in NAME_FIELDS},
        motion_start=start,
        motion_num_frames=length,
        motion_fps=fps,
        motion_weight=weight,
        motion_slice_start_s=data["motion_slice_start_s"].astype(np.float64),
        motion_slice_end_s=data["motion_slice_end_s"].astype(np.float64),
        motion_name=tuple(data["motion_name"].tolist()),
        motion_file=tuple(data["motion_file"].tolist()),
        infos=infos,
        metadata=metadata,
        path=str(path),
    )


# --------------------------------------------------------------------------- shards and ranks


def shard_assignment(num_frames: Sequence[int], num_shards: int) -> list[list[int]]:
    """Motion indices of each shard, balanced by frames: motions longest first (ties by
    index) each go to the shard with the fewest frames so far (ties: the lowest shard);
    inside a shard motions keep their config order. Deterministic."""
    if num_shards < 1:
        raise ConfigError(f"shards must be >= 1, got {num_shards}")
    if len(num_frames) < num_shards:
        raise ConfigError(f"{num_shards} shards need at least {num_shards} motions; there are {len(num_frames)}")
    totals = [0] * num_shards
    shards: list[list[int]] = [[] for _ in range(num_shards)]
    for i in sorted(range(len(num_frames)), key=lambda i: (-int(num_frames[i]), i)):
        s = min(range(num_shards), key=lambda s: (totals[s], s))
        shards[s].append(i)
        totals[s] += int(num_frames[i])
    return [sorted(s) for s in shards]


def process_rank(rank: int | None = None, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """This process's rank and where it came from: ``rank`` when given; else
    ``jax.process_index()`` when ``jax.distributed`` is initialised; else the first of
    :data:`RANK_VARIABLES` that is set; else 0."""
    if rank is not None:
        return int(rank), "argument"
    if env is None:
        env = os.environ
        try:  # only when a multi-process JAX runtime is already up; never starts one
            from jax._src import distributed as _dist

            if _dist.global_state.client is not None:
                import jax

                return int(jax.process_index()), "jax.process_index()"
        except ImportError:  # pragma: no cover - jax internals moved
            pass
    for var in RANK_VARIABLES:
        v = env.get(var)
        if v not in (None, ""):
            try:
                return int(v), var
            except ValueError:
                raise ConfigError(f"environment variable {var}={v!r} is not an integer rank") from None
    return 0, "default"


def resolve_library_path(
    path: str | os.PathLike, *, rank: int | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """``<dir>/<name>_slurmrank<suffix>`` -> ``<dir>/<name>_<k><suffix>`` for this process
    (:func:`process_rank`), where k = rank mod the number of shards found (so more ranks
    than shards share shards evenly); any other path is returned as it is."""
    path = Path(path)
    if path.name.count(RANK_PLACEHOLDER) != 1:
        return path
    r, source = process_rank(rank, env)
    prefix, suffix = path.name.split(RANK_PLACEHOLDER)
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + r"\Z")
    found = {}
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            m = pattern.match(p.name)
            if m:
                found[int(m.group(1))] = p
    if not found:
        raise FileNotFoundError(f"no shard matches {path} ({prefix}<k>{suffix} in {path.parent})")
    n = len(found)
    if sorted(found) != list(range(n)):
        raise ConfigError(f"{path}: shards {sorted(found)} found; expected 0..{n - 1} with none missing")
    if r < 0:
        raise ConfigError(f"rank {r} (from {source}) is negative")
    return found[r % n]
