"""HumanMotion: the one in-memory form every motion source is read into (host, numpy).

Conventions: world Z-up, metres, quaternions wxyz, positions and orientations of
joints in the world frame. ``orientations`` is None for position-only sources.

Every source carries its own sample times (``timestamps``, seconds) and a validity mask
(``valid``, (T, J)): a joint or frame the source does not have is marked invalid, and the
costs ignore it. ``conventions`` gives each joint's frame in the source's reference
T-pose (see :mod:`retarget_jax.motion.conventions`); without it, orientation targets
are switched off and the recipe tracks positions only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from retarget_jax.errors import InvalidMotionError, UnknownNameError
from retarget_jax.motion.skeleton import HumanJoint

#: Frame rates a motion may have (frames per second). Outside this range a file's rate is
#: taken for a corrupt or mislabelled field rather than motion capture: a rate of 1e-9
#: would resample a 30-frame clip into 1e12 frames, one of 1e9 makes every velocity cost
#: overflow.
MIN_FPS = 1.0
MAX_FPS = 10_000.0


def fps_problem(fps: float) -> str | None:
    """Why ``fps`` is not a usable frame rate (None when it is)."""
    if not np.isfinite(fps) or fps <= 0:
        return f"must be a positive finite number, found {fps}"
    if not MIN_FPS <= fps <= MAX_FPS:
        return f"must be between {MIN_FPS:g} and {MAX_FPS:g} frames per second, found {fps:g}"
    return None


@dataclasses.dataclass(frozen=True)
class HumanMotion:
    """A human motion clip.

    Attributes:
        joint_names: (J,) canonical roles, unique.
        parents: (J,) index of each joint's parent in ``joint_names``, -1 for the root.
        positions: (T, J, 3) world joint positions, metres, Z-up.
        orientations: (T, J, 4) world joint orientations, wxyz, or None.
        fps: frames per second of the samples.
        source_path: file the motion came from ("" for generated motion).
        source_format: format name, e.g. "bvh_lafan1".
        source_joint_names: (J,) the names as spelled in the source file.
        timestamps: (T,) sample times in seconds, strictly increasing; None means
            ``arange(T) / fps``. Read it through :attr:`times`.
        valid: (T, J) bool, False where the source has no value for a joint in a frame
            (a missing joint, an occluded keypoint, a dropped frame); None means all valid.
        conventions: joint role -> (3, 3) frame of that joint in the source's reference
            T-pose (columns: the joint's axes in a Z-up world, figure facing +X), or None
            when the source's joint frames are unknown (position-only tracking).
    """

    joint_names: tuple[HumanJoint, ...]
    parents: np.ndarray
    positions: np.ndarray
    orientations: np.ndarray | None
    fps: float
    source_path: str = ""
    source_format: str = ""
    source_joint_names: tuple[str, ...] = ()
    timestamps: np.ndarray | None = None
    valid: np.ndarray | None = None
    conventions: Mapping[HumanJoint, np.ndarray] | None = None

    def __post_init__(self) -> None:
        where = self.source_path or "<motion>"
        J = len(self.joint_names)
        if len(set(self.joint_names)) != J:
            raise InvalidMotionError(f"{where}: duplicated joint roles in {self.joint_names}")
        pos = np.asarray(self.positions)
        if pos.ndim != 3 or pos.shape[1:] != (J, 3):
            raise InvalidMotionError(f"{where}: positions must be (T, {J}, 3), got {pos.shape}")
        if pos.shape[0] < 1:
            raise InvalidMotionError(f"{where}: motion has no frames")
        if self.orientations is not None and np.shape(self.orientations) != (pos.shape[0], J, 4):
            raise InvalidMotionError(
                f"{where}: orientations must be ({pos.shape[0]}, {J}, 4), got {np.shape(self.orientations)}"
            )
        if np.shape(self.parents) != (J,):
            raise InvalidMotionError(f"{where}: parents must be ({J},), got {np.shape(self.parents)}")
        bad_fps = fps_problem(self.fps)
        if bad_fps:
            raise InvalidMotionError(f"{where}: fps {bad_fps}")
        T = pos.shape[0]
        if self.timestamps is not None:
            ts = np.asarray(self.timestamps, dtype=np.float64)
            if ts.shape != (T,):
                raise InvalidMotionError(f"{where}: timestamps must be ({T},), got {ts.shape}")
            if not np.isfinite(ts).all() or (T > 1 and not (np.diff(ts) > 0).all()):
                raise InvalidMotionError(f"{where}: timestamps must be finite and strictly increasing")
        if self.valid is not None and np.shape(self.valid) != (T, J):
            raise InvalidMotionError(f"{where}: valid must be ({T}, {J}), got {np.shape(self.valid)}")
        if self.conventions is not None:
            for role, frame in self.conventions.items():
                if np.shape(frame) != (3, 3):
                    raise InvalidMotionError(f"{where}: conventions[{role}] must be 3x3, got {np.shape(frame)}")

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    @property
    def times(self) -> np.ndarray:
        """(T,) sample times in seconds (``timestamps``, or ``arange(T) / fps``)."""
        if self.timestamps is not None:
            return np.asarray(self.timestamps, dtype=np.float64)
        return np.arange(self.num_frames, dtype=np.float64) / self.fps

    @property
    def valid_mask(self) -> np.ndarray:
        """(T, J) bool: ``valid``, all True when None.

        Non-finite values where the mask says valid are not masked here: they are bad
        input, and the solve reports such a clip ``invalid_input``.
        """
        if self.valid is None:
            return np.ones(self.positions.shape[:2], dtype=bool)
        return np.asarray(self.valid, dtype=bool)

    def index(self, joint: HumanJoint | str) -> int:
        role = HumanJoint.parse(joint, where=self.source_path or None)
        try:
            return self.joint_names.index(role)
        except ValueError:
            raise UnknownNameError(
                "joint of this motion", role.value, [j.value for j in self.joint_names], where=self.source_path or None
            ) from None

    def chain_length(self, joint: HumanJoint | str, ancestor: HumanJoint | str) -> float:
        """Sum of the median segment lengths on the path from ``ancestor`` down to ``joint``."""
        j, a = self.index(joint), self.index(ancestor)
        total = 0.0
        while j != a:
            p = int(self.parents[j])
            if p < 0:
                raise InvalidMotionError(f"{self.source_path}: {self.joint_names[a]} is not an ancestor of {joint}")
            seg = np.linalg.norm(self.positions[:, j] - self.positions[:, p], axis=-1)
            seg = seg[np.isfinite(seg)]
            total += float(np.median(seg)) if seg.size else 0.0
            j = p
        return total

    def is_finite(self) -> bool:
        ok = bool(np.isfinite(self.positions).all())
        if self.orientations is not None:
            ok = ok and bool(np.isfinite(self.orientations).all())
        return ok

    def slice(self, start: int, stop: int) -> HumanMotion:
        return dataclasses.replace(
            self,
            positions=self.positions[start:stop],
            orientations=None if self.orientations is None else self.orientations[start:stop],
            timestamps=None if self.timestamps is None else np.asarray(self.timestamps)[start:stop],
            valid=None if self.valid is None else np.asarray(self.valid)[start:stop],
        )
