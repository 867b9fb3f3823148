"""Training shards: pickle-free, self-contained, byte-reproducible npz files (host, numpy).

Stage: dataset. A shard holds whole clips of one split, their frames concatenated:

==================== ============ ======= =====================================================
key                  shape        dtype   what
==================== ============ ======= =====================================================
format               ()           str     ``retarget_jax.dataset.shard``
schema_version       ()           int64   1
robot                ()           str     robot name
split                ()           str     ``train`` or ``val``
joint_names          (n,)         str     actuated joints, MJCF order (columns of joint_*)
body_names           (B,)         str     bodies, MJCF order, world excluded
contact_body_names   (F,)         str     the feet (columns of ``contacts``)
clip_ids             (C,)         str     ``<source>/<input path relative to the source>``
clip_sources         (C,)         str     source name
clip_starts          (C,)         int64   first frame of each clip in the per-frame arrays
clip_lengths         (C,)         int64   frames of each clip
clip_fps             (C,)         float64 frame rate of each clip
clip_weights         (C,)         float64 sampling weight of each clip (its source's)
joint_pos            (N, n)       float32 radians
joint_vel            (N, n)       float32 rad/s (finite differences within the clip)
root_pos             (N, 3)       float32 floating base position, world, metres
root_quat_wxyz       (N, 4)       float32 floating base orientation, wxyz
body_pos_w           (N, B, 3)    float32 body origins, world
body_quat_w          (N, B, 4)    float32 body orientations, world, wxyz
body_lin_vel_w       (N, B, 3)    float32 body origin velocities, world, m/s
body_ang_vel_w       (N, B, 3)    float32 body angular velocities, world, rad/s
contacts             (N, F)       bool    foot in stance (sole on the ground and slow)
==================== ============ ======= =====================================================

Reproducible: the keys are always written in this order, every zip entry carries the
same fixed time stamp (1980-01-01) and permissions, and entries are *stored*
(uncompressed), so the same clips give the same bytes on every machine and run. Stored
entries also let :func:`open_shard` memory-map every array in place; each array's data is
aligned to 64 bytes in the file (a padding record in the zip entry's extra field).
The archive loads with ``np.load(path, allow_pickle=False)``.

:class:`ShardWriter` holds one shard's clips at a time and writes each shard atomically
(:mod:`retarget_jax.files.atomic`); :func:`reshard` splits or merges shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import struct
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retarget_jax.errors import ConfigError, MotionFormatError
from retarget_jax.files.atomic import atomic_write, is_temp_file
from retarget_jax.io.result_npz import str_array

SHARD_FORMAT = "retarget_jax.dataset.shard"
SHARD_SCHEMA_VERSION = 1
SHARD_PREFIX = "shard_"
#: per-frame arrays, in file order
FRAME_KEYS = (
    "joint_pos",
    "joint_vel",
    "root_pos",
    "root_quat_wxyz",
    "body_pos_w",
    "body_quat_w",
    "body_lin_vel_w",
    "body_ang_vel_w",
    "contacts",
)
#: per-clip arrays, in file order
CLIP_KEYS = ("clip_ids", "clip_sources", "clip_starts", "clip_lengths", "clip_fps", "clip_weights")
META_KEYS = ("format", "schema_version", "robot", "split", "joint_names", "body_names", "contact_body_names")
SHARD_KEYS = META_KEYS + CLIP_KEYS + FRAME_KEYS
FRAME_DTYPES = {k: np.dtype(np.float32) for k in FRAME_KEYS} | {"contacts": np.dtype(bool)}

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ALIGN = 64
_PAD_ID = 0xD935  # the extra-field id zipalign uses for padding; readers skip unknown ids
_SHARD_RE = re.compile(rf"^{SHARD_PREFIX}(\d{{5}})\.npz$")


@dataclasses.dataclass(frozen=True)
class ShardMeta:
    """What every shard of one split shares."""

    robot: str
    split: str
    joint_names: tuple[str, ...]
    body_names: tuple[str, ...]
    contact_body_names: tuple[str, ...]

    def frame_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of one frame of each per-frame array."""
        n, B, F = len(self.joint_names), len(self.body_names), len(self.contact_body_names)
        return {
            "joint_pos": (n,),
            "joint_vel": (n,),
            "root_pos": (3,),
            "root_quat_wxyz": (4,),
            "body_pos_w": (B, 3),
            "body_quat_w": (B, 4),
            "body_lin_vel_w": (B, 3),
            "body_ang_vel_w": (B, 3),
            "contacts": (F,),
        }

    def bytes_per_frame(self) -> int:
        return sum(int(np.prod(s)) * FRAME_DTYPES[k].itemsize for k, s in self.frame_shapes().items())


