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

from retarget_jax.motion.canonical import hip_heading
from retarget_jax.problem.compile import CompiledProblem
from retarget_jax.result import SolveStatus
from retarget_jax.robots.kinematics import forward_kinematics, integrate
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

_RETRIES = 8  # re-solves with 10x the damping before a linearisation is declared a minimum


class SolverOptions(eqx.Module):
    """Solver settings. ``max_iters`` is static; tolerances and damping are traced."""

    max_iters: int = eqx.field(static=True, default=50)
    rtol: float | jnp.ndarray = 1e-4  # stop when an accepted step lowers F by less than rtol*F
    step_tol: float | jnp.ndarray = 1e-4  # ... or moves no coordinate by more than this (m, rad)
    damping: float | jnp.ndarray = 1e-2  # initial Marquardt damping, relative to diag(H)
    bound_tol: float | jnp.ndarray = 1e-6  # a joint this close to a bound counts as active


class SolveOutput(eqx.Module):
    qpos: jnp.ndarray  # (T, nq)
    cost: jnp.ndarray  # () mean per-frame objective
    iterations: jnp.ndarray  # () int32
    status: jnp.ndarray  # () int32


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
    unknowns (``free`` 0, shape (T, nv)) become identity rows."""
    eye = jnp.eye(D.shape[-1], dtype=D.dtype)
    D = D * (free[:, :, None] * free[:, None, :]) + (1.0 - free)[:, :, None] * eye
    L1 = L1 * (free[:, :, None] * jnp.roll(free, 1, axis=0)[:, None, :])
    L2 = L2 * (free[:, :, None] * jnp.roll(free, 2, axis=0)[:, None, :])
    return D, L1, L2


def _solve_impl(problem: CompiledProblem, options: SolverOptions) -> SolveOutput:
    dtype = problem.clip.human_pos.dtype
    finite = jnp.all(jnp.isfinite(problem.clip.human_pos)) & jnp.all(jnp.isfinite(problem.clip.human_quat))
    # A clip with non-finite input is not solved; zeros keep its arithmetic finite so
    # that nothing leaks into vmapped batch-mates, and its status says why.
    clean = jax.tree.map(lambda a: jnp.where(jnp.isfinite(a), a, 0.0) if eqx.is_inexact_array(a) else a,
                         problem)
    clean = eqx.tree_at(lambda p: p.clip.human_quat, clean,
                        jnp.where(finite, clean.clip.human_quat,
                                  jnp.zeros_like(clean.clip.human_quat).at[..., 0].set(1.0)))
    tpos, tquat = targets(clean)
    q0 = _project(clean, initial_guess(clean, tpos, tquat))
    mask = clean.clip.frame_mask
    nv = q0.shape[1] - 1
    eye = jnp.eye(nv, dtype=dtype)
    pad_eye = (1.0 - mask)[:, None, None] * eye

    def cond(s):
        q, cost, lam, it, done = s
        return (~done) & (it < options.max_iters)

    def body(s):
        q, cost, lam, it, done = s
        D, L1, L2, g, _ = normal_equations(clean, q, tpos, tquat)
        # Projected Newton: a joint resting on a bound whose descent direction points out
        # of its range is held for this step. Otherwise the step couples every other
        # joint to a move the projection then undoes, and LM crawls (or stalls) on
        # clips with active limits.
        j = q[:, 7:]
        held = (((j <= clean.robot.q_lower + options.bound_tol) & (g[:, 6:] > 0))
                | ((j >= clean.robot.q_upper - options.bound_tol) & (g[:, 6:] < 0)))
        free = jnp.concatenate([jnp.ones_like(g[:, :6]), (~held).astype(dtype)], axis=1)
        D, L1, L2 = _restrict(free, D, L1, L2)
        # Marquardt damping: lam scales each unknown's own curvature, so one lam suits
        # root metres, joint radians and every weight scale (no runs of rejected steps
        # while an absolute lam climbs to the size of diag(H)); a tiny floor keeps
        # unknowns without curvature solvable.
        diag = jnp.diagonal(D, axis1=1, axis2=2)
        floor = 1e-9 * (1.0 + jnp.max(diag))

        def trial(lam):
            Dl = D + pad_eye + (lam * diag + floor)[:, :, None] * eye
            delta = -block_banded_solve(Dl, L1, L2, g * free) * mask[:, None]
            q_new = _project(clean, _step(q, delta))
            return q_new, total_cost(clean, q_new, tpos, tquat)

        def better(c):
            return jnp.isfinite(c) & (c < cost)

        # A rejected step raises lam and re-solves with the same Jacobians: a retry costs
        # one banded solve and one cost, not a new linearisation.
        def retry(t):
            _, _, lam, k = t
            lam = lam * 10.0
            return *trial(lam), lam, k + 1

        # (traced once: the loop's first pass is the trial at lam itself). The start cost is
        # derived from the carried cost so that it varies over shard_map's clip axis like it.
        ok_init = cost == cost
        q_new, cost_new, lam, _ = jax.lax.while_loop(
            lambda t: (t[3] == 0) | (~better(t[1]) & (t[3] <= _RETRIES)), retry,
            (q, jnp.where(ok_init, jnp.inf, cost), lam / 10.0, jnp.asarray(0, jnp.int32)))
        ok = better(cost_new)
        rel = (cost - cost_new) / jnp.maximum(cost, jnp.finfo(dtype).tiny)
        # the move actually made (a joint held at its bound by the projection does not move)
        moved = jnp.max(jnp.abs(q_new - q))
        converged = ok & ((rel < options.rtol) | (moved < options.step_tol))
        stuck = ~ok  # no lam up to 10**_RETRIES times larger lowers F: a (local) minimum
        q = jnp.where(ok, q_new, q)
        cost = jnp.where(ok, cost_new, cost)
        lam = jnp.maximum(lam * 0.3, 1e-9)
        return q, cost, lam, it + 1, converged | stuck

    cost0 = total_cost(clean, q0, tpos, tquat)
    lam0 = jnp.asarray(options.damping, dtype)
    q, cost, lam, it, done = jax.lax.while_loop(
        cond, body, (q0, cost0, lam0, jnp.asarray(0, jnp.int32), ~finite))
    nframes = jnp.maximum(jnp.sum(mask), 1.0)
    status = jnp.where(
        ~finite, SolveStatus.INVALID_INPUT,
        jnp.where(~(jnp.all(jnp.isfinite(q)) & jnp.isfinite(cost)), SolveStatus.DIVERGED,
                  jnp.where(done, SolveStatus.CONVERGED, SolveStatus.MAX_ITERATIONS))).astype(jnp.int32)
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
        fa = sole_points(problem, forward_kinematics(problem.robot.tree, xa), jacobian=False)[0][:, :2]
        fb = sole_points(problem, forward_kinematics(problem.robot.tree, xb), jacobian=False)[0][:, :2]
        r = pair_residual(problem, xa, xb, (fa, None), (fb, None), m, jacobian=False)
        return jnp.sum(r * r)

    def triple_cost(d012, qa, qb, qc, m):
        r = triple_residual(problem, integrate(qa, d012[:nv]), integrate(qb, d012[nv:2 * nv]),
                            integrate(qc, d012[2 * nv:]), m, jacobian=False)
        return jnp.sum(r * r)

    Hf = jax.vmap(lambda q, p, o, m: jax.hessian(frame_cost)(z, q, p, o, m))(
        qstar, tpos, tquat, frame_masks(problem))
    Hp = jax.vmap(lambda a, b, m: jax.hessian(pair_cost)(jnp.zeros(2 * nv, qstar.dtype), a, b, m))(
        qstar[:-1], qstar[1:], pair_masks(problem))
    Ht = jax.vmap(lambda a, b, c, m: jax.hessian(triple_cost)(jnp.zeros(3 * nv, qstar.dtype), a, b, c, m))(
        qstar[:-2], qstar[1:-1], qstar[2:], triple_masks(problem))
    T = qstar.shape[0]
    blk = lambda H, i, j: H[:, i * nv:(i + 1) * nv, j * nv:(j + 1) * nv]  # noqa: E731
    D = Hf.at[:-1].add(blk(Hp, 0, 0)).at[1:].add(blk(Hp, 1, 1))
    for k in range(3):
        D = D.at[k:k + T - 2].add(blk(Ht, k, k))
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

