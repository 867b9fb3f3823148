"""A procedural walking motion, so the package runs offline (stage 1, host code, numpy).

LAFAN1 cannot ship with the package (its licence forbids redistribution), so the default
motion is generated here: a straight walk along +X, world Z-up, metres, with the 22 joint
roles of LAFAN1 and our own round-number segment lengths.

Joint frames follow the LAFAN1 conventions after :func:`~retarget_jax.motion.bvh.read_bvh`
turns Y-up into Z-up, so the constant joint-to-body orientation offsets of a LAFAN1 recipe
hold for this motion too. Each joint's world orientation is

    R_world_j = M_j C_j

where ``C_j`` (:data:`CONVENTIONS`) is the joint's frame in the *reference pose* (a
straight T-pose facing +X, feet flat, every ``M_j = I``) and ``M_j`` is the rotation of
the segment away from that pose. The ``C_j`` are exact 90-degree rotations: they are
facts about the axis conventions (x along the bone to the child, as in every LAFAN1
OFFSET), read off a standing T-pose frame of a LAFAN1 clip and rounded. Positions follow
from the orientations by forward kinematics,

    p_child = p_parent + R_world_parent C_parent^T d_child = p_parent + M_parent d_child,

with ``d_child`` (:data:`REFERENCE_OFFSETS`) the child's offset in the reference pose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from retarget_jax.errors import ConfigError
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP, HumanJoint
from retarget_jax.rotations import mat_to_quat

__all__ = [
    "CONVENTIONS",
    "DEMO_JOINTS",
    "DEMO_PARENTS",
    "REFERENCE_OFFSETS",
    "demo_motion",
    "neutral_pose",
]

J_ = HumanJoint

# Joint roles in LAFAN1 file order (the order read_bvh gives for a LAFAN1 clip).
DEMO_JOINTS: tuple[HumanJoint, ...] = tuple(LAFAN1_JOINT_MAP.values())

DEMO_PARENTS: Mapping[HumanJoint, HumanJoint | None] = {
    J_.PELVIS: None,
    J_.LEFT_HIP: J_.PELVIS,
    J_.LEFT_KNEE: J_.LEFT_HIP,
    J_.LEFT_ANKLE: J_.LEFT_KNEE,
    J_.LEFT_TOE: J_.LEFT_ANKLE,
    J_.RIGHT_HIP: J_.PELVIS,
    J_.RIGHT_KNEE: J_.RIGHT_HIP,
    J_.RIGHT_ANKLE: J_.RIGHT_KNEE,
    J_.RIGHT_TOE: J_.RIGHT_ANKLE,
    J_.SPINE_LOWER: J_.PELVIS,
    J_.SPINE_MID: J_.SPINE_LOWER,
    J_.SPINE_UPPER: J_.SPINE_MID,
    J_.NECK: J_.SPINE_UPPER,
    J_.HEAD: J_.NECK,
    J_.LEFT_COLLAR: J_.SPINE_UPPER,
    J_.LEFT_SHOULDER: J_.LEFT_COLLAR,
    J_.LEFT_ELBOW: J_.LEFT_SHOULDER,
    J_.LEFT_WRIST: J_.LEFT_ELBOW,
    J_.RIGHT_COLLAR: J_.SPINE_UPPER,
    J_.RIGHT_SHOULDER: J_.RIGHT_COLLAR,
    J_.RIGHT_ELBOW: J_.RIGHT_SHOULDER,
    J_.RIGHT_WRIST: J_.RIGHT_ELBOW,
}


def _frame(x, y, z) -> np.ndarray:
    """Rotation whose columns are the joint's x, y, z axes in the world."""
    return np.array([x, y, z], dtype=np.float64).T


