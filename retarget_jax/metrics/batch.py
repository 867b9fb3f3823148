"""Quality metrics of many results as one jitted reduction over a padded batch.

Stage: metrics (after the solve, before the writers). Two phases, as in the solver:

- host (:meth:`MetricBatch.from_results`, :func:`metric_geometry`): check that the results
  fit together (robot, target bodies, contact links), resolve names to indices, pad every
  clip to one length ``T`` (the last frame repeated, frame mask 0) and stack them on a
  leading ``B`` axis;
- jit (:func:`evaluate_batch`): forward kinematics of every frame, ground clearance of the
  collision geoms, declared self-collision pairs, target errors, joint limits and jerk,
  reduced per clip under the frame mask, vmapped over frames and clips.

Static and traced:

================================  ======================================================
static (a new value recompiles)   B, T, K, F, the robot's topology and collision tables,
                                  target body indices, contact link indices and the
                                  ground points of each contact link, the dtype
traced (no recompile)             qpos, masks, fps, contact plans, targets and offsets,
                                  joint ranges, thresholds (contact height, proxy height,
                                  joint-limit tolerance), terrain heights
================================  ======================================================

Nothing raises inside jit: a clip whose trajectory holds NaN gets NaN metrics, and the
host (:mod:`retarget_jax.metrics.report`) marks its report partial. Padding never changes
a value: every reduction is masked with ``jnp.where`` (not a product, so a NaN can not
leak out of a padded frame), and means divide by the count of real samples.

Axes: ``B`` clips, ``T`` frames (padded), ``K`` tracked targets, ``F`` feet (contact
links), ``P`` ground points, ``C`` self-collision pairs, ``n`` actuated joints,
``nq = 7 + n``. Units: metres, radians, seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from retarget_jax.arrays import AnyArray, Float, Int
from retarget_jax.buckets import bucket_length
from retarget_jax.errors import ConfigError
from retarget_jax.motion.skeleton import LIMBS
from retarget_jax.problem.limbs import unit
from retarget_jax.result import RetargetingResult
from retarget_jax.robots.collision import (
    CollisionArrays,
    HeightField,
    collision_arrays,
    flat_ground,
    ground_clearance,
    self_collision,
)
from retarget_jax.robots.kinematics import body_frames
from retarget_jax.robots.spec import KinematicTree, RobotSpec

#: A contact link is in contact when its lowest ground point is closer than this (m).
CONTACT_HEIGHT = 0.025
#: ... and its origin moves slower than this horizontally (m/s): the same two cues as the
#: ContactPlan's detection (a low foot in swing is not in contact).
CONTACT_SPEED = 0.30
#: Without a contact plan, the lower foot within this height (m) counts as stance.
PROXY_STANCE_HEIGHT = 0.03
#: A joint "violates" its range when it is past it by more than this (rad).
JOINT_LIMIT_TOLERANCE = 1e-6

#: Keys of the dict :func:`evaluate_batch` returns; every value has shape (B,).
CORE_KEYS: tuple[str, ...] = (
    "frames",
    "foot_sliding",
    "foot_sliding_proxy",
    "contact_links",
    "has_plan",
    "contact_preservation",
    "ground_penetration_max",
    "self_penetration_max",
    "penetration",
    "penetration_max",
    "tracking_error_mean",
    "tracking_error_p95",
    "tracking_samples",
    "joint_limit_violation_max",
    "joint_limit_violation_fraction",
    "jerk",
    "limb_direction_mean",
    "limb_direction_p5",
    "limb_direction_samples",
    *(f"limb_direction_{stat}_{limb.name}" for limb in LIMBS for stat in ("mean", "p5")),
)


def default_float_dtype():
    """float64 when ``jax_enable_x64`` is on, else float32 (never a weak type)."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


# --------------------------------------------------------------------------- pytrees