@dataclasses.dataclass
class ShardClip:
    """One clip as it goes into a shard: per-frame arrays (``FRAME_KEYS``) and metadata."""

    clip_id: str
    source: str
    fps: float
    weight: float
    frames: dict[str, np.ndarray]

    @property
    def num_frames(self) -> int:
        return int(self.frames["joint_pos"].shape[0])


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """A shard written: file name, clips, frames, bytes and sha256 of the file."""

    name: str
    clips: int
    frames: int
    bytes: int
    sha256: str


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}.npz"


def shard_files(folder: str | os.PathLike) -> list[Path]:
    """The shards of a folder, in index order (temporary files of a killed write excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _SHARD_RE.match(p.name))


# --------------------------------------------------------------------------- writing


def _header(arr_dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The .npy header (format 1.0) of a C-ordered array, as ``np.save`` writes it."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(arr_dtype), "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def _write_member(
    zf: zipfile.ZipFile, key: str, dtype: np.dtype, shape: tuple[int, ...], chunks: Iterable[np.ndarray]
) -> None:
    """One stored ``<key>.npy`` entry, its data 64-byte aligned in the file, written chunk by
    chunk (the concatenation of ``chunks`` along axis 0 is never built in memory)."""
    header = _header(dtype, shape)
    name = f"{key}.npy"
    start = zf.fp.tell()  # where the local file header goes
    # local header: 30 bytes + name + our padding record (4 + k) + the zip64 record (20)
    k = (-(start + 30 + len(name.encode()) + 4 + 20 + len(header))) % _ALIGN
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    info.extra = struct.pack("<HH", _PAD_ID, k) + b"\0" * k
    with zf.open(info, "w", force_zip64=True) as w:
        w.write(header)
        for c in chunks:
            c = np.ascontiguousarray(c, dtype=dtype)
            if c.size:
                w.write(memoryview(c).cast("B"))


def write_shard(path: str | os.PathLike, meta: ShardMeta, clips: Sequence[ShardClip]) -> ShardInfo:
    """Write ``clips`` as one shard at ``path``, atomically (see the module docstring)."""
    path = Path(path)
    lengths = np.array([c.num_frames for c in clips], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(clips) else lengths
    N = int(lengths.sum())
    small: dict[str, np.ndarray] = {
        "format": np.array(SHARD_FORMAT, dtype=np.str_),
        "schema_version": np.array(SHARD_SCHEMA_VERSION, dtype=np.int64),
        "robot": np.array(meta.robot, dtype=np.str_),
        "split": np.array(meta.split, dtype=np.str_),
        "joint_names": str_array(meta.joint_names),
        "body_names": str_array(meta.body_names),
        "contact_body_names": str_array(meta.contact_body_names),
        "clip_ids": str_array([c.clip_id for c in clips]),
        "clip_sources": str_array([c.source for c in clips]),
        "clip_starts": starts,
        "clip_lengths": lengths,
        "clip_fps": np.array([c.fps for c in clips], np.float64),
        "clip_weights": np.array([c.weight for c in clips], np.float64),
    }
    shapes = meta.frame_shapes()
    for c in clips:
        for key in FRAME_KEYS:
            a = c.frames[key]
            if a.shape != (c.num_frames, *shapes[key]):
                raise MotionFormatError(
                    path, f"clip {c.clip_id}: expected shape {(c.num_frames, *shapes[key])}, found {a.shape}", field=key
                )
    with atomic_write(path, suffix=".npz") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        for key in META_KEYS + CLIP_KEYS:
            arr = np.asarray(small[key], order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
            _write_member(zf, key, arr.dtype, arr.shape, [arr.reshape(-1)])
        for key in FRAME_KEYS:
            _write_member(zf, key, FRAME_DTYPES[key], (N, *shapes[key]), (c.frames[key] for c in clips))
    return ShardInfo(path.name, len(clips), N, path.stat().st_size, file_sha256(path))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ShardWriter:
    """Packs clips into ``folder/shard_00000.npz, ...`` of at most ``max_bytes`` of frame
    data each (a clip larger than that gets a shard of its own; clips are never cut).

    Holds the clips of the current shard only: a shard is written (atomically) as soon as
    the next clip would not fit. :meth:`add` returns where the clip went; :meth:`close`
    writes the last shard, removes shards and temporary files of earlier runs that this
    run did not write, and returns what was written.
    """

    def __init__(self, folder: str | os.PathLike, meta: ShardMeta, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ConfigError(f"the shard size bound must be positive, got {max_bytes} bytes")
        self.folder = Path(folder)
        self.meta = meta
        self.max_bytes = int(max_bytes)
        self.written: list[ShardInfo] = []
        self._clips: list[ShardClip] = []
        self._bytes = 0
        self._frames = 0
        self._bpf = meta.bytes_per_frame()

    def add(self, clip: ShardClip) -> tuple[str, int]:
        """Queue ``clip``; returns (shard file name, first frame of the clip in that shard)."""
        nbytes = clip.num_frames * self._bpf
        if self._clips and self._bytes + nbytes > self.max_bytes:
            self.flush()
        offset = self._frames
        self._clips.append(clip)
        self._bytes += nbytes
        self._frames += clip.num_frames
        return shard_name(len(self.written)), offset

    def flush(self) -> None:
        if not self._clips:
            return
        path = self.folder / shard_name(len(self.written))
        self.written.append(write_shard(path, self.meta, self._clips))
        self._clips, self._bytes, self._frames = [], 0, 0

    def close(self) -> list[ShardInfo]:
        self.flush()
        keep = {s.name for s in self.written}
        for p in shard_files(self.folder):
            if p.name not in keep:
                p.unlink()
        if self.folder.is_dir():
            for p in self.folder.iterdir():
                if is_temp_file(p):
                    p.unlink(missing_ok=True)
        return list(self.written)


# --------------------------------------------------------------------------- reading


def _stored_array(f, path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, mmap: bool) -> np.ndarray:
    key = info.filename[:-4]
    if info.compress_type != zipfile.ZIP_STORED or not mmap:
        with zf.open(info) as m:
            try:
                return np.lib.format.read_array(m, allow_pickle=False)
            except ValueError as e:
                raise MotionFormatError(path, f"unreadable array: {e}", field=key) from None
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise MotionFormatError(path, "corrupt zip entry (no local header)", field=key)
    n, m = struct.unpack("<HH", local[26:30])
    f.seek(info.header_offset + 30 + n + m)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except ValueError as e:
        raise MotionFormatError(path, f"not an .npy array: {e}", field=key) from None
    if dtype.hasobject:
        raise MotionFormatError(path, "object arrays are not allowed", field=key)
    offset = f.tell()
    count = int(np.prod(shape)) if shape else 1
    if offset + count * dtype.itemsize > info.header_offset + 30 + n + m + info.file_size:
        raise MotionFormatError(path, f"truncated array (shape {shape})", field=key)
    if count == 0:
        return np.empty(shape, dtype)
    if not shape:  # a 0-d value: memmap has no 0-d form
        return np.frombuffer(f.read(dtype.itemsize), dtype=dtype).reshape(()).copy()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def read_npz(path: str | os.PathLike, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Every array of an npz, pickle-free; stored entries memory-mapped in place (``mmap``).
    Format problems raise MotionFormatError naming the file and the key."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError) as e:
        raise MotionFormatError(path, f"cannot read as an npz archive: {e}") from None
    out: dict[str, np.ndarray] = {}
    with zf, open(path, "rb") as f:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise MotionFormatError(path, f"unexpected entry '{info.filename}' (not an .npy array)")
            out[info.filename[:-4]] = _stored_array(f, path, zf, info, mmap)
    return out


@dataclasses.dataclass
class Shard:
    """An opened shard: its arrays (memory-mapped) and the clips in it."""

    path: Path
    arrays: dict[str, np.ndarray]

    @property
    def meta(self) -> ShardMeta:
        a = self.arrays
        return ShardMeta(
            str(a["robot"]),
            str(a["split"]),
            tuple(a["joint_names"].tolist()),
            tuple(a["body_names"].tolist()),
            tuple(a["contact_body_names"].tolist()),
        )

    @property
    def num_clips(self) -> int:
        return int(self.arrays["clip_lengths"].shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.arrays["joint_pos"].shape[0])

    def clip(self, i: int) -> ShardClip:
        """Clip ``i`` (its per-frame arrays are views into the shard, not copies)."""
        a = self.arrays
        s, n = int(a["clip_starts"][i]), int(a["clip_lengths"][i])
        return ShardClip(
            str(a["clip_ids"][i]),
            str(a["clip_sources"][i]),
            float(a["clip_fps"][i]),
            float(a["clip_weights"][i]),
            {k: a[k][s : s + n] for k in FRAME_KEYS},
        )

    def clips(self) -> Iterator[ShardClip]:
        for i in range(self.num_clips):
            yield self.clip(i)


def open_shard(path: str | os.PathLike, *, mmap: bool = True) -> Shard:
    """Open and check a shard (MotionFormatError naming the file and the key otherwise)."""
    path = Path(path)
    a = read_npz(path, mmap=mmap)
    check_shard_arrays(a, path)
    return Shard(path, a)


def is_shard(arrays: Mapping[str, Any]) -> bool:
    return "format" in arrays and "clip_starts" in arrays


def check_shard_arrays(a: Mapping[str, np.ndarray], path: Path) -> None:
    """Raise MotionFormatError unless ``a`` is a shard of schema 1 (see the module table)."""
    for key in SHARD_KEYS:
        if key not in a:
            raise MotionFormatError(
                path, f"missing required key of a dataset shard (schema v{SHARD_SCHEMA_VERSION})", field=key
            )

    def fail(key: str, expected: str, found: object) -> MotionFormatError:
        return MotionFormatError(path, f"expected {expected}, found {found}", field=key)

    if a["format"].shape != () or str(a["format"]) != SHARD_FORMAT:
        raise fail("format", f"'{SHARD_FORMAT}'", repr(a["format"].tolist()))
    if a["schema_version"].shape != () or int(a["schema_version"]) != SHARD_SCHEMA_VERSION:
        raise fail("schema_version", str(SHARD_SCHEMA_VERSION), a["schema_version"].tolist())
    for key in ("robot", "split"):
        if a[key].shape != () or a[key].dtype.kind != "U":
            raise fail(key, "a 0-d unicode array", f"shape {a[key].shape} dtype {a[key].dtype}")
    for key in ("joint_names", "body_names", "contact_body_names", "clip_ids", "clip_sources"):
        if a[key].ndim != 1 or (a[key].size and a[key].dtype.kind != "U"):
            raise fail(key, "a (N,) unicode array", f"shape {a[key].shape} dtype {a[key].dtype}")
    C = a["clip_ids"].shape[0]
    for key, kind in (
        ("clip_starts", "i"),
        ("clip_lengths", "i"),
        ("clip_fps", "f"),
        ("clip_weights", "f"),
        ("clip_sources", "U"),
    ):
        if a[key].shape != (C,) or (C and a[key].dtype.kind != kind):
            raise fail(key, f"shape ({C},) of kind '{kind}'", f"shape {a[key].shape} dtype {a[key].dtype}")
    lengths = np.asarray(a["clip_lengths"], np.int64)
    starts = np.asarray(a["clip_starts"], np.int64)
    if (lengths < 1).any():
        raise fail("clip_lengths", "every clip at least 1 frame", lengths.min())
    expect = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if C else lengths
    if not np.array_equal(starts, expect):
        raise fail("clip_starts", "the running sum of clip_lengths", starts[:8].tolist())
    N = int(lengths.sum())
    n, B, F = (a[k].shape[0] for k in ("joint_names", "body_names", "contact_body_names"))
    meta = ShardMeta("", "", ("",) * n, ("",) * B, ("",) * F)
    for key, shape in meta.frame_shapes().items():
        if a[key].shape != (N, *shape):
            raise fail(key, f"shape {(N, *shape)} (N = sum of clip_lengths)", f"shape {a[key].shape}")
        if a[key].dtype != FRAME_DTYPES[key]:
            raise fail(key, f"dtype {FRAME_DTYPES[key]}", f"dtype {a[key].dtype}")


# --------------------------------------------------------------------------- resharding


def split_folders(root: str | os.PathLike) -> dict[str, Path]:
    """The shard folders below a dataset: ``{"train": root/train, "val": root/val}`` for a
    dataset folder, or ``{"": root}`` for a folder that holds shards itself."""
    root = Path(root)
    subs = {s: root / s for s in ("train", "val") if shard_files(root / s)}
    if subs:
        return subs
    if shard_files(root):
        return {"": root}
    raise ConfigError(f"{root}: no shards (shard_*.npz) here or in train/ and val/ below it")


def reshard(input_dir: str | os.PathLike, output_dir: str | os.PathLike, max_bytes: int) -> dict[str, Any]:
    """Split or merge the shards of ``input_dir`` into shards of at most ``max_bytes`` of frame
    data in ``output_dir`` (same folder layout: ``train/`` and ``val/``, or flat).

    Clips keep their order, their frames and every piece of metadata; one output shard
    and memory-mapped inputs are held at a time. Shards of one folder must agree on robot,
    split and names. Returns a summary (clips, frames, shards per folder).
    """
    src, dst = Path(input_dir), Path(output_dir)
    folders = split_folders(src)
    if dst.resolve() in {src.resolve(), *(f.resolve() for f in folders.values())}:
        raise ConfigError(f"reshard: the output folder {dst} must not be the input folder {src}")
    summary: dict[str, Any] = {"input": str(src), "output": str(dst), "max_bytes": int(max_bytes), "splits": {}}
    for split, folder in folders.items():
        out = dst / split if split else dst
        if shard_files(out):
            raise ConfigError(f"reshard: {out} already holds shards; give an empty output folder")
        writer: ShardWriter | None = None
        meta0: ShardMeta | None = None
        first: Path | None = None
        clips = frames = 0
        for p in shard_files(folder):
            shard = open_shard(p)
            meta = shard.meta
            if meta0 is None:
                meta0, first = meta, p
                writer = ShardWriter(out, meta, max_bytes)
            else:
                for field in dataclasses.fields(ShardMeta):
                    if getattr(meta, field.name) != getattr(meta0, field.name):
                        raise MotionFormatError(
                            p, f"differs from {first.name} (the shards of one folder must agree)", field=field.name
                        )
            for c in shard.clips():
                writer.add(c)
                clips += 1
                frames += c.num_frames
        infos = writer.close() if writer is not None else []
        summary["splits"][split or "."] = {
            "clips": clips,
            "frames": frames,
            "shards": len(infos),
            "files": [dataclasses.asdict(i) for i in infos],
        }
    return summary