_F, _B, _L, _R, _U, _D = (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)
# Joint axes in the reference pose (facing +X, Z-up), in LAFAN1's conventions:
#   trunk: x up, y forward, z left;  legs: x down, y forward, z right;
#   feet: x forward, y up, z right;  left arm: x left, y back, z up;
#   right arm: x right, y back, z down.
_TRUNK, _LEG, _FOOT = _frame(_U, _F, _L), _frame(_D, _F, _R), _frame(_F, _U, _R)
_LARM, _RARM = _frame(_L, _B, _U), _frame(_R, _B, _D)
CONVENTIONS: Mapping[HumanJoint, np.ndarray] = {
    J_.PELVIS: _TRUNK,
    J_.SPINE_LOWER: _TRUNK,
    J_.SPINE_MID: _TRUNK,
    J_.SPINE_UPPER: _TRUNK,
    J_.NECK: _TRUNK,
    J_.HEAD: _TRUNK,
    J_.LEFT_HIP: _LEG,
    J_.LEFT_KNEE: _LEG,
    J_.RIGHT_HIP: _LEG,
    J_.RIGHT_KNEE: _LEG,
    J_.LEFT_ANKLE: _FOOT,
    J_.LEFT_TOE: _FOOT,
    J_.RIGHT_ANKLE: _FOOT,
    J_.RIGHT_TOE: _FOOT,
    J_.LEFT_COLLAR: _LARM,
    J_.LEFT_SHOULDER: _LARM,
    J_.LEFT_ELBOW: _LARM,
    J_.LEFT_WRIST: _LARM,
    J_.RIGHT_COLLAR: _RARM,
    J_.RIGHT_SHOULDER: _RARM,
    J_.RIGHT_ELBOW: _RARM,
    J_.RIGHT_WRIST: _RARM,
}

# Segment lengths (metres), our own round numbers.
PELVIS_HALF_WIDTH, HIP_DROP = 0.09, 0.03
THIGH, SHIN, FOOT = 0.44, 0.44, 0.15
ANKLE_HEIGHT, TOE_HEIGHT = 0.075, 0.015  # foot flat on the floor
UPPER_ARM, FOREARM = 0.30, 0.26

# Gait (straight walk along +X). Phases are fractions of one leg's gait cycle, which
# starts at heel strike.
WALK_SPEED, STEP_HZ = 1.2, 1.8  # m/s, steps/s
PELVIS_HEIGHT = 0.97  # cap in single support; lower near heel strikes (mean ~0.95)
STANCE, HEEL_OFF, HIP_OVER_ANKLE = 0.6, 0.35, 0.25
PUSH_OFF_DEG = 30.0  # heel rise at toe-off
TOE_LIFT, SWING_SKEW = 0.06, 0.5  # toe clearance in mid-swing (metres), skew to early swing
FOOT_SPACING = 0.08  # lateral distance of each ankle from the line of progress

REFERENCE_OFFSETS: Mapping[HumanJoint, np.ndarray] = {
    k: np.asarray(v, dtype=np.float64)
    for k, v in {
        J_.PELVIS: (0.0, 0.0, 0.0),
        J_.LEFT_HIP: (0.0, PELVIS_HALF_WIDTH, -HIP_DROP),
        J_.LEFT_KNEE: (0.0, 0.0, -THIGH),
        J_.LEFT_ANKLE: (0.0, 0.0, -SHIN),
        J_.LEFT_TOE: (FOOT, 0.0, 0.0),
        J_.RIGHT_HIP: (0.0, -PELVIS_HALF_WIDTH, -HIP_DROP),
        J_.RIGHT_KNEE: (0.0, 0.0, -THIGH),
        J_.RIGHT_ANKLE: (0.0, 0.0, -SHIN),
        J_.RIGHT_TOE: (FOOT, 0.0, 0.0),
        J_.SPINE_LOWER: (0.0, 0.0, 0.08),
        J_.SPINE_MID: (0.0, 0.0, 0.12),
        J_.SPINE_UPPER: (0.0, 0.0, 0.12),
        J_.NECK: (0.0, 0.0, 0.24),
        J_.HEAD: (0.0, 0.0, 0.10),
        J_.LEFT_COLLAR: (0.0, 0.05, 0.20),
        J_.LEFT_SHOULDER: (0.0, 0.12, 0.0),
        J_.LEFT_ELBOW: (0.0, UPPER_ARM, 0.0),
        J_.LEFT_WRIST: (0.0, FOREARM, 0.0),
        J_.RIGHT_COLLAR: (0.0, -0.05, 0.20),
        J_.RIGHT_SHOULDER: (0.0, -0.12, 0.0),
        J_.RIGHT_ELBOW: (0.0, -UPPER_ARM, 0.0),
        J_.RIGHT_WRIST: (0.0, -FOREARM, 0.0),
    }.items()
}