class MetricGeometry(eqx.Module):
    """What the metrics need of a robot: kinematics, joint ranges, collision tables.

    Built on the host by :func:`metric_geometry` (cached per robot, contact links and
    dtype); shared by every clip of a batch.
    """

    tree: KinematicTree
    q_lower: Float[AnyArray, " n"]  # rad
    q_upper: Float[AnyArray, " n"]  # rad
    collision: CollisionArrays
    terrain: HeightField
    contact_height: Float[AnyArray, ""]  # m, see CONTACT_HEIGHT
    contact_speed: Float[AnyArray, ""]  # m/s, see CONTACT_SPEED
    proxy_height: Float[AnyArray, ""]  # m, see PROXY_STANCE_HEIGHT
    limit_tolerance: Float[AnyArray, ""]  # rad, see JOINT_LIMIT_TOLERANCE
    #: (F,) body index (in ``robot.body_names``) of each contact link.
    contact_bodies: tuple[int, ...] = eqx.field(static=True)
    #: (F,) indices into the ground points of the points on each contact link's subtree.
    contact_points: tuple[tuple[int, ...], ...] = eqx.field(static=True)


class MetricBatch(eqx.Module):
    """B results padded to T frames and stacked (see :meth:`from_results`).

    Padding frames repeat the clip's last frame and have ``frame_mask`` 0; padding clips
    (``batch_size`` larger than the number of results) have an all-zero mask.
    """

    qpos: Float[AnyArray, "B T nq"]  # root position m, root quaternion wxyz, joints rad
    frame_mask: Float[AnyArray, "B T"]  # 1 = real frame, 0 = padding
    fps: Float[AnyArray, " B"]  # frames per second
    contacts: Float[AnyArray, "B T F"]  # 1 = foot f in stance (the ContactPlan)
    has_plan: Float[AnyArray, " B"]  # 1 = the clip has a contact plan
    target: Float[AnyArray, "B T K 3"]  # world target positions, m (0 where invalid)
    target_valid: Float[AnyArray, "B T K"]  # 1 = target tracked in that frame
    target_offset: Float[AnyArray, "B K 3"]  # tracked point in its body frame, m
    #: limbs, one slot per entry of retarget_jax.motion.skeleton.LIMBS (L = 9): a result's
    #: own limbs fill their slots, the others stay invalid
    limb_body: Int[AnyArray, "B L 2"]  # body index at each limb's ends
    limb_offset: Float[AnyArray, "B L 2 3"]  # the end points in their bodies, m
    limb_dir: Float[AnyArray, "B T L 3"]  # unit direction of the unscaled human bone (0: invalid)
    limb_valid: Float[AnyArray, "B T L"]  # 1 = both of the limb's human joints present
    #: (K,) body index of each target.
    target_body: tuple[int, ...] = eqx.field(static=True)
    #: (F,) body index of each contact link (column of ``contacts``).
    contact_bodies: tuple[int, ...] = eqx.field(static=True)

    @property
    def num_clips(self) -> int:
        return int(self.qpos.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.qpos.shape[1])

    @classmethod
    def from_results(
        cls,
        results: Sequence[RetargetingResult],
        robot: RobotSpec,
        *,
        contact_bodies: Sequence[str] | None = None,
        length: int | None = None,
        batch_size: int | None = None,
        ids: Sequence[str] | None = None,
        dtype=None,
    ) -> MetricBatch:
        """Pad and stack results of one robot (host).

        Args:
            results: clips of ``robot``; those that track targets must track the same
                bodies (``target_body_names``), those with a contact plan the same links
                (``contact_body_names``). A clip without targets or plan joins with every
                target invalid and ``has_plan`` 0.
            robot: the robot of every result.
            contact_bodies: contact links (body names) to use when no result names any;
                with neither, the foot metrics are not applicable (F = 0).
            length: padded length T (default ``bucket_length(max T)``).
            batch_size: pad the batch to this many clips with masked copies (default: as
                many as results), so that groups of different sizes share a compile.
            ids: names of the results for error messages (default ``results[i]``).
            dtype: float dtype of the arrays (default :func:`default_float_dtype`).

        Raises:
            ConfigError: naming the result when it does not fit the batch.
            UnknownNameError: for a body name that the robot lacks.
        """
        results = list(results)
        if not results:
            raise ConfigError("MetricBatch.from_results: no results to evaluate")
        dtype = dtype or default_float_dtype()
        names = [_result_name(r, i, ids) for i, r in enumerate(results)]
        for r, name in zip(results, names, strict=True):
            check_result(r, robot, name)

        target_names, first = _common_names(
            results, names, "target_body_names", lambda r: r.target_pos_w is not None and len(r.target_body_names) > 0
        )
        contact_names, _ = _common_names(
            results, names, "contact_body_names", lambda r: r.contacts is not None and len(r.contact_body_names) > 0
        )
        if not contact_names and contact_bodies:
            contact_names = tuple(contact_bodies)
        where_t = names[first] if first is not None else "targets"
        target_body = tuple(robot.body_index(b, where=f"{where_t}: target_body_names") for b in target_names)
        contact_idx = tuple(robot.body_index(b, where="contact links") for b in contact_names)

        T_max = max(r.num_frames for r in results)
        T = bucket_length(T_max) if length is None else int(length)
        if T < T_max:
            longest = names[int(np.argmax([r.num_frames for r in results]))]
            raise ConfigError(f"{longest}: {T_max} frames do not fit the padded length {T}")
        B = len(results) if batch_size is None else int(batch_size)
        if B < len(results):
            raise ConfigError(f"batch_size {B} is smaller than the {len(results)} results")
        K, F, nq = len(target_body), len(contact_idx), robot.nq

        qpos = np.zeros((B, T, nq))
        mask = np.zeros((B, T))
        fps = np.ones(B)
        contacts = np.zeros((B, T, F))
        has_plan = np.zeros(B)
        target = np.zeros((B, T, K, 3))
        valid = np.zeros((B, T, K))
        offset = np.zeros((B, K, 3))
        L = len(LIMBS)
        limb_body = np.zeros((B, L, 2), np.int32)
        limb_offset = np.zeros((B, L, 2, 3))
        limb_dir = np.zeros((B, T, L, 3))
        limb_valid = np.zeros((B, T, L))
        for i in range(B):
            r = results[min(i, len(results) - 1)]
            n = r.num_frames
            q = np.asarray(r.qpos, np.float64)
            qpos[i, :n], qpos[i, n:] = q, q[-1]
            fps[i] = float(r.fps)
            if i >= len(results):
                continue  # a padding clip: all frames masked
            mask[i, :n] = 1.0
            if F and r.contacts is not None and len(r.contact_body_names):
                c = np.asarray(r.contacts, np.float64).reshape(n, F)
                contacts[i, :n], contacts[i, n:] = c, c[-1]
                has_plan[i] = 1.0
            if K and r.target_pos_w is not None and len(r.target_body_names):
                tp = np.asarray(r.target_pos_w, np.float64).reshape(n, K, 3)
                ok = np.all(np.isfinite(tp), axis=-1)
                target[i, :n] = np.where(ok[..., None], tp, 0.0)
                valid[i, :n] = ok
                if r.target_offset_b is not None:
                    offset[i] = np.asarray(r.target_offset_b, np.float64).reshape(K, 3)
            if r.limb_names and r.limb_human_dir is not None:
                _fill_limbs(r, robot, names[i], limb_body[i], limb_offset[i], limb_dir[i, :n], limb_valid[i, :n])

        def f(a):
            return jnp.asarray(a, dtype)

        return cls(
            qpos=f(qpos),
            frame_mask=f(mask),
            fps=f(fps),
            contacts=f(contacts),
            has_plan=f(has_plan),
            target=f(target),
            target_valid=f(valid),
            target_offset=f(offset),
            limb_body=jnp.asarray(limb_body),
            limb_offset=f(limb_offset),
            limb_dir=f(limb_dir),
            limb_valid=f(limb_valid),
            target_body=target_body,
            contact_bodies=contact_idx,
        )


