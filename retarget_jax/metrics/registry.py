"""Metric plugins: named functions that turn one result's jitted figures into report values.

Stage: metrics, host side. :func:`retarget_jax.metrics.evaluate_results` runs the jitted
pass (:func:`retarget_jax.metrics.batch.evaluate_batch`) once per group of results, then
calls every registered plugin once per result with a :class:`MetricContext`. Plugins
registered with ``needs_core=False`` compute on the host from the result alone (numpy,
MuJoCo); when every chosen plugin is such, the jitted pass (and its compile) is skipped.

A plugin returns

- a float: the value, in the plugin's ``unit``;
- a dict ``{key: float}``: several values (``unit`` may then be a dict per key);
- ``None``: not applicable to this result (reported as ``null`` with a warning; the report
  stays ``success``). :meth:`MetricContext.not_applicable` returns None and records why.

A plugin that raises, or returns a non-finite or non-numeric value, makes the report
``partial`` with a warning naming it; the other plugins and results still run. Extra
fields for the report entry (e.g. ``basis``) go in :attr:`MetricContext.extras`.

Register your own with the decorator::

    @register_metric("root_height_min", unit="m", description="lowest root height")
    def _root_height_min(ctx: MetricContext) -> float:
        return float(ctx.result.root_pos[:, 2].min())
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import mujoco
import numpy as np

from retarget_jax.errors import ConfigError, UnknownNameError
from retarget_jax.result import RetargetingResult
from retarget_jax.robots.spec import RobotSpec, geom_lowest_z
from retarget_jax.rotations import quat_rotate

MetricValue = float | dict[str, float] | None
Unit = str | Mapping[str, str]


@dataclasses.dataclass
class MetricContext:
    """What a plugin sees of one result.

    Attributes:
        result: the result being evaluated.
        robot: its robot.
        core: this clip's jitted figures as Python floats, keyed by
            :data:`retarget_jax.metrics.batch.CORE_KEYS` (empty when the jitted pass
            failed; plugins registered with ``needs_core=False`` still run then).
        result_id: the result's id in the report.
        extras: extra fields for this metric's report entry (JSON-able), set by the plugin.
        reason: why the metric is not applicable (set by :meth:`not_applicable`).
    """

    result: RetargetingResult
    robot: RobotSpec
    core: dict[str, float]
    result_id: str
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    reason: str | None = None

    def not_applicable(self, reason: str) -> None:
        """Record why the metric does not apply; return its value (None)."""
        self.reason = reason
        return None


@dataclasses.dataclass(frozen=True)
class MetricPlugin:
    """A named metric: ``fn(ctx) -> float | dict[str, float] | None`` in ``unit``."""

    name: str
    unit: Unit
    description: str
    fn: Callable[[MetricContext], MetricValue]
    needs_core: bool = True  # skipped (null, with a warning) when the jitted pass failed


_REGISTRY: dict[str, MetricPlugin] = {}


def register_metric(name: str, unit: Unit, description: str, fn: Callable | None = None, *, needs_core: bool = True):
    """Register a metric plugin; as a decorator when ``fn`` is not given.

    Raises ConfigError when ``name`` is already registered (unregister it first).
    """

    def add(f: Callable[[MetricContext], MetricValue]):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"metric name must be a non-empty string, got {name!r}")
        if name in _REGISTRY:
            raise ConfigError(
                f"metric '{name}' is already registered ({_REGISTRY[name].description!r}); unregister_metric() it first"
            )
        _REGISTRY[name] = MetricPlugin(name=name, unit=unit, description=description, fn=f, needs_core=needs_core)
        return f

    return add(fn) if fn is not None else add


def unregister_metric(name: str) -> MetricPlugin:
    """Remove a plugin (tests, or replacing a built-in); UnknownNameError if absent."""
    try:
        return _REGISTRY.pop(name)
    except KeyError:
        raise UnknownNameError("metric", name, _REGISTRY) from None


def registered_metrics() -> dict[str, MetricPlugin]:
    """A copy of the registry, in registration order."""
    return dict(_REGISTRY)


def get_metric(name: str) -> MetricPlugin:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("metric", name, _REGISTRY) from None


# --------------------------------------------------------------------------- built-ins


@register_metric(
    "optimization_cost",
    unit="1",
    needs_core=False,
    description="the solver's mean per-frame objective at the solution (final_cost); "
    "n/a for a trajectory that was loaded, not solved",
)
def _optimization_cost(ctx: MetricContext) -> MetricValue:
    r = ctx.result
    if not math.isfinite(float(r.final_cost)) and int(r.iterations) == 0:
        return ctx.not_applicable("the result was not solved (final_cost is not finite, 0 iterations)")
    return float(r.final_cost)


def _feet(ctx: MetricContext) -> bool:
    return ctx.core["contact_links"] > 0


@register_metric(
    "foot_sliding",
    unit="m/s",
    description="mean horizontal speed of the contact links' origins over frame pairs in "
    "stance: the contact plan's stance (basis 'contact_plan'), or without a plan "
    "the lower foot within 3 cm of the ground (basis 'proxy')",
)
def _foot_sliding(ctx: MetricContext) -> MetricValue:
    if not _feet(ctx):
        return ctx.not_applicable("no contact links (the result has no contact plan; pass contact_bodies)")
    ctx.extras["basis"] = "proxy" if ctx.core["foot_sliding_proxy"] > 0.5 else "contact_plan"
    return ctx.core["foot_sliding"]


@register_metric(
    "contact_preservation",
    unit="fraction",
    description="fraction of frames and feet where the contact plan's stance agrees with the "
    "robot link touching the ground (lowest collision point below 2.5 cm)",
)
def _contact_preservation(ctx: MetricContext) -> MetricValue:
    if not _feet(ctx) or ctx.core["has_plan"] < 0.5:
        return ctx.not_applicable("the result has no contact plan")
    return ctx.core["contact_preservation"]


@register_metric(
    "penetration",
    unit="m",
    description="ground and self penetration depth: mean and max over frames of their sum "
    "per frame, and the max of each (self: declared pairs, no margin)",
)
def _penetration(ctx: MetricContext) -> MetricValue:
    c = ctx.core
    return {
        "mean": c["penetration"],
        "max": c["penetration_max"],
        "ground_max": c["ground_penetration_max"],
        "self_max": c["self_penetration_max"],
    }


@register_metric(
    "tracking_error",
    unit="m",
    description="distance between each tracked body point and its target, mean and 95th "
    "percentile over frames and valid targets",
)
def _tracking_error(ctx: MetricContext) -> MetricValue:
    if ctx.core["tracking_samples"] < 1:
        return ctx.not_applicable("the result has no tracked targets")
    return {"mean": ctx.core["tracking_error_mean"], "p95": ctx.core["tracking_error_p95"]}


@register_metric(
    "joint_limit_violation",
    unit={"max_rad": "rad", "fraction_of_frames": "fraction"},
    description="largest excursion of a joint past its MJCF range, and the fraction of "
    "frames with any joint past its range by more than 1e-6 rad",
)
def _joint_limit_violation(ctx: MetricContext) -> MetricValue:
    c = ctx.core
    return {"max_rad": c["joint_limit_violation_max"], "fraction_of_frames": c["joint_limit_violation_fraction"]}


@register_metric(
    "jerk",
    unit="rad/s^3",
    description="mean absolute third time derivative of the joint positions (finite "
    "differences over 4 consecutive frames)",
)
def _jerk(ctx: MetricContext) -> MetricValue:
    if ctx.core["frames"] < 4:
        return ctx.not_applicable("fewer than 4 frames")
    return ctx.core["jerk"]


@register_metric(
    "limb_direction",
    unit="cosine",
    description="cosine between each robot limb (thighs, shins, upper arms, forearms, trunk: the "
    "segment between the points the recipe attaches the two joints to) and the "
    "unscaled human bone, mean and 5th percentile over frames, overall and per limb",
)
def _limb_direction(ctx: MetricContext) -> MetricValue:
    c = ctx.core
    if c.get("limb_direction_samples", 0.0) < 1:
        return ctx.not_applicable("the result has no limbs with both joints in the source")
    out = {"mean": c["limb_direction_mean"], "p5": c["limb_direction_p5"]}
    for limb in ctx.result.limb_names:
        out[f"{limb}_mean"] = c[f"limb_direction_mean_{limb}"]
        out[f"{limb}_p5"] = c[f"limb_direction_p5_{limb}"]
    return out


@register_metric(
    "upright",
    unit="cosine",
    needs_core=False,
    description="min over frames of the world z component of the root's z-axis (1: upright)",
)
def _upright(ctx: MetricContext) -> MetricValue:
    up = quat_rotate(ctx.result.root_quat_wxyz, np.array([0.0, 0.0, 1.0]))[:, 2]
    return float(up.min())


#: Units of the ``stance_feet`` keys, by suffix (the keys are ``<foot body>_<suffix>``).
STANCE_FEET_UNITS = {
    "stance_fraction": "fraction",
    "stance_sole_height_mean": "m",
    "stance_sole_height_p95_abs": "m",
    "sole_height_min": "m",
}
STANCE_SPEED = 0.15  # m/s: a foot slower than this ...
STANCE_HEIGHT = 0.05  # m: ... and its sole this close to its lowest is in stance


@register_metric(
    "stance_feet",
    unit=STANCE_FEET_UNITS,
    needs_core=False,
    description="per contact link (key <link>_<suffix>, unit by suffix): its sole's height "
    "(lowest point of the collision geoms on the link and below it, so a heel "
    "up with the toes down is 0) over frames in stance (the link slower than "
    f"{STANCE_SPEED} m/s and its sole within {STANCE_HEIGHT} m of its lowest): "
    "mean and 95th percentile of |height|, the fraction of frames in stance, "
    "and the sole's lowest height over all frames (a link never in stance has no "
    "stance heights and is listed in 'never_in_stance')",
)
def _stance_feet(ctx: MetricContext) -> MetricValue:
    r = ctx.result
    feet = tuple(r.contact_body_names)
    if not feet:
        return ctx.not_applicable("the result names no contact links (contact_body_names)")
    soles = sole_heights(r, ctx.robot, feet)
    out: dict[str, float] = {}
    for name in feet:
        b, z = r.body_names.index(name), soles[name]
        v = np.linalg.norm(np.gradient(r.body_pos_w[:, b, :2], 1.0 / r.fps, axis=0), axis=-1)
        stance = (v < STANCE_SPEED) & (z < z.min() + STANCE_HEIGHT)
        out[f"{name}_stance_fraction"] = float(stance.mean())
        out[f"{name}_sole_height_min"] = float(z.min())
        if not stance.any():  # no stance heights to report; not a failure
            ctx.extras.setdefault("never_in_stance", []).append(name)
            continue
        out[f"{name}_stance_sole_height_mean"] = float(z[stance].mean())
        out[f"{name}_stance_sole_height_p95_abs"] = float(np.percentile(np.abs(z[stance]), 95))
    return out


def sole_heights(result: RetargetingResult, robot: RobotSpec, foot_bodies) -> dict[str, np.ndarray]:
    """(T,) height of the lowest collision-geom point of each foot (the body and the bodies
    below it, e.g. the T1's contact spheres), by MuJoCo forward kinematics per frame."""
    m = robot.mj_model
    d = mujoco.MjData(m)
    geoms = {name: robot.subtree_geoms(robot.body_index(name)) for name in foot_bodies}
    out = {name: np.empty(result.num_frames) for name in foot_bodies}
    for t, q in enumerate(result.qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        for name, gs in geoms.items():
            out[name][t] = min((geom_lowest_z(m, d, g) for g in gs), default=np.nan)
    return out
