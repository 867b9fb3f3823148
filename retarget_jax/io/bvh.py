"""BVH writer: a :class:`~retarget_jax.motion.bvh.BvhClip` back to a BVH text file (host).

Stage: io. The reader (:mod:`retarget_jax.motion.bvh`) parses a file into a ``BvhClip``;
this writes one out so that :func:`~retarget_jax.motion.bvh.parse_bvh` reads it back
exactly (tests, conversions, renamed skeletons). The file is written atomically.
"""

from __future__ import annotations

import os

import numpy as np

from retarget_jax.files.atomic import atomic_write_text
from retarget_jax.motion.bvh import BvhClip

__all__ = ["write_bvh"]


def _num(v: float) -> str:
    return repr(float(v))  # shortest exact round trip; nan and inf parse back


def write_bvh(path: str | os.PathLike, clip: BvhClip) -> None:
    """Write a :class:`BvhClip` as a BVH text file that :func:`~retarget_jax.motion.bvh.parse_bvh`
    reads back exactly.

    Joints are written depth first (children inside their parents, in ``clip`` order
    among siblings), each with its End Sites after its child joints; a leaf without an
    End Site gets a zero one (so such a clip reads back with it). The frame columns
    follow the written joint order. ``clip.path`` is ignored.

    Raises:
        ValueError: a parent that does not come before its child, frames whose width is
            not the total channel count, or an End Site of no joint.
    """
    J = len(clip.joint_names)
    parents = [int(p) for p in clip.parents]
    if any(not -1 <= p < j for j, p in enumerate(parents)):
        raise ValueError(f"parents must come before their children, got {parents}")
    C = sum(len(c) for c in clip.channels)
    if clip.frames.ndim != 2 or clip.frames.shape[1] != C:
        raise ValueError(f"frames must be (T, {C}), got {clip.frames.shape}")
    sites: list[list[int]] = [[] for _ in range(J)]
    for e, owner in enumerate(np.asarray(clip.end_site_parents, dtype=np.int64).reshape(-1)):
        if not 0 <= owner < J:
            raise ValueError(f"End Site {e} belongs to joint {owner}; the clip has {J} joints")
        sites[int(owner)].append(e)
    site_offsets = np.asarray(clip.end_site_offsets, dtype=np.float64).reshape(-1, 3)
    children: list[list[int]] = [[] for _ in range(J)]
    for j, p in enumerate(parents):
        if p >= 0:
            children[p].append(j)
    out: list[str] = ["HIERARCHY"]
    order: list[int] = []

    def emit(j: int, depth: int) -> None:
        ind = "  " * depth
        out.append(f"{ind}{'ROOT' if parents[j] < 0 else 'JOINT'} {clip.joint_names[j]}")
        out.append(f"{ind}{{")
        out.append(f"{ind}  OFFSET {' '.join(_num(v) for v in clip.offsets[j])}")
        out.append(f"{ind}  CHANNELS {len(clip.channels[j])} {' '.join(clip.channels[j])}".rstrip())
        order.append(j)
        for c in children[j]:
            emit(c, depth + 1)
        offsets = [site_offsets[e] for e in sites[j]] or ([] if children[j] else [np.zeros(3)])
        for off in offsets:
            out.extend(
                [f"{ind}  End Site", f"{ind}  {{", f"{ind}    OFFSET {' '.join(_num(v) for v in off)}", f"{ind}  }}"]
            )
        out.append(f"{ind}}}")

    for j in range(J):
        if parents[j] < 0:
            emit(j, 0)
    cols = (
        np.concatenate(
            [np.arange(clip.channel_start[j], clip.channel_start[j] + len(clip.channels[j])) for j in order]
        ).astype(np.int64)
        if C
        else np.zeros(0, dtype=np.int64)
    )
    out += ["MOTION", f"Frames: {clip.num_frames}", f"Frame Time: {_num(clip.frame_time)}"]
    out += [" ".join(_num(v) for v in row) for row in clip.frames[:, cols]]
    atomic_write_text(path, "\n".join(out) + "\n")