def _fill_limbs(r: RetargetingResult, robot: RobotSpec, name: str, body, offset, direction, valid) -> None:
    """Put a result's limbs into their slots of :data:`LIMBS` (host, in place)."""
    slots = [limb.name for limb in LIMBS]
    hdir = np.asarray(r.limb_human_dir, np.float64)
    for k, limb in enumerate(r.limb_names):
        if limb not in slots:
            raise ConfigError(f"{name}: unknown limb '{limb}' in limb_names; known: {slots}")
        j = slots.index(limb)
        body[j] = [robot.body_index(b, where=f"{name}: limb_body_names") for b in r.limb_body_names[k]]
        offset[j] = np.asarray(r.limb_offset_b, np.float64)[k]
        ok = np.isfinite(hdir[:, k]).all(axis=-1)
        direction[:, j] = np.where(ok[:, None], hdir[:, k], 0.0)
        valid[:, j] = ok


def _result_name(r: RetargetingResult, i: int, ids: Sequence[str] | None) -> str:
    if ids is not None:
        return f"result '{ids[i]}'"
    src = (r.provenance or {}).get("source_path")
    return f"results[{i}]" + (f" ({src})" if src else "")


def check_result(r: RetargetingResult, robot: RobotSpec, name: str) -> None:
    """ConfigError naming ``name`` unless ``r`` is a trajectory of ``robot`` (host)."""
    if r.robot != robot.name:
        raise ConfigError(f"{name}: robot '{r.robot}' differs from the batch's robot '{robot.name}'")
    if tuple(r.dof_names) != tuple(robot.dof_names):
        raise ConfigError(f"{name}: dof_names differ from robot {robot.name}'s {robot.num_dof} joints")
    if r.num_frames < 1 or np.shape(r.qpos) != (r.num_frames, robot.nq):
        raise ConfigError(f"{name}: expected qpos of shape (T >= 1, {robot.nq}), found {np.shape(r.qpos)}")
    if not (np.isfinite(r.fps) and r.fps > 0):
        raise ConfigError(f"{name}: fps must be finite and > 0, found {r.fps}")


