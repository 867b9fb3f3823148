"""Overlapping windows: solve clips of any length in fixed-size pieces (host code, numpy).

Stage: solve (:func:`solve_windowed` is :func:`~retarget_jax.solve.batch.solve_many` for
clips longer than a window; the pipeline and the batch driver both call it).

A clip longer than ``window`` frames is never truncated. It is cut into overlapping
windows, every window of every clip is solved in one :func:`~retarget_jax.solve.batch.solve_many`
call (so windows of one clip batch together, and with other clips of their bucket), and
the window solutions are stitched back into one trajectory:

    frames    0 ...................................... T
    window 0  [==========~~~~~)
    window 1             (~~~~~=========~~~~~)
    window 2                           (~~~~~=========]
                         overlaps: raised-cosine cross-fades

Plan (:func:`plan_windows`): the fewest windows of at most ``window`` frames whose
consecutive overlaps are at least ``overlap`` frames; all windows have the same length
and their starts are spread evenly, so the first starts at 0 and the last ends at T.

Slice (:func:`slice_problem`): the *compiled* problem is cut, not the motion, so every
window keeps its clip's per-clip quantities (bone and root scales, root anchor, height
offset, weights, terrain) computed once from the whole clip; the windows are the same
optimisation problem restricted to their frames. Only the per-frame arrays of
:class:`~retarget_jax.problem.compile.ClipArrays` are cut (:data:`~retarget_jax.problem.compile.PER_FRAME_FIELDS`).

Stitch (:func:`stitch_qpos`): each window has a weight that is 1 on its own frames and
ramps over its overlaps, up from the previous window and down to the next, with the
raised cosine ``r_k = (1 - cos(pi (k + 1) / (m + 1))) / 2`` (k = 0..m-1 over an m-frame
overlap; ``r_k + r_{m-1-k} = 1``, and no frame has weight 0 or 1 inside an overlap).
Weights are normalised per frame, so the stitched trajectory equals a window's own values
wherever only that window covers a frame, and the cross-fade works even where three
windows share frames (a window barely longer than twice the overlap). Root positions and
joints are blended linearly; root quaternions are brought to one hemisphere (a whole
window whose quaternions disagree in sign with the previous window's in their overlap is
negated: the same rotations) and blended by normalised weighted sum (nlerp), which is
accurate for the small differences between two solutions of the same frames. Every
difference between two windows' solutions in an overlap is spread over the overlap: a
constant offset ``c`` adds at most ``c pi / (2 (m + 1))`` to any frame-to-frame step.
A window's solution drifts from its neighbour's over the last ~10 frames before its free
ends (nothing beyond them to be smooth with; on the demo walk ~0.1 rad and ~3 cm at the
very end frame, ~0.02 rad in the middle third of a 24-frame overlap), and the cross-fade
gives those frames almost no weight: keep ``overlap`` at two dozen frames or more.

Body poses of a stitched clip are recomputed from the stitched qpos by MuJoCo C
(:func:`host_body_poses`), never blended: blended body poses would not be the
poses of any configuration of the robot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import mujoco
import numpy as np

from retarget_jax.buckets import DEFAULT_BUCKETS
from retarget_jax.errors import ConfigError, SolveError
from retarget_jax.problem.compile import PER_FRAME_FIELDS, CompiledProblem
from retarget_jax.result import SolveStatus
from retarget_jax.robots.kinematics import host_body_poses
from retarget_jax.robots.spec import RobotSpec
from retarget_jax.solve.batch import solve_many
from retarget_jax.solve.gauss_newton import SolveOutput, SolverOptions

__all__ = [
    "blend_weights",
    "check_window_args",
    "plan_windows",
    "slice_problem",
    "solve_windowed",
    "stitch_qpos",
    "stitch_solution",
]

Span = tuple[int, int]


# --------------------------------------------------------------------------- plan


def check_window_args(window: Any, overlap: Any) -> tuple[int, int]:
    """``(window, overlap)`` as ints, checked: integers, ``overlap >= 1``, ``window > 2 * overlap``
    (ConfigError naming ``batch.window`` / ``batch.overlap``)."""
    for key, v in (("batch.window", window), ("batch.overlap", overlap)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ConfigError(f"{key}: expected an integer number of frames, got {v!r}")
    window, overlap = int(window), int(overlap)
    if overlap < 1:
        raise ConfigError(
            f"batch.overlap: expected at least 1 frame (windows must overlap to be blended), got {overlap}"
        )
    if window <= 2 * overlap:
        raise ConfigError(
            f"batch.window: expected more than twice batch.overlap ({2 * overlap} frames), "
            f"got window={window}, overlap={overlap}"
        )
    return window, overlap


def plan_windows(T: int, window: int, overlap: int) -> list[Span]:
    """Half-open spans ``[start, stop)`` that cover frames ``0..T``.

    ``T <= window`` gives ``[(0, T)]``. Otherwise: the fewest windows, ``n = ceil((T -
    overlap) / (window - overlap))``, all of the same length ``L = ceil((T + (n - 1)
    overlap) / n) <= window``, starts ``round(i (T - L) / (n - 1))``; consecutive windows
    then overlap by ``overlap`` to ``overlap + 1`` frames (rounding).

    Raises:
        ConfigError: ``window`` / ``overlap`` not integers, ``overlap < 1`` or
            ``window <= 2 * overlap``.
    """
    window, overlap = check_window_args(window, overlap)
    if isinstance(T, bool) or not isinstance(T, int | np.integer) or T < 1:
        raise SolveError(f"plan_windows: expected a clip of at least 1 frame, got T={T!r}")
    T = int(T)
    if T <= window:
        return [(0, T)]
    n = math.ceil((T - overlap) / (window - overlap))
    L = math.ceil((T + (n - 1) * overlap) / n)
    # n (window - overlap) >= T - overlap, so n L >= T + (n - 1) overlap needs no L > window;
    # the stride (T - L) / (n - 1) <= L - overlap, and so is its ceiling (an integer bound).
    starts = [round(i * (T - L) / (n - 1)) for i in range(n)]
    return [(s, s + L) for s in starts]


# --------------------------------------------------------------------------- slice


def slice_problem(problem: CompiledProblem, start: int, stop: int) -> CompiledProblem:
    """The problem restricted to frames ``[start, stop)``: the per-frame clip arrays
    (:data:`PER_FRAME_FIELDS`) cut, everything per clip (scales, anchor, weights, terrain)
    kept as the whole clip has it."""
    T = problem.num_frames
    if not (0 <= start < stop <= T):
        raise SolveError(f"slice_problem: expected 0 <= start < stop <= {T}, got [{start}, {stop})")
    c = problem.clip
    cut = tuple(getattr(c, f)[start:stop] for f in PER_FRAME_FIELDS)
    clip = eqx.tree_at(lambda c: tuple(getattr(c, f) for f in PER_FRAME_FIELDS), c, cut)
    return eqx.tree_at(lambda p: p.clip, problem, clip)


# --------------------------------------------------------------------------- stitch


def _check_spans(spans: Sequence[Span], T: int) -> list[Span]:
    spans = [(int(s), int(e)) for s, e in spans]
    if not spans:
        raise SolveError("stitch: no windows")
    if spans[0][0] != 0 or spans[-1][1] != T:
        raise SolveError(f"stitch: windows must start at frame 0 and end at T={T}, got {spans[0]} ... {spans[-1]}")
    for (s0, e0), (s1, e1) in zip(spans[:-1], spans[1:], strict=True):
        if not (s0 < s1 < e0 < e1):
            raise SolveError(
                f"stitch: consecutive windows must overlap and move forward, got [{s0}, {e0}) then [{s1}, {e1})"
            )
    return spans


def _ramp(m: int) -> np.ndarray:
    """(m,) raised cosine from ~0 to ~1, exclusive at both ends; ramp + ramp[::-1] = 1."""
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(1, m + 1) / (m + 1))


def blend_weights(spans: Sequence[Span], T: int) -> np.ndarray:
    """(n, T) normalised window weights (columns sum to 1; 0 outside a window)."""
    spans = _check_spans(spans, T)
    n = len(spans)
    W = np.zeros((n, T))
    for i, (s, e) in enumerate(spans):
        w = np.ones(e - s)
        if i > 0:
            m = spans[i - 1][1] - s
            w[:m] *= _ramp(m)
        if i < n - 1:
            s_next = spans[i + 1][0]
            m = e - s_next
            w[s_next - s :] *= _ramp(m)[::-1]
        W[i, s:e] = w
    return W / W.sum(axis=0, keepdims=True)


def stitch_qpos(pieces: Sequence[np.ndarray], spans: Sequence[Span], T: int) -> np.ndarray:
    """One (T, nq) trajectory from window solutions ``pieces[i]`` (stop - start, nq) on
    ``spans`` (see the module docstring for the blend).

    Frames covered by one window get that window's values exactly (its root quaternions
    possibly negated as a whole, to match the previous window's sign). The result has the
    pieces' common floating dtype; the blend is computed in float64.
    """
    spans = _check_spans(spans, T)
    if len(pieces) != len(spans):
        raise SolveError(f"stitch_qpos: {len(pieces)} pieces for {len(spans)} windows")
    pieces = [np.asarray(p) for p in pieces]
    nq = pieces[0].shape[-1]
    for p, (s, e) in zip(pieces, spans, strict=True):
        if p.shape != (e - s, nq) or nq < 7:
            raise SolveError(
                f"stitch_qpos: expected a piece of shape ({e - s}, nq >= 7) for window [{s}, {e}), got {p.shape}"
            )
    dtype = np.result_type(*pieces, np.float32)
    pieces64 = [p.astype(np.float64) for p in pieces]
    # one hemisphere per window: compare with the (already aligned) previous window
    for i in range(1, len(pieces64)):
        s, e_prev = spans[i][0], spans[i - 1][1]
        prev = pieces64[i - 1][s - spans[i - 1][0] :, 3:7]
        cur = pieces64[i][: e_prev - s, 3:7]
        if np.sum(prev * cur) < 0:
            pieces64[i] = pieces64[i].copy()
            pieces64[i][:, 3:7] *= -1.0
            pieces[i] = pieces[i].copy()
            pieces[i][:, 3:7] *= -1
    W = blend_weights(spans, T)
    out = np.zeros((T, nq))
    ref = np.zeros((T, 4))  # per-frame hemisphere: the quaternion of the heaviest window
    best = np.full(T, -1.0)
    for w, p, (s, e) in zip(W, pieces64, spans, strict=True):
        heavier = w[s:e] > best[s:e]
        ref[s:e][heavier] = p[heavier, 3:7]
        best[s:e] = np.maximum(best[s:e], w[s:e])
    for w, p, (s, e) in zip(W, pieces64, spans, strict=True):
        q = p.copy()
        flip = np.sum(q[:, 3:7] * ref[s:e], axis=-1) < 0  # a window whose sign jumps inside
        q[flip, 3:7] *= -1.0
        out[s:e] += w[s:e, None] * q
    out[:, 3:7] /= np.linalg.norm(out[:, 3:7], axis=-1, keepdims=True)
    out = out.astype(dtype)
    # where one window covers a frame: its own values, bit for bit
    cover = (W > 0).sum(axis=0)
    for p, (s, e) in zip(pieces, spans, strict=True):
        own = cover[s:e] == 1
        out[s:e][own] = p[own]
    return out


def _worst_status(codes: Sequence[int]) -> int:
    codes = [int(c) for c in codes]
    bad = [c for c in codes if not SolveStatus.ok(c)]
    if bad:
        return bad[0]
    return SolveStatus.MAX_ITERATIONS if SolveStatus.MAX_ITERATIONS in codes else SolveStatus.CONVERGED


def stitch_solution(outputs: Sequence[Any], spans: Sequence[Span], T: int) -> SolveOutput:
    """One SolveOutput (numpy leaves) from per-window SolveOutput-like results (anything
    with ``qpos``, ``cost``, ``iterations``, ``status``) on ``spans``.

    qpos: :func:`stitch_qpos`. cost: the windows' mean per-frame costs averaged with
    weights = their frame counts (overlap frames count once per window). iterations: the
    most any window took. status: the first window status that is not ok
    (:meth:`SolveStatus.ok`), else ``MAX_ITERATIONS`` if any window stopped there, else
    ``CONVERGED``. Body poses are not stitched: recompute them from the qpos
    (:func:`host_body_poses`).
    """
    spans = _check_spans(spans, T)
    if len(outputs) != len(spans):
        raise SolveError(f"stitch_solution: {len(outputs)} window results for {len(spans)} windows")
    qpos = stitch_qpos([np.asarray(o.qpos) for o in outputs], spans, T)
    lengths = np.array([e - s for s, e in spans], np.float64)
    costs = np.array([float(np.asarray(o.cost)) for o in outputs])
    cost_dtype = np.asarray(outputs[0].cost).dtype
    return SolveOutput(
        qpos=qpos,
        cost=np.asarray(np.sum(costs * lengths) / np.sum(lengths), cost_dtype),
        iterations=np.asarray(max(int(np.asarray(o.iterations)) for o in outputs), np.int32),
        status=np.asarray(_worst_status([np.asarray(o.status) for o in outputs]), np.int32),
    )


# --------------------------------------------------------------------------- solve


def solve_windowed(
    problems: Sequence[CompiledProblem],
    options: SolverOptions | None = None,
    *,
    robot: RobotSpec | mujoco.MjModel,
    window: int,
    overlap: int,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    max_batch: int = 64,
    devices: Sequence[Any] | None = None,
    fixed_batch: bool = False,
) -> list[tuple[SolveOutput, np.ndarray, np.ndarray]]:
    """:func:`~retarget_jax.solve.batch.solve_many` for clips of any length.

    A clip of at most ``window`` frames is solved as it is and its result passed through
    untouched. A longer one is cut by :func:`plan_windows`; all windows of all clips and
    the short clips go to ONE ``solve_many`` call (they batch by bucket together), then
    each long clip's windows are stitched (:func:`stitch_solution`) and its body poses
    recomputed by :func:`host_body_poses` on ``robot`` (the robot the problems
    were compiled for; a CompiledProblem carries no MjModel), in the dtype ``solve_many``
    returns. ``buckets``, ``max_batch``, ``devices`` and ``fixed_batch`` go to ``solve_many``.

    Returns:
        Per input clip, in order: (SolveOutput, body_pos_w (T, B, 3), body_quat_w (T, B, 4)),
        numpy, T the clip's own length.
    """
    window, overlap = check_window_args(window, overlap)
    flat: list[CompiledProblem] = []
    plans: list[tuple[list[Span], slice]] = []
    for p in problems:
        spans = plan_windows(p.num_frames, window, overlap)
        first = len(flat)
        if len(spans) == 1:
            flat.append(p)
        else:
            flat.extend(slice_problem(p, s, e) for s, e in spans)
        plans.append((spans, slice(first, len(flat))))
    solved = (
        solve_many(flat, options, buckets=buckets, max_batch=max_batch, devices=devices, fixed_batch=fixed_batch)
        if flat
        else []
    )
    results = []
    for p, (spans, where) in zip(problems, plans, strict=True):
        parts = solved[where]
        if len(spans) == 1:
            results.append(parts[0])
            continue
        out = stitch_solution([so for so, _, _ in parts], spans, p.num_frames)
        xpos, xquat = host_body_poses(robot, out.qpos)
        dtype = parts[0][1].dtype
        results.append((out, xpos.astype(dtype), xquat.astype(dtype)))
    return results
