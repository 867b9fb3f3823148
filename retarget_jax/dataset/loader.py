"""MotionDataset: a trainer's view of a built dataset (host, numpy; JAX arrays on request).

Stage: dataset (consumer side). Opens every shard of one split memory-mapped (no frame is
read until it is used), and samples clips by their weight, single frames, or fixed-length
windows, as numpy or JAX arrays::

    import numpy as np
    from retarget_jax.dataset import MotionDataset

    ds = MotionDataset("outputs/datasets/g1_mix", "train")     # or a folder of shards
    rng = np.random.default_rng(0)
    print(len(ds), "clips,", ds.num_frames, "frames,", ds.joint_names[:3])
    batch = ds.sample_windows(rng, batch_size=256, length=32)  # dict of (256, 32, ...) arrays
    qpos = np.concatenate([batch["root_pos"], batch["root_quat_wxyz"], batch["joint_pos"]], -1)
    frames = ds.sample_frames(rng, 1024, array="jax")          # dict of (1024, ...) jax arrays
    clip = ds.clip(0)                                          # one whole clip (views), with its id

Sampling: a clip is drawn with probability proportional to ``clip_weights`` (its
source's ``weight``); a frame or a window start is then uniform within the clip. Windows
are drawn from clips at least ``length`` frames long only.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retarget_jax.dataset.shards import FRAME_KEYS, Shard, ShardMeta, open_shard, shard_files
from retarget_jax.errors import ConfigError, MotionFormatError


@dataclasses.dataclass(frozen=True)
class ClipRef:
    """Where a clip lives: shard index, first frame in it, frames, and its metadata."""

    shard: int
    start: int
    length: int
    fps: float
    weight: float
    clip_id: str
    source: str


class MotionDataset:
    """The clips of one split of a dataset (see the module docstring).

    Args:
        path: the dataset folder (``<output-root>/<name>``, holding ``train/`` and ``val/``)
            or a folder of shards.
        split: ``train`` or ``val`` (ignored for a folder of shards).
        keys: the per-frame arrays to return (default: all of ``FRAME_KEYS``).
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *, keys: Sequence[str] | None = None) -> None:
        root = Path(path)
        folder = root / split if (root / split).is_dir() else root
        files = shard_files(folder)
        if not files:
            raise ConfigError(
                f"{folder}: no shards (shard_*.npz); is this a dataset folder and is '{split}' a split of it?"
            )
        self.keys = tuple(keys) if keys is not None else FRAME_KEYS
        for k in self.keys:
            if k not in FRAME_KEYS:
                raise ConfigError(f"MotionDataset: unknown key '{k}'; valid: {', '.join(FRAME_KEYS)}")
        self.shards: list[Shard] = [open_shard(p) for p in files]
        self.meta: ShardMeta = self.shards[0].meta
        for s in self.shards[1:]:
            for f in dataclasses.fields(ShardMeta):
                if getattr(s.meta, f.name) != getattr(self.meta, f.name):
                    raise MotionFormatError(s.path, f"differs from {files[0].name}", field=f.name)
        self.clips: list[ClipRef] = []
        for i, s in enumerate(self.shards):
            a = s.arrays
            for j in range(s.num_clips):
                self.clips.append(
                    ClipRef(
                        i,
                        int(a["clip_starts"][j]),
                        int(a["clip_lengths"][j]),
                        float(a["clip_fps"][j]),
                        float(a["clip_weights"][j]),
                        str(a["clip_ids"][j]),
                        str(a["clip_sources"][j]),
                    )
                )
        self._lengths = np.array([c.length for c in self.clips], np.int64)
        self._weights = np.array([c.weight for c in self.clips], np.float64)

    # ------------------------------------------------------------------ facts

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_frames(self) -> int:
        return int(self._lengths.sum())

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.meta.joint_names

    @property
    def body_names(self) -> tuple[str, ...]:
        return self.meta.body_names

    @property
    def contact_body_names(self) -> tuple[str, ...]:
        return self.meta.contact_body_names

    @property
    def robot(self) -> str:
        return self.meta.robot

    def clip(self, i: int, array: str = "numpy") -> dict[str, Any]:
        """Clip ``i`` whole: its per-frame arrays and ``clip_id``, ``source``, ``fps``, ``weight``."""
        c = self.clips[i]
        a = self.shards[c.shard].arrays
        out: dict[str, Any] = {k: _convert(a[k][c.start : c.start + c.length], array) for k in self.keys}
        out.update(clip_id=c.clip_id, source=c.source, fps=c.fps, weight=c.weight)
        return out

    # ------------------------------------------------------------------ sampling

    def sample_clips(self, rng: np.random.Generator, n: int, *, min_length: int = 1) -> np.ndarray:
        """``n`` clip indices drawn with probability proportional to their weight, among clips
        of at least ``min_length`` frames."""
        ok = self._lengths >= min_length
        if not ok.any():
            raise ConfigError(
                f"MotionDataset: no clip has {min_length} frames or more (longest: {int(self._lengths.max())})"
            )
        p = np.where(ok, self._weights, 0.0)
        return rng.choice(len(self.clips), size=n, p=p / p.sum())

    def sample_frames(self, rng: np.random.Generator, batch_size: int, array: str = "numpy") -> dict[str, Any]:
        """``batch_size`` single frames: arrays of shape (batch_size, ...), plus ``clip_index``."""
        idx = self.sample_clips(rng, batch_size)
        t = (rng.random(batch_size) * self._lengths[idx]).astype(np.int64)
        return self._gather(idx, t[:, None], array, squeeze=True)

    def sample_windows(
        self, rng: np.random.Generator, batch_size: int, length: int, array: str = "numpy"
    ) -> dict[str, Any]:
        """``batch_size`` windows of ``length`` consecutive frames of one clip each: arrays of
        shape (batch_size, length, ...), plus ``clip_index`` and ``start`` (frame in the clip)."""
        if length < 1:
            raise ConfigError(f"MotionDataset.sample_windows: length must be >= 1, got {length}")
        idx = self.sample_clips(rng, batch_size, min_length=length)
        start = (rng.random(batch_size) * (self._lengths[idx] - length + 1)).astype(np.int64)
        out = self._gather(idx, start[:, None] + np.arange(length)[None], array, squeeze=False)
        out["start"] = _convert(start, array)
        return out

    def _gather(self, idx: np.ndarray, t: np.ndarray, array: str, squeeze: bool) -> dict[str, Any]:
        """Frames ``t`` (batch, L) of clips ``idx`` (batch,), read shard by shard."""
        out = {}
        for k in self.keys:
            first = self.shards[0].arrays[k]
            buf = np.empty((len(idx), t.shape[1], *first.shape[1:]), first.dtype)
            for s in np.unique([self.clips[i].shard for i in idx]):
                rows = np.array([self.clips[i].shard == s for i in idx])
                starts = np.array([self.clips[i].start for i in idx[rows]])
                buf[rows] = self.shards[s].arrays[k][starts[:, None] + t[rows]]
            out[k] = _convert(buf[:, 0] if squeeze else buf, array)
        out["clip_index"] = _convert(idx, array)
        return out


def _convert(x: np.ndarray, array: str):
    if array == "numpy":
        return np.asarray(x)
    if array == "jax":
        import jax.numpy as jnp

        return jnp.asarray(np.asarray(x))
    raise ConfigError(f"MotionDataset: array must be 'numpy' or 'jax', got '{array}'")