def _common_names(results, names, field: str, present) -> tuple[tuple[str, ...], int | None]:
    """The one tuple of names that every result with ``present(r)`` carries in ``field``."""
    common: tuple[str, ...] = ()
    first: int | None = None
    for i, r in enumerate(results):
        if not present(r):
            continue
        own = tuple(getattr(r, field))
        if first is None:
            common, first = own, i
        elif own != common:
            raise ConfigError(
                f"{names[i]}: {field} {list(own)} differ from {list(common)} of {names[first]}; "
                "results in one metric batch must share them"
            )
    return common, first


# --------------------------------------------------------------------------- geometry

_GEOMETRY_CACHE: dict[tuple, MetricGeometry] = {}


def metric_geometry(
    robot: RobotSpec,
    contact_bodies: Sequence[int | str] = (),
    *,
    dtype=None,
    contact_height: float = CONTACT_HEIGHT,
    contact_speed: float = CONTACT_SPEED,
    proxy_height: float = PROXY_STANCE_HEIGHT,
    limit_tolerance: float = JOINT_LIMIT_TOLERANCE,
) -> MetricGeometry:
    """:class:`MetricGeometry` of ``robot`` with contact links ``contact_bodies`` (body
    indices or names; pass ``batch.contact_bodies``). Cached per (robot, links, dtype,
    thresholds). Raises ConfigError for a contact link with no collision geom on it or
    below it (its clearance would be undefined)."""
    dtype = dtype or default_float_dtype()
    idx = tuple(
        b if isinstance(b, int | np.integer) else robot.body_index(str(b), where="contact links")
        for b in contact_bodies
    )
    idx = tuple(int(b) for b in idx)
    key = (
        robot.name,
        str(robot.mjcf_path),
        idx,
        jnp.dtype(dtype).name,
        contact_height,
        contact_speed,
        proxy_height,
        limit_tolerance,
    )
    hit = _GEOMETRY_CACHE.get(key)
    if hit is not None:
        return hit
    col = collision_arrays(robot, dtype=dtype)
    points = []
    for b in idx:
        geoms = set(robot.subtree_geoms(b))
        own = tuple(i for i, g in enumerate(col.point_geom) if g in geoms)
        if not own:
            raise ConfigError(
                f"contact link '{robot.body_names[b]}' of robot {robot.name} has no collision "
                "geom on it or below it; its ground clearance is undefined"
            )
        points.append(own)

    def f(a):
        return jnp.asarray(a, dtype)

    tree = jax.tree.map(f, robot.tree)
    geo = MetricGeometry(
        tree=tree,
        q_lower=f(robot.dof_ranges[:, 0]),
        q_upper=f(robot.dof_ranges[:, 1]),
        collision=col,
        terrain=flat_ground(dtype),
        contact_height=f(contact_height),
        contact_speed=f(contact_speed),
        proxy_height=f(proxy_height),
        limit_tolerance=f(limit_tolerance),
        contact_bodies=idx,
        contact_points=tuple(points),
    )
    _GEOMETRY_CACHE[key] = geo
    return geo


