"""Clips, the held-in / held-out split and the windows a calibration solves (host, numpy).

Each input clip is read and compiled whole, once (its scales and heights are per-clip
measurements); every outer step then solves ``B`` windows of ``W`` frames cut from the
compiled problems (:func:`~retarget_jax.solve.windows.slice_problem`), so all steps share
one compiled program.

Split (:func:`split_clips`): with two clips or more, whole clips are held out, chosen by
a salted hash of their path (deterministic, independent of the file order and of the
other files); with one clip (or ``split="time"``) each clip's last ``holdout_percent``
of frames is held out and the rest is held in.

Windows: a training step draws its ``B`` windows from the held-in frames with
``numpy.random.default_rng([seed, step])`` (:func:`sample_windows`): a step's windows
depend only on the seed and the step, so a resumed run draws what an uninterrupted one
would. Evaluation tiles the frames with consecutive windows (:func:`tile_windows`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from retarget_jax.calibrate.outer import OuterSpec, human_limb_lengths
from retarget_jax.calibrate.params import ClipContext, clip_context
from retarget_jax.errors import ConfigError, InvalidMotionError
from retarget_jax.motion.canonical import CANONICAL_PARENTS
from retarget_jax.pipeline import PreparedClip
from retarget_jax.problem.compile import CompiledProblem
from retarget_jax.solve.batch import pad_problem, stack_problems
from retarget_jax.solve.windows import slice_problem

Span = tuple[int, int]
#: (clip index, start frame, stop frame)
Window = tuple[int, int, int]

SPLITS = ("auto", "clips", "time")
_SALT = "retarget-jax calibrate holdout v1"


@dataclasses.dataclass
class CalibClip:
    """One input clip, compiled whole, with its held-in and held-out frame spans."""

    name: str
    prepared: PreparedClip
    compiled: CompiledProblem  # numpy leaves (windows are cut on the host)
    context: ClipContext  # numpy leaves
    ee_len: np.ndarray  # (E,) the human's end-effector limb lengths (NaN: unmeasured)
    held_in: tuple[Span, ...] = ()
    held_out: tuple[Span, ...] = ()

    @property
    def num_frames(self) -> int:
        return self.compiled.num_frames


def calib_clip(name: str, prepared: PreparedClip, spec: OuterSpec) -> CalibClip:
    compiled = jax.tree.map(np.asarray, prepared.compiled)
    ctx = jax.tree.map(np.asarray, clip_context(prepared.problem, prepared.compiled))
    ee = human_limb_lengths(spec, ctx.pos, ctx.finite > 0, CANONICAL_PARENTS)
    return CalibClip(name, prepared, compiled, ctx, ee)


def holdout_rank(name: str) -> str:
    """The salted hash that orders clips for the held-out draw."""
    return hashlib.sha256(f"{_SALT}:{name}".encode()).hexdigest()


def split_clips(clips: Sequence[CalibClip], holdout_percent: float, split: str) -> str:
    """Set each clip's held-in and held-out spans; returns the split used ("clips" or
    "time"). ``split``: "auto" (by clips when there are two or more), "clips", "time"."""
    if split not in SPLITS:
        raise ConfigError(f"--split: expected one of {list(SPLITS)}, got '{split}'")
    if not (0.0 < holdout_percent < 100.0):
        raise ConfigError(f"--holdout-percent: expected a number in (0, 100), got {holdout_percent}")
    mode = split if split != "auto" else ("clips" if len(clips) >= 2 else "time")
    if mode == "clips":
        if len(clips) < 2:
            raise ConfigError(f"--split clips needs at least 2 clips, found {len(clips)}; use --split time")
        n_out = min(len(clips) - 1, max(1, round(len(clips) * holdout_percent / 100.0)))
        ranked = sorted(range(len(clips)), key=lambda i: holdout_rank(clips[i].name))
        out = set(ranked[:n_out])
        for i, c in enumerate(clips):
            span = ((0, c.num_frames),)
            c.held_in, c.held_out = ((), span) if i in out else (span, ())
        return mode
    for c in clips:
        T = c.num_frames
        cut = T - int(math.ceil(T * holdout_percent / 100.0))
        if cut < 2 or T - cut < 2:
            raise InvalidMotionError(
                f"{c.name}: {T} frames are too few to hold {holdout_percent:g}% out in time "
                "(each part needs at least 2 frames)"
            )
        c.held_in, c.held_out = ((0, cut),), ((cut, T),)
    return mode


def _span_weight(span: Span, window: int) -> int:
    return max(span[1] - span[0] - window + 1, 1)


def sample_windows(clips: Sequence[CalibClip], step: int, seed: int, count: int, window: int) -> list[Window]:
    """``count`` held-in windows for outer step ``step``: a span drawn in proportion to
    the window starts it has, then a start uniformly in it (a span shorter than
    ``window`` is taken whole, and padded)."""
    spans = [(i, s) for i, c in enumerate(clips) for s in c.held_in]
    if not spans:
        raise ConfigError("calibrate: no held-in frames to train on")
    w = np.asarray([_span_weight(s, window) for _, s in spans], np.float64)
    rng = np.random.default_rng([int(seed), int(step)])
    out = []
    for k in rng.choice(len(spans), size=count, p=w / w.sum()):
        i, (a, b) = spans[int(k)]
        start = a + int(rng.integers(0, _span_weight((a, b), window)))
        out.append((i, start, min(start + window, b)))
    return out


def tile_windows(clips: Sequence[CalibClip], which: str, window: int, max_windows: int | None) -> list[Window]:
    """Consecutive windows over every ``which`` ("held_in" / "held_out") span; the last
    window of a span ends at its end (it may overlap the one before). At most
    ``max_windows``, evenly spaced over the list, when given."""
    out = []
    for i, c in enumerate(clips):
        for a, b in getattr(c, which):
            starts = list(range(a, max(b - window, a) + 1, window))
            if starts[-1] + window < b:
                starts.append(b - window)
            out.extend((i, s, min(s + window, b)) for s in starts)
    if max_windows is not None and len(out) > max_windows:
        idx = np.unique(np.round(np.linspace(0, len(out) - 1, max_windows)).astype(int))
        out = [out[k] for k in idx]
    return out


class WindowBatch(eqx.Module):
    """``B`` windows of ``W`` frames, stacked (rows past the real windows have weight 0)."""

    problem: CompiledProblem  # clip arrays (B, W, ...); the robot shared
    clip: np.ndarray  # (B,) int32 index of each window's clip
    joint_valid: np.ndarray  # (B, W, J) 1 where the human joint is measured
    ee_len: np.ndarray  # (B, E)
    weight: np.ndarray  # (B,) 1 = a real window


def make_batch(clips: Sequence[CalibClip], windows: Sequence[Window], window: int, rows: int) -> WindowBatch:
    """Stack ``windows`` into ``rows`` rows of ``window`` frames (host numpy)."""
    if not windows or len(windows) > rows:
        raise ConfigError(f"make_batch: expected 1 to {rows} windows, got {len(windows)}")
    padded = list(windows) + [windows[-1]] * (rows - len(windows))
    probs, valid = [], []
    for i, s, e in padded:
        c = clips[i]
        probs.append(pad_problem(slice_problem(c.compiled, s, e), window))
        jv = np.asarray(c.context.finite[s:e])
        valid.append(np.concatenate([jv, np.repeat(jv[-1:] * 0, window - (e - s), axis=0)]))
    weight = np.asarray([1.0] * len(windows) + [0.0] * (rows - len(windows)), probs[0].clip.frame_mask.dtype)
    return WindowBatch(
        stack_problems(probs),
        np.asarray([w[0] for w in padded], np.int32),
        np.stack(valid),
        np.stack([clips[i].ee_len for i, _, _ in padded]).astype(weight.dtype),
        weight,
    )


def find_inputs(input_path: str | Path, pattern: str) -> list[Path]:
    """The motion files of ``--input``: the file itself, or the files below the folder
    that match ``pattern`` (sorted)."""
    p = Path(input_path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ConfigError(f"--input {p}: no such file or directory")
    files = sorted(f for f in p.glob(pattern) if f.is_file())
    if not files:
        raise ConfigError(f"--input {p}: no files match --pattern '{pattern}'")
    return files
