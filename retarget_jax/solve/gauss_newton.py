"""Whole-trajectory Levenberg-Marquardt solve of one clip, differentiable by implicit
differentiation (jit code; vmapped over clips by :mod:`retarget_jax.solve.batch`).

Every frame of the clip is a variable at once; velocity and acceleration terms couple
frames up to two apart, so the normal equations are block-pentadiagonal and solved
exactly (``linalg.block_banded_solve``). There is no
frame-by-frame warm-start chain, hence no first-frame collapse. The floating base is
updated on its manifold (root rotation by ``q <- q exp(delta)``), joints are projected
into their MJCF ranges after every step, and nothing raises inside jit: the result
carries a status code (``retarget_jax.result.SolveStatus``).

Derivatives (``jax.grad`` through :func:`solve`) use the implicit function theorem at
the optimum x*(theta): with g(delta, theta) = dF(x* (+) delta; theta)/d delta at 0 and
H = dg/d delta, dx*/d theta = -H^-1 dg/d theta. Joints at a bound are held fixed
(their rows of H are replaced by identity). No iteration is unrolled.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from retarget_jax.arrays import AnyArray, Float, Int
from retarget_jax.motion.canonical import hip_heading
from retarget_jax.problem.compile import PER_FRAME_FIELDS, CompiledProblem
from retarget_jax.result import SolveStatus
from retarget_jax.robots.kinematics import body_frames, integrate
from retarget_jax.rotations import quat_rotate
from retarget_jax.solve.costs import (
    frame_masks,
    frame_residual,
    normal_equations,
    pair_masks,
    pair_residual,
    sole_points,
    targets,
    total_cost,
    triple_masks,
    triple_residual,
)
from retarget_jax.solve.linalg import block_banded_solve

_RETRIES = 8  # consecutive rejected steps (damping x2, x4, ...) before a point is declared a minimum
_FIXED_MAX = 4  # a full-rate solve after a coarse start of at most this many iterations runs them all
_CONVERGED_DAMPING = 1e-3  # the stopping tests count only for steps taken at this damping or less


class SolverOptions(eqx.Module):
    """Solver settings. Static (they change the compiled program): the iteration caps,
    the coarse level's stride, and how many ground / self-collision rows get Jacobians.
    Traced (a change never recompiles): tolerances and damping.

    The solve runs in two levels: first the clip sampled every ``coarse_stride`` frames
    (``coarse_iters`` iterations at most; a stride of 1 or 0 iterations skips it), from
    the default pose; its solution, interpolated to every frame, starts the full-rate
    solve (``max_iters`` iterations at most). Buckets shorter than ``coarse_min_frames``
    are solved at full rate only, from the default pose, with both budgets. See ``benchmarks/iterations_quality.py`` for
    the measurements behind the defaults.
    """

    max_iters: int = eqx.field(static=True, default=3)
    coarse_stride: int = eqx.field(static=True, default=4)
    coarse_iters: int = eqx.field(static=True, default=30)
    #: buckets shorter than this skip the coarse level (a few coarse frames are too sparse
    #: in time to be a reliable start) and spend both budgets at full rate from the default
    #: pose: max_iters + coarse_iters iterations, stopping on rtol / step_tol
    coarse_min_frames: int = eqx.field(static=True, default=128)
    #: per frame, Jacobian rows for the lowest ground points off the feet (None: all)
    ground_rows: int | None = eqx.field(static=True, default=8)
    #: per frame, Jacobian rows for the closest declared self-collision pairs (None: all)
    collision_rows: int | None = eqx.field(static=True, default=8)
    rtol: float | jnp.ndarray = 1e-4  # stop when an accepted step lowers F by less than rtol*F
    step_tol: float | jnp.ndarray = 1e-4  # ... or moves no coordinate by more than this (m, rad)
    damping: float | jnp.ndarray = 1e-2  # initial Marquardt damping, relative to diag(H)
    refine_damping: float | jnp.ndarray = 1e-4  # ... of the full-rate solve after a coarse start
    #: the damping of an unknown scales max(its curvature, damping_floor x the frame's mean
    #: curvature): directions with almost no curvature are still damped
    damping_floor: float | jnp.ndarray = 0.01
    coarse_rtol: float | jnp.ndarray = 1e-3  # the coarse level's rtol (its result is only a start)
    bound_tol: float | jnp.ndarray = 1e-6  # a joint this close to a bound counts as active


class SolveOutput(eqx.Module):
    """One solve (a leading B axis when batched; axis letters: :mod:`retarget_jax.arrays`)."""

    qpos: Float[AnyArray, "*batch T nq"]  # root position, root quaternion wxyz, joints
    cost: Float[AnyArray, "*batch"]  # mean per-frame objective
    iterations: Int[AnyArray, "*batch"]  # full-rate iterations (the coarse level's are not counted)
    status: Int[AnyArray, "*batch"]  # SolveStatus code


def initial_guess(problem: CompiledProblem, tpos, tquat) -> jnp.ndarray:
    """Root at the scaled pelvis, oriented like it, joints at the default pose.

    Where the pelvis orientation target is masked (a source without joint frames), the
    root starts upright, turned to face where the hips say the human faces: a start
    from a meaningless orientation can end in a local minimum with the robot upside down.
    """
    T = tpos.shape[0]
    root = problem.robot.tree.root
    heading = hip_heading(problem.clip.human_pos)
    if root in problem.rot_body:
        k = problem.rot_body.index(root)
        known = problem.clip.rot_valid[:, k] > 0
        root_quat = jnp.where(known[:, None], tquat[:, k], heading)
    else:
        root_quat = heading
    if root in problem.pos_body:
        k = problem.pos_body.index(root)
        # the target is a point offset from the root origin: undo the offset
        root_pos = tpos[:, k] - quat_rotate(root_quat, problem.clip.pos_offset[k])
    else:
        root_pos = jnp.zeros((T, 3), tpos.dtype)
    joints = jnp.broadcast_to(problem.robot.q_default, (T, problem.robot.q_default.shape[0]))
    return jnp.concatenate([root_pos, root_quat, joints], axis=1)


def _project(problem: CompiledProblem, qpos):
    j = jnp.clip(qpos[:, 7:], problem.robot.q_lower, problem.robot.q_upper)
    return qpos.at[:, 7:].set(j)


def _step(qpos, delta):
    return jax.vmap(integrate)(qpos, delta)


def _restrict(free, D, L1, L2):
    """The banded system on the free directions only: rows and columns of held
    unknowns (``free`` 0, shape (T, nv)) become identity rows (implicit differentiation)."""
    eye = jnp.eye(D.shape[-1], dtype=D.dtype)
    D = D * (free[:, :, None] * free[:, None, :]) + (1.0 - free)[:, :, None] * eye
    L1 = L1 * (free[:, :, None] * jnp.roll(free, 1, axis=0)[:, None, :])
    L2 = L2 * (free[:, :, None] * jnp.roll(free, 2, axis=0)[:, None, :])
    return D, L1, L2


def _levenberg_marquardt(
    problem: CompiledProblem,
    q0,
    tpos,
    tquat,
    options: SolverOptions,
    max_iters: int,
    done0,
    damping,
    rtol,
    *,
    fixed: bool = False,
):
    """Projected Levenberg-Marquardt from q0: at most ``max_iters`` steps.

    One linearisation per iteration, at the point just tried: the normal equations give
    its cost too, so an accepted point's linearisation is the next step's (FK and
    Jacobians once per iteration, no separate cost pass, and one copy of the linearisation
    in the compiled loop). The damping follows the gain ratio rho = actual / predicted
    decrease (Nielsen's rule): a step the quadratic model predicted well lowers it up to
    tenfold, a rejected one raises it by 2, 4, 8, ... so that one bad region does not
    leave the solve crawling under a large damping afterwards.

    ``fixed``: run exactly ``max_iters`` passes (a clip that has converged keeps its
    point) as a loop of static length. The last pass then skips proposing a step that
    would never be tried (a real branch: the pass index is the same for every clip of a
    vmapped batch), which pays where the iterations are few and the frames many.

    Returns (q, cost, iterations, done).
    """
    dtype = q0.dtype
    mask = problem.clip.frame_mask
    nv = q0.shape[1] - 1
    tiny = jnp.finfo(dtype).tiny
    big = jnp.asarray(1e12, dtype)

    def linearize(q):
        return normal_equations(
            problem, q, tpos, tquat, ground_rows=options.ground_rows, collision_rows=options.collision_rows
        )

    def propose(q, lin, lam):
        """The damped projected-Newton step from q, and the decrease its model predicts."""
        D, L1, L2, g, _ = lin
        # Projected Newton: a joint resting on a bound whose descent direction points out
        # of its range is held for this step. Otherwise the step couples every other
        # joint to a move the projection then undoes, and LM crawls (or stalls) on
        # clips with active limits. A held unknown (and every unknown of a padding
        # frame) gets a huge diagonal and no gradient: its step is ~0, and eliminating it
        # changes the others' equations by O(1 / big).
        j = q[:, 7:]
        held = ((j <= problem.robot.q_lower + options.bound_tol) & (g[:, 6:] > 0)) | (
            (j >= problem.robot.q_upper - options.bound_tol) & (g[:, 6:] < 0)
        )
        free = jnp.concatenate([jnp.ones_like(g[:, :6]), (~held).astype(dtype)], axis=1) * mask[:, None]
        # Marquardt damping: lam scales each unknown's own curvature (at least
        # damping_floor x the frame's mean), so one lam suits root metres, joint radians
        # and every weight scale, and directions with almost no curvature are damped too.
        diag = jnp.diagonal(D, axis1=1, axis2=2)
        damp = lam * jnp.maximum(diag, options.damping_floor * jnp.mean(diag, axis=1, keepdims=True))
        damp = damp + 1e-9 * (1.0 + jnp.max(diag))
        gf = g * free
        Dl = D + ((free * damp + (1.0 - free) * big)[:, :, None] * jnp.eye(nv, dtype=dtype))
        delta = -block_banded_solve(Dl, L1, L2, gf) * free
        # F = |r|^2: its gradient is 2 g and its Gauss-Newton Hessian 2 H. With
        # (H + damp) delta = -g: predicted decrease -2 g.d - d.H.d = -g.d + d.damp.d.
        pred = -jnp.sum(gf * delta) + jnp.sum(damp * delta * delta)
        return _project(problem, _step(q, delta)), pred

    def cond(s):
        *_, it, done, started = s
        return ~started | ((~done) & (it < max_iters))

    def body(s, last=None):
        q, lin, q_try, pred, lam, nu, rejects, it, done, started = s
        lin_try = linearize(q_try)
        cost, cost_try = lin[-1], lin_try[-1]
        first = ~started  # the start point: nothing to compare with yet
        ok = (jnp.isfinite(cost_try) & ((cost_try < cost) | first)) & ~done
        rho = (cost - cost_try) / jnp.maximum(pred, tiny)
        rel = (cost - cost_try) / jnp.maximum(cost_try, tiny)
        moved = jnp.max(jnp.abs(q_try - q))  # the move actually made (projection included)
        # A small decrease means little is left only where the step was nearly Gauss-Newton:
        # under a large damping (after rejected steps) every step is short.
        # Converged: a nearly Gauss-Newton step whose model predicted, and which made, a
        # change below rtol. The prediction guards against a plateau (a small actual
        # decrease where the model still expects a large one: on a demo-walk clip, a stop
        # on the actual change alone ended 3% above the optimum). Near the optimum the change
        # is at float32 round-off and its sign is noise, so a change within rtol either
        # way counts.
        small = (jnp.abs(rel) < rtol) & (pred < rtol * jnp.maximum(cost_try, tiny))
        converged = (
            jnp.isfinite(cost_try) & ~first & ~done & (lam <= _CONVERGED_DAMPING) & (small | (moved < options.step_tol))
        )
        rejects = jnp.where(ok, 0, rejects + 1)
        stuck = rejects > _RETRIES  # a (local) minimum: no damping brings a decrease
        shrink = jnp.maximum(0.1, 1.0 - (2.0 * jnp.clip(rho, 0.0, 1.0) - 1.0) ** 3)
        lam = jnp.where(first, lam, jnp.where(ok, jnp.maximum(lam * shrink, 1e-9), lam * nu))
        nu = jnp.where(ok, 2.0, nu * 2.0)
        q = jnp.where(ok, q_try, q)
        lin = jax.tree.map(lambda a, b: jnp.where(ok, a, b), lin_try, lin)
        if last is None:
            q_next, pred = propose(q, lin, lam)
        else:
            q_next, pred = jax.lax.cond(last, lambda: (q, pred), lambda: propose(q, lin, lam))
        it = it + (~first & ~done).astype(jnp.int32)
        # a start whose cost is not finite is not solved (the status says diverged)
        done = done | converged | stuck | (first & ~ok)
        return q, lin, q_next, pred, lam, nu, rejects, it, done, jnp.ones_like(started)

    # the start values derive from the problem, so that under shard_map they vary over
    # the clip axis like every other loop carry
    varying = jnp.sum(q0[:1, :1]) * 0
    zero = varying.astype(jnp.int32)
    T = q0.shape[0]
    block = jnp.zeros((T, nv, nv), dtype)
    lin0 = jax.tree.map(
        lambda z: z + varying, (block, block, block, jnp.zeros((T, nv), dtype), jnp.asarray(jnp.inf, dtype))
    )
    lam0 = jnp.asarray(damping, dtype) + varying
    state = (q0, lin0, q0, varying, lam0, varying + 2.0, zero, zero, done0, zero > 0)
    # the first pass linearises the start and is not an iteration
    if fixed:
        state = jax.lax.fori_loop(0, max_iters + 1, lambda i, s: body(s, last=i == max_iters), state)
    else:
        state = jax.lax.while_loop(cond, body, state)
    q, lin, *_, it, done, _ = state
    return q, lin[-1], it, done


def coarse_problem(problem: CompiledProblem, stride: int) -> CompiledProblem:
    """The clip sampled every ``stride`` frames (frames 0, s, 2s, ...; the rate divided by
    s). Per-clip quantities (scales, weights, offsets) are the clip's own, so the coarse
    problem is the same objective on fewer frames: every term is per second (velocities,
    accelerations) or per frame, and all sums shrink by the same factor."""
    c = problem.clip
    clip = eqx.tree_at(
        lambda c: (*(getattr(c, f) for f in PER_FRAME_FIELDS), c.fps),
        c,
        (*(getattr(c, f)[::stride] for f in PER_FRAME_FIELDS), c.fps / stride),
    )
    return eqx.tree_at(lambda p: p.clip, problem, clip)


def upsample(qc: jnp.ndarray, mask_c: jnp.ndarray, stride: int, T: int) -> jnp.ndarray:
    """(T, nq) from a coarse solution ``qc`` (Tc, nq) on frames 0, s, 2s, ...: root
    position and joints linear between coarse frames, the root quaternion by normalised
    linear blend in one hemisphere; beyond the last real coarse frame, held."""
    Tc = qc.shape[0]
    t = np.arange(T)
    i0 = t // stride
    frac = jnp.asarray((t % stride) / stride, qc.dtype)
    i1 = np.minimum(i0 + 1, Tc - 1)
    frac = frac * (mask_c[i1] > 0) * (i1 > i0)
    a, b = qc[i0], qc[i1]
    lin = a + frac[:, None] * (b - a)
    qa, qb = a[:, 3:7], b[:, 3:7]
    qb = jnp.where(jnp.sum(qa * qb, axis=-1, keepdims=True) < 0, -qb, qb)
    quat = qa + frac[:, None] * (qb - qa)
    return lin.at[:, 3:7].set(quat / jnp.linalg.norm(quat, axis=-1, keepdims=True))


def _solve_impl(problem: CompiledProblem, options: SolverOptions) -> SolveOutput:
    finite = jnp.all(jnp.isfinite(problem.clip.human_pos)) & jnp.all(jnp.isfinite(problem.clip.human_quat))
    # A clip with non-finite input is not solved; zeros keep its arithmetic finite so
    # that nothing leaks into vmapped batch-mates, and its status says why.
    clean = jax.tree.map(lambda a: jnp.where(jnp.isfinite(a), a, 0.0) if eqx.is_inexact_array(a) else a, problem)
    clean = eqx.tree_at(
        lambda p: p.clip.human_quat,
        clean,
        jnp.where(finite, clean.clip.human_quat, jnp.zeros_like(clean.clip.human_quat).at[..., 0].set(1.0)),
    )
    tpos, tquat = targets(clean)
    q0 = _project(clean, initial_guess(clean, tpos, tquat))
    mask = clean.clip.frame_mask
    T = q0.shape[0]
    s = options.coarse_stride
    two_level = s > 1 and options.coarse_iters > 0
    coarse = two_level and T >= max(options.coarse_min_frames, 2 * s + 1)
    budget = options.max_iters + (options.coarse_iters if two_level and not coarse else 0)
    if coarse:
        cp = coarse_problem(clean, s)
        qc, _, _, _ = _levenberg_marquardt(
            cp,
            q0[::s],
            tpos[::s],
            tquat[::s],
            options,
            options.coarse_iters,
            ~finite,
            options.damping,
            options.coarse_rtol,
        )
        q0 = _project(clean, upsample(qc, cp.clip.frame_mask, s, T))
        damping = options.refine_damping
    else:
        damping = options.damping
    q, cost, it, done = _levenberg_marquardt(
        clean,
        q0,
        tpos,
        tquat,
        options,
        budget,
        ~finite,
        damping,
        options.rtol,
        fixed=coarse and options.max_iters <= _FIXED_MAX,
    )
    nframes = jnp.maximum(jnp.sum(mask), 1.0)
    status = jnp.where(
        ~finite,
        SolveStatus.INVALID_INPUT,
        jnp.where(
            ~(jnp.all(jnp.isfinite(q)) & jnp.isfinite(cost)),
            SolveStatus.DIVERGED,
            jnp.where(done, SolveStatus.CONVERGED, SolveStatus.MAX_ITERATIONS),
        ),
    ).astype(jnp.int32)
    return SolveOutput(qpos=q, cost=cost / nframes, iterations=it, status=status)


@eqx.filter_custom_vjp
def solve(problem: CompiledProblem, options: SolverOptions) -> SolveOutput:
    """Solve one clip. Differentiable w.r.t. every float array of ``problem``."""
    return _solve_impl(problem, options)


def _tangent_cost(problem, qstar, delta):
    return total_cost(problem, _step(qstar, delta))


def _hessian_blocks(problem: CompiledProblem, qstar):
    """Exact Hessian of F(x* (+) delta) at delta = 0 as block-pentadiagonal D, L1, L2."""
    tpos, tquat = targets(problem)
    nv = qstar.shape[1] - 1
    z = jnp.zeros(nv, qstar.dtype)

    def frame_cost(d, q, p, o, m):
        r = frame_residual(problem, integrate(q, d), p, o, m, jacobian=False)
        return jnp.sum(r * r)

    def pair_cost(d01, qa, qb, m):
        xa, xb = integrate(qa, d01[:nv]), integrate(qb, d01[nv:])
        fa = sole_points(problem, body_frames(problem.robot.tree, xa), jacobian=False)[0][:, :2]
        fb = sole_points(problem, body_frames(problem.robot.tree, xb), jacobian=False)[0][:, :2]
        r = pair_residual(problem, xa, xb, (fa, None), (fb, None), m, jacobian=False)
        return jnp.sum(r * r)

    def triple_cost(d012, qa, qb, qc, m):
        r = triple_residual(
            problem,
            integrate(qa, d012[:nv]),
            integrate(qb, d012[nv : 2 * nv]),
            integrate(qc, d012[2 * nv :]),
            m,
            jacobian=False,
        )
        return jnp.sum(r * r)

    Hf = jax.vmap(lambda q, p, o, m: jax.hessian(frame_cost)(z, q, p, o, m))(qstar, tpos, tquat, frame_masks(problem))
    Hp = jax.vmap(lambda a, b, m: jax.hessian(pair_cost)(jnp.zeros(2 * nv, qstar.dtype), a, b, m))(
        qstar[:-1], qstar[1:], pair_masks(problem)
    )
    Ht = jax.vmap(lambda a, b, c, m: jax.hessian(triple_cost)(jnp.zeros(3 * nv, qstar.dtype), a, b, c, m))(
        qstar[:-2], qstar[1:-1], qstar[2:], triple_masks(problem)
    )
    T = qstar.shape[0]
    blk = lambda H, i, j: H[:, i * nv : (i + 1) * nv, j * nv : (j + 1) * nv]  # noqa: E731
    D = Hf.at[:-1].add(blk(Hp, 0, 0)).at[1:].add(blk(Hp, 1, 1))
    for k in range(3):
        D = D.at[k : k + T - 2].add(blk(Ht, k, k))
    L1 = jnp.zeros_like(D).at[1:].set(blk(Hp, 1, 0))
    L1 = L1.at[1:-1].add(blk(Ht, 1, 0)).at[2:].add(blk(Ht, 2, 1))
    L2 = jnp.zeros_like(D).at[2:].set(blk(Ht, 2, 0))
    return D, L1, L2


@solve.def_fwd
def _solve_fwd(perturbed, problem, options):
    out = _solve_impl(problem, options)
    return out, out


@solve.def_bwd
def _solve_bwd(out: SolveOutput, grad_out: SolveOutput, perturbed, problem, options):
    qstar = jax.lax.stop_gradient(out.qpos)
    dtype = qstar.dtype
    T, nq = qstar.shape
    nv = nq - 1
    mask = problem.clip.frame_mask
    # Free directions: real frames, joints not resting on a bound.
    j = qstar[:, 7:]
    at_bound = (j <= problem.robot.q_lower + options.bound_tol) | (j >= problem.robot.q_upper - options.bound_tol)
    free = jnp.concatenate([jnp.ones((T, 6), dtype), (~at_bound).astype(dtype)], axis=1) * mask[:, None]

    qbar = grad_out.qpos if grad_out.qpos is not None else jnp.zeros_like(qstar)
    zero = jnp.zeros((T, nv), dtype)
    _, pullback = jax.vjp(lambda d: _step(qstar, d), zero)
    (dbar,) = pullback(qbar)
    dbar = dbar * free

    D, L1, L2 = _restrict(free, *_hessian_blocks(problem, qstar))
    D = D + 1e-9 * jnp.eye(nv, dtype=dtype)
    u = block_banded_solve(D, L1, L2, dbar) * free

    diff, static = eqx.partition(problem, eqx.is_inexact_array)

    # theta_bar = -(d/dtheta g(0, theta))^T u = -grad_theta <grad_delta F(0; theta), u>, and
    # <grad_delta F, u> is the directional derivative of F along u: one forward-mode pass
    # differentiated once in reverse, far cheaper to compile than reverse-over-reverse.
    def directional(dp):
        p = eqx.combine(dp, static)
        return jax.jvp(lambda d: _tangent_cost(p, qstar, d), (zero,), (u,))[1]

    gtheta = jax.tree.map(lambda a: -a, jax.grad(directional)(diff))

    # Envelope theorem for the optimal cost: dF*/dtheta = dF/dtheta at x*.
    if grad_out.cost is not None:
        nframes = jnp.maximum(jnp.sum(mask), 1.0)

        def cost_of(dp):
            p = eqx.combine(dp, static)
            return total_cost(p, qstar) / nframes

        _, vjp_c = jax.vjp(cost_of, diff)
        (gc,) = vjp_c(grad_out.cost)
        gtheta = jax.tree.map(lambda a, b: a + b, gtheta, gc)
    return gtheta
