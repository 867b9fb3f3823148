"""Block-tridiagonal and block-pentadiagonal SPD solves (jit code).

The normal equations of a whole-trajectory problem couple each frame only with its
neighbours (velocity terms), so the (T*nv x T*nv) system is block-tridiagonal:
diagonal blocks D_t (nv x nv) and sub-diagonal blocks L_t coupling frame t with t-1.
A block LDL^T (block Thomas) sweep solves it in O(T nv^3) with T small Cholesky
factorisations, never forming the dense matrix:

    S_0 = D_0,   S_t = D_t - L_t S_{t-1}^-1 L_t^T,      z_t = b_t - L_t S_{t-1}^-1 z_{t-1}
    x_{T-1} = S_{T-1}^-1 z_{T-1},   x_t = S_t^-1 (z_t - L_{t+1}^T x_{t+1}).

The solver's system (acceleration terms couple frames two apart) is block-pentadiagonal;
:func:`block_banded_solve` factorises it directly with n x n blocks (about 2.3x fewer
flops than pairing frames into 2n x 2n blocks of a tridiagonal system).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_factor, cho_solve, solve_triangular


def block_tridiag_solve(D: jnp.ndarray, L: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Solve the SPD block-tridiagonal system. D, L: (T, n, n) (L[0] unused); b: (T, n)."""

    def fwd(carry, inp):
        c_prev, z_prev = carry
        D_t, L_t, b_t = inp
        X = cho_solve((c_prev, True), L_t.T).T  # L_t S_{t-1}^-1
        S_t = D_t - X @ L_t.T
        S_t = 0.5 * (S_t + S_t.T)
        c_t = cho_factor(S_t, lower=True)[0]
        z_t = b_t - X @ z_prev
        return (c_t, z_t), (c_t, z_t)

    c0 = cho_factor(D[0], lower=True)[0]
    (_, _), (cs, zs) = jax.lax.scan(fwd, (c0, b[0]), (D[1:], L[1:], b[1:]))
    cs = jnp.concatenate([c0[None], cs], axis=0)
    zs = jnp.concatenate([b[:1], zs], axis=0)

    def bwd(x_next, inp):
        c_t, z_t, L_next = inp
        x_t = cho_solve((c_t, True), z_t - L_next.T @ x_next)
        return x_t, x_t

    x_last = cho_solve((cs[-1], True), zs[-1])
    L_next = L[1:]  # L_next[t] couples t+1 with t
    _, xs = jax.lax.scan(bwd, x_last, (cs[:-1], zs[:-1], L_next), reverse=True)
    return jnp.concatenate([xs, x_last[None]], axis=0)


