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
