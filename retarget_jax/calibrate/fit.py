"""The outer optimisation: solve a batch of windows, score it, step the parameters (jit).

Stage: calibration. One outer step is one compiled call (:meth:`Fitter.step`):

    params -> apply_params (every clip) -> the batch's windows -> solve (each window)
      -> outer_terms -> loss -> d loss / d params -> optax update

The gradient goes through the solver by implicit differentiation
(:func:`retarget_jax.solve.gauss_newton.solve`): no iteration is unrolled, so a step
costs about one solve and one backward linear solve per window. On CPU the windows are
solved one after another (``lax.map``), on an accelerator vmapped (as
:mod:`retarget_jax.solve.batch` does).

Static (recompiles): the layout of the parameters, the solver's static options, B, W,
the number of clips and their longest length. Traced: parameters, optimiser state, the
windows' data, the term weights and the prior.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from retarget_jax.calibrate.data import WindowBatch
from retarget_jax.calibrate.outer import TERMS, OuterSpec, outer_terms
from retarget_jax.calibrate.params import (
    PARAM_KINDS,
    CalibParams,
    ClipContext,
    ParamLayout,
    apply_params,
    with_applied,
)
from retarget_jax.errors import ConfigError
from retarget_jax.result import SolveStatus
from retarget_jax.solve.batch import clip_in_axes
from retarget_jax.solve.gauss_newton import SolverOptions, solve

#: the prior's scale of each parameter kind: a delta of this size costs ``prior`` (its weight)
PRIOR_SCALE = {"log_factor": 0.1, "pos_offset": 0.1, "rot_offset": 0.2, "ground_offset": 0.05}
#: each kind's step relative to the learning rate (Adam moves a parameter by about lr x
#: this per step): 1% of a scale, 1 cm, 0.01 rad, 5 mm at the default lr 0.01
STEP_SCALE = {"log_factor": 1.0, "pos_offset": 1.0, "rot_offset": 1.0, "ground_offset": 0.5}
_KIND_FIELD = dict(zip(PARAM_KINDS, ("log_factor", "pos_offset", "rot_offset", "ground_offset"), strict=True))


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """Outer optimiser settings: Adam at ``lr`` with a cosine decay to ``lr x
    final_lr_fraction`` over ``steps``, gradients clipped to a global norm of ``clip``,
    and a quadratic prior of weight ``prior`` pulling the deltas towards 0 (see
    :data:`PRIOR_SCALE`). ``fit``: the parameter kinds that move (:data:`PARAM_KINDS`)."""

    steps: int = 100
    lr: float = 0.01
    final_lr_fraction: float = 0.1
    clip: float = 1.0
    prior: float = 0.001
    fit: tuple[str, ...] = PARAM_KINDS

    def __post_init__(self):
        bad = [k for k in self.fit if k not in PARAM_KINDS]
        if bad or not self.fit:
            raise ConfigError(f"--fit: expected a non-empty subset of {list(PARAM_KINDS)}, got {list(self.fit)}")
        if not (
            self.steps >= 0 and self.lr > 0 and self.clip > 0 and self.prior >= 0 and 0 < self.final_lr_fraction <= 1
        ):
            raise ConfigError(f"fit options out of range: {self}")


@functools.lru_cache(maxsize=16)
def optimizer(options: FitOptions, layout: ParamLayout) -> optax.GradientTransformation:
    """Clip, Adam with a cosine-decayed learning rate, then each kind's step scale (0 for
    a kind that is not fitted)."""
    mult = CalibParams(
        *(jnp.asarray(STEP_SCALE[_KIND_FIELD[k]] if k in options.fit else 0.0, jnp.float32) for k in PARAM_KINDS)
    )
    schedule = optax.cosine_decay_schedule(options.lr, max(options.steps, 1), alpha=options.final_lr_fraction)
    scale_kinds = optax.stateless(lambda updates, params=None: jax.tree.map(lambda u, m: u * m, updates, mult))
    return optax.chain(optax.clip_by_global_norm(options.clip), optax.adam(schedule), scale_kinds)


def prior_loss(params: CalibParams) -> jnp.ndarray:
    """Sum of the squared deltas, each in units of its kind's prior scale: a weak pull
    towards the start that settles directions the outer loss barely sees."""
    return sum(jnp.sum((getattr(params, name) / s) ** 2) for name, s in PRIOR_SCALE.items())


def solve_rows(problem, options: SolverOptions):
    """Solve every row of a stacked problem through the differentiable ``solve``: in
    sequence on CPU, vmapped elsewhere (see :mod:`retarget_jax.solve.batch`)."""
    if jax.default_backend() == "cpu":

        def one(clip):
            return solve(eqx.tree_at(lambda p: p.clip, problem, clip), options)

        return jax.lax.map(one, problem.clip)
    return jax.vmap(solve, in_axes=(clip_in_axes(problem), None))(problem, options)


def batch_terms(
    params: CalibParams,
    contexts: ClipContext,
    batch: WindowBatch,
    spec: OuterSpec,
    layout: ParamLayout,
    options: SolverOptions,
):
    """(terms (B, 5), ok (B,), status (B,), iterations (B,)) of a batch at ``params`` (jit).
    ``ok``: a real window whose solve converged or ran out of iterations and whose terms
    are finite (a diverged window is left out of the loss)."""
    pos_joint = batch.problem.pos_joint
    applied = jax.vmap(lambda c: apply_params(params, c, layout, pos_joint))(contexts)
    per_window = jax.tree.map(lambda x: x[batch.clip], applied)
    problem = with_applied(batch.problem, per_window)
    out = solve_rows(problem, options)
    terms = jax.vmap(lambda p, q, v, e: outer_terms(spec, p, q, v, e), in_axes=(clip_in_axes(problem), 0, 0, 0))(
        problem, out.qpos, batch.joint_valid, batch.ee_len
    )
    solved = (out.status == SolveStatus.CONVERGED) | (out.status == SolveStatus.MAX_ITERATIONS)
    ok = (batch.weight > 0) & solved & jnp.all(jnp.isfinite(terms), axis=1)
    return terms, ok, out.status, out.iterations


def weighted_loss(terms, ok, weights):
    """Mean over the ok rows of the weighted sum of terms (0 where none is ok)."""
    per_row = jnp.where(ok, jnp.where(ok[:, None], terms, 0.0) @ weights, 0.0)
    return jnp.sum(per_row) / jnp.maximum(jnp.sum(ok), 1)


@dataclasses.dataclass(frozen=True)
class _Core:
    """The static part of a calibration (hashable): the jitted functions below take it as
    a static argument, so two Fitters of equal settings share their compiled programs."""

    layout: ParamLayout
    solver: SolverOptions
    fit: FitOptions

    def row_loss(self, spec, params, contexts, problem, clip, joint_valid, ee_len, weights):
        """Weighted outer loss of one window (differentiable): (loss, (terms (5,), status,
        iterations))."""
        ctx = jax.tree.map(lambda x: x[clip], contexts)
        p = with_applied(problem, apply_params(params, ctx, self.layout, problem.pos_joint))
        out = solve(p, self.solver)
        terms = outer_terms(spec, p, out.qpos, joint_valid, ee_len)
        return terms @ weights, (terms, out.status, out.iterations)

    def rows(self, spec, params, contexts, batch: WindowBatch, weights):
        """Per window: (loss, gradient, terms, status, iterations)."""
        vg = jax.value_and_grad(self.row_loss, argnums=1, has_aux=True)
        problem = batch.problem
        xs = (problem.clip, batch.clip, batch.joint_valid, batch.ee_len)
        if jax.default_backend() == "cpu":

            def one(x):
                clip, *rest = x
                row = eqx.tree_at(lambda p: p.clip, problem, clip)
                (val, (terms, status, iters)), g = vg(spec, params, contexts, row, *rest, weights)
                return val, g, terms, status, iters

            return jax.lax.map(one, xs)

        def one_v(p, c, v, e):
            (val, (terms, status, iters)), g = vg(spec, params, contexts, p, c, v, e, weights)
            return val, g, terms, status, iters

        return jax.vmap(one_v, in_axes=(clip_in_axes(problem), 0, 0, 0))(problem, *xs[1:])

    def gradient(self, spec, params, contexts, batch, weights):
        vals, grads, terms, status, iters = self.rows(spec, params, contexts, batch, weights)
        solved = (status == SolveStatus.CONVERGED) | (status == SolveStatus.MAX_ITERATIONS)
        ok = (batch.weight > 0) & solved & jnp.all(jnp.isfinite(terms), axis=1)
        g_finite = jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(g.reshape(g.shape[0], -1)), axis=1) for g in jax.tree.leaves(grads)]),
            axis=0,
        )
        use = ok & (status == SolveStatus.CONVERGED) & g_finite
        n_use = jnp.maximum(jnp.sum(use), 1)
        grad = jax.tree.map(
            lambda g: jnp.sum(jnp.where(use.reshape(-1, *([1] * (g.ndim - 1))), g, 0.0), axis=0) / n_use, grads
        )
        outer = jnp.sum(jnp.where(ok, vals, 0.0)) / jnp.maximum(jnp.sum(ok), 1)
        info = {"outer": outer, "terms": terms, "ok": ok, "used": use, "status": status, "iterations": iters}
        return outer, grad, info

    def step(self, spec, params, opt_state, contexts, batch, weights, prior):
        outer, grad, info = self.gradient(spec, params, contexts, batch, weights)
        p_val, p_grad = jax.value_and_grad(prior_loss)(params)
        grad = jax.tree.map(lambda a, b: a + prior * b, grad, p_grad)
        updates, opt_state = optimizer(self.fit, self.layout).update(grad, opt_state, params)
        info["prior"] = p_val
        return optax.apply_updates(params, updates), opt_state, info


@eqx.filter_jit
def _step_jit(core: _Core, spec, params, opt_state, contexts, batch, weights, prior):
    return core.step(spec, params, opt_state, contexts, batch, weights, prior)


@eqx.filter_jit
def _gradient_jit(core: _Core, spec, params, contexts, batch, weights):
    return core.gradient(spec, params, contexts, batch, weights)


@eqx.filter_jit
def _eval_jit(core: _Core, spec, params, contexts, batch):
    return batch_terms(params, contexts, batch, spec, core.layout, core.solver)


@eqx.filter_jit
def _outer_loss_jit(core: _Core, spec, params, contexts, batch, weights):
    terms, ok, _, _ = batch_terms(params, contexts, batch, spec, core.layout, core.solver)
    return weighted_loss(terms, ok, weights)


class Fitter:
    """The compiled step and evaluation of one calibration (one layout, options, spec).

    The step differentiates each window on its own (``value_and_grad`` per row, inside
    the row loop): the implicit backward pass factorises the exact Hessian at the
    solution, which is not positive definite where a solve stopped short of a minimum,
    and one such window would otherwise turn the whole batch's gradient into NaN. The
    gradient averages the windows that converged and whose gradient is finite; the loss
    averages every window that was solved (converged or out of iterations)."""

    def __init__(self, layout: ParamLayout, spec: OuterSpec, solver: SolverOptions, fit: FitOptions):
        self.layout, self.spec, self.solver, self.fit = layout, spec, solver, fit
        self.core = _Core(layout, solver, fit)

    def init(self, params: CalibParams):
        return optimizer(self.fit, self.layout).init(params)

    def step(self, params, opt_state, contexts, batch, weights, prior):
        """One outer step: (params, opt_state, info). ``info``: the outer loss of the
        batch before the step (mean over solved windows), the prior, per window the terms
        (B, 5), ``ok`` (solved), ``used`` (in the gradient), status and iterations."""
        return _step_jit(self.core, self.spec, params, opt_state, contexts, batch, weights, prior)

    def gradient(self, params, contexts, batch, weights):
        """(outer loss, its gradient, info) as :meth:`step` computes them, without the
        prior: the loss averages the solved windows, the gradient the windows in ``used``
        (converged, finite gradient); where every window converged they are the loss and
        its exact gradient."""
        return _gradient_jit(self.core, self.spec, params, contexts, batch, weights)

    def evaluate(self, params, contexts, batch):
        """(terms (B, 5), ok (B,), status (B,), iterations (B,)) of a batch (no gradient)."""
        return _eval_jit(self.core, self.spec, params, contexts, batch)

    def outer_loss(self, params, contexts, batch, weights):
        """The batch's outer loss as :meth:`step` averages it, through every solved window
        (differentiable; the finite-difference tests call it)."""
        return _outer_loss_jit(self.core, self.spec, params, contexts, batch, weights)


def summarise(terms: np.ndarray, ok: np.ndarray, weights: np.ndarray) -> dict:
    """Mean of each term over the ok windows, the weighted loss, and the derived figures:
    the mean limb cosine (1 - direction)."""
    terms, ok = np.asarray(terms, np.float64), np.asarray(ok, bool)
    n = int(ok.sum())
    mean = terms[ok].mean(axis=0) if n else np.full(len(TERMS), np.nan)
    out = {"loss": float(mean @ np.asarray(weights, np.float64)) if n else float("nan"), "windows": n}
    out.update({t: float(v) for t, v in zip(TERMS, mean, strict=True)})
    out["limb_cosine_mean"] = 1.0 - out["direction"]
    return out
