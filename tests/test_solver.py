"""Tests for retarget_jax.solve: residual Jacobians, the block-tridiagonal solve, the
implicit-differentiation VJP of a whole solve, batching, retracing and robustness.

Compiles are the expensive part on a CPU, so shapes are shared: every float32 batched
solve here is one (B=3, T=64) compile, the one-by-one solves are two (T=40, T=52), and
the float64 tests share one short clip (T=12, unpadded).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from retarget_jax.buckets import bucket_length
from retarget_jax.motion.demo import DEMO_JOINTS, demo_motion
from retarget_jax.motion.skeleton import HumanJoint
from retarget_jax.problem import RetargetingProblem, compile_problem
from retarget_jax.result import SolveStatus
from retarget_jax.robots import integrate
from retarget_jax.rotations import quat_exp, quat_mul, quat_to_mat
from retarget_jax.solve import costs, linalg
from retarget_jax.solve.batch import (
    _solve_batch_jit,
    pad_problem,
    solve_batch,
    stack_problems,
    unstack_clip,
)
from retarget_jax.solve.gauss_newton import SolverOptions, initial_guess, solve, upsample

BUCKET = 64
T_GRAD = 12


def tight_options(**kw) -> SolverOptions:
    """Options that converge to round-off (every stopping tolerance the solver has, tiny)."""
    fields = {f.name for f in dataclasses.fields(SolverOptions)}
    tols = {name: 1e-12 for name in ("rtol", "step_tol") if name in fields}
    return SolverOptions(**{"max_iters": 60, **tols, **kw})


def replace_clip(problem, **arrays):
    names = tuple(arrays)
    return eqx.tree_at(lambda p: tuple(getattr(p.clip, n) for n in names), problem, tuple(arrays[n] for n in names))


# ---------------------------------------------------------------------------------------
# Shared float32 problems and one compiled batch


@pytest.fixture(scope="module")
def motions():
    """Three clips that fit bucket 64: a walk, the same walk sampled at 24 fps from a later
    phase (a different speed per frame), and another phase of the 30 fps walk."""
    return {
        "a": demo_motion(num_frames=40),
        "b": demo_motion(num_frames=60, fps=24.0).slice(8, 60),
        "c": demo_motion(num_frames=50).slice(10, 50),
    }


@pytest.fixture(scope="module")
def problems(motions, g1, lafan1_g1_recipe):
    return {k: compile_problem(RetargetingProblem(m, lafan1_g1_recipe, g1)) for k, m in motions.items()}


def make_batch(*clips):
    return stack_problems([pad_problem(p, BUCKET) for p in clips])


@pytest.fixture(scope="module")
def batch_abc(problems):
    return make_batch(problems["a"], problems["b"], problems["c"])


@pytest.fixture(scope="module")
def out_abc(batch_abc):
    return jax.device_get(solve_batch(batch_abc))


@pytest.fixture(scope="module")
def solve_one():
    return eqx.filter_jit(solve)


# ---------------------------------------------------------------------------------------
# Float64 problem (short, unpadded) for derivatives


@pytest.fixture(scope="module")
def p64(g1, lafan1_g1_recipe):
    with jax.enable_x64(True):
        return compile_problem(
            RetargetingProblem(demo_motion(num_frames=T_GRAD), lafan1_g1_recipe, g1), dtype=jnp.float64
        )


def nontrivial_qpos(problem, t, rng):
    """A configuration near frame t's initial guess, with a root rotated by ~0.5 rad and
    joints spread across their ranges (eager, outside jit)."""
    tpos, tquat = costs.targets(problem)
    q = initial_guess(problem, tpos, tquat)[t]
    lo, hi = np.asarray(problem.robot.q_lower), np.asarray(problem.robot.q_upper)
    joints = np.clip(np.asarray(q[7:]) + rng.normal(scale=0.4, size=lo.shape), lo + 0.05, hi - 0.05)
    omega = rng.normal(size=3)
    omega *= 0.5 / np.linalg.norm(omega)
    root_quat = quat_mul(q[3:7], quat_exp(jnp.asarray(omega)))
    root_pos = q[:3] + jnp.asarray(rng.normal(scale=0.05, size=3))
    return jnp.concatenate([root_pos, root_quat, jnp.asarray(joints)]), tpos[t], tquat[t]


def active_everywhere(problem):
    """The problem with every plausibility row active: a sloped terrain above the feet
    (ground rows, with a terrain gradient), self-collision margins of 0.3 m, feet in
    stance, and joint speed limits low enough to be exceeded."""
    dt = problem.clip.human_pos.dtype
    x = jnp.arange(6, dtype=dt)[:, None]
    y = jnp.arange(6, dtype=dt)[None, :]
    terrain = eqx.tree_at(
        lambda h: (h.heights, h.origin, h.cell),
        problem.clip.terrain,
        (0.25 + 0.08 * x - 0.05 * y + 0.01 * x * y, jnp.asarray([-1.3, -1.2], dt), jnp.asarray(0.5, dt)),
    )
    p = replace_clip(
        problem,
        terrain=terrain,
        stance=jnp.ones_like(problem.clip.stance),
        velocity_limit=jnp.full_like(problem.clip.velocity_limit, 0.5),
        limb_weight=jnp.full_like(problem.clip.limb_weight, 0.7),
    )
    return eqx.tree_at(lambda q: q.robot.collision.margin, p, jnp.asarray(0.3, dt))


def _frame_jacobian_and_fd(problem, q, tp, tq, eps):
    ones = lambda k: jnp.ones(k, q.dtype)  # noqa: E731
    L = len(problem.limb_body)
    hdir = costs.frame_masks(problem)[5][0]  # the human's limb directions of frame 0
    mask = (
        ones(()),
        ones(len(problem.pos_body)),
        ones(len(problem.rot_body)),
        ones(problem.clip.stance.shape[1]),
        ones(L),
        hdir,
    )
    r, J = costs.frame_residual(problem, q, tp, tq, mask, jacobian=True)
    f = lambda d: costs.frame_residual(problem, integrate(q, d), tp, tq, mask, jacobian=False)  # noqa: E731
    nv = q.shape[0] - 1
    E = eps * jnp.eye(nv, dtype=q.dtype)
    r_pm = jax.vmap(f)(jnp.concatenate([E, -E]))  # one traced FK, not two
    J_fd = (r_pm[:nv] - r_pm[nv:]).T / (2 * eps)
    # orientation residuals (log maps) of this configuration, to keep away from angle pi
    Kp, Kr = len(problem.pos_body), len(problem.rot_body)
    e = r[3 * Kp : 3 * Kp + 3 * Kr].reshape(Kr, 3) / jnp.sqrt(problem.clip.rot_weight)[:, None]
    return r, J, J_fd, jnp.linalg.norm(e, axis=-1)


def test_frame_residual_jacobian_matches_manifold_fd(p64, x64):
    rng = np.random.default_rng(0)
    check = eqx.filter_jit(_frame_jacobian_and_fd)
    p = active_everywhere(p64)
    col = p.robot.collision
    Kp, Kr, n = len(p.pos_body), len(p.rot_body), 29
    P, Ks, C, L = col.point_pos.shape[0], len(p.sole_body), col.num_pairs, len(p.limb_body)
    assert L == 9  # every limb of the recipe has direction rows
    for t in (0, 5, T_GRAD - 1):
        q, tp, tq = nontrivial_qpos(p, t, rng)
        r, J, J_fd, angles = (np.asarray(a) for a in check(p, q, tp, tq, 1e-6))
        assert angles.max() < 2.5, "test configuration too close to a log-map singularity"
        assert angles.max() > 0.1  # and far from the trivial one
        assert J.shape == (Kp * 3 + Kr * 3 + n + P + Ks + C + 3 * L, 35)
        # every kind of row is exercised: some geoms below the terrain, pairs inside the margin
        start = Kp * 3 + Kr * 3 + n
        ground, contact = r[start : start + P], r[start + P : start + P + Ks]
        pairs, limbs = r[start + P + Ks : start + P + Ks + C], r[start + P + Ks + C :]
        assert (ground != 0).sum() >= 5 and (pairs != 0).sum() >= 3 and (contact != 0).all()
        assert (np.abs(limbs.reshape(L, 3)).sum(axis=1) > 1e-3).all()
        scale = max(1.0, np.abs(J_fd).max())
        np.testing.assert_allclose(J, J_fd, rtol=0, atol=1e-6 * scale)


def _features(problem, q):
    from retarget_jax.robots import body_frames

    soles, Js = costs.sole_points(problem, body_frames(problem.robot.tree, q), jacobian=True)
    return soles[:, :2], Js[:, :2, :]


def _pair_jacobians_and_fd(problem, q0, q1, eps):
    m = (jnp.ones((), q0.dtype), jnp.ones(problem.clip.stance.shape[1], q0.dtype))
    r, A, B = costs.pair_residual(problem, q0, q1, _features(problem, q0), _features(problem, q1), m, jacobian=True)
    nv = q0.shape[0] - 1
    E = eps * jnp.eye(nv, dtype=q0.dtype)
    Z = jnp.zeros_like(E)

    def f(d0, d1):
        x0, x1 = integrate(q0, d0), integrate(q1, d1)
        return costs.pair_residual(problem, x0, x1, _features(problem, x0), _features(problem, x1), m, jacobian=False)

    rr = jax.vmap(f)(jnp.concatenate([E, -E, Z, Z]), jnp.concatenate([Z, Z, E, -E]))
    A_fd = (rr[:nv] - rr[nv : 2 * nv]).T / (2 * eps)
    B_fd = (rr[2 * nv : 3 * nv] - rr[3 * nv :]).T / (2 * eps)
    return r, A, B, A_fd, B_fd


def test_pair_residual_jacobians_match_manifold_fd(p64, x64):
    rng = np.random.default_rng(1)
    check = eqx.filter_jit(_pair_jacobians_and_fd)
    p = active_everywhere(p64)
    for t in (2, 7):
        q0, _, _ = nontrivial_qpos(p, t, rng)
        step = jnp.asarray(rng.normal(scale=0.3, size=35))
        q1 = integrate(q0, step)
        r, A, B, A_fd, B_fd = (np.asarray(a) for a in check(p, q0, q1, 1e-6))
        nv, Ks = 35, len(p.sole_body)
        assert (r[nv : nv + 2 * Ks] != 0).all()  # the feet slide ...
        assert (r[nv + 2 * Ks :] != 0).sum() >= 5  # ... and joints exceed their speed limits
        scale = max(1.0, np.abs(A_fd).max())
        np.testing.assert_allclose(A, A_fd, rtol=0, atol=1e-6 * scale)
        np.testing.assert_allclose(B, B_fd, rtol=0, atol=1e-6 * scale)
        assert np.abs(A[3:6, 3:6] + np.eye(3)).max() > 1e-2  # the root rotation block is not trivial


def _triple_jacobians_and_fd(problem, q0, q1, q2, eps):
    m = jnp.ones((), q0.dtype)
    r, A0, A1, A2 = costs.triple_residual(problem, q0, q1, q2, m, jacobian=True)
    nv = q0.shape[0] - 1
    E = eps * jnp.eye(nv, dtype=q0.dtype)
    Z = jnp.zeros_like(E)

    def f(d0, d1, d2):
        x0, x1, x2 = integrate(q0, d0), integrate(q1, d1), integrate(q2, d2)
        return costs.triple_residual(problem, x0, x1, x2, m, jacobian=False)

    rr = jax.vmap(f)(
        jnp.concatenate([E, -E, Z, Z, Z, Z]), jnp.concatenate([Z, Z, E, -E, Z, Z]), jnp.concatenate([Z, Z, Z, Z, E, -E])
    )
    fd = [(rr[2 * k * nv : (2 * k + 1) * nv] - rr[(2 * k + 1) * nv : (2 * k + 2) * nv]).T / (2 * eps) for k in range(3)]
    return r, (A0, A1, A2), fd


def test_triple_residual_jacobians_match_manifold_fd(p64, x64):
    rng = np.random.default_rng(4)
    q0, _, _ = nontrivial_qpos(p64, 3, rng)
    q1 = integrate(q0, jnp.asarray(rng.normal(scale=0.3, size=35)))
    q2 = integrate(q1, jnp.asarray(rng.normal(scale=0.3, size=35)))
    r, Js, fds = jax.device_get(eqx.filter_jit(_triple_jacobians_and_fd)(p64, q0, q1, q2, 1e-6))
    assert np.abs(r).max() > 1e-3
    for J, fd in zip(Js, fds, strict=True):
        scale = max(1.0, np.abs(fd).max())
        np.testing.assert_allclose(J, fd, rtol=0, atol=1e-6 * scale)


def test_normal_equations_match_the_dense_gauss_newton_system(p64, x64):
    """D, L1, L2 and g assembled per frame, pair and triple equal J^T J and J^T r of the
    whole trajectory's stacked residual, built densely by autodiff."""
    p = active_everywhere(p64)
    tpos, tquat = costs.targets(p)
    rng = np.random.default_rng(5)
    q = jnp.stack([nontrivial_qpos(p, t, rng)[0] for t in range(T_GRAD)])
    D, L1, L2, g, cost = jax.device_get(eqx.filter_jit(costs.normal_equations)(p, q, tpos, tquat))
    nv = q.shape[1] - 1

    def residual(delta):
        x = jax.vmap(integrate)(q, delta.reshape(T_GRAD, nv))
        mk = costs.frame_masks(p)
        r, (xy, _) = jax.vmap(lambda a, b, c, m: costs.frame_residual(p, a, b, c, m, jacobian=False, features=True))(
            x, tpos, tquat, mk
        )
        rp = jax.vmap(lambda a, b, fa, fb, m: costs.pair_residual(p, a, b, (fa, None), (fb, None), m, jacobian=False))(
            x[:-1], x[1:], xy[:-1], xy[1:], costs.pair_masks(p)
        )
        ra = jax.vmap(lambda a, b, c, m: costs.triple_residual(p, a, b, c, m, jacobian=False))(
            x[:-2], x[1:-1], x[2:], costs.triple_masks(p)
        )
        return jnp.concatenate([r.ravel(), rp.ravel(), ra.ravel()])

    z = jnp.zeros(T_GRAD * nv, q.dtype)
    r = np.asarray(residual(z))
    Jd = np.asarray(jax.jit(jax.jacfwd(residual))(z))
    H = Jd.T @ Jd
    blk = lambda i, j: H[i * nv : (i + 1) * nv, j * nv : (j + 1) * nv]  # noqa: E731
    tol = 1e-8 * max(1.0, np.abs(H).max())
    assert cost == pytest.approx(float(r @ r), rel=1e-10)
    np.testing.assert_allclose(g.reshape(-1), Jd.T @ r, atol=1e-8 * max(1.0, np.abs(Jd.T @ r).max()))
    for t in range(T_GRAD):
        np.testing.assert_allclose(D[t], blk(t, t), atol=tol)
        if t >= 1:
            np.testing.assert_allclose(L1[t], blk(t, t - 1), atol=tol)
        if t >= 2:
            np.testing.assert_allclose(L2[t], blk(t, t - 2), atol=tol)
            assert np.abs(L2[t]).max() > 0  # the acceleration terms couple frames two apart
    assert np.abs(H[3 * nv :, :nv]).max() == 0  # and nothing further