# --------------------------------------------------------------------------- jit


#: Times :func:`evaluate_batch` was traced in this process (for tests of retracing).
TRACE_COUNT = 0


def _frame(geo: MetricGeometry, target_body: tuple[int, ...], qpos, xpos, xmat, target, target_valid, offset):
    """Per-frame quantities for one frame (qpos (nq,), body positions (B, 3) and rotations (B, 3, 3))."""
    col = geo.collision
    dt = qpos.dtype
    if col.point_pos.shape[0]:
        clear, _, _ = ground_clearance(col, xpos, xmat, geo.terrain)  # (P,)
        ground = jnp.maximum(0.0, -jnp.min(clear))
    else:
        clear, ground = jnp.zeros((0,), dt), jnp.zeros((), dt)
    if col.num_pairs:
        dist, _, _, _ = self_collision(col, xpos, xmat)  # (C,)
        self_depth = jnp.maximum(0.0, jnp.max(-dist))
    else:
        self_depth = jnp.zeros((), dt)
    F = len(geo.contact_bodies)
    if F:
        link_clear = jnp.stack([jnp.min(clear[jnp.asarray(p)]) for p in geo.contact_points])  # (F,)
        link_xy = xpos[jnp.asarray(geo.contact_bodies), :2]  # (F, 2)
    else:
        link_clear, link_xy = jnp.zeros((0,), dt), jnp.zeros((0, 2), dt)
    if target_body:
        b = jnp.asarray(target_body)
        pts = xpos[b] + jnp.einsum("kij,kj->ki", xmat[b], offset)  # (K, 3)
        d = pts - target
        # sqrt of a masked square: an invalid target (value 0) gives a finite, unused number
        err = jnp.sqrt(jnp.sum(d * d, axis=-1))
        err = jnp.where(target_valid > 0, err, jnp.nan)
    else:
        err = jnp.zeros((0,), dt)
    q = qpos[7:]
    viol = jnp.maximum(0.0, jnp.maximum(geo.q_lower - q, q - geo.q_upper))  # (n,)
    return ground, self_depth, link_clear, link_xy, err, viol


def _masked_mean(x, w):
    """Mean of x over entries with w (bool), 0 where there are none; NaN-safe outside w."""
    n = jnp.sum(w)
    return jnp.where(n > 0, jnp.sum(jnp.where(w, x, 0.0)) / jnp.maximum(n, 1), 0.0), n


def _masked_max(x, w):
    return jnp.max(jnp.where(w, x, 0.0), initial=0.0)


def _limb_cosines(frames, limb_body, limb_offset, limb_dir):
    """(T, L) cosine between each robot limb segment and the human bone's direction."""

    def ends(k):
        b = limb_body[:, k]
        return frames.xpos[:, b] + jnp.einsum("tlij,lj->tli", frames.xmat[:, b], limb_offset[:, k])

    return jnp.sum(unit(ends(1) - ends(0)) * limb_dir, axis=-1)


