"""The recipe's continuous parameters as a pytree, and how they enter a compiled problem.

Stage: calibration. Host code builds the :class:`ParamLayout` (names -> indices, once per
recipe) and the :class:`ClipContext` of each clip (the arrays the scale-dependent heights
are re-measured on); :func:`apply_params` is jit code, differentiable in the parameters.

What a parameter changes, exactly as ``compile_problem`` would with the fitted recipe:

=========================  ==============================================================
``log_factor`` (G,)        each scale group's ``factor`` times exp(.): every bone it
                           scales (``bone_scale``, ``bone_lateral_scale``), the root scale
                           (root group), and the heights measured on the scaled figure:
                           the ground shift ``z_offset`` (5th-percentile ankle height) and
                           the target shifts ``pos_target_dz`` (``offset_z_from_ground``,
                           ``level_with``), re-measured here in JAX on the whole clip
``pos_offset`` (Kp, 3)     added to each position target's ``offset`` (m, body frame), and
                           to the limb ends attached to that target
``rot_offset`` (Kr, 3)     a rotation vector (rad, body frame) composed on the right of
                           each orientation target's offset: R_target = R_human R_off exp(.)
``ground_offset`` ()       added to ``ground.offset`` (m): the whole scaled figure's height
=========================  ==============================================================

At zero parameters :func:`apply_params` returns the compiled arrays bit for bit (the
re-measured heights enter as differences from the same measurement at the base scales),
and :func:`fitted_recipe` turns parameters into the recipe that compiles to what
:func:`apply_params` gives (tests/test_calibrate.py checks both).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from retarget_jax.motion.canonical import CANONICAL_JOINTS, canonical_index, canonicalize
from retarget_jax.problem.compile import (
    CompiledProblem,
    RetargetingProblem,
    measure_scales,
    resolve_source,
    scaled_figure,
)
from retarget_jax.problem.limbs import attachment, recipe_limbs
from retarget_jax.problem.recipe import Recipe
from retarget_jax.rotations import quat_exp, quat_log, quat_mul

#: parameter kinds, in the order of :class:`CalibParams`' fields
PARAM_KINDS: tuple[str, ...] = ("scales", "offsets", "rotations", "ground")


class CalibParams(eqx.Module):
    """Deltas from the recipe, all 0 at the start (see the module table)."""

    log_factor: jnp.ndarray  # (G,)
    pos_offset: jnp.ndarray  # (Kp, 3) m
    rot_offset: jnp.ndarray  # (Kr, 3) rad
    ground_offset: jnp.ndarray  # () m

    @staticmethod
    def zeros(layout: ParamLayout, dtype=jnp.float32) -> CalibParams:
        z = lambda *s: jnp.zeros(s, dtype)  # noqa: E731
        return CalibParams(z(len(layout.groups)), z(len(layout.pos_targets), 3), z(len(layout.rot_targets), 3), z())

    def to_dict(self) -> dict[str, np.ndarray]:
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @staticmethod
    def from_dict(d, dtype=jnp.float32) -> CalibParams:
        return CalibParams(*(jnp.asarray(d[f.name], dtype) for f in dataclasses.fields(CalibParams)))


@dataclasses.dataclass(frozen=True)
class ParamLayout:
    """Which recipe entry each parameter belongs to (host; resolved once per recipe).

    ``bone_group`` / ``lateral_group`` (J,): the scale group whose factor scales each
    canonical bone's length / its hip-axis component, as ``measure_scales`` assigns them
    (a bone in no group, or only in a lateral group, takes the root group's scale; a
    lateral component not set by a lateral group follows the bone's own scale).
    ``limb_attach`` (L, 2): for each end of each limb of the direction cost, the position
    target whose offset it shares (-1: none, its offset stays).
    """

    groups: tuple[str, ...]
    root_group: int
    bone_group: tuple[int, ...]
    lateral_group: tuple[int, ...]
    pos_targets: tuple[int, ...]  # indices into recipe.targets (position_weight > 0)
    rot_targets: tuple[int, ...]  # indices into recipe.targets (orientation_weight > 0)
    limb_attach: tuple[tuple[int, int], ...]

    @staticmethod
    def of(recipe: Recipe) -> ParamLayout:
        groups = tuple(g.name for g in recipe.scale_groups)
        root = groups.index(recipe.root_scale_group) if recipe.root_scale_group in groups else 0
        J = len(CANONICAL_JOINTS)
        bone, lateral = [-1] * J, [-1] * J
        for gi, g in enumerate(recipe.scale_groups):
            for b in g.bones:
                (lateral if g.lateral else bone)[canonical_index(b)] = gi
        bone = [root if b < 0 else b for b in bone]
        lateral = [bone[j] if lat < 0 else lat for j, lat in enumerate(lateral)]
        pos_t = tuple(i for i, t in enumerate(recipe.targets) if t.position_weight > 0)
        rot_t = tuple(i for i, t in enumerate(recipe.targets) if t.orientation_weight > 0)
        attach = []
        for lb in recipe_limbs(recipe):
            ends = []
            for joint in (lb.limb.proximal, lb.limb.distal):
                t = attachment(recipe, joint)
                k = recipe.targets.index(t) if t is not None else -1
                ends.append(pos_t.index(k) if k in pos_t else -1)
            attach.append((ends[0], ends[1]))
        return ParamLayout(groups, root, tuple(bone), tuple(lateral), pos_t, rot_t, tuple(attach))

    def names(self, recipe: Recipe) -> dict[str, list[str]]:
        """Readable names of every parameter, per kind (for reports)."""
        t = recipe.targets
        return {
            "log_factor": [f"scale_groups.{g}" for g in self.groups],
            "pos_offset": [f"targets[{i}] {t[i].human.value}->{t[i].body}" for i in self.pos_targets],
            "rot_offset": [f"targets[{i}] {t[i].human.value}->{t[i].body}" for i in self.rot_targets],
            "ground_offset": ["ground.offset"],
        }


class ClipContext(eqx.Module):
    """One clip's base arrays and what its heights are measured on (stack with a leading
    C axis for several clips; shorter clips padded with ``finite`` 0).

    The whole clip, not a window: the ground shift and the target shifts are percentiles
    over every frame of a clip, shared by all its windows."""

    pos: jnp.ndarray  # (T, J, 3) canonical human positions (invalid samples filled, finite)
    finite: jnp.ndarray  # (T, J) 1 where the scaled figure's joint is measured (valid samples)
    anchor: jnp.ndarray  # (3,)
    bone_scale: jnp.ndarray  # (J,) compiled, at the recipe's factors
    lateral_scale: jnp.ndarray  # (J,)
    root_scale: jnp.ndarray  # ()
    z_offset: jnp.ndarray  # ()
    pos_dz: jnp.ndarray  # (Kp,)
    pos_offset: jnp.ndarray  # (Kp, 3)
    rot_offset: jnp.ndarray  # (Kr, 4)
    limb_offset: jnp.ndarray  # (L, 2, 3)
    ground_mask: jnp.ndarray  # (J,) 1 for the recipe's ground joints the clip has
    target_present: jnp.ndarray  # (Kp,) 1 where the target's joint is in the clip
    from_ground: jnp.ndarray  # (Kp,) 1 for offset_z_from_ground targets
    level_mask: jnp.ndarray  # (Kp, J) 1 for each target's level_with joints the clip has


def clip_context(problem: RetargetingProblem, compiled: CompiledProblem) -> ClipContext:
    """The context of one clip (host): the same source resolution and scales as
    ``compile_problem``, and the compiled arrays the parameters change."""
    recipe, robot = problem.recipe, problem.robot
    src = resolve_source(problem)
    scales = measure_scales(src, recipe, robot)
    pos, _, valid = canonicalize(src.motion)
    c = compiled.clip
    anchor = np.asarray(c.root_anchor, np.float64)
    z = scaled_figure(pos, scales.bone, scales.lateral, scales.root, anchor)[..., 2]
    finite = valid & np.isfinite(z)
    J = len(CANONICAL_JOINTS)
    ground = np.zeros(J)
    for j in recipe.ground_joints:
        if j in src.present:
            ground[canonical_index(j)] = 1.0
    pos_t = [t for t in recipe.targets if t.position_weight > 0]
    level = np.zeros((len(pos_t), J))
    for k, t in enumerate(pos_t):
        for j in t.level_with:
            if j in src.present:
                level[k, canonical_index(j)] = 1.0
    dt = c.human_pos.dtype
    f = lambda x: jnp.asarray(np.asarray(x, np.float64), dt)  # noqa: E731
    return ClipContext(
        pos=f(np.nan_to_num(pos)),
        finite=f(finite),
        anchor=c.root_anchor,
        bone_scale=c.bone_scale,
        lateral_scale=c.bone_lateral_scale,
        root_scale=c.root_scale,
        z_offset=c.z_offset,
        pos_dz=c.pos_target_dz,
        pos_offset=c.pos_offset,
        rot_offset=c.rot_offset,
        limb_offset=c.limb_offset,
        ground_mask=f(ground),
        target_present=f([t.human in src.present for t in pos_t]),
        from_ground=f([t.offset_z_from_ground for t in pos_t]),
        level_mask=f(level.reshape(len(pos_t), J)),
    )


def stack_contexts(contexts: Sequence[ClipContext]) -> ClipContext:
    """Stack clip contexts on a leading C axis, padding the frame axis (``finite`` 0)."""
    T = max(int(c.pos.shape[0]) for c in contexts)

    def pad(c: ClipContext) -> ClipContext:
        n = T - int(c.pos.shape[0])
        if n == 0:
            return c
        return eqx.tree_at(
            lambda x: (x.pos, x.finite),
            c,
            (
                np.concatenate([np.asarray(c.pos), np.zeros((n, *c.pos.shape[1:]), c.pos.dtype)]),
                np.concatenate([np.asarray(c.finite), np.zeros((n, c.finite.shape[1]), c.finite.dtype)]),
            ),
        )

    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *[pad(c) for c in contexts])


def masked_percentile(x, mask, q: float):
    """numpy's default ('linear') percentile of ``x[mask]`` along the last axis (jit);
    differentiable in ``x``. Where ``mask`` is all 0: 0."""
    n = jnp.sum(mask > 0, axis=-1)
    xs = jnp.sort(jnp.where(mask > 0, x, jnp.inf), axis=-1)
    pos = (q / 100.0) * (jnp.maximum(n, 1) - 1).astype(x.dtype)
    lo = jnp.floor(pos)
    frac = pos - lo
    lo = lo.astype(jnp.int32)
    hi = jnp.minimum(lo + 1, jnp.maximum(n - 1, 0))
    a = jnp.take_along_axis(xs, lo[..., None], axis=-1)[..., 0]
    b = jnp.take_along_axis(xs, hi[..., None], axis=-1)[..., 0]
    return jnp.where(n > 0, a + frac * (b - a), 0.0)


def measured_heights(ctx: ClipContext, pos_joint: Sequence[int], bone_scale, lateral_scale, root_scale):
    """(floor height (), target shifts (Kp,)) of the clip's figure at these scales, measured
    as ``ground_shift`` and ``position_target_shifts`` measure them: the floor is the lowest
    5th-percentile height of the ground joints (0 without any); a target's shift is the floor
    minus its joint's 5th percentile (``offset_z_from_ground``), minus the median height of
    its joint above the mean of its ``level_with`` joints. The recipe's ``ground.offset``
    enters additively and is not part of it."""
    z = scaled_figure(ctx.pos, bone_scale, lateral_scale, root_scale, ctx.anchor)[..., 2]  # (T, J)
    p5 = masked_percentile(z.T, ctx.finite.T, 5.0)  # (J,)
    has_ground = jnp.sum(ctx.ground_mask) > 0
    floor = jnp.where(has_ground, jnp.min(jnp.where(ctx.ground_mask > 0, p5, jnp.inf)), 0.0)
    pj = np.asarray(pos_joint, np.int32)
    dz = ctx.from_ground * (floor - p5[pj])
    n_level = jnp.sum(ctx.level_mask, axis=1)  # (Kp,)
    level_z = (z @ ctx.level_mask.T) / jnp.maximum(n_level, 1.0)  # (T, Kp) mean height of the level joints
    # frames where the joint and every one of its level joints are measured
    level_ok = ctx.finite[:, pj] * jnp.all((ctx.finite[:, None, :] > 0) | (ctx.level_mask[None] == 0), axis=-1)
    med = masked_percentile((z[:, pj] - level_z).T, level_ok.T, 50.0)
    dz = dz - jnp.where(n_level > 0, med, 0.0)
    return floor, dz * ctx.target_present


class Applied(eqx.Module):
    """The compiled fields a clip's parameters set (per clip; see :func:`apply_params`)."""

    bone_scale: jnp.ndarray
    bone_lateral_scale: jnp.ndarray
    root_scale: jnp.ndarray
    z_offset: jnp.ndarray
    pos_target_dz: jnp.ndarray
    pos_offset: jnp.ndarray
    rot_offset: jnp.ndarray
    limb_offset: jnp.ndarray