# Posture (degrees), shared by the neutral pose and the walk: feet turned out, elbows a
# little bent, hands twisted about the forearm, the neck leaning forward with the head
# level. In the neutral T-pose the upper arms also hang a little below horizontal, with
# the forearms level.
TOE_OUT_DEG = 12.0
ELBOW_BEND_DEG = 20.0
HAND_TWIST_DEG = 20.0
NECK_LEAN_DEG = 10.0
ARM_DROOP_DEG = 10.0
FOOT_PITCH = math.asin((ANKLE_HEIGHT - TOE_HEIGHT) / FOOT)  # rad, toe down


# ---------------------------------------------------------------------------------------
# Rotation helpers, vectorised over leading axes


def _rot(axis: str, angle) -> np.ndarray:
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    if axis == "x":
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "y":
        m = [[c, z, s], [z, o, z], [-s, z, c]]
    else:
        m = [[c, -s, z], [s, c, z], [z, z, o]]
    return np.moveaxis(np.array(m), (0, 1), (-2, -1))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _mv(M: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("...ij,...j->...i", M, v)


def _fk(M: Mapping[HumanJoint, np.ndarray], root_pos: np.ndarray) -> dict[HumanJoint, np.ndarray]:
    pos: dict[HumanJoint, np.ndarray] = {}
    for j in DEMO_JOINTS:
        p = DEMO_PARENTS[j]
        pos[j] = root_pos if p is None else pos[p] + _mv(M[p], REFERENCE_OFFSETS[j])
    return pos


def _leg_rotations(hip: np.ndarray, ankle: np.ndarray, toe_out: float):
    """Two-bone IK: segment rotations (hip, knee) putting the ankle at ``ankle``.

    The knee bends in the plane spanned by the hip->ankle line and the forward direction
    turned out by ``toe_out``; the knee axis is the rotated reference y axis.
    """
    D = ankle - hip
    d = np.linalg.norm(D, axis=-1)
    reach = THIGH + SHIN
    if np.any(d > reach * (1.0 - 1e-9)):
        raise AssertionError(f"demo walk: leg over-stretched ({d.max():.4f} m > {reach} m)")
    Dh = D / d[..., None]
    pole = np.broadcast_to(np.array([math.cos(toe_out), math.sin(toe_out), 0.0]), D.shape)
    P = _unit(pole - np.sum(pole * Dh, -1, keepdims=True) * Dh)
    cos_b = np.clip((THIGH**2 + d**2 - SHIN**2) / (2 * THIGH * d), -1.0, 1.0)
    b = np.arccos(cos_b)[..., None]
    u_thigh = np.cos(b) * Dh + np.sin(b) * P
    knee = hip + THIGH * u_thigh
    u_shin = _unit(ankle - knee)
    k = _unit(np.cross(P, Dh))  # knee axis (reference +y)

    def seg(u_bone):
        z = -u_bone
        return np.stack([np.cross(k, z), k, z], axis=-1)

    return seg(u_thigh), seg(u_shin)


def _min_jerk(s: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero velocity and acceleration at both ends."""
    s = np.clip(s, 0.0, 1.0)
    return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


def _smooth7(s: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero velocity, acceleration and jerk at both ends."""
    s = np.clip(s, 0.0, 1.0)
    return s**4 * (35.0 - 84.0 * s + 70.0 * s**2 - 20.0 * s**3)


# ---------------------------------------------------------------------------------------


def neutral_pose() -> dict[HumanJoint, np.ndarray]:
    """World orientations (3, 3) of a relaxed T-pose facing +X: ``M_j C_j``.

    Upper arms out sideways, :data:`ARM_DROOP_DEG` below horizontal, forearms level and
    bent forward by :data:`ELBOW_BEND_DEG`, hands twisted by :data:`HAND_TWIST_DEG`,
    neck leaning forward by :data:`NECK_LEAN_DEG` with the head level, feet flat and
    turned out by :data:`TOE_OUT_DEG`: the posture that opens and closes a LAFAN1
    capture, against which the tests check :data:`CONVENTIONS`.
    """
    M = _neutral_segment_rotations()
    return {j: M[j] @ CONVENTIONS[j] for j in DEMO_JOINTS}


def _neutral_segment_rotations() -> dict[HumanJoint, np.ndarray]:
    eye = np.eye(3)
    M = {j: eye for j in DEMO_JOINTS}
    M[J_.NECK] = _rot("y", math.radians(NECK_LEAN_DEG))
    tau = math.radians(TOE_OUT_DEG)
    for side, sgn in (("LEFT", 1.0), ("RIGHT", -1.0)):
        yaw = _rot("z", sgn * tau)
        for j in ("HIP", "KNEE", "TOE"):
            M[J_[f"{side}_{j}"]] = yaw
        M[J_[f"{side}_ANKLE"]] = yaw @ _rot("y", FOOT_PITCH)
        droop = _rot("x", -sgn * math.radians(ARM_DROOP_DEG))
        M[J_[f"{side}_SHOULDER"]] = droop
        # The forearm is held level: the elbow undoes the droop and bends forward.
        M[J_[f"{side}_ELBOW"]] = _elbow(sgn, math.radians(ELBOW_BEND_DEG))
        M[J_[f"{side}_WRIST"]] = M[J_[f"{side}_ELBOW"]] @ _hand()
    return M


def _elbow(sgn: float, bend) -> np.ndarray:
    """Elbow flexion in reference coordinates: the forearm turns forward."""
    return _rot("z", -sgn * np.asarray(bend))


def _hand() -> np.ndarray:
    """Twist of the hand about the forearm; +y in reference coordinates on both sides
    (mirror-symmetric: +x twist of the left wrist frame, -x of the right one)."""
    return _rot("y", math.radians(HAND_TWIST_DEG))


def demo_motion(num_frames: int = 150, fps: float = 30.0) -> HumanMotion:
    """A straight walk along +X: 1.2 m/s, 1.8 steps/s, hips about 0.93 m high.

    The pelvis joint moves between about 0.91 and 0.97 m (lowest around heel strikes),
    the hip joints 3 cm below it.

    Each foot is flat and fixed on the floor for most of the stance, then the heel rises
    about the fixed toe joint (push-off); in swing the toe joint leaves the floor from
    rest, travels one stride on a smooth path while the knee flexes, and the foot lands
    flat. The pelvis bobs, sways and turns a little, the thorax counter-rotates, arms
    swing opposite to the legs with bent elbows.

    Returns:
        HumanMotion with the 22 LAFAN1 roles in LAFAN1 order, Z-up, metres.
    """
    if num_frames < 1 or not (fps > 0 and math.isfinite(fps)):
        raise ConfigError(f"demo_motion: need num_frames >= 1 and fps > 0, got {num_frames}, {fps}")
    T = int(num_frames)
    t = np.arange(T, dtype=np.float64) / fps
    stride = WALK_SPEED / (STEP_HZ / 2.0)  # metres per gait cycle (two steps)
    c = (STEP_HZ / 2.0) * t + 0.15  # gait cycles; the left heel strikes at integer c
    two_pi = 2.0 * math.pi

    psi = -math.radians(4.0) * np.cos(two_pi * c)  # left hip forward at left heel strike
    roll = math.radians(3.0) * np.cos(two_pi * (c - 0.3))  # the swing-side hip drops
    M: dict[HumanJoint, np.ndarray] = {J_.PELVIS: _rot("z", psi) @ _rot("x", roll)}
    tau = math.radians(TOE_OUT_DEG)
    feet = {}
    for side, sgn, shift in (("LEFT", 1.0, 0.0), ("RIGHT", -1.0, 0.5)):
        yaw = _rot("z", np.full(T, sgn * tau))
        feet[side] = _foot(c - shift, shift, stride, sgn, yaw)

    # Pelvis: sways over the stance foot; its height is a smooth minimum of a gentle bob
    # and, per leg, the highest hip that still leaves the knee bent by >= ~10 degrees,
    # so the legs never over-stretch (the ankle targets are fixed by the feet).
    pelvis_xy = np.stack([stride * c, 0.02 * np.cos(two_pi * (c - 0.3))], axis=-1)
    heights = [PELVIS_HEIGHT + 0.01 * np.cos(2 * two_pi * (c - 0.3))]
    reach = 0.995 * (THIGH + SHIN)
    for side in ("LEFT", "RIGHT"):
        hip_off = _mv(M[J_.PELVIS], REFERENCE_OFFSETS[J_[f"{side}_HIP"]])
        ankle = feet[side][2]
        dxy = ankle[:, :2] - (pelvis_xy + hip_off[:, :2])
        heights.append(ankle[:, 2] + np.sqrt(reach**2 - np.sum(dxy**2, -1)) - hip_off[:, 2])
    k_soft = 0.01  # metres; softmin <= min, so the caps hold exactly
    H = np.stack(heights)
    z = H.min(0) - k_soft * np.log(np.sum(np.exp(-(H - H.min(0)) / k_soft), axis=0))
    pelvis = np.concatenate([pelvis_xy, z[:, None]], axis=-1)

    # The thorax turns opposite to the pelvis; the neck brings the head back to level.
    back = _rot("z", -0.75 * psi) @ _rot("x", -0.5 * roll)
    M[J_.SPINE_LOWER] = M[J_.PELVIS] @ back
    M[J_.SPINE_MID] = M[J_.SPINE_LOWER] @ back
    M[J_.SPINE_UPPER] = M[J_.SPINE_MID]
    lean = math.radians(NECK_LEAN_DEG)
    M[J_.NECK] = M[J_.SPINE_UPPER] @ _rot("z", 0.5 * psi) @ _rot("y", np.full(T, lean))
    M[J_.HEAD] = M[J_.NECK] @ _rot("y", np.full(T, -lean))

    for side, sgn, shift in (("LEFT", 1.0, 0.0), ("RIGHT", -1.0, 0.5)):
        hip_j, knee_j, ankle_j, toe_j = (J_[f"{side}_{n}"] for n in ("HIP", "KNEE", "ANKLE", "TOE"))
        M[ankle_j], M[toe_j], ankle_target = feet[side]
        hip_pos = pelvis + _mv(M[J_.PELVIS], REFERENCE_OFFSETS[hip_j])
        M[hip_j], M[knee_j] = _leg_rotations(hip_pos, ankle_target, sgn * tau)

        # This arm is most forward when the other foot strikes (cycle phase 1/2).
        fwd = -math.radians(18.0) * np.cos(two_pi * (c - shift))
        col_j, sh_j, el_j, wr_j = (J_[f"{side}_{n}"] for n in ("COLLAR", "SHOULDER", "ELBOW", "WRIST"))
        M[col_j] = M[J_.SPINE_UPPER]
        M[sh_j] = M[col_j] @ _rot("y", -fwd) @ _rot("x", -sgn * math.radians(80.0))
        M[el_j] = M[sh_j] @ _elbow(sgn, math.radians(ELBOW_BEND_DEG + 5.0) + 0.5 * fwd)
        M[wr_j] = M[el_j] @ _hand()

    pos = _fk(M, pelvis)
    R_world = np.stack([M[j] @ CONVENTIONS[j] for j in DEMO_JOINTS], axis=1)
    parents = np.array(
        [-1 if DEMO_PARENTS[j] is None else DEMO_JOINTS.index(DEMO_PARENTS[j]) for j in DEMO_JOINTS],
        dtype=np.int64,
    )
    return HumanMotion(
        joint_names=DEMO_JOINTS,
        parents=parents,
        positions=np.stack([pos[j] for j in DEMO_JOINTS], axis=1),
        orientations=mat_to_quat(R_world),
        fps=float(fps),
        source_path="",
        source_format="demo_walk",
        source_joint_names=tuple(j.value for j in DEMO_JOINTS),
        conventions=CONVENTIONS,
    )


def _foot(cycles: np.ndarray, shift: float, stride: float, sgn: float, yaw: np.ndarray):
    """One foot over time: segment rotations (ankle, toe) and the ankle position.

    ``cycles`` counts this leg's gait cycles (heel strike at integers). The foot is flat
    until ``HEEL_OFF``, rotates about the fixed toe joint until toe-off at ``STANCE``,
    then the toe joint travels to the next foothold and the foot lands flat.
    """
    k = np.floor(cycles)
    u = cycles - k
    pitch_flat = np.array([math.cos(FOOT_PITCH), 0.0, -math.sin(FOOT_PITCH)])
    heel_to_toe = _mv(yaw, FOOT * pitch_flat)  # ankle -> toe, foot flat

    def foothold(n):  # ankle of the flat foot; the hip passes over it at HIP_OVER_ANKLE
        x = stride * (n + shift + HIP_OVER_ANKLE)
        return np.stack([x, np.full_like(x, sgn * FOOT_SPACING), np.full_like(x, ANKLE_HEIGHT)], -1)

    toe_now = foothold(k) + heel_to_toe
    toe_next = foothold(k + 1) + heel_to_toe
    push = np.clip((u - HEEL_OFF) / (STANCE - HEEL_OFF), 0.0, 1.0)
    s = np.clip((u - STANCE) / (1.0 - STANCE), 0.0, 1.0)
    swing = u >= STANCE
    gamma_max = math.radians(PUSH_OFF_DEG)
    # Extra toe-down pitch of the foot (rad): rises in push-off, unwinds during swing,
    # with the toe lifted a little before a flat landing.
    gamma = np.where(
        swing,
        gamma_max * (1.0 - _smooth7(s)) - math.radians(10.0) * np.sin(math.pi * s) ** 4,
        gamma_max * _smooth7(push),
    )
    toe = np.where(swing[:, None], toe_now + (toe_next - toe_now) * _min_jerk(s)[:, None], toe_now)
    # Lift peaks early in swing (the knee flexes most just after toe-off).
    lift = TOE_LIFT * np.sin(math.pi * s) * (1.0 + SWING_SKEW * (1.0 - 2.0 * s))
    toe = toe + np.stack([0 * s, 0 * s, lift], -1)
    M_ankle = yaw @ _rot("y", FOOT_PITCH + gamma)
    # The toe segment lies flat while the toe joint is on the floor (the toe joint bends
    # by the push-off pitch); in the air that bend relaxes back to zero.
    toe_pitch = np.where(swing, gamma - gamma_max * (1.0 - _smooth7(s)), 0.0)
    M_toe = yaw @ _rot("y", toe_pitch)
    ankle = toe - _mv(M_ankle, np.array([FOOT, 0.0, 0.0]))
    return M_ankle, M_toe, ankle
