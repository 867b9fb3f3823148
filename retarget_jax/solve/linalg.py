"""Block-tridiagonal SPD solves (jit code).

The normal equations of a whole-trajectory problem couple each frame only with its
neighbours (velocity terms), so the (T*nv x T*nv) system is block-tridiagonal:
diagonal blocks D_t (nv x nv) and sub-diagonal blocks L_t coupling frame t with t-1.
A block LDL^T (block Thomas) sweep solves it in O(T nv^3) with T small Cholesky
factorisations, never forming the dense matrix:

    S_0 = D_0,   S_t = D_t - L_t S_{t-1}^-1 L_t^T,      z_t = b_t - L_t S_{t-1}^-1 z_{t-1}
    x_{T-1} = S_{T-1}^-1 z_{T-1},   x_t = S_t^-1 (z_t - L_{t+1}^T x_{t+1}).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_factor, cho_solve


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
    Sd = jnp.concatenate([jnp.concatenate([De, jnp.swapaxes(L1o, 1, 2)], axis=2),
                          jnp.concatenate([L1o, Do], axis=2)], axis=1)
    Sl = jnp.concatenate([jnp.concatenate([L2e, L1e], axis=2),
                          jnp.concatenate([jnp.zeros_like(L2o), L2o], axis=2)], axis=1)
    return Sd, Sl


def block_banded_solve(D: jnp.ndarray, L1: jnp.ndarray, L2: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Solve the SPD block-pentadiagonal system H x = b (T frames of n unknowns).

    D (T, n, n) diagonal blocks; L1[t] = H[t, t-1] and L2[t] = H[t, t-2] (L1[0], L2[0],
    L2[1] unused). Frames are paired into 2n super-blocks (an odd T gets one identity
    frame appended) and solved by :func:`block_tridiag_solve`: O(T (2n)^3).
    """
    T, n = b.shape
    if T % 2:
        eye = jnp.eye(n, dtype=D.dtype)[None]
        D = jnp.concatenate([D, eye], axis=0)
        L1 = jnp.concatenate([L1, jnp.zeros_like(eye)], axis=0)
        L2 = jnp.concatenate([L2, jnp.zeros_like(eye)], axis=0)
        b = jnp.concatenate([b, jnp.zeros((1, n), b.dtype)], axis=0)
    L1 = L1.at[0].set(0.0)
    L2 = L2.at[:2].set(0.0)
    Sd, Sl = _super_blocks(D, L1, L2)
    x = block_tridiag_solve(Sd, Sl, b.reshape(-1, 2 * n))
    return x.reshape(-1, n)[:T]


def block_banded_matvec(D: jnp.ndarray, L1: jnp.ndarray, L2: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """y = H x for the symmetric block-pentadiagonal H given by D, L1, L2 (tests)."""
    y = block_tridiag_matvec(D, L1, x)
    y = y.at[2:].add(jnp.einsum("tij,tj->ti", L2[2:], x[:-2]))
    y = y.at[:-2].add(jnp.einsum("tji,tj->ti", L2[2:], x[2:]))
    return y
