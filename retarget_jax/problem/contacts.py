"""ContactPlan: which foot stands on the ground in which frame (host, numpy).

A plan is either given explicitly (``ContactPlan(stance, feet, source="explicit")``, or
an ``.npz``/``.csv`` file, see :func:`load_contact_plan`) or detected from the source by
:func:`detect_contacts`. The compiler lays it on the recipe's ground bodies (one robot
contact link per foot, in the recipe's ``ground`` order): during stance the link's sole
points keep zero horizontal velocity and sit at ground height with the sole level;
outside stance they only stay above the ground (``retarget_jax.solve.costs``).

Detection, per foot (the recipe's ground joint, an ankle, plus the toe of the same side
when the source has one), with hysteresis:

- height of each foot joint above its own floor level (the 5th percentile of its
  height over the clip), speed = its 3-D speed (central differences on the clip's
  timestamps); the foot's height and speed are the largest over its joints, so a
  stance foot is flat (heel-off push-off and heel-strike are not stance);
- a foot enters stance where height < ``height_on`` and speed < ``speed_on``, and stays in
  stance while height < ``height_off`` and speed < ``speed_off``;
- stance runs shorter than ``min_duration`` seconds are dropped; a frame where a foot
  joint is invalid (missing in the source) is never stance.

Defaults (metres, m/s, s): height_on 0.03, height_off 0.05, speed_on 0.30, speed_off
0.45, min_duration 0.1. They were set on the shared LAFAN1 walking clip, where they mark
the flat-foot phase of every step (about 50% of frames per foot while walking).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from retarget_jax.errors import ConfigError, InvalidMotionError, MotionFormatError
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.skeleton import HumanJoint


@dataclasses.dataclass(frozen=True)
class ContactThresholds:
    """Detection thresholds (see the module docstring). Metres, m/s, seconds."""

    height_on: float = 0.03
    height_off: float = 0.05
    speed_on: float = 0.30
    speed_off: float = 0.45
    min_duration: float = 0.1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (np.isfinite(v) and v >= 0):
                raise ConfigError(f"contacts.{f.name} must be a finite number >= 0, got {v}")
        if self.height_off < self.height_on or self.speed_off < self.speed_on:
            raise ConfigError("contacts: the *_off thresholds must be >= the *_on thresholds (hysteresis)")


@dataclasses.dataclass(frozen=True)
class ContactPlan:
    """Stance flags (T, F) of F feet; ``feet`` names each foot by its human ground joint
    (the recipe's ``ground.human`` entries). ``source``: "detected" or "explicit"."""

    stance: np.ndarray
    feet: tuple[HumanJoint, ...]
    source: str = "explicit"
    thresholds: ContactThresholds | None = None

    def __post_init__(self) -> None:
        s = np.asarray(self.stance)
        if s.ndim != 2 or s.shape[1] != len(self.feet):
            raise InvalidMotionError(
                f"contact plan: stance must be (T, {len(self.feet)}) for feet "
                f"{[f.value for f in self.feet]}, got shape {s.shape}"
            )
        object.__setattr__(self, "stance", s.astype(bool))

    @property
    def num_frames(self) -> int:
        return int(self.stance.shape[0])

    def for_feet(self, feet: tuple[HumanJoint, ...], *, where: str = "contact plan") -> np.ndarray:
        """(T, len(feet)) stance in the order of ``feet`` (the recipe's ground joints)."""
        missing = [f.value for f in feet if f not in self.feet]
        if missing:
            raise ConfigError(f"{where}: no stance for {missing}; the plan has {[f.value for f in self.feet]}")
        return self.stance[:, [self.feet.index(f) for f in feet]]

    def summary(self) -> dict:
        """JSON-able description (for provenance and reports)."""
        return {
            "source": self.source,
            "feet": [f.value for f in self.feet],
            "stance_fraction": [float(x) for x in self.stance.mean(axis=0)] if self.num_frames else [],
            "thresholds": dataclasses.asdict(self.thresholds) if self.thresholds else None,
        }


def _toe_of(ankle: HumanJoint) -> HumanJoint | None:
    return {HumanJoint.LEFT_ANKLE: HumanJoint.LEFT_TOE, HumanJoint.RIGHT_ANKLE: HumanJoint.RIGHT_TOE}.get(ankle)


def _foot_joints(motion: HumanMotion, foot: HumanJoint) -> list[int]:
    valid = motion.valid_mask
    out = []
    for j in (foot, _toe_of(foot)):
        if j is not None and j in motion.joint_names and valid[:, motion.index(j)].any():
            out.append(motion.index(j))
    return out


def _speed(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(T,) speed of a (T, D) trajectory by central differences on times t."""
    if x.shape[0] < 2:
        return np.zeros(x.shape[0])
    return np.linalg.norm(np.gradient(x, t, axis=0), axis=-1)


def _hysteresis(h: np.ndarray, v: np.ndarray, th: ContactThresholds) -> np.ndarray:
    on = (h < th.height_on) & (v < th.speed_on)
    stay = (h < th.height_off) & (v < th.speed_off)
    out = np.zeros(h.shape[0], dtype=bool)
    state = False
    for t in range(h.shape[0]):
        state = bool(stay[t]) if state else bool(on[t])
        out[t] = state
    return out


def _drop_short_runs(s: np.ndarray, min_frames: int) -> np.ndarray:
    out = s.copy()
    t = 0
    while t < len(s):
        if s[t]:
            e = t
            while e < len(s) and s[e]:
                e += 1
            if e - t < min_frames:
                out[t:e] = False
            t = e
        else:
            t += 1
    return out


def detect_contacts(
    motion: HumanMotion, feet: tuple[HumanJoint, ...], thresholds: ContactThresholds | None = None
) -> ContactPlan:
    """Detect each foot's stance from the source's foot heights and speeds (see module)."""
    th = thresholds or ContactThresholds()
    where = motion.source_path or "<motion>"
    t = motion.times
    valid = motion.valid_mask
    min_frames = max(1, int(round(th.min_duration * motion.fps)))
    stance = np.zeros((motion.num_frames, len(feet)), dtype=bool)
    for f, foot in enumerate(feet):
        joints = _foot_joints(motion, foot)
        if not joints:
            raise InvalidMotionError(
                f"{where}: cannot detect contacts of '{foot.value}': the motion has no "
                f"valid samples of it; joints: {[j.value for j in motion.joint_names]}"
            )
        h = np.zeros(motion.num_frames)
        v = np.zeros(motion.num_frames)
        ok = np.ones(motion.num_frames, dtype=bool)
        for j in joints:
            z = motion.positions[:, j, 2]
            ok &= valid[:, j] & np.isfinite(motion.positions[:, j]).all(axis=-1)
            floor = np.percentile(z[ok], 5.0) if ok.any() else 0.0
            h = np.maximum(h, np.where(ok, z - floor, np.inf))
            p = np.where(ok[:, None], motion.positions[:, j], np.nan)
            v = np.maximum(v, np.nan_to_num(_speed(p, t), nan=np.inf))
        stance[:, f] = _drop_short_runs(_hysteresis(h, v, th) & ok, min_frames)
    return ContactPlan(stance, tuple(feet), "detected", th)


def stance_foot_speed(positions: np.ndarray, stance: np.ndarray, fps: float, valid=None) -> float:
    """Mean horizontal speed (m/s) of feet over consecutive frame pairs that are both
    stance: positions (T, F, 3), stance (T, F) bool. The same reduction as the robot's
    ``foot_sliding`` metric, so the human source's own figure compares with it. 0 when
    there is no stance pair."""
    s = stance[:-1] & stance[1:]
    if valid is not None:
        s = s & valid[:-1] & valid[1:]
    v = np.linalg.norm(np.diff(positions[..., :2], axis=0), axis=-1) * fps
    return float(v[s].mean()) if s.any() else 0.0


def load_contact_plan(path: str | Path, feet: tuple[HumanJoint, ...], num_frames: int) -> ContactPlan:
    """An explicit plan from a file: ``.npz`` with ``stance`` (T, F) (0/1 or bool) and
    optionally ``feet`` (F,) names, or a ``.csv`` with a header of foot names and one 0/1
    row per frame. Without names the columns follow ``feet`` (the recipe's ground joints)."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".csv":
            header = p.read_text().splitlines()[0].split(",")
            data = np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2)
            names = [h.strip() for h in header]
        else:
            with np.load(p, allow_pickle=False) as z:
                if "stance" not in z.files:
                    raise MotionFormatError(p, "missing key", field="stance")
                data = np.asarray(z["stance"])
                names = [str(n) for n in z["feet"]] if "feet" in z.files else [f.value for f in feet]
    except FileNotFoundError:
        raise
    except (OSError, ValueError, IndexError) as e:
        raise MotionFormatError(p, f"cannot read a contact plan: {e}") from None
    if data.ndim != 2 or data.shape != (num_frames, len(names)):
        raise MotionFormatError(p, f"expected shape ({num_frames}, {len(names)}), found {data.shape}", field="stance")
    if not np.isin(data, (0, 1)).all():
        raise MotionFormatError(p, "stance values must be 0 or 1", field="stance")
    roles = tuple(HumanJoint.parse(n, where=f"{p}: feet") for n in names)
    plan = ContactPlan(data.astype(bool), roles, "explicit")
    plan.for_feet(feet, where=str(p))
    return plan