APPLIED_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Applied))


def apply_params(params: CalibParams, ctx: ClipContext, layout: ParamLayout, pos_joint: Sequence[int]) -> Applied:
    """The fields of one clip's compiled problem at these parameters (jit; one clip, vmap
    for several). ``pos_joint``: the compiled problem's position-target joints (static)."""
    f = jnp.exp(params.log_factor)
    bone = ctx.bone_scale * f[np.asarray(layout.bone_group)]
    lateral = ctx.lateral_scale * f[np.asarray(layout.lateral_group)]
    root = ctx.root_scale * f[layout.root_group]
    floor0, dz0 = measured_heights(ctx, pos_joint, ctx.bone_scale, ctx.lateral_scale, ctx.root_scale)
    floor1, dz1 = measured_heights(ctx, pos_joint, bone, lateral, root)
    z_offset = ctx.z_offset + (floor0 - floor1) + params.ground_offset
    pos_dz = ctx.pos_dz + (dz1 - dz0)
    pos_offset = ctx.pos_offset + params.pos_offset
    rot_offset = quat_mul(ctx.rot_offset, quat_exp(params.rot_offset))
    limb = ctx.limb_offset
    if layout.limb_attach:
        att = np.asarray(layout.limb_attach, np.int32)  # (L, 2)
        delta = jnp.where((att >= 0)[..., None], params.pos_offset[np.maximum(att, 0)], 0.0)
        limb = limb + delta
    return Applied(bone, lateral, root, z_offset, pos_dz, pos_offset, rot_offset, limb)