def _clip(
    geo: MetricGeometry,
    target_body,
    qpos,
    mask,
    fps,
    contacts,
    has_plan,
    target,
    target_valid,
    offset,
    limb_body,
    limb_offset,
    limb_dir,
    limb_valid,
):
    """Metrics of one clip: qpos (T, nq), mask (T,), contacts (T, F), targets (T, K, 3),
    limbs (L, 2) bodies, (L, 2, 3) offsets, (T, L, 3) human directions, (T, L) validity."""
    frames = body_frames(geo.tree, qpos)  # (T, B, 3), (T, B, 3, 3)
    ground, self_depth, link_clear, link_xy, err, viol = jax.vmap(
        lambda q, p, r, t, v: _frame(geo, target_body, q, p, r, t, v, offset)
    )(qpos, frames.xpos, frames.xmat, target, target_valid)
    real = mask > 0
    T = qpos.shape[0]
    dt = qpos.dtype
    zero = jnp.zeros((), dt)
    out = {"frames": jnp.sum(mask)}

    # penetration: per frame ground depth + self depth
    depth = ground + self_depth
    out["ground_penetration_max"] = _masked_max(ground, real)
    out["self_penetration_max"] = _masked_max(self_depth, real)
    out["penetration"], _ = _masked_mean(depth, real)
    out["penetration_max"] = _masked_max(depth, real)

    # feet
    F = link_clear.shape[1]
    out["contact_links"] = jnp.asarray(F, dt)
    out["has_plan"] = has_plan
    if F and T >= 2:
        speed = jnp.linalg.norm(link_xy[1:] - link_xy[:-1], axis=-1) * fps  # (T-1, F)
        both = (real[1:] & real[:-1])[:, None]
        stance = contacts > 0.5
        plan_pairs = both & stance[1:] & stance[:-1]
        lowest = link_clear <= jnp.min(link_clear, axis=1, keepdims=True)
        proxy = lowest & (link_clear < geo.proxy_height)
        proxy_pairs = both & proxy[1:] & proxy[:-1]
        plan_val, _ = _masked_mean(speed, plan_pairs)
        proxy_val, _ = _masked_mean(speed, proxy_pairs)
        use_plan = has_plan > 0.5
        out["foot_sliding"] = jnp.where(use_plan, plan_val, proxy_val)
        out["foot_sliding_proxy"] = jnp.where(use_plan, 0.0, 1.0).astype(dt)
        # a frame's link speed: that of the pair ending at it (the first frame: the first pair)
        frame_speed = jnp.concatenate([speed[:1], speed], axis=0)
        in_contact = (link_clear < geo.contact_height) & (frame_speed < geo.contact_speed)
        agree = (stance == in_contact).astype(dt)
        out["contact_preservation"], _ = _masked_mean(agree, jnp.broadcast_to(real[:, None], agree.shape))
    else:
        out["foot_sliding"] = zero
        out["foot_sliding_proxy"] = jnp.where(has_plan > 0.5, 0.0, 1.0).astype(dt)
        out["contact_preservation"] = zero

    # tracking error over real frames and valid targets (err is NaN elsewhere)
    ok = real[:, None] & (target_valid > 0)
    if err.shape[1]:
        out["tracking_error_mean"], n_ok = _masked_mean(err, ok)
        flat = jnp.where(ok, err, jnp.nan).reshape(-1)
        p95 = jnp.nanpercentile(flat, 95.0)
        out["tracking_error_p95"] = jnp.where(n_ok > 0, p95, 0.0)
        out["tracking_samples"] = n_ok.astype(dt)
    else:
        out["tracking_error_mean"] = out["tracking_error_p95"] = out["tracking_samples"] = zero

    # limb directions: cosine to the unscaled human bone, over real frames where both joints are
    cos = _limb_cosines(frames, limb_body, limb_offset, limb_dir)
    ok = real[:, None] & (limb_valid > 0)
    out["limb_direction_mean"], n_ok = _masked_mean(cos, ok)
    out["limb_direction_p5"] = jnp.where(n_ok > 0, jnp.nanpercentile(jnp.where(ok, cos, jnp.nan), 5.0), 0.0)
    out["limb_direction_samples"] = n_ok.astype(dt)
    for k, limb in enumerate(LIMBS):
        m, n_k = _masked_mean(cos[:, k], ok[:, k])
        out[f"limb_direction_mean_{limb.name}"] = m
        p5 = jnp.nanpercentile(jnp.where(ok[:, k], cos[:, k], jnp.nan), 5.0)
        out[f"limb_direction_p5_{limb.name}"] = jnp.where(n_k > 0, p5, 0.0)

    # joint limits
    out["joint_limit_violation_max"] = _masked_max(viol, real[:, None])
    frame_viol = (jnp.max(viol, axis=1, initial=0.0) > geo.limit_tolerance).astype(dt)
    out["joint_limit_violation_fraction"], _ = _masked_mean(frame_viol, real)

    # jerk: third finite difference of the joints over 4 consecutive real frames
    if T >= 4:
        q = qpos[:, 7:]
        d3 = q[3:] - 3.0 * q[2:-1] + 3.0 * q[1:-2] - q[:-3]  # (T-3, n)
        w = real[3:] & real[2:-1] & real[1:-2] & real[:-3]
        per_t = jnp.mean(jnp.abs(d3), axis=1) * fps**3
        out["jerk"], _ = _masked_mean(per_t, w)
    else:
        out["jerk"] = zero
    return {k: jnp.asarray(v, dt) for k, v in out.items()}