def block_tridiag_matvec(D: jnp.ndarray, L: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """y = H x for the symmetric block-tridiagonal H given by D and L (used in tests)."""
    y = jnp.einsum("tij,tj->ti", D, x)
    y = y.at[1:].add(jnp.einsum("tij,tj->ti", L[1:], x[:-1]))
    y = y.at[:-1].add(jnp.einsum("tji,tj->ti", L[1:], x[1:]))
    return y


def _super_blocks(D, L1, L2):
    """Pair frames (2s, 2s+1) into super-blocks of size 2n: a block-pentadiagonal matrix
    (bandwidth 2 frames) is block-tridiagonal in super-blocks. T must be even.

    Super-diagonal S_s = [[D_2s, L1_{2s+1}^T], [L1_{2s+1}, D_{2s+1}]]; the super block
    coupling s with s-1 holds H[2s, 2s-2] = L2_2s, H[2s, 2s-1] = L1_2s,
    H[2s+1, 2s-2] = 0 (three frames apart), H[2s+1, 2s-1] = L2_{2s+1}.
    """
    T, n, _ = D.shape
    De, Do = D[0::2], D[1::2]
    L1e, L1o = L1[0::2], L1[1::2]
    L2e, L2o = L2[0::2], L2[1::2]
    Sd = jnp.concatenate(
        [jnp.concatenate([De, jnp.swapaxes(L1o, 1, 2)], axis=2), jnp.concatenate([L1o, Do], axis=2)], axis=1
    )
    Sl = jnp.concatenate(
        [jnp.concatenate([L2e, L1e], axis=2), jnp.concatenate([jnp.zeros_like(L2o), L2o], axis=2)], axis=1
    )
    return Sd, Sl


def block_banded_solve(D: jnp.ndarray, L1: jnp.ndarray, L2: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Solve the SPD block-pentadiagonal system H x = b (T frames of n unknowns).

    D (T, n, n) diagonal blocks; L1[t] = H[t, t-1] and L2[t] = H[t, t-2] (L1[0], L2[0],
    L2[1] unused). A block-banded Cholesky factorisation H = C C^T with C block lower
    triangular of bandwidth two (blocks C_tt, P_t = C_{t,t-2}, Q_t = C_{t,t-1}):

        P_t = L2_t C_{t-2}^-T,   Q_t = (L1_t - P_t Q_{t-1}^T) C_{t-1}^-T,
        C_t = chol(D_t - P_t P_t^T - Q_t Q_t^T),   y_t = C_t^-1 (b_t - Q_t y_{t-1} - P_t y_{t-2}),

    then x_t = C_t^-T (y_t - Q_{t+1}^T x_{t+1} - P_{t+2}^T x_{t+2}) backwards. One scan
    over frames each way, n x n blocks: about 7 n^3 flops per frame, the dense solve would
    be (T n)^3 / 3. Each C_t is inverted once (one triangular solve against I) and every
    other use of it is a matrix product: small triangular solves are several times slower
    per flop than products on a CPU.
    """
    T, n = b.shape
    dtype = D.dtype
    L1 = L1.at[0].set(0.0)
    L2 = L2.at[:2].set(0.0)
    # derived from the inputs (not constants) so that, under shard_map, the scan carries
    # have the inputs' varying-axis type
    zero_m = D[0] * 0.0
    eye = zero_m + jnp.eye(n, dtype=dtype)
    zero_v = b[0] * 0.0

    def fwd(carry, inp):
        Ci1, Ci2, Q1, y1, y2 = carry  # C_{t-1}^-1, C_{t-2}^-1, Q_{t-1}, y_{t-1}, y_{t-2}
        D_t, A_t, B_t, b_t = inp
        P = B_t @ Ci2.T
        Q = (A_t - P @ Q1.T) @ Ci1.T
        PQ = jnp.concatenate([P, Q], axis=1)
        S = D_t - PQ @ PQ.T
        C = jnp.linalg.cholesky(0.5 * (S + S.T))
        Ci = solve_triangular(C, eye, lower=True)
        y = Ci @ (b_t - Q @ y1 - P @ y2)
        return (Ci, Ci1, Q, y, y1), (Ci, P, Q, y)

    _, (Ci, P, Q, y) = jax.lax.scan(fwd, (eye, eye, zero_m, zero_v, zero_v), (D, L1, L2, b))
    Q_next = jnp.concatenate([Q[1:], zero_m[None]], axis=0)  # Q_{t+1}
    P_next = jnp.concatenate([P[2:], zero_m[None], zero_m[None]], axis=0)  # P_{t+2}

    def bwd(carry, inp):
        x1, x2 = carry  # x_{t+1}, x_{t+2}
        Ci_t, Qn, Pn, y_t = inp
        x = Ci_t.T @ (y_t - Qn.T @ x1 - Pn.T @ x2)
        return (x, x1), x

    _, x = jax.lax.scan(bwd, (zero_v, zero_v), (Ci, Q_next, P_next, y), reverse=True)
    return x


def block_banded_matvec(D: jnp.ndarray, L1: jnp.ndarray, L2: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """y = H x for the symmetric block-pentadiagonal H given by D, L1, L2 (tests)."""
    y = block_tridiag_matvec(D, L1, x)
    y = y.at[2:].add(jnp.einsum("tij,tj->ti", L2[2:], x[:-2]))
    y = y.at[:-2].add(jnp.einsum("tji,tj->ti", L2[2:], x[2:]))
    return y
