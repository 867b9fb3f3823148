"""The outer loss: how faithful a solved window is, measured without the recipe's knobs.

Stage: calibration. :func:`outer_spec` (host) resolves the measurement points once;
:func:`outer_terms` is jit code on one solved window. Every term compares the robot with
the *unscaled* human or with the floor, never with the recipe's targets: a calibration
cannot lower it by moving the targets, only by making the robot move like the human.

========================  ==================================================================
term                      per window (masked means over its real frames)
========================  ==================================================================
``direction``             1 - cos between each robot limb segment and the human bone
                          (the limbs of :mod:`retarget_jax.problem.limbs`)
``end_effector``          |(p_ee - p_base) / L_robot - (h_ee - h_base) / L_human| for the
                          wrists (base: shoulders) and ankles (base: hips), L the limb's
                          length (robot: straight at the reference pose; human: the median
                          chain); scale-free, 0 = the limb reaches where the human's does
``sliding``               horizontal speed (m/s) of each contact link's origin between two
                          stance frames (the ContactPlan), as ``foot_sliding`` measures it
``penetration``           depth (m) of the deepest collision geom below the terrain
``foot_height``           |height| (m) of a stance foot's lowest sole point above the
                          terrain: without it a calibration could lift the robot off the
                          floor to get rid of penetration
========================  ==================================================================

The measurement points (limb ends, end effectors, their bodies) come from the recipe the
calibration *starts* from and stay fixed while its offsets are fitted. Static: the body
and joint indices; traced: the point offsets and robot lengths, the term weights.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from retarget_jax.motion.canonical import canonical_index
from retarget_jax.motion.skeleton import HumanJoint
from retarget_jax.problem.compile import CompiledProblem, robot_pose_qpos, robot_world_poses
from retarget_jax.problem.limbs import attachment, recipe_limbs
from retarget_jax.problem.recipe import Recipe
from retarget_jax.robots.collision import ground_clearance, ground_height
from retarget_jax.robots.kinematics import body_frames
from retarget_jax.robots.spec import RobotSpec
from retarget_jax.rotations import quat_rotate
from retarget_jax.solve.costs import foot_groups

J_ = HumanJoint
#: (base, end effector) pairs of the end-effector term
END_EFFECTORS: tuple[tuple[HumanJoint, HumanJoint], ...] = (
    (J_.LEFT_SHOULDER, J_.LEFT_WRIST),
    (J_.RIGHT_SHOULDER, J_.RIGHT_WRIST),
    (J_.LEFT_HIP, J_.LEFT_ANKLE),
    (J_.RIGHT_HIP, J_.RIGHT_ANKLE),
)

TERMS: tuple[str, ...] = ("direction", "end_effector", "sliding", "penetration", "foot_height")

_SPEED_EPS = 1e-3  # m/s: sqrt(v^2 + eps^2) - eps, a speed that is differentiable at rest
_HEIGHT_EPS = 1e-4  # m: the same for |height|


@dataclasses.dataclass(frozen=True)
class OuterWeights:
    """Weights of the outer loss's terms (``--weights direction=30,sliding=1``, ...).

    At these weights a limb 4.7 degrees off the human's (1 - cos = 0.0033) weighs as much
    as 10% of a limb length of end-effector error, 0.1 m/s of stance sliding, 10 mm of
    penetration or 10 cm of a floating stance foot. Limb directions weigh most because
    a robot whose proportions differ from the human's cannot match both every limb's
    direction and every end effector's normalised reach: calibrating the T1's rough start
    on the LAFAN1 clip (``benchmarks/calibrate_new_robot.py``, 150 steps), direction 10
    bent knees and elbows away from the human's for reach (held-out 1 - cos 0.00316
    against the hand-written recipe's 0.00258, end-effector error 0.037 against 0.055),
    direction 30 kept both better than the hand-written recipe's (0.00240, 0.050), and
    sliding 1 instead of 0.1 took its stance sliding below the hand-written recipe's as
    well (0.0140 against 0.0143 m/s) at no cost to the other two.
    """

    direction: float = 30.0
    end_effector: float = 1.0
    sliding: float = 1.0
    penetration: float = 10.0
    foot_height: float = 1.0

    def array(self, dtype=jnp.float32) -> jnp.ndarray:
        return jnp.asarray([getattr(self, t) for t in TERMS], dtype)


class OuterSpec(eqx.Module):
    """Measurement points of the outer loss (see the module docstring)."""

    limb_offset: jnp.ndarray  # (L, 2, 3) limb ends in their bodies' frames
    ee_offset: jnp.ndarray  # (E, 2, 3) base point and end effector in their bodies' frames
    ee_robot_len: jnp.ndarray  # (E,) m
    limb_body: tuple[tuple[int, int], ...] = eqx.field(static=True)
    limb_joint: tuple[tuple[int, int], ...] = eqx.field(static=True)
    ee_body: tuple[tuple[int, int], ...] = eqx.field(static=True)
    ee_joint: tuple[tuple[int, int], ...] = eqx.field(static=True)

    @property
    def num_ee(self) -> int:
        return len(self.ee_joint)


def outer_spec(recipe: Recipe, robot: RobotSpec, dtype=jnp.float32) -> OuterSpec:
    """The outer loss's points for a recipe (host): its limbs, and the end effectors whose
    joint and base joint it attaches to two different bodies."""
    limbs = recipe_limbs(recipe)
    where = f"recipe {recipe.name}"
    limb_body = tuple(
        (robot.body_index(lb.body_a, where=where), robot.body_index(lb.body_b, where=where)) for lb in limbs
    )
    limb_joint = tuple((canonical_index(lb.limb.proximal), canonical_index(lb.limb.distal)) for lb in limbs)
    limb_off = np.reshape([(lb.offset_a, lb.offset_b) for lb in limbs], (-1, 2, 3))
    xpos, xquat, _ = robot_world_poses(robot, robot_pose_qpos(robot, dict(recipe.robot_reference_pose), where))
    ee_body, ee_joint, ee_off, ee_len = [], [], [], []
    for base, ee in END_EFFECTORS:
        a, b = attachment(recipe, base), attachment(recipe, ee)
        if a is None or b is None or a.body == b.body:
            continue
        ia, ib = robot.body_index(a.body, where=where), robot.body_index(b.body, where=where)
        pa = xpos[ia] + quat_rotate(xquat[ia], np.asarray(a.offset, np.float64))
        pb = xpos[ib] + quat_rotate(xquat[ib], np.asarray(b.offset, np.float64))
        ee_body.append((ia, ib))
        ee_joint.append((canonical_index(base), canonical_index(ee)))
        ee_off.append((a.offset, b.offset))
        ee_len.append(float(np.linalg.norm(pb - pa)))
    f = lambda x: jnp.asarray(np.asarray(x, np.float64), dtype)  # noqa: E731
    return OuterSpec(
        f(limb_off),
        f(np.reshape(ee_off, (-1, 2, 3))),
        f(ee_len),
        limb_body,
        limb_joint,
        tuple(ee_body),
        tuple(ee_joint),
    )


def human_limb_lengths(spec: OuterSpec, pos: np.ndarray, valid: np.ndarray, parents) -> np.ndarray:
    """(E,) the human's length of each end effector's limb (host): the sum of the median
    lengths of the canonical bones from its base joint to it; NaN where unmeasured."""
    out = []
    for base, ee in spec.ee_joint:
        total, j = 0.0, ee
        while j != base and j >= 0:
            p = parents[j]
            ok = valid[:, j] & valid[:, p] if p >= 0 else np.zeros(len(valid), bool)
            seg = np.linalg.norm(pos[ok, j] - pos[ok, p], axis=-1)
            total = total + (float(np.median(seg)) if seg.size else np.nan)
            j = p
        out.append(total if j == base else np.nan)
    return np.asarray(out, np.float64)


def _points(frames, bodies, offsets):
    b = np.asarray(bodies, np.int32)
    return frames.xpos[:, b] + jnp.einsum("tkij,kj->tki", frames.xmat[:, b], offsets)


def _unit(v):
    return v / jnp.maximum(jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True)), 1e-9)


def _mean(x, m):
    return jnp.sum(jnp.where(m > 0, x, 0.0)) / jnp.maximum(jnp.sum(m), 1.0)


def outer_terms(spec: OuterSpec, problem: CompiledProblem, qpos, joint_valid, ee_len) -> jnp.ndarray:
    """(5,) the terms of :data:`TERMS` for one solved window (jit): ``qpos`` (T, nq),
    ``joint_valid`` (T, J) 1 where the human joint is measured, ``ee_len`` (E,) the
    human's limb lengths (NaN: unmeasured)."""
    c = problem.clip
    mask = c.frame_mask
    frames = jax.vmap(lambda q: body_frames(problem.robot.tree, q))(qpos)
    h = c.human_pos
    zero = jnp.zeros((), qpos.dtype)
    # limb directions
    if spec.limb_body:
        ra = _points(frames, [a for a, _ in spec.limb_body], spec.limb_offset[:, 0])
        rb = _points(frames, [b for _, b in spec.limb_body], spec.limb_offset[:, 1])
        ja = np.asarray([a for a, _ in spec.limb_joint])
        jb = np.asarray([b for _, b in spec.limb_joint])
        cos = jnp.sum(_unit(rb - ra) * _unit(h[:, jb] - h[:, ja]), axis=-1)
        direction = _mean(1.0 - cos, mask[:, None] * joint_valid[:, ja] * joint_valid[:, jb])
    else:
        direction = zero
    # end effectors, normalised by limb length
    if spec.ee_body:
        pa = _points(frames, [a for a, _ in spec.ee_body], spec.ee_offset[:, 0])
        pb = _points(frames, [b for _, b in spec.ee_body], spec.ee_offset[:, 1])
        ja = np.asarray([a for a, _ in spec.ee_joint])
        jb = np.asarray([b for _, b in spec.ee_joint])
        ok_len = jnp.isfinite(ee_len) & (ee_len > 0)
        lh = jnp.where(ok_len, ee_len, 1.0)
        d = (pb - pa) / spec.ee_robot_len[:, None] - (h[:, jb] - h[:, ja]) / lh[:, None]
        err = jnp.sqrt(jnp.sum(d * d, axis=-1) + 1e-12)
        end_effector = _mean(err, mask[:, None] * joint_valid[:, ja] * joint_valid[:, jb] * ok_len)
    else:
        end_effector = zero
    # feet: sliding and stance height
    feet = foot_groups(problem)[0]
    if feet:
        fb = np.asarray(feet, np.int32)
        xy = frames.xpos[:, fb, :2]  # (T, F, 2)
        v = (xy[1:] - xy[:-1]) * c.fps
        speed = jnp.sqrt(jnp.sum(v * v, axis=-1) + _SPEED_EPS**2) - _SPEED_EPS
        pm = (mask[1:] * mask[:-1])[:, None] * c.stance[1:] * c.stance[:-1]
        sliding = _mean(speed, pm)
        sb = np.asarray(problem.sole_body, np.int32)
        soles = frames.xpos[:, sb] + jnp.einsum("tkij,kj->tki", frames.xmat[:, sb], c.sole_offset)  # (T, Ks, 3)
        hs, _ = ground_height(c.terrain, soles[..., :2])
        above = soles[..., 2] - hs
        foot = np.asarray(problem.sole_foot, np.int32)
        onehot = np.eye(len(feet), dtype=bool)[foot]  # (Ks, F)
        lowest = jnp.min(jnp.where(onehot[None], above[..., None], jnp.inf), axis=1)  # (T, F)
        height = jnp.sqrt(lowest * lowest + _HEIGHT_EPS**2) - _HEIGHT_EPS
        foot_height = _mean(height, mask[:, None] * c.stance)
    else:
        sliding = foot_height = zero
    clear = jax.vmap(lambda xp, xm: ground_clearance(problem.robot.collision, xp, xm, c.terrain)[0])(
        frames.xpos, frames.xmat
    )  # (T, P)
    depth = jnp.max(jnp.maximum(-clear, 0.0), axis=1) if clear.shape[1] else jnp.zeros_like(mask)
    penetration = _mean(depth, mask)
    return jnp.stack([direction, end_effector, sliding, penetration, foot_height])
