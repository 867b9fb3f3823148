"""RetargetingProblem (host: names) -> CompiledProblem (pytree: arrays and indices only).

``compile_problem`` is the one place where names are resolved: human joint roles against
the motion, body and joint names against the robot. Everything after it is jit code.

Static (changes shapes or Python control flow): robot topology, the human skeleton's
parent table (always the canonical one, see :mod:`retarget_jax.motion.canonical`), the
number of frames T (the length bucket), the number of targets.
Traced (changing them never recompiles): targets, weights, offsets, scales, masks. So
every source (LAFAN1, SMPL, vendor BVH, keypoints) compiles to the same shapes for a
recipe: a joint or frame the source lacks is a 0 in ``pos_valid`` / ``rot_valid``, and a
source without orientations (or without known joint frames) has ``rot_valid`` all 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence, Set
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from retarget_jax.arrays import AnyArray, Float
from retarget_jax.errors import ConfigError, InvalidMotionError
from retarget_jax.motion.canonical import (
    CANONICAL_JOINTS,
    CANONICAL_PARENTS,
    LEFT_HIP,
    RIGHT_HIP,
    canonical_index,
    canonicalize,
    hip_axis,
    hip_heading,
)
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.skeleton import CANONICAL_PARENT, HumanJoint
from retarget_jax.problem.contacts import ContactPlan, ContactThresholds, detect_contacts
from retarget_jax.problem.limbs import recipe_limbs
from retarget_jax.problem.recipe import Recipe, ScaleGroup, TargetSpec, source_conventions
from retarget_jax.robots.collision import (
    CollisionArrays,
    HeightField,
    collision_arrays,
    flat_ground,
    geom_ground_points,
)
from retarget_jax.robots.spec import KinematicTree, RobotSpec, geom_lowest_z
from retarget_jax.rotations import (
    array_namespace,
    axis_angle_to_quat,
    mat_to_quat,
    quat_conj,
    quat_exp,
    quat_mul,
    quat_rotate,
)

_UP = np.array([0.0, 0.0, 1.0])


@dataclasses.dataclass(frozen=True)
class CostWeights:
    """Global cost weights (per-target weights live in the recipe). All are traced: a
    sweep over them never recompiles, and 0 switches a term off.

    Smoothness: ``smooth_*`` weigh squared velocities (per second) of the root position,
    root orientation and joints; ``accel_*`` squared accelerations (per second squared)
    of the same. ``posture`` weighs the squared distance of the joints from the recipe's
    default pose.

    Physical plausibility (see :mod:`retarget_jax.solve.costs`):
    ``ground``: squared depth of every collision geom below the ground (m);
    ``contact_height``: during stance (the ContactPlan), squared height of each contact
    link's sole points above their flat-foot height (m), per foot; ``contact_slide``:
    during stance, squared horizontal velocity of those points (m/s), per foot;
    ``self_collision``: squared depth of each declared geom pair inside its margin (m);
    ``joint_velocity``: squared excess of each joint's speed over its limit (rad/s).

    Limb fidelity: ``direction`` weighs, per limb (:mod:`retarget_jax.problem.limbs`),
    the squared difference between the robot segment's unit vector and the unscaled human
    bone's (times the limb's multiplier: the recipe's ``limbs``, else 1, the forearms 0).
    0.1 is measured (``benchmarks/limb_direction.py``, docs/limbs.md): on the LAFAN1 test
    clip it lifts the mean limb cosine from 0.9885 to 0.9928 and the lowest limb's from
    0.976 to 0.987 for +2% jerk; 0.2 gains little more (0.9939) and pulls the wrists
    further from their targets on shorter windows (compare_peer --quick: +7% end-effector
    error against +3%). With the direction term the feet slid 0.6% more; ``contact_slide``
    went from 10 to 12 to take that back.
    """

    smooth_position: float = 0.02
    smooth_rotation: float = 0.005
    smooth_joint: float = 0.002
    accel_position: float = 2e-5
    accel_rotation: float = 1e-5
    accel_joint: float = 1e-5
    posture: float = 0.02
    ground: float = 1000.0
    contact_height: float = 50.0
    contact_slide: float = 12.0
    self_collision: float = 2000.0
    joint_velocity: float = 1.0
    direction: float = 0.1

    #: the physical-plausibility terms (``without_plausibility`` zeroes them)
    PLAUSIBILITY: ClassVar[tuple[str, ...]] = (
        "accel_position",
        "accel_rotation",
        "accel_joint",
        "ground",
        "contact_height",
        "contact_slide",
        "self_collision",
        "joint_velocity",
    )

    def without_plausibility(self) -> CostWeights:
        """These weights with the physical-plausibility terms switched off (0)."""
        return dataclasses.replace(self, **{k: 0.0 for k in self.PLAUSIBILITY})


@dataclasses.dataclass(frozen=True)
class JointVelocityLimits:
    """Joint speed limits (rad/s): ``default`` for every joint, ``per_joint`` overrides by
    MJCF joint name. Defaults are a planning bound, not a motor datasheet: set the real
    figures of your robot per joint."""

    default: float = 20.0
    per_joint: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def resolve(self, robot: RobotSpec, where: str = "joint_velocity_limits") -> np.ndarray:
        out = np.full(robot.num_dof, float(self.default))
        for name, v in self.per_joint.items():
            out[robot.dof_index(name, where=f"{where}.per_joint")] = float(v)
        if not (np.isfinite(out).all() and (out > 0).all()):
            raise ConfigError(f"{where}: limits must be finite and > 0, got {out.tolist()}")
        return out


class RobotArrays(eqx.Module):
    """What the solver needs of the robot: shared by every clip in a batch."""

    tree: KinematicTree
    q_lower: Float[AnyArray, " n"]
    q_upper: Float[AnyArray, " n"]
    q_default: Float[AnyArray, " n"]
    collision: CollisionArrays  # ground points of every collision geom, declared pairs


class ClipArrays(eqx.Module):
    """One clip's data and traced weights (stacked along a leading B axis in a batch).

    The fields in :data:`PER_FRAME_FIELDS` have a leading frame axis T: padding, windows
    and the solver's coarse level cut or extend those and keep the rest.
    Axis letters: :mod:`retarget_jax.arrays`.
    """

    human_pos: Float[AnyArray, "*batch T J 3"]  # world, metres
    human_quat: Float[AnyArray, "*batch T J 4"]  # wxyz (identity where the source has none)
    frame_mask: Float[AnyArray, "*batch T"]  # 1 for real frames, 0 for padding
    pos_valid: Float[AnyArray, "*batch T Kp"]  # 1 where the position target's joint is in the source
    rot_valid: Float[AnyArray, "*batch T Kr"]  # 1 where the orientation target's joint frame is known
    fps: Float[AnyArray, "*batch"]
    bone_scale: Float[AnyArray, "*batch J"]  # scale of the bone from each joint's parent to it
    bone_lateral_scale: Float[AnyArray, "*batch J"]  # scale of its component along the hip axis
    root_scale: Float[AnyArray, "*batch"]  # scale of the root trajectory about root_anchor
    root_anchor: Float[AnyArray, "*batch 3"]  # point the root trajectory is scaled about (z = 0)
    z_offset: Float[AnyArray, "*batch"]  # vertical shift putting the robot's soles on the floor
    pos_offset: Float[AnyArray, "*batch Kp 3"]  # tracked point in the body frame
    pos_target_dz: Float[AnyArray, "*batch Kp"]  # vertical shift of the scaled human target
    pos_weight: Float[AnyArray, "*batch Kp"]
    rot_offset: Float[AnyArray, "*batch Kr 4"]  # R_target = R_human * rot_offset
    rot_weight: Float[AnyArray, "*batch Kr"]
    limb_offset: Float[AnyArray, "*batch L 2 3"]  # the limb's two robot points, each in its body's frame
    limb_weight: Float[AnyArray, "*batch L"]  # direction-cost weight of each limb
    limb_valid: Float[AnyArray, "*batch T L"]  # 1 where both of the limb's human joints are valid
    smooth_weight: Float[AnyArray, "*batch nv"]
    accel_weight: Float[AnyArray, "*batch nv"]
    posture_weight: Float[AnyArray, "*batch n"]
    stance: Float[AnyArray, "*batch T F"]  # ContactPlan: 1 where foot f is in stance
    sole_offset: Float[AnyArray, "*batch Ks 3"]  # sole points in their foot body's frame
    sole_rest_z: Float[AnyArray, "*batch Ks"]  # height of each sole point above its foot's lowest, flat foot
    sole_scale: Float[AnyArray, "*batch Ks"]  # 1 / number of sole points of its foot (per-foot weights)
    ground_weight: Float[AnyArray, "*batch"]
    contact_height_weight: Float[AnyArray, "*batch"]
    contact_slide_weight: Float[AnyArray, "*batch"]
    self_collision_weight: Float[AnyArray, "*batch"]
    velocity_limit: Float[AnyArray, "*batch n"]  # rad/s
    velocity_weight: Float[AnyArray, "*batch"]
    terrain: HeightField  # ground height (flat z = 0 by default)


#: ClipArrays fields with a leading frame axis (T, ...).
PER_FRAME_FIELDS: tuple[str, ...] = (
    "human_pos",
    "human_quat",
    "frame_mask",
    "pos_valid",
    "rot_valid",
    "limb_valid",
    "stance",
)


class CompiledProblem(eqx.Module):
    """A retargeting problem as a pure pytree.

    Index fields are static tuples: they are the same for every clip of a recipe and
    fix the shapes. ``clip`` carries everything that may differ between clips.
    """

    robot: RobotArrays
    clip: ClipArrays
    human_parents: tuple[int, ...] = eqx.field(static=True)
    pos_joint: tuple[int, ...] = eqx.field(static=True)
    pos_body: tuple[int, ...] = eqx.field(static=True)
    rot_joint: tuple[int, ...] = eqx.field(static=True)
    rot_body: tuple[int, ...] = eqx.field(static=True)
    sole_body: tuple[int, ...] = eqx.field(static=True)  # (Ks,) foot body of each sole point
    sole_foot: tuple[int, ...] = eqx.field(static=True)  # (Ks,) its foot (column of ``stance``)
    limb_joint: tuple[tuple[int, int], ...] = eqx.field(static=True)  # (L, 2) human joints of each limb
    limb_body: tuple[tuple[int, int], ...] = eqx.field(static=True)  # (L, 2) robot bodies of its ends
    root_joint: int = eqx.field(static=True)

    @property
    def num_frames(self) -> int:
        return int(self.clip.frame_mask.shape[-1])


@dataclasses.dataclass(frozen=True)
class RetargetingProblem:
    """Host-side problem: a motion, a recipe and a robot, with names still as names."""

    motion: HumanMotion
    recipe: Recipe
    robot: RobotSpec
    weights: CostWeights = CostWeights()
    #: explicit stance of the recipe's ground feet; None = detect from the source
    contacts: ContactPlan | None = None
    contact_thresholds: ContactThresholds = ContactThresholds()
    joint_velocity_limits: JointVelocityLimits = JointVelocityLimits()
    terrain: HeightField | None = None  # None = the flat ground z = 0

    def contact_plan(self) -> ContactPlan:
        """The plan the solve uses: the explicit one, else detected from the source."""
        feet = self.recipe.ground_joints
        if self.contacts is not None:
            if self.contacts.num_frames != self.motion.num_frames:
                raise InvalidMotionError(
                    f"{self.motion.source_path or '<motion>'}: the contact plan has "
                    f"{self.contacts.num_frames} frames, the motion {self.motion.num_frames}"
                )
            return ContactPlan(self.contacts.for_feet(feet), feet, self.contacts.source, self.contacts.thresholds)
        present = [
            f for f in feet if f in self.motion.joint_names and self.motion.valid_mask[:, self.motion.index(f)].any()
        ]
        detected = detect_contacts(self.motion, tuple(present), self.contact_thresholds)
        stance = np.zeros((self.motion.num_frames, len(feet)), dtype=bool)
        for i, f in enumerate(feet):
            if f in present:
                stance[:, i] = detected.stance[:, present.index(f)]
        return ContactPlan(stance, feet, "detected", self.contact_thresholds)

    def config_hash(self) -> str:
        payload = json.dumps(
            {
                "recipe": dataclasses.asdict(self.recipe),
                "weights": dataclasses.asdict(self.weights),
                "robot": self.robot.name,
                "contact_thresholds": dataclasses.asdict(self.contact_thresholds),
                "joint_velocity_limits": dataclasses.asdict(self.joint_velocity_limits),
                "explicit_contacts": self.contacts is not None,
                "terrain": self.terrain is not None,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def robot_pose_qpos(robot: RobotSpec, pose: dict[str, float], where: str) -> np.ndarray:
    q = np.array(robot.mj_model.qpos0, dtype=np.float64)
    for name, v in pose.items():
        q[7 + robot.dof_index(name, where=where)] = v
    return q


def robot_world_poses(robot: RobotSpec, qpos: np.ndarray):
    m = robot.mj_model
    d = mujoco.MjData(m)
    d.qpos[:] = qpos
    mujoco.mj_kinematics(m, d)
    return d.xpos[1:].copy(), d.xquat[1:].copy(), d


def _nanpercentile(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if x.size else 0.0


@dataclasses.dataclass(frozen=True)
class _Source:
    """What :func:`resolve_source` makes of a problem's motion: the motion with invalid
    samples set to NaN, the joint roles it has (``present``), its joint frames (None when
    orientation targets must be masked) and the robot at its reference and default poses."""

    motion: HumanMotion
    present: frozenset[HumanJoint]
    conventions: Mapping[HumanJoint, np.ndarray] | None
    root_joint: int
    ref_qpos: np.ndarray
    default_qpos: np.ndarray
    ref_xpos: np.ndarray  # (B, 3) body origins at the reference pose
    ref_xquat: np.ndarray  # (B, 4)


@dataclasses.dataclass(frozen=True)
class Scales:
    """Per-bone scales of the figure (see :func:`measure_scales`)."""

    group: Mapping[str, float]  # scale group name -> ratio (times its factor)
    bone: np.ndarray  # (J,) scale of the bone from each joint's parent to it
    lateral: np.ndarray  # (J,) scale of its component along the hip axis
    root: float  # scale of the root trajectory


def compile_problem(problem: RetargetingProblem, *, dtype=jnp.float32) -> CompiledProblem:
    """Resolve names, derive scales and offsets, and return arrays only.

    The steps, each a function of host data that tests call on hand-built inputs:
    :func:`resolve_source` (names -> indices, masks, the robot's reference poses),
    :func:`measure_scales` (bone scales from the clip's own segment lengths),
    :func:`ground_shift` (the vertical shift that puts the robot's soles where the
    human's feet are), :func:`position_target_shifts` and :func:`orientation_offsets`
    (per-target offsets), :func:`sole_points` (the feet's contact points),
    :func:`limb_arrays` (the limbs of the direction cost), then :func:`_pack`.

    Raises typed errors naming the recipe field and listing valid names when a joint or
    body is unknown. Non-finite motion values are *not* rejected here: the jitted solve
    marks such a clip ``invalid_input`` so that its batch-mates are unaffected.
    """
    src = resolve_source(problem)
    recipe, robot = problem.recipe, problem.robot
    scales = measure_scales(src, recipe, robot)
    # The scaled figure (what the solver will track, before the ground shift): heights are
    # measured on it, not on the raw clip, since a bone scaled by its own group (say, a
    # wide robot's hip bones) moves everything below it.
    pos, quat, valid = canonicalize(src.motion)
    first = int(np.argmax(valid[:, src.root_joint]))
    anchor = np.array([*np.nan_to_num(pos[first, src.root_joint, :2]), 0.0])
    scaled_z = np.where(valid, scaled_figure(pos, scales.bone, scales.lateral, scales.root, anchor)[..., 2], np.nan)
    z_offset, floor_z = ground_shift(src, recipe, robot, scaled_z)
    pos_t = [t for t in recipe.targets if t.position_weight > 0]
    rot_t = [t for t in recipe.targets if t.orientation_weight > 0]
    pos_dz = position_target_shifts(src, pos_t, scaled_z, floor_z)
    if quat is None:
        quat = np.zeros((*pos.shape[:2], 4))
        quat[..., 0] = 1.0
    rot_offset, rot_known, levelled = orientation_offsets(src, rot_t, robot)
    for t, lev in zip(rot_t, levelled, strict=True):
        if lev:  # no joint frame from the source: the body as at rest, turned to the hips' heading
            quat[:, canonical_index(t.human)] = hip_heading(pos)
    figure = _Figure(pos, quat, valid, anchor, z_offset)
    return _pack(problem, src, scales, figure, _Targets(pos_t, pos_dz, rot_t, rot_offset, rot_known, levelled), dtype)


def resolve_source(problem: RetargetingProblem) -> _Source:
    """Check the recipe against the robot and the motion, and pose the robot.

    The source's own joint frames are used, else the recipe's named table, else none
    (the orientation targets are then masked and the recipe tracks positions only).
    Measurements (scales, heights, foot pitch) use valid samples only: a masked joint's
    values may be anything, so they become NaN here."""
    motion, recipe, robot = problem.motion, problem.recipe, problem.robot
    where = f"recipe {recipe.name}"
    if recipe.robot != robot.name:
        raise ConfigError(f"{where} is for robot '{recipe.robot}', not '{robot.name}'")
    conv = motion.conventions
    if conv is None and recipe.source_conventions:
        conv = source_conventions(recipe.source_conventions)
    if motion.orientations is None:
        conv = None
    valid_src = motion.valid_mask
    if not valid_src.all():
        motion = dataclasses.replace(motion, positions=np.where(valid_src[..., None], motion.positions, np.nan))
    present = frozenset(j for j, ok in zip(motion.joint_names, valid_src.any(axis=0), strict=True) if ok)
    if recipe.root_human not in present:
        raise InvalidMotionError(
            f"{motion.source_path or '<motion>'}: the recipe's root joint "
            f"'{recipe.root_human.value}' is not in the motion; joints: "
            f"{[j.value for j in motion.joint_names]}"
        )
    root_b = robot.body_index(recipe.root_body, where=f"{where}: root.body")
    if root_b != robot.tree.root:
        raise ConfigError(
            f"{where}: root.body '{recipe.root_body}' is not the floating base '{robot.body_names[robot.tree.root]}'"
        )
    for t in recipe.targets:
        robot.body_index(t.body, where=f"{where}: targets")
    ref_qpos = robot_pose_qpos(robot, dict(recipe.robot_reference_pose), f"{where}: robot_reference_pose")
    default_qpos = robot_pose_qpos(robot, dict(recipe.default_pose), f"{where}: default_pose")
    ref_xpos, ref_xquat, _ = robot_world_poses(robot, ref_qpos)
    return _Source(
        motion, present, conv, canonical_index(recipe.root_human), ref_qpos, default_qpos, ref_xpos, ref_xquat
    )


def measure_scales(src: _Source, recipe: Recipe, robot: RobotSpec) -> Scales:
    """Bone scales from the clip's own segment lengths: each scale group's ratio of robot
    chain length (at the reference pose) to human chain length, times the group's
    ``factor``; bones in no group take the root group's scale."""
    motion, present = src.motion, src.present
    where = f"recipe {recipe.name}"
    J = len(CANONICAL_JOINTS)
    group_scale: dict[str, float] = {}
    bone_scale = np.full(J, np.nan)
    lateral_scale = np.full(J, np.nan)
    for g in recipe.scale_groups:
        measured = measured_chain(g, present, recipe.targets)
        if measured is None:
            raise InvalidMotionError(
                f"{motion.source_path or '<motion>'}: scale group '{g.name}' is measured on "
                f"{g.human_chain[0].value}->{g.human_chain[1].value} (or its mirror), of which the motion has "
                f"not even one bone ending at a joint a recipe position target tracks; "
                f"joints: {[j.value for j in motion.joint_names]}"
            )
        chain = measured.human
        if g.measure == "chain":
            human_len = motion.chain_length(chain[1], chain[0])
        else:
            d = motion.positions[:, motion.index(chain[1])] - motion.positions[:, motion.index(chain[0])]
            dist = np.linalg.norm(d, axis=-1)
            dist = dist[np.isfinite(dist)]
            human_len = float(np.median(dist)) if dist.size else float("nan")
        a = robot.body_index(g.robot_chain[0], where=f"{where}: scale_groups.{g.name}")
        b = robot.body_index(measured.robot_body, where=f"{where}: scale_groups.{g.name}")
        start = src.ref_xpos[a] + quat_rotate(src.ref_xquat[a], np.asarray(g.robot_offset, np.float64))
        end = src.ref_xpos[b] + quat_rotate(src.ref_xquat[b], np.asarray(measured.robot_offset, np.float64))
        robot_len = float(np.linalg.norm(end - start))
        if not (human_len > 1e-6 and np.isfinite(human_len)):
            raise InvalidMotionError(
                f"{motion.source_path}: segment chain {chain[0].value}->{chain[1].value} "
                f"has length {human_len}; cannot derive scale group '{g.name}'"
            )
        group_scale[g.name] = g.factor * robot_len / human_len
        for bone in g.bones:
            (lateral_scale if g.lateral else bone_scale)[canonical_index(bone)] = group_scale[g.name]
    if recipe.root_scale_group not in group_scale:
        raise ConfigError(
            f"{where}: root_scale_group '{recipe.root_scale_group}' not in scale_groups {sorted(group_scale)}"
        )
    root_scale = group_scale[recipe.root_scale_group]
    bone_scale[np.isnan(bone_scale)] = root_scale
    lateral_scale = np.where(np.isnan(lateral_scale), bone_scale, lateral_scale)
    return Scales(group_scale, bone_scale, lateral_scale, root_scale)


def ground_shift(src: _Source, recipe: Recipe, robot: RobotSpec, scaled_z: np.ndarray) -> tuple[float, float]:
    """(z_offset, floor_z): the vertical shift that puts the robot's soles where the human's
    feet are (the robot's ankle height above its lowest geom at the default pose minus the
    scaled figure's 5th-percentile ankle height, plus the recipe's ``ground.offset``), and
    that ankle height (``scaled_z`` (T, J): heights of the scaled figure, NaN where
    invalid). Without ground joints: (ground.offset, 0)."""
    where = f"recipe {recipe.name}"
    if not recipe.ground_joints:
        return float(recipe.ground_offset), 0.0
    ground_joints = [j for j in recipe.ground_joints if j in src.present]
    if not ground_joints:
        raise InvalidMotionError(
            f"{src.motion.source_path or '<motion>'}: none of the recipe's ground joints "
            f"{[j.value for j in recipe.ground_joints]} is in the motion"
        )
    human_ankle = min(_nanpercentile(scaled_z[:, canonical_index(j)], 5.0) for j in ground_joints)
    ground_idx = [robot.body_index(b, where=f"{where}: ground.bodies") for b in recipe.ground_bodies]
    _, _, d = robot_world_poses(robot, src.default_qpos)
    lowest = min(geom_lowest_z(robot.mj_model, d, g) for g in range(robot.mj_model.ngeom))
    robot_ankle = float(np.mean([d.xpos[1 + i][2] for i in ground_idx]) - lowest)
    return robot_ankle - human_ankle + float(recipe.ground_offset), human_ankle


def position_target_shifts(src: _Source, pos_t, scaled_z: np.ndarray, floor_z: float) -> np.ndarray:
    """(Kp,) vertical shift of each position target.

    ``offset_z_from_ground``: a toe joint sits lower above the floor than the ankle, while
    the robot's tracked toe point is level with its ankle on a flat sole; lift the target
    by the scaled rest-height difference so a flat human foot asks for a flat robot foot.
    ``level_with``: lower the target by its joint's median height above those joints."""
    pos_dz = np.zeros(len(pos_t))
    for k, t in enumerate(pos_t):
        if t.human not in src.present:
            continue
        if t.offset_z_from_ground:
            pos_dz[k] = floor_z - _nanpercentile(scaled_z[:, canonical_index(t.human)], 5.0)
        level = [j for j in t.level_with if j in src.present]
        if level:
            above = scaled_z[:, canonical_index(t.human)] - np.mean(
                [scaled_z[:, canonical_index(j)] for j in level], axis=0
            )
            above = above[np.isfinite(above)]
            pos_dz[k] -= float(np.median(above)) if above.size else 0.0
    return pos_dz


def orientation_offsets(src: _Source, rot_t, robot: RobotSpec) -> tuple[list[np.ndarray], list[bool], list[bool]]:
    """Per orientation target: the constant offset R_target = R_human * offset, whether the
    source knows the joint's frame, and whether the target is levelled instead (no frame,
    ``level_if_unknown``: the body as in the robot's reference pose, turned to the hips'
    heading). ``R_offset = C_human^T R_robot(reference pose)``, with the rest pitch of a
    ``flat_with`` bone taken out, then the target's ``rotation_offset`` (body frame)."""
    conv, motion = src.conventions, src.motion
    rot_offset, rot_known, levelled = [], [], []
    for t in rot_t:
        rot_known.append(conv is not None and t.human in conv and t.human in src.present)
        levelled.append(not rot_known[-1] and t.level_if_unknown)
        extra = quat_exp(np.asarray(t.rotation_offset, np.float64))
        if levelled[-1]:
            rot_offset.append(quat_mul(src.ref_xquat[robot.body_index(t.body)], extra))
            continue
        if not rot_known[-1]:
            rot_offset.append(np.array([1.0, 0.0, 0.0, 0.0]))
            continue
        C = np.asarray(conv[t.human], np.float64)
        off = quat_mul(quat_conj(mat_to_quat(C)), src.ref_xquat[robot.body_index(t.body)])
        if t.flat_with is not None and t.flat_with in src.present:
            # Rest pitch of the bone joint -> flat_with, from the clip's floor heights.
            a, b = motion.index(t.human), motion.index(t.flat_with)
            drop = _nanpercentile(motion.positions[:, a, 2], 5.0) - _nanpercentile(motion.positions[:, b, 2], 5.0)
            seg = np.linalg.norm(motion.positions[:, b] - motion.positions[:, a], axis=-1)
            length = float(np.median(seg[np.isfinite(seg)])) if np.isfinite(seg).any() else 0.0
            phi = float(np.arcsin(np.clip(drop / length, -1.0, 1.0))) if length > 1e-6 else 0.0
            # rotate the bone up by phi about the world-right axis, in the joint frame
            axis = C.T @ np.array([0.0, -1.0, 0.0])
            off = quat_mul(axis_angle_to_quat(axis, phi), off)
        rot_offset.append(quat_mul(off, extra))
    return rot_offset, rot_known, levelled


def limb_arrays(recipe: Recipe, robot: RobotSpec, valid: np.ndarray, weight: float):
    """The recipe's limbs (:func:`retarget_jax.problem.limbs.recipe_limbs`) as static body
    pairs and joint pairs (L, 2), offsets (L, 2, 3), weights (L,) (``weight`` times the
    recipe's per-limb multiplier) and per-frame validity (T, L): both joints valid."""
    limbs = recipe_limbs(recipe)
    where = f"recipe {recipe.name}: limbs"
    bodies = tuple((robot.body_index(lb.body_a, where=where), robot.body_index(lb.body_b, where=where)) for lb in limbs)
    joints = tuple((canonical_index(lb.limb.proximal), canonical_index(lb.limb.distal)) for lb in limbs)
    offsets = np.reshape([(lb.offset_a, lb.offset_b) for lb in limbs], (-1, 2, 3))
    weights = np.array([weight * lb.weight for lb in limbs], np.float64)
    ok = np.stack([valid[:, a] & valid[:, b] for a, b in joints], axis=1) if joints else np.zeros((len(valid), 0), bool)
    return bodies, joints, offsets, weights, ok


class _Figure(NamedTuple):
    """The canonical figure of a clip and where it stands (see :func:`compile_problem`)."""

    pos: np.ndarray  # (T, J, 3)
    quat: np.ndarray  # (T, J, 4)
    valid: np.ndarray  # (T, J)
    anchor: np.ndarray  # (3,)
    z_offset: float


class _Targets(NamedTuple):
    """The recipe's targets with what the steps derived for them."""

    pos_t: list
    pos_dz: np.ndarray
    rot_t: list
    rot_offset: list
    rot_known: list
    levelled: list


def _pack(problem, src, scales, figure: _Figure, targets: _Targets, dtype) -> CompiledProblem:
    """Arrays and static indices of the compiled problem."""
    pos, quat, valid, anchor, z_offset = figure
    pos_t, pos_dz, rot_t, rot_offset, rot_known, levelled = targets
    recipe, robot, w = problem.recipe, problem.robot, problem.weights
    where = f"recipe {recipe.name}"
    T, n = pos.shape[0], robot.num_dof
    smooth = np.concatenate([np.full(3, w.smooth_position), np.full(3, w.smooth_rotation), np.full(n, w.smooth_joint)])
    accel = np.concatenate([np.full(3, w.accel_position), np.full(3, w.accel_rotation), np.full(n, w.accel_joint)])
    pos_valid = valid[:, [canonical_index(t.human) for t in pos_t]].reshape(T, len(pos_t))
    hips_valid = valid[:, LEFT_HIP] & valid[:, RIGHT_HIP]
    rot_valid = np.where(
        np.asarray(levelled, dtype=bool)[None, :],
        hips_valid[:, None],
        valid[:, [canonical_index(t.human) for t in rot_t]].reshape(T, len(rot_t))
        & np.asarray(rot_known, dtype=bool)[None, :],
    )
    feet = [robot.body_index(b, where=f"{where}: ground.bodies") for b in recipe.ground_bodies]
    if len(feet) != len(recipe.ground_joints):
        raise ConfigError(
            f"{where}: ground.human and ground.bodies must pair up one foot each, got "
            f"{len(recipe.ground_joints)} and {len(feet)}"
        )
    soles = sole_points(robot, feet, src.default_qpos)
    sole_foot = [feet.index(b) for b, _, _ in soles]
    sole_count = np.bincount(sole_foot, minlength=len(feet)) if soles else np.zeros(len(feet))
    plan = problem.contact_plan()
    stance = plan.stance & valid[:, [canonical_index(j) for j in recipe.ground_joints]].reshape(T, len(feet))
    limb_body, limb_joint, limb_offset, limb_weight, limb_valid = limb_arrays(recipe, robot, valid, w.direction)
    f = lambda x: jnp.asarray(np.asarray(x, dtype=np.float64), dtype=dtype)  # noqa: E731
    tree = KinematicTree(
        body_pos=f(robot.tree.body_pos),
        body_quat=f(robot.tree.body_quat),
        jnt_pos=f(robot.tree.jnt_pos),
        jnt_axis=f(robot.tree.jnt_axis),
        dof_ancestor=f(robot.tree.dof_ancestor),
        parents=robot.tree.parents,
        body_dof=robot.tree.body_dof,
        root=robot.tree.root,
    )
    lo, hi = robot.dof_ranges[:, 0], robot.dof_ranges[:, 1]
    return CompiledProblem(
        robot=RobotArrays(
            tree=tree,
            q_lower=f(lo),
            q_upper=f(hi),
            q_default=f(np.clip(src.default_qpos[7:], lo, hi)),
            collision=collision_arrays(robot, dtype=dtype),
        ),
        clip=ClipArrays(
            human_pos=f(pos),
            human_quat=f(quat),
            frame_mask=f(np.ones(T)),
            pos_valid=f(pos_valid),
            rot_valid=f(rot_valid),
            fps=f(src.motion.fps),
            bone_scale=f(scales.bone),
            bone_lateral_scale=f(scales.lateral),
            root_scale=f(scales.root),
            root_anchor=f(anchor),
            z_offset=f(z_offset),
            pos_offset=f(np.reshape([t.offset for t in pos_t], (-1, 3))),
            pos_target_dz=f(pos_dz),
            pos_weight=f([t.position_weight for t in pos_t]),
            rot_offset=f(np.reshape(rot_offset, (-1, 4))),
            rot_weight=f([t.orientation_weight for t in rot_t]),
            limb_offset=f(limb_offset),
            limb_weight=f(limb_weight),
            limb_valid=f(limb_valid),
            smooth_weight=f(smooth),
            accel_weight=f(accel),
            posture_weight=f(np.full(n, w.posture)),
            stance=f(np.reshape(stance, (T, len(feet)))),
            sole_offset=f(np.reshape([p for _, p, _ in soles], (-1, 3))),
            sole_rest_z=f(np.reshape([z for _, _, z in soles], (-1,))),
            sole_scale=f(np.reshape([1.0 / sole_count[k] for k in sole_foot], (-1,))),
            ground_weight=f(w.ground),
            contact_height_weight=f(w.contact_height),
            contact_slide_weight=f(w.contact_slide),
            self_collision_weight=f(w.self_collision),
            velocity_limit=f(problem.joint_velocity_limits.resolve(robot, f"{where}: joint_velocity_limits")),
            velocity_weight=f(w.joint_velocity),
            terrain=jax.tree.map(f, problem.terrain) if problem.terrain is not None else flat_ground(dtype),
        ),
        human_parents=CANONICAL_PARENTS,
        pos_joint=tuple(canonical_index(t.human) for t in pos_t),
        pos_body=tuple(robot.body_index(t.body) for t in pos_t),
        rot_joint=tuple(canonical_index(t.human) for t in rot_t),
        rot_body=tuple(robot.body_index(t.body) for t in rot_t),
        sole_body=tuple(b for b, _, _ in soles),
        sole_foot=tuple(sole_foot),
        limb_joint=limb_joint,
        limb_body=limb_body,
        root_joint=src.root_joint,
    )


def scaled_figure(pos, bone_scale, lateral_scale, root_scale, anchor, parents=CANONICAL_PARENTS):
    """(T, J, 3) the figure with each bone scaled (its hip-axis component by
    ``lateral_scale``) and the root trajectory scaled about ``anchor``; no ground shift.
    Numpy on the host (heights at compile time) and jax in the solve
    (:func:`retarget_jax.solve.costs.scaled_human`), so both see the same figure."""
    xp = array_namespace(pos, bone_scale)
    axis = hip_axis(pos)
    out: list = [None] * len(parents)
    for j, par in enumerate(parents):
        if par < 0:
            out[j] = anchor + root_scale * (pos[:, j] - anchor)
        else:
            v = pos[:, j] - pos[:, par]
            along = xp.sum(v * axis, axis=-1, keepdims=True) * axis
            out[j] = out[par] + bone_scale[j] * v + (lateral_scale[j] - bone_scale[j]) * along
    return xp.stack(out, axis=1)


def sole_points(robot: RobotSpec, feet: list[int], qpos: np.ndarray) -> list[tuple[int, np.ndarray, float]]:
    """(body, point in body frame, rest height) for the bottom of every collision geom on
    each foot and the bodies below it: the bottom of each ground point of the geom
    (:func:`retarget_jax.robots.collision.geom_ground_points`: a sphere's centre, a
    capsule's two end caps, a box's corners), taken with the robot standing at ``qpos``
    and kept on the foot body (a massless child body, like the T1's contact spheres,
    moves with its foot). The rest height is the point's height above its foot's lowest
    point at ``qpos``: a flat foot on flat ground has every sole point at its rest height."""
    m = robot.mj_model
    _, _, d = robot_world_poses(robot, qpos)
    out = []
    for b in feet:
        R_b, x_b = d.xmat[b + 1].reshape(3, 3), d.xpos[b + 1]
        foot: list[np.ndarray] = []
        for g in robot.subtree_geoms(b):
            gb = m.geom_bodyid[g]
            pts, radii = geom_ground_points(m, g)
            R_g = d.xmat[gb].reshape(3, 3)
            foot.extend(d.xpos[gb] + R_g @ q - r * _UP for q, r in zip(pts, radii, strict=True))
        low = min((q[2] for q in foot), default=0.0)
        out.extend((b, R_b.T @ (q - x_b), float(q[2] - low)) for q in foot)
    return out


def _mirror(role: HumanJoint) -> HumanJoint:
    v = role.value
    if v.startswith("left_"):
        return HumanJoint("right_" + v[5:])
    if v.startswith("right_"):
        return HumanJoint("left_" + v[6:])
    return role


@dataclasses.dataclass(frozen=True)
class MeasuredChain:
    """Where a scale group is measured: the human joints ``human`` (start, end) of the
    motion, against the robot from the group's ``robot_chain[0]`` (plus its
    ``robot_offset``) to the point ``robot_offset`` in body ``robot_body``, at the
    robot's reference pose. ``partial``: the end is short of the group's own end joint."""

    human: tuple[HumanJoint, HumanJoint]
    robot_body: str
    robot_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    partial: bool = False


def _canonical_path(start: HumanJoint, end: HumanJoint) -> list[HumanJoint]:
    """The canonical parent path start -> end (both included); [start] when start is no
    ancestor of end."""
    path = [end]
    while path[-1] != start and CANONICAL_PARENT[path[-1]] is not None:
        path.append(CANONICAL_PARENT[path[-1]])  # type: ignore[arg-type]
    return path[::-1] if path[-1] == start else [start]


def measured_chain(group: ScaleGroup, present: Set[HumanJoint], targets: Sequence[TargetSpec]) -> MeasuredChain | None:
    """The chain a scale group is measured on, for a motion whose joints with valid
    samples are ``present``; None when not even one bone of it is there.

    In order: the group's ``human_chain``; its mirror (the robot is symmetric and so, to
    this accuracy, are people); else the part of the chain the skeleton has (a rig without
    wrists measures its arms shoulder to elbow): from ``human_chain[0]`` along the
    canonical parent path toward ``human_chain[1]`` to the furthest present joint that a
    recipe position target tracks (a joint the skeleton lacks on the way is spanned by
    its own bone), on whichever side gives more bones (this side on a tie). The robot
    length then ends at that target's body and offset, on the group's side (the target
    of the mirrored joint when the human side is mirrored).

    Args:
        group: the scale group.
        present: the motion's roles with at least one valid sample.
        targets: the recipe's targets.
    """
    start, end = group.human_chain
    if {start, end} <= present:
        return MeasuredChain((start, end), group.robot_chain[1])
    if {_mirror(start), _mirror(end)} <= present:
        return MeasuredChain((_mirror(start), _mirror(end)), group.robot_chain[1])
    # only a position target says where on the robot the joint is (an orientation-only
    # target's body, say the G1 torso_link for spine_upper, may sit far from it)
    mapped: dict[HumanJoint, tuple[str, tuple[float, float, float]]] = {}
    for t in targets:
        if t.position_weight > 0:
            mapped.setdefault(t.human, (t.body, t.offset))
    path = _canonical_path(start, end)
    best: MeasuredChain | None = None
    bones = 0
    for flip in (False, True):
        side = [_mirror(j) for j in path] if flip else path
        if side[0] not in present:
            continue
        for k in range(len(path) - 1, bones, -1):  # the furthest end first; more bones than found
            if side[k] in present and path[k] in mapped:
                body, offset = mapped[path[k]]
                best, bones = MeasuredChain((side[0], side[k]), body, offset, partial=True), k
                break
    return best
