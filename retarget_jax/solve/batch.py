"""Batched solve: pad clips to length buckets, stack, jit(vmap(solve)) (host + jit).

Clips of one recipe share the robot and index tables; their data is padded to the
smallest bucket length that holds them (a frame mask marks the padding), stacked on a
leading B axis and solved by one compiled function per (bucket, B). Changing targets or
weights within a bucket reuses the compiled function.

Devices: the B axis is split over every local device (``jax.local_devices()``, or the
``devices`` given) on a 1-D mesh axis ``"clips"`` (NamedSharding); the robot arrays are
replicated. The jitted function then runs SPMD under ``shard_map``: every device runs the
single-device program on its own clips, with no communication between devices. B is
padded up to a multiple of the device count by repeating the last clip (those rows are
dropped from the output). Only local devices are used, so in a multi-process run
(jax.distributed) each process solves its own batches and no array spans processes.
With one device the batch is passed as it is: the compiled program is the single-device
one. Several CPU devices (``--xla_force_host_platform_device_count``) take one clip each
per call, see :func:`_one_clip_per_device`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from retarget_jax.buckets import DEFAULT_BUCKETS, bucket_length
from retarget_jax.errors import SolveError
from retarget_jax.problem.compile import PER_FRAME_FIELDS, CompiledProblem
from retarget_jax.robots.kinematics import body_poses
from retarget_jax.solve.gauss_newton import SolveOutput, SolverOptions, solve

CLIP_AXIS = "clips"  # the mesh axis the B (clip) axis of a batch is split over


def pad_problem(problem: CompiledProblem, T_pad: int) -> CompiledProblem:
    """Pad the per-frame arrays to T_pad by repeating the last frame, with mask 0."""
    c = problem.clip
    T = c.frame_mask.shape[0]
    if T_pad < T:
        raise SolveError(f"cannot pad a clip of {T} frames to {T_pad}")
    if T_pad == T:
        return problem
    n = T_pad - T

    # host numpy, not eager jax ops: each distinct shape of an eager op is its own compile
    def edge(a):
        a = np.asarray(a)
        return np.concatenate([a, np.repeat(a[-1:], n, axis=0)], axis=0)

    mask = np.asarray(c.frame_mask)
    padded = tuple(
        np.concatenate([mask, np.zeros(n, mask.dtype)]) if f == "frame_mask" else edge(getattr(c, f))
        for f in PER_FRAME_FIELDS
    )
    clip = eqx.tree_at(lambda c: tuple(getattr(c, f) for f in PER_FRAME_FIELDS), c, padded)
    return eqx.tree_at(lambda p: p.clip, problem, clip)


def stack_problems(problems: Sequence[CompiledProblem]) -> CompiledProblem:
    """Stack clips (same recipe, robot and length) along a leading B axis of ``clip``."""
    first = problems[0]
    static0 = eqx.partition(eqx.tree_at(lambda p: p.clip, first, None), eqx.is_array)[1]
    for p in problems[1:]:
        if eqx.partition(eqx.tree_at(lambda q: q.clip, p, None), eqx.is_array)[1] != static0:
            raise SolveError("clips in one batch must share recipe and robot (same index tables)")
    clip = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *[p.clip for p in problems])
    return eqx.tree_at(lambda p: p.clip, first, clip)


def unstack_clip(batch: CompiledProblem, i: int) -> CompiledProblem:
    return eqx.tree_at(lambda p: p.clip, batch, jax.tree.map(lambda x: x[i], batch.clip))


class BatchOutput(eqx.Module):
    solve: SolveOutput  # leaves with leading B axis
    body_pos_w: jnp.ndarray  # (B, T, nbody, 3)
    body_quat_w: jnp.ndarray  # (B, T, nbody, 4)


def clip_in_axes(batch: CompiledProblem) -> CompiledProblem:
    """vmap axes: the robot is shared (None), every clip array has a leading B axis (0)."""
    return eqx.tree_at(
        lambda p: (p.robot, p.clip),
        batch,
        (jax.tree.map(lambda _: None, batch.robot), jax.tree.map(lambda _: 0, batch.clip)),
        is_leaf=lambda x: x is None,
    )


def _solve_and_fk(problem: CompiledProblem, options: SolverOptions):
    out = solve(problem, options)
    xpos, xquat = body_poses(problem.robot.tree, out.qpos)
    return out, xpos, xquat


def _solve_vmap(batch: CompiledProblem, options: SolverOptions) -> BatchOutput:
    out, xpos, xquat = jax.vmap(_solve_and_fk, in_axes=(clip_in_axes(batch), None))(batch, options)
    return BatchOutput(solve=out, body_pos_w=xpos, body_quat_w=xquat)


def _solve_rows(batch: CompiledProblem, options: SolverOptions, device) -> BatchOutput:
    """The CPU path on one device: the rows one after another, each a call of the one
    compiled program of a batch of one. A clip's result is then bitwise the same in any
    batch (a resumed run or a dataset rebuild that solves a clip in a smaller batch writes
    the same bytes): vmapped rows differ by float32 round-off with the batch size, which an
    iterative solve can grow into a different iteration count (a demo clip: 10 against 11
    iterations, 1.4 mm), and even a loop over the rows inside one program compiles a batch
    of one differently from a batch of two. A row also stops at its own convergence
    instead of the slowest row's, and a bucket needs one program whatever the batch size.
    On a GPU the rows are vmapped, which is where batching pays. (Several host devices run
    another program, shard_map, whose round-off differs again.) Returns numpy arrays."""
    arrays, rest = eqx.partition(batch, eqx.is_array)
    outs = []
    for i in range(_batch_size(batch)):
        row = jax.tree.map(lambda x, i=i: x[i : i + 1], eqx.tree_at(lambda a: a.robot, arrays, None))
        row = eqx.tree_at(lambda a: a.robot, row, arrays.robot, is_leaf=lambda x: x is None)
        outs.append(jax.device_get(_solve_batch_jit(eqx.combine(jax.device_put(row, device), rest), options)))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def _in_specs(batch: CompiledProblem) -> CompiledProblem:
    """shard_map specs: the robot replicated, every clip array split along B."""
    return eqx.tree_at(
        lambda p: (p.robot, p.clip),
        batch,
        (
            jax.tree.map(lambda _: PartitionSpec(), batch.robot),
            jax.tree.map(lambda _: PartitionSpec(CLIP_AXIS), batch.clip),
        ),
        is_leaf=lambda x: x is None,
    )


@functools.partial(jax.jit, static_argnames="mesh")
def _solve_batch_jit(batch: CompiledProblem, options: SolverOptions, mesh: Mesh | None = None) -> BatchOutput:
    if mesh is None:
        return _solve_vmap(batch, options)
    # shard_map, not sharding propagation alone: each device runs the single-device
    # program on its own clips. Propagation splits B just as well, but keeps one iteration
    # loop for the whole batch, whose exit test is an all-reduce over devices every
    # iteration; here no device waits for another, and the program holds no collective
    # (one would need cross-process collectives set up in a multi-process CPU run).
    solve_shard = jax.shard_map(
        _solve_shard, mesh=mesh, in_specs=(_in_specs(batch), PartitionSpec()), out_specs=PartitionSpec(CLIP_AXIS)
    )
    return solve_shard(batch, options)


def _solve_shard(batch: CompiledProblem, options: SolverOptions) -> BatchOutput:
    # The robot and the options come in replicated (the same on every device); cast them
    # to per-device values, as the clips are, so that the solver's loop carries (damping,
    # say, starts at ``options.damping`` and then depends on the clips) keep one type.
    robot, options = jax.lax.pcast((batch.robot, options), CLIP_AXIS, to="varying")
    return _solve_vmap(eqx.tree_at(lambda p: p.robot, batch, robot), options)


def clip_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """The 1-D mesh (axis ``"clips"``) a batch is split over: ``devices``, else every
    local device. None where that is a single device (the batch is then left as it is).

    Only this process's devices are accepted: in a multi-process run each process solves
    its own batches, and an array on another process's device would make it global.
    """
    devices = tuple(jax.local_devices() if devices is None else devices)
    if not devices:
        raise SolveError("devices is empty; pass None for every local device")
    if len(set(devices)) != len(devices):
        raise SolveError(f"devices lists a device twice: {list(devices)}")
    foreign = [d for d in devices if d.process_index != jax.process_index()]
    if foreign:
        raise SolveError(
            f"devices must be local to process {jax.process_index()}; found {foreign} (use jax.local_devices())"
        )
    return _mesh(devices) if len(devices) > 1 else None


@functools.lru_cache(maxsize=8)
def _mesh(devices: tuple[jax.Device, ...]) -> Mesh:
    return Mesh(np.asarray(devices, dtype=object), (CLIP_AXIS,))


def shard_batch(batch: CompiledProblem, mesh: Mesh | None) -> CompiledProblem:
    """Place a stacked batch on ``mesh``: clip arrays split along B, robot replicated.

    B must be a multiple of the mesh size (see :func:`_pad_batch`). ``mesh=None`` returns
    the batch untouched. Arrays already placed so are not copied again.
    """
    if mesh is None:
        return batch
    B, n = _batch_size(batch), mesh.size
    if B % n:
        raise SolveError(f"a batch of {B} clips does not split over {n} devices; pad it to a multiple of {n}")

    def put(tree, spec):
        arrays, rest = eqx.partition(tree, eqx.is_array)
        return eqx.combine(jax.device_put(arrays, NamedSharding(mesh, spec)), rest)

    return eqx.tree_at(
        lambda p: (p.robot, p.clip),
        batch,
        (put(batch.robot, PartitionSpec()), put(batch.clip, PartitionSpec(CLIP_AXIS))),
    )


def _batch_size(batch: CompiledProblem) -> int:
    return int(batch.clip.frame_mask.shape[0])


def _pad_batch(batch: CompiledProblem, multiple: int) -> CompiledProblem:
    """Pad B up to a multiple of ``multiple`` by repeating the last clip.

    A repeated clip takes exactly as many iterations as its original, so the device that
    holds it is done no later than the one holding the original.
    """
    n = -_batch_size(batch) % multiple
    if n == 0:
        return batch
    clip = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], n, axis=0)]), batch.clip)
    return eqx.tree_at(lambda p: p.clip, batch, clip)


def _one_clip_per_device(mesh: Mesh | None) -> bool:
    """Whether a call on ``mesh`` must hold at most one clip per device: so on CPU.

    jaxlib's CPU LAPACK kernels (the solver's triangular solves; seen with jaxlib 0.10.2)
    hand a batch of more than one matrix to XLA's intra-op thread pool and block until it
    is done. Several CPU devices doing so at once can take every thread of that pool and
    then wait for ever (2 clips per device on a 2-core machine hang). One clip per device
    keeps each kernel's batch at 1, which runs inline.
    """
    return mesh is not None and mesh.devices.flat[0].platform == "cpu"


def _solve_padded(batch: CompiledProblem, options: SolverOptions, devices: Sequence[jax.Device] | None) -> BatchOutput:
    """Solve on the clip mesh; the output keeps the padding rows (B rounded up)."""
    mesh = clip_mesh(devices)
    if _one_clip_per_device(mesh) and _batch_size(batch) > mesh.size:
        mesh = None  # more clips than CPU devices: one device, as before (see above)
    if mesh is None:
        # numpy leaves (stack_problems builds in numpy) and device arrays are one jit
        # signature: put every array leaf on the device first
        device = None if devices is None else devices[0]
        if (device or jax.devices()[0]).platform == "cpu":
            return _solve_rows(batch, options, device)
        arrays, rest = eqx.partition(batch, eqx.is_array)
        arrays = jax.device_put(arrays, device)
        return _solve_batch_jit(eqx.combine(arrays, rest), options)
    batch = shard_batch(_pad_batch(batch, mesh.size), mesh)
    # array leaves of the options are scalars: replicate them, so that an array committed
    # to some other device cannot clash with the mesh (Python numbers are left to jit)
    opt_arrays, opt_rest = eqx.partition(options, eqx.is_array)
    options = eqx.combine(jax.device_put(opt_arrays, NamedSharding(mesh, PartitionSpec())), opt_rest)
    return _solve_batch_jit(batch, options, mesh=mesh)


def solve_batch(
    batch: CompiledProblem, options: SolverOptions | None = None, devices: Sequence[jax.Device] | None = None
) -> BatchOutput:
    """Solve a stacked batch (see :func:`stack_problems`) in one compiled call.

    The B axis is split over ``devices`` (default: every local device, see
    :func:`clip_mesh`); the output has the batch's B rows, as device arrays. On CPU
    devices a batch of more clips than devices runs on one device instead (see
    :func:`_one_clip_per_device`); :func:`solve_many` splits such groups itself.
    """
    B = _batch_size(batch)
    out = _solve_padded(batch, options or SolverOptions(), devices)
    if out.solve.status.shape[0] != B:
        out = jax.tree.map(lambda x: x[:B], out)
    return out


def batch_rows(n: int, max_batch: int) -> int:
    """Rows of a padded call holding ``n`` clips: the next power of two, at most
    ``max_batch`` (which need not be one). A stream of batches of any size then uses at
    most log2(max_batch) + 1 programs per bucket, and a call never pays for more than
    twice its clips: one clip costs what one clip costs."""
    if n < 1 or max_batch < 1:
        raise SolveError(f"batch_rows: expected n >= 1 and max_batch >= 1, got n={n}, max_batch={max_batch}")
    return min(max_batch, 1 << (n - 1).bit_length())


def solve_many(
    problems: Sequence[CompiledProblem],
    options: SolverOptions | None = None,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    max_batch: int = 64,
    devices: Sequence[jax.Device] | None = None,
    fixed_batch: bool = False,
):
    """Group clips by bucket, solve each group; returns a list of (SolveOutput, xpos, xquat)
    per input clip, trimmed back to its own length, as numpy arrays.

    ``fixed_batch`` pads every call to :func:`batch_rows` clips (repeating the last), so
    a stream of batches of any size uses a few compiled programs per bucket (the batch
    driver's setting); otherwise a call has as many rows as it has clips.

    Each call is split over ``devices`` (default: every local device, see
    :func:`clip_mesh`) and padded to a multiple of their number by repeating its last
    clip, so calls of up to that many clips share one compiled program. On CPU devices
    a call holds at most one clip per device (see :func:`_one_clip_per_device`).
    """
    options = options or SolverOptions()
    mesh = clip_mesh(devices)
    multiple = 1 if mesh is None else mesh.size
    if _one_clip_per_device(mesh):
        max_batch = min(max_batch, multiple)
    results: list = [None] * len(problems)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(problems):
        groups.setdefault(bucket_length(p.num_frames, buckets), []).append(i)
    for Tb, idx in sorted(groups.items()):
        for s in range(0, len(idx), max_batch):
            chunk = idx[s : s + max_batch]
            # pad before stacking (the last clip again), so the stacked batch needs no more
            rows = batch_rows(len(chunk), max_batch) if fixed_batch else len(chunk)
            padded = chunk + chunk[-1:] * (rows - len(chunk))
            padded += padded[-1:] * (-len(padded) % multiple)
            batch = stack_problems([pad_problem(problems[i], Tb) for i in padded])
            out = jax.device_get(_solve_padded(batch, options, devices))
            for j, i in enumerate(chunk):
                T = problems[i].num_frames
                o = out.solve
                results[i] = (
                    SolveOutput(
                        qpos=np.asarray(o.qpos[j, :T]),
                        cost=np.asarray(o.cost[j]),
                        iterations=np.asarray(o.iterations[j]),
                        status=np.asarray(o.status[j]),
                    ),
                    np.asarray(out.body_pos_w[j, :T]),
                    np.asarray(out.body_quat_w[j, :T]),
                )
    return results