@jax.jit
def evaluate_batch(batch: MetricBatch, geometry: MetricGeometry) -> dict[str, jnp.ndarray]:
    """Metrics of every clip of ``batch`` in one compiled call (jit).

    One compile per (robot, B, T, K, F, dtype); every array of ``batch`` and ``geometry``
    is traced. Returns a dict of (B,) arrays keyed by :data:`CORE_KEYS`, SI units:

    - ``frames``: real frame count.
    - ``foot_sliding`` (m/s): mean horizontal speed of the contact links' body origins
      over frame pairs (t, t+1) both real and both in stance for that foot. Stance is the
      contact plan when the clip has one (``has_plan``), else the proxy: the foot is the
      lowest of the feet (by its lowest ground point) and within ``proxy_height`` of the
      ground in both frames (``foot_sliding_proxy`` = 1). 0 without such pairs.
    - ``contact_preservation`` (fraction): mean over real frames and feet of
      [plan stance == link in contact], in contact = lowest ground point below
      ``contact_height`` and horizontal speed below ``contact_speed`` (the plan's own
      cues: a low foot in swing is not in contact); meaningful only with a plan.
    - ``ground_penetration_max`` (m): max over real frames of the depth of the lowest
      ground point below the terrain (>= 0). ``self_penetration_max`` (m): max over real
      frames and declared pairs of the capsules' overlap (no margin). ``penetration`` /
      ``penetration_max`` (m): mean / max over real frames of ground + self depth.
    - ``tracking_error_mean`` / ``_p95`` (m): |body point - target| over real frames and
      valid targets (``tracking_samples`` counts them; 0 when there are none).
    - ``joint_limit_violation_max`` (rad), ``joint_limit_violation_fraction``: fraction of
      real frames with a joint past its range by more than ``limit_tolerance``.
    - ``jerk`` (rad/s^3): mean over joints and over t with frames t..t+3 real of
      |q[t+3] - 3 q[t+2] + 3 q[t+1] - q[t]| fps^3; 0 with fewer than 4 frames.
    - ``limb_direction_mean`` / ``_p5`` (cosine, 1 = same direction): between each robot
      limb segment (the points the recipe attaches the limb's two joints to) and the
      unscaled human bone, over real frames and limbs with both joints present
      (``limb_direction_samples`` counts them); per limb as ``limb_direction_mean_<limb>``
      and ``limb_direction_p5_<limb>`` (names: retarget_jax.motion.skeleton.LIMBS).
    - ``contact_links`` (F), ``has_plan`` (0/1): for the host's applicability checks.

    Shape mismatches between batch and geometry raise ConfigError while tracing.
    """
    global TRACE_COUNT
    TRACE_COUNT += 1
    nq = 7 + geometry.q_lower.shape[0]
    if batch.qpos.shape[-1] != nq:
        raise ConfigError(f"metric batch has qpos of size {batch.qpos.shape[-1]}, the robot needs {nq}")
    if tuple(batch.contact_bodies) != tuple(geometry.contact_bodies):
        raise ConfigError(
            f"metric batch contact links {batch.contact_bodies} differ from the geometry's "
            f"{geometry.contact_bodies}; build it with metric_geometry(robot, batch.contact_bodies)"
        )
    clip = jax.vmap(lambda *a: _clip(geometry, batch.target_body, *a))
    return clip(
        batch.qpos,
        batch.frame_mask,
        batch.fps,
        batch.contacts,
        batch.has_plan,
        batch.target,
        batch.target_valid,
        batch.target_offset,
        batch.limb_body,
        batch.limb_offset,
        batch.limb_dir,
        batch.limb_valid,
    )


def evaluate_results_core(
    results: Sequence[RetargetingResult],
    robot: RobotSpec,
    *,
    contact_bodies: Sequence[str] | None = None,
    length: int | None = None,
) -> dict[str, np.ndarray]:
    """Convenience: pack ``results`` into one batch, evaluate, return (len(results),) numpy
    arrays per key (host). :func:`retarget_jax.metrics.evaluate_results` builds reports."""
    batch = MetricBatch.from_results(results, robot, contact_bodies=contact_bodies, length=length)
    out = evaluate_batch(batch, metric_geometry(robot, batch.contact_bodies, dtype=batch.qpos.dtype))
    return {k: np.asarray(v)[: len(results)] for k, v in jax.device_get(out).items()}