def with_applied(batch: CompiledProblem, applied: Applied) -> CompiledProblem:
    """A (stacked) problem with its :class:`Applied` fields replaced (same leading axes)."""
    return eqx.tree_at(
        lambda p: tuple(getattr(p.clip, n) for n in APPLIED_FIELDS),
        batch,
        tuple(getattr(applied, n) for n in APPLIED_FIELDS),
    )


# --------------------------------------------------------------------------- fitted recipe


def fitted_recipe(recipe: Recipe, layout: ParamLayout, params: CalibParams, *, name: str | None = None) -> Recipe:
    """The recipe whose compiled problem is the base one at ``params`` (host)."""
    p = params.to_dict()
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    groups = tuple(
        dataclasses.replace(g, factor=float(g.factor * np.exp(p["log_factor"][i])))
        for i, g in enumerate(recipe.scale_groups)
    )
    targets = list(recipe.targets)
    for k, i in enumerate(layout.pos_targets):
        t = targets[i]
        targets[i] = dataclasses.replace(t, offset=tuple(float(x) for x in np.asarray(t.offset) + p["pos_offset"][k]))
    for k, i in enumerate(layout.rot_targets):
        t = targets[i]
        r = quat_log(quat_mul(quat_exp(np.asarray(t.rotation_offset, np.float64)), quat_exp(p["rot_offset"][k])))
        targets[i] = dataclasses.replace(t, rotation_offset=tuple(float(x) for x in r))
    return dataclasses.replace(
        recipe,
        name=name or recipe.name,
        scale_groups=groups,
        targets=tuple(targets),
        ground_offset=float(recipe.ground_offset + p["ground_offset"]),
    )
