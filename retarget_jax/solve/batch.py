"""Batched solve: pad clips to length buckets, stack, jit(vmap(solve)) (host + jit).

Clips of one recipe share the robot and index tables; their data is padded to the
smallest bucket length that holds them (a frame mask marks the padding), stacked on a
leading B axis and solved by one compiled function per (bucket, B). Changing targets or
weights within a bucket reuses the compiled function.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from retarget_jax.errors import SolveError
from retarget_jax.problem.compile import CompiledProblem
from retarget_jax.robots.kinematics import forward_kinematics
from retarget_jax.solve.gauss_newton import SolveOutput, SolverOptions, solve

DEFAULT_BUCKETS: tuple[int, ...] = (64, 128, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)


def bucket_length(T: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> int:
    for b in sorted(buckets):
        if T <= b:
            return int(b)
    raise SolveError(f"clip of {T} frames is longer than the largest bucket {max(buckets)}; "
                     "split it into windows or add a bucket")


def pad_problem(problem: CompiledProblem, T_pad: int) -> CompiledProblem:
    """Pad the per-frame arrays to T_pad by repeating the last frame, with mask 0."""
    c = problem.clip
    T = c.frame_mask.shape[0]
    if T_pad < T:
        raise SolveError(f"cannot pad a clip of {T} frames to {T_pad}")
    if T_pad == T:
        return problem
    n = T_pad - T

    def edge(a):
        return jnp.concatenate([a, jnp.repeat(a[-1:], n, axis=0)], axis=0)

    clip = eqx.tree_at(
        lambda c: (c.human_pos, c.human_quat, c.pos_valid, c.rot_valid, c.stance, c.frame_mask),
        c,
        (edge(c.human_pos), edge(c.human_quat), edge(c.pos_valid), edge(c.rot_valid), edge(c.stance),
         jnp.concatenate([c.frame_mask, jnp.zeros(n, c.frame_mask.dtype)])),
    )
    return eqx.tree_at(lambda p: p.clip, problem, clip)


def stack_problems(problems: Sequence[CompiledProblem]) -> CompiledProblem:
    """Stack clips (same recipe, robot and length) along a leading B axis of ``clip``."""
    first = problems[0]
    static0 = eqx.partition(eqx.tree_at(lambda p: p.clip, first, None), eqx.is_array)[1]
    for p in problems[1:]:
        if eqx.partition(eqx.tree_at(lambda q: q.clip, p, None), eqx.is_array)[1] != static0:
            raise SolveError("clips in one batch must share recipe and robot (same index tables)")
    clip = jax.tree.map(lambda *xs: jnp.stack(xs), *[p.clip for p in problems])
    return eqx.tree_at(lambda p: p.clip, first, clip)


def unstack_clip(batch: CompiledProblem, i: int) -> CompiledProblem:
    return eqx.tree_at(lambda p: p.clip, batch, jax.tree.map(lambda x: x[i], batch.clip))


class BatchOutput(eqx.Module):
    solve: SolveOutput  # leaves with leading B axis
    body_pos_w: jnp.ndarray  # (B, T, nbody, 3)
    body_quat_w: jnp.ndarray  # (B, T, nbody, 4)


def _in_axes(batch: CompiledProblem) -> CompiledProblem:
    """vmap axes: the robot is shared (None), every clip array has a leading B axis (0)."""
    return eqx.tree_at(lambda p: (p.robot, p.clip), batch,
                       (jax.tree.map(lambda _: None, batch.robot), jax.tree.map(lambda _: 0, batch.clip)),
                       is_leaf=lambda x: x is None)


def _solve_and_fk(problem: CompiledProblem, options: SolverOptions):
    out = solve(problem, options)
    xpos, xquat, _, _ = jax.vmap(lambda q: forward_kinematics(problem.robot.tree, q))(out.qpos)
    return out, xpos, xquat


@jax.jit
def _solve_batch_jit(batch: CompiledProblem, options: SolverOptions) -> BatchOutput:
    out, xpos, xquat = jax.vmap(_solve_and_fk, in_axes=(_in_axes(batch), None))(batch, options)
    return BatchOutput(solve=out, body_pos_w=xpos, body_quat_w=xquat)


def solve_batch(batch: CompiledProblem, options: SolverOptions | None = None) -> BatchOutput:
    """Solve a stacked batch (see :func:`stack_problems`) in one compiled call."""
    return _solve_batch_jit(batch, options or SolverOptions())


def solve_many(problems: Sequence[CompiledProblem], options: SolverOptions | None = None,
               buckets: Sequence[int] = DEFAULT_BUCKETS, max_batch: int = 64):
    """Group clips by bucket, solve each group; returns a list of (SolveOutput, xpos, xquat)
    per input clip, trimmed back to its own length, as numpy arrays."""
    options = options or SolverOptions()
    results: list = [None] * len(problems)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(problems):
        groups.setdefault(bucket_length(p.num_frames, buckets), []).append(i)
    for Tb, idx in sorted(groups.items()):
        for s in range(0, len(idx), max_batch):
            chunk = idx[s:s + max_batch]
            batch = stack_problems([pad_problem(problems[i], Tb) for i in chunk])
            out = jax.device_get(solve_batch(batch, options))
            for j, i in enumerate(chunk):
                T = problems[i].num_frames
                o = out.solve
                results[i] = (
                    SolveOutput(qpos=np.asarray(o.qpos[j, :T]), cost=np.asarray(o.cost[j]),
                                iterations=np.asarray(o.iterations[j]), status=np.asarray(o.status[j])),
                    np.asarray(out.body_pos_w[j, :T]), np.asarray(out.body_quat_w[j, :T]))
    return results