def test_block_tridiag_solve_matches_dense(x64):
    rng = np.random.default_rng(2)
    T, n = 9, 5
    # H = M^T M + 0.1 I with M block-bidiagonal is SPD and block-tridiagonal
    M = np.zeros((T * n, T * n))
    for t in range(T):
        M[t * n : (t + 1) * n, t * n : (t + 1) * n] = rng.normal(size=(n, n))
        if t:
            M[t * n : (t + 1) * n, (t - 1) * n : t * n] = rng.normal(size=(n, n))
    H = M.T @ M + 0.1 * np.eye(T * n)
    D = np.stack([H[t * n : (t + 1) * n, t * n : (t + 1) * n] for t in range(T)])
    L = np.zeros_like(D)
    for t in range(1, T):
        L[t] = H[t * n : (t + 1) * n, (t - 1) * n : t * n]
    assert np.abs(L[1:]).max() > 0.1
    b = rng.normal(size=(T, n))
    x = np.asarray(jax.jit(linalg.block_tridiag_solve)(jnp.asarray(D), jnp.asarray(L), jnp.asarray(b)))
    x_ref = np.linalg.solve(H, b.reshape(-1)).reshape(T, n)
    np.testing.assert_allclose(x, x_ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(
        np.asarray(linalg.block_tridiag_matvec(jnp.asarray(D), jnp.asarray(L), jnp.asarray(x))), b, atol=1e-9
    )


@pytest.mark.parametrize("T", [8, 9])
def test_block_banded_solve_matches_dense(x64, T):
    """Block-pentadiagonal (frames up to two apart coupled), even and odd T."""
    rng = np.random.default_rng(6)
    n = 4
    M = np.zeros((T * n, T * n))  # block lower-bidiagonal with a second sub-diagonal
    for t in range(T):
        for k in range(3):
            if t - k >= 0:
                M[t * n : (t + 1) * n, (t - k) * n : (t - k + 1) * n] = rng.normal(size=(n, n))
    H = M.T @ M + 0.1 * np.eye(T * n)  # SPD, bandwidth 4 frames: keep the pentadiagonal part
    for i in range(T):
        for j in range(T):
            if abs(i - j) > 2:
                H[i * n : (i + 1) * n, j * n : (j + 1) * n] = 0.0
    H += 10.0 * np.eye(T * n)  # still SPD after truncation
    blk = lambda i, j: H[i * n : (i + 1) * n, j * n : (j + 1) * n]  # noqa: E731
    D = np.stack([blk(t, t) for t in range(T)])
    L1 = np.stack([blk(t, t - 1) if t >= 1 else np.zeros((n, n)) for t in range(T)])
    L2 = np.stack([blk(t, t - 2) if t >= 2 else np.zeros((n, n)) for t in range(T)])
    b = rng.normal(size=(T, n))
    x = np.asarray(jax.jit(linalg.block_banded_solve)(*(jnp.asarray(a) for a in (D, L1, L2, b))))
    np.testing.assert_allclose(x, np.linalg.solve(H, b.reshape(-1)).reshape(T, n), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(
        np.asarray(linalg.block_banded_matvec(*(jnp.asarray(a) for a in (D, L1, L2, x)))), b, atol=1e-9
    )


# ---------------------------------------------------------------------------------------
# Solution gradient (implicit differentiation) vs finite differences of re-solves


def test_solution_gradient_matches_finite_differences(p64, g1, x64):
    opts = tight_options()
    solve_fn = eqx.filter_jit(solve)
    out = solve_fn(p64, opts)
    # a bucket this short has no coarse level and spends both budgets at full rate
    assert int(out.status) == SolveStatus.CONVERGED and int(out.iterations) < opts.max_iters + opts.coarse_iters
    qstar = np.asarray(out.qpos)
    lo, hi = np.asarray(p64.robot.q_lower), np.asarray(p64.robot.q_upper)
    dist = np.minimum(qstar[:, 7:] - lo, hi - qstar[:, 7:])
    # A joint close to, but not on, a bound could be pushed onto it by a finite-difference
    # step (a kink the implicit VJP does not see); joints on a bound are held in both.
    assert not np.any((dist > 1e-9) & (dist < 1e-3)), "a joint is near a bound; pick another clip"

    rng = np.random.default_rng(3)
    w_joint = rng.normal(size=(T_GRAD, g1.num_dof))
    w_root = rng.normal(size=(T_GRAD, 3))
    ct_joint = np.zeros_like(qstar)
    ct_joint[:, 7:] = w_joint
    ct_root = np.zeros_like(qstar)
    ct_root[:, :3] = w_root

    # jax.grad of s(theta) = <w, qpos*(theta)> for both weightings, through the custom VJP
    # (run eagerly: one jit of the whole backward pass is a very long XLA compile on CPU)
    diff, static = eqx.partition(p64, eqx.is_inexact_array)
    qpos, vjp_fn = jax.vjp(lambda d: solve(eqx.combine(d, static), opts).qpos, diff)
    np.testing.assert_allclose(np.asarray(qpos), qstar, atol=1e-12)
    (g_joint,) = vjp_fn(jnp.asarray(ct_joint))
    (g_root,) = vjp_fn(jnp.asarray(ct_root))

    pelvis, knee, wrist = (DEMO_JOINTS.index(HumanJoint(j)) for j in ("pelvis", "left_knee", "left_wrist"))
    cases = [  # (field, index, step)
        ("human_pos", (5, pelvis, 0), 1e-4),
        ("human_pos", (3, knee, 2), 1e-4),
        ("human_pos", (8, wrist, 1), 1e-4),
        # weights are O(1): a 1e-3 step keeps the difference of two converged solves well
        # above their convergence noise (at 1e-4, pos_weight[6]'s FD moved by 2e-3 relative
        # between steps while the 1e-3 step agreed with the implicit gradient to 7e-5)
        ("pos_weight", (0,), 1e-3),
        ("pos_weight", (6,), 1e-3),
        ("pos_weight", (12,), 1e-3),
        ("root_scale", (), 1e-5),
        ("bone_scale", (knee,), 1e-5),
        ("bone_scale", (wrist,), 1e-5),
        ("limb_weight", (4,), 1e-3),  # the left upper arm's direction term
    ]
    for field, idx, eps in cases:
        base = getattr(p64.clip, field)

        def solved(sign, base=base, field=field, idx=idx, eps=eps):
            p = replace_clip(p64, **{field: base.at[idx].add(sign * eps)})
            o = solve_fn(p, opts)
            assert int(o.status) == SolveStatus.CONVERGED
            return np.asarray(o.qpos)

        dq = (solved(+1) - solved(-1)) / (2 * eps)
        for name, ct, grad in (("joints", ct_joint, g_joint), ("root position", ct_root, g_root)):
            fd = float(np.sum(ct * dq))
            ad = float(np.asarray(getattr(grad.clip, field))[idx])
            assert abs(fd) > 1e-6, f"{field}{idx}: vacuous finite difference for {name}"
            assert ad == pytest.approx(fd, rel=1e-3, abs=1e-7), f"d<w, {name}>/d {field}{idx}"


# ---------------------------------------------------------------------------------------
# Batching, padding, retracing


def test_bucket_length():
    assert bucket_length(40) == 64 and bucket_length(64) == 64 and bucket_length(65) == 128


def test_padded_batch_equals_clips_solved_one_by_one(problems, out_abc, solve_one):
    from retarget_jax.arrays import annotation_errors

    assert annotation_errors(out_abc.solve) == []  # a real batched output fits SolveOutput's annotations
    for i, (key, T) in enumerate((("a", 40), ("b", 52), ("c", 40))):
        assert problems[key].num_frames == T
        alone = solve_one(problems[key], SolverOptions())
        assert int(out_abc.solve.status[i]) == int(alone.status), key
        # float32: the batched and single programs reduce in different orders, and the stiff
        # plausibility penalties amplify round-off to ~1e-4; in float64 padding is exact
        # (test_padding_is_exact_in_float64)
        np.testing.assert_allclose(out_abc.solve.qpos[i, :T], np.asarray(alone.qpos), atol=5e-4, rtol=0, err_msg=key)
        np.testing.assert_allclose(out_abc.solve.cost[i], float(alone.cost), rtol=1e-3)


def test_padding_is_exact_in_float64(p64, x64):
    """A clip padded with masked frames solves to the same trajectory as the clip alone."""
    solve_fn = eqx.filter_jit(solve)
    alone = solve_fn(p64, tight_options())
    padded = solve_fn(pad_problem(p64, 16), tight_options())
    assert int(alone.iterations) == int(padded.iterations)
    np.testing.assert_allclose(np.asarray(padded.qpos)[:T_GRAD], np.asarray(alone.qpos), atol=1e-10, rtol=0)


def test_padding_frames_are_never_stepped(out_abc):
    """Padded frames repeat the last real frame's targets and have mask 0: they keep the
    (identical) initial guess, whatever the real frames do."""
    q = out_abc.solve.qpos
    assert q.shape[1] == BUCKET
    for i, T in enumerate((40, 52, 40)):
        assert np.all(np.isfinite(q[i]))
        np.testing.assert_array_equal(q[i, T:], np.broadcast_to(q[i, T], q[i, T:].shape))
        assert np.abs(q[i, T - 1] - q[i, T]).max() > 1e-4  # while the last real frame moved


def test_no_retrace_when_only_traced_values_change(batch_abc, out_abc):
    n0 = _solve_batch_jit._cache_size()
    assert n0 >= 1
    c = batch_abc.clip
    changed = replace_clip(
        batch_abc,
        pos_weight=c.pos_weight * 2.0,
        human_pos=c.human_pos + jnp.asarray([0.01, -0.02, 0.0], c.human_pos.dtype),
        smooth_weight=c.smooth_weight * 3.0,
        rot_weight=jnp.asarray(c.rot_weight).at[:, 0].set(0.0),
        root_scale=c.root_scale * 1.05,
    )
    out = jax.device_get(solve_batch(changed))
    assert _solve_batch_jit._cache_size() == n0
    assert not np.allclose(out.solve.qpos, out_abc.solve.qpos)  # the new values were used
    jax.block_until_ready(solve_batch(batch_abc, SolverOptions(rtol=1e-4, damping=1e-2)))
    assert _solve_batch_jit._cache_size() == n0


def _stance_slide_and_depths(problem, qpos):
    """Mean stance sole speed (m/s), lowest geom clearance (m), deepest pair distance (m)."""
    from retarget_jax.robots import body_frames
    from retarget_jax.robots.collision import ground_clearance, self_collision

    col = problem.robot.collision
    fk = body_frames(problem.robot.tree, qpos)
    soles = jax.vmap(lambda f: costs.sole_points(problem, f, jacobian=False)[0])(fk)
    clear = jax.vmap(lambda a, b: ground_clearance(col, a, b, problem.clip.terrain)[0])(fk.xpos, fk.xmat)
    dist = jax.vmap(lambda a, b: self_collision(col, a, b)[0])(fk.xpos, fk.xmat)
    _, stance = costs.pair_masks(problem)
    st = np.asarray(stance)[:, np.asarray(problem.sole_foot)]
    v = np.linalg.norm(np.diff(np.asarray(soles)[..., :2], axis=0), axis=-1) * float(problem.clip.fps)
    real = np.asarray(problem.clip.frame_mask) > 0
    return float(v[st > 0].mean()), float(np.asarray(clear)[real].min()), float(np.asarray(dist)[real].min())


def test_plausibility_terms_act_and_switch_off_without_recompiling(batch_abc, out_abc, problems):
    """Zeroing the plausibility weights is a traced change (no new compile) that brings back
    the plain tracking solution; with them on, stance feet slide less and nothing sinks."""
    n0 = _solve_batch_jit._cache_size()
    c = batch_abc.clip
    zero = lambda a: jnp.zeros_like(a)  # noqa: E731
    off = replace_clip(
        batch_abc,
        accel_weight=zero(c.accel_weight),
        ground_weight=zero(c.ground_weight),
        contact_height_weight=zero(c.contact_height_weight),
        contact_slide_weight=zero(c.contact_slide_weight),
        self_collision_weight=zero(c.self_collision_weight),
        velocity_weight=zero(c.velocity_weight),
    )
    out_off = jax.device_get(solve_batch(off))
    assert _solve_batch_jit._cache_size() == n0
    for i, key in enumerate(("a", "b", "c")):
        p = problems[key]
        T = p.num_frames
        assert float(np.asarray(p.clip.stance).mean()) > 0.3  # the walk has planted feet
        slide_on, clear_on, dist_on = _stance_slide_and_depths(p, out_abc.solve.qpos[i, :T])
        slide_off, _, _ = _stance_slide_and_depths(p, out_off.solve.qpos[i, :T])
        assert slide_on < 0.7 * slide_off, key
        assert clear_on > -0.01 and dist_on > -0.01, key
        assert not np.allclose(out_off.solve.qpos[i], out_abc.solve.qpos[i], atol=1e-3)


def test_nan_clip_is_isolated_from_batch_mates(problems, motions, g1, lafan1_g1_recipe):
    m = motions["a"]
    pos = m.positions.copy()
    pos[10, m.index("left_wrist")] = np.nan
    bad = compile_problem(RetargetingProblem(dataclasses.replace(m, positions=pos), lafan1_g1_recipe, g1))
    with_nan = jax.device_get(solve_batch(make_batch(problems["a"], bad, problems["c"])))
    reference = jax.device_get(solve_batch(make_batch(problems["a"], problems["a"], problems["c"])))
    assert int(with_nan.solve.status[1]) == SolveStatus.INVALID_INPUT
    assert all(SolveStatus.ok(int(with_nan.solve.status[i])) for i in (0, 2))
    assert np.all(np.isfinite(with_nan.solve.qpos[1]))
    for i in (0, 2):
        for a, b in zip(jax.tree.leaves(with_nan), jax.tree.leaves(reference), strict=True):
            assert np.array_equal(a[i], b[i]), f"clip {i} changed by its NaN batch-mate"


def test_joints_stay_in_range_for_unreachable_targets(problems, g1, motions):
    """Targets that ask for out-of-range poses: a knee bent 40 degrees backwards with the
    foot rolled 60 degrees outwards, and a hand 2 m away."""
    m = motions["a"]
    hip, knee, ankle, toe, wrist = (
        m.index(j) for j in ("left_hip", "left_knee", "left_ankle", "left_toe", "left_wrist")
    )
    pos = np.array(problems["a"].clip.human_pos, np.float64)
    thigh = pos[:, knee] - pos[:, hip]
    u = thigh / np.linalg.norm(thigh, axis=-1, keepdims=True)
    fwd = np.array([1.0, 0.0, 0.0]) - u[:, :1] * u  # forward, perpendicular to the thigh
    fwd /= np.linalg.norm(fwd, axis=-1, keepdims=True)
    shin = np.linalg.norm(pos[:, ankle] - pos[:, knee], axis=-1, keepdims=True)
    a = np.radians(40.0)
    new_ankle = pos[:, knee] + shin * (np.cos(a) * u + np.sin(a) * fwd)  # the shin bent forward
    pos[:, toe] += new_ankle - pos[:, ankle]
    pos[:, ankle] = new_ankle
    quat = np.array(problems["a"].clip.human_quat, np.float64)
    roll = np.array([np.cos(np.radians(30.0)), np.sin(np.radians(30.0)), 0.0, 0.0])  # 60 deg about world x
    quat[:, ankle] = np.asarray(quat_mul(roll, quat[:, ankle]))
    hyper = replace_clip(
        problems["a"], human_pos=jnp.asarray(pos, jnp.float32), human_quat=jnp.asarray(quat, jnp.float32)
    )
    pos2 = np.array(problems["a"].clip.human_pos, np.float64)
    pos2[:, wrist] += [0.0, 2.0, 1.0]
    far = replace_clip(problems["a"], human_pos=jnp.asarray(pos2, jnp.float32))

    out = jax.device_get(solve_batch(make_batch(hyper, far, problems["c"])))
    assert all(SolveStatus.ok(s) for s in out.solve.status)
    lo, hi = g1.dof_ranges[:, 0].astype(np.float32), g1.dof_ranges[:, 1].astype(np.float32)
    q = out.solve.qpos[..., 7:]
    assert np.all(q >= lo) and np.all(q <= hi)
    # the bounds are really active: the ankle roll rests on a limit in most frames
    at_bound = (q <= lo + 1e-6) | (q >= hi - 1e-6)
    k = g1.dof_index("left_ankle_roll_joint")
    assert np.mean(at_bound[0, :40, k]) > 0.5, q[0, :40, k]


def test_converges_and_lowers_cost(batch_abc, out_abc):
    @eqx.filter_jit
    def initial_cost(problem):
        # the solver's starting point (initial guess, joints projected into range)
        tpos, tquat = costs.targets(problem)
        q0 = initial_guess(problem, tpos, tquat)
        q0 = q0.at[:, 7:].set(jnp.clip(q0[:, 7:], problem.robot.q_lower, problem.robot.q_upper))
        return costs.total_cost(problem, q0) / jnp.sum(problem.clip.frame_mask)

    # the default schedule (a fixed number of full-rate iterations after the coarse level)
    # ends in an ok status: converged, or max_iterations when its last step still helped
    assert all(SolveStatus.ok(int(s)) for s in out_abc.solve.status), out_abc.solve.status
    for i in range(3):
        c0 = float(initial_cost(unstack_clip(batch_abc, i)))  # padded: one compile for all three
        assert np.isfinite(c0) and 0 < out_abc.solve.cost[i] < 0.5 * c0, (i, c0, out_abc.solve.cost[i])
        # a 64-frame bucket is below coarse_min_frames: full rate only, both budgets
        assert 1 <= out_abc.solve.iterations[i] <= SolverOptions().max_iters + SolverOptions().coarse_iters


def test_demo_walk_is_upright_with_feet_on_the_ground(out_abc, g1):
    pelvis = g1.body_index("pelvis")
    feet = [g1.body_index(f"{s}_ankle_roll_link") for s in ("left", "right")]
    for i, T in enumerate((40, 52, 40)):
        R = quat_to_mat(out_abc.body_quat_w[i, :T, pelvis])
        up = R[:, 2, 2]  # pelvis z axis . world z
        assert up.min() > 0.8, (i, up.min())
        for f in feet:
            z = out_abc.body_pos_w[i, :T, f, 2]
            assert 0.0 <= z.min() <= 0.08, (i, g1.body_names[f], z.min())
        # body poses returned with the batch are FK of the solved qpos
        np.testing.assert_allclose(out_abc.body_pos_w[i, :T, pelvis], out_abc.solve.qpos[i, :T, :3], atol=1e-6)


def test_upsample_interpolates_between_coarse_frames():
    """Root position and joints linear between coarse frames, the root quaternion a
    normalised blend taken in one hemisphere, held after the last real coarse frame."""
    rng = np.random.default_rng(3)
    Tc, s, nq = 5, 4, 9
    qc = rng.normal(size=(Tc, nq)).astype(np.float32)
    quats = rng.normal(size=(Tc, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    quats[2] *= -1 if quats[1] @ quats[2] > 0 else 1  # frames 1 and 2 in opposite hemispheres
    qc[:, 3:7] = quats
    mask = np.array([1, 1, 1, 1, 0], np.float32)  # coarse frame 4 is padding
    up = np.asarray(upsample(jnp.asarray(qc), jnp.asarray(mask), s, Tc * s))
    for t in range(Tc * s):
        i, f = t // s, (t % s) / s
        j = i + 1 if i + 1 < Tc and mask[min(i + 1, Tc - 1)] > 0 else i
        f = f if j > i else 0.0
        want = qc[i] + f * (qc[j] - qc[i])
        np.testing.assert_allclose(np.delete(up[t], slice(3, 7)), np.delete(want, slice(3, 7)), atol=1e-6)
        qb = qc[j, 3:7] if qc[i, 3:7] @ qc[j, 3:7] >= 0 else -qc[j, 3:7]
        blend = qc[i, 3:7] + f * (qb - qc[i, 3:7])
        np.testing.assert_allclose(up[t, 3:7], blend / np.linalg.norm(blend), atol=1e-6)
    np.testing.assert_allclose(up[::s], qc, atol=1e-6)


def test_two_level_solve_reaches_the_full_rate_optimum(problems):
    """The coarse level (the demo walk at a quarter of its rate) then two full-rate
    iterations end within 2% of the cost of a long full-rate solve from the default pose;
    coarse_min_frames is lowered so that this 64-frame bucket takes the two-level path."""
    p = pad_problem(problems["a"], BUCKET)
    two = eqx.filter_jit(solve)(p, SolverOptions(coarse_min_frames=32))
    full = eqx.filter_jit(solve)(p, SolverOptions(coarse_iters=0, max_iters=60, rtol=1e-7, step_tol=1e-7))
    assert SolveStatus.ok(int(two.status)) and SolveStatus.ok(int(full.status))
    assert int(two.iterations) == SolverOptions().max_iters
    assert float(two.cost) <= 1.02 * float(full.cost), (float(two.cost), float(full.cost))
