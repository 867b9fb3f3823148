"""RetargetingResult: what a solve returns for one clip, on the host (numpy).

This is the format every writer, metric and later stage (dataset builder, motion
libraries, calibration) reads. Quaternions are wxyz. Field shapes use T frames,
n actuated DoF, B robot bodies (world body excluded).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


class SolveStatus:
    """Per-clip status codes returned by the jitted solve (never an exception inside jit)."""

    CONVERGED = 0
    MAX_ITERATIONS = 1
    INVALID_INPUT = 2  # non-finite targets: the clip was not solved
    DIVERGED = 3  # the solve produced non-finite values

    NAMES = {0: "converged", 1: "max_iterations", 2: "invalid_input", 3: "diverged"}

    @classmethod
    def name(cls, code: int) -> str:
        return cls.NAMES.get(int(code), f"unknown({int(code)})")

    @classmethod
    def ok(cls, code: int) -> bool:
        return int(code) in (cls.CONVERGED, cls.MAX_ITERATIONS)


@dataclasses.dataclass
class RetargetingResult:
    """One retargeted clip.

    Attributes:
        fps: frame rate of the trajectory.
        root_pos: (T, 3) floating-base position, world, metres.
        root_quat_wxyz: (T, 4) floating-base orientation.
        dof_pos: (T, n) actuated joint positions in MJCF order, radians.
        dof_names: (n,) joint names.
        body_names: (B,) body names in MJCF order (world excluded).
        body_pos_w: (T, B, 3) body origins in the world.
        body_quat_w: (T, B, 4) body orientations in the world, wxyz.
        status: SolveStatus code.
        final_cost: mean per-frame objective at the solution.
        iterations: solver iterations taken.
        robot: robot name.
        provenance: source path, config hash, package version, recipe, ... (JSON-able);
            a solved result also counts the source samples that were masked and filled
            (``masked_frames``, ``masked_joints``, ``masked_per_joint``; see
            :func:`retarget_jax.motion.canonical.masked_samples`).
        target_pos_w: (T, K, 3) scaled human targets the solve tracked, or None; NaN
            where the target's human joint is missing in that frame (not tracked there).
        target_body_names: (K,) robot body each target is attached to.
        target_offset_b: (K, 3) tracked point of each target in its body's frame, or None
            (the body origin).
        contacts: (T, F) bool ContactPlan the solve used (True = the foot is in stance),
            or None when no plan is known (a robot-space file loaded without a solve).
        contact_body_names: (F,) robot contact link of each foot column of ``contacts``.
        limb_names: (L,) limbs of the recipe (names of retarget_jax.motion.skeleton.LIMBS).
        limb_body_names: (L, 2) robot bodies at each limb's proximal and distal ends.
        limb_offset_b: (L, 2, 3) the limb's end points, each in its body's frame, or None.
        limb_human_dir: (T, L, 3) unit direction of the unscaled human bone, or None; NaN
            where either joint is missing in that frame.
    """

    fps: float
    root_pos: np.ndarray
    root_quat_wxyz: np.ndarray
    dof_pos: np.ndarray
    dof_names: tuple[str, ...]
    body_names: tuple[str, ...]
    body_pos_w: np.ndarray
    body_quat_w: np.ndarray
    status: int
    final_cost: float
    iterations: int
    robot: str
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    target_pos_w: np.ndarray | None = None
    target_body_names: tuple[str, ...] = ()
    target_offset_b: np.ndarray | None = None
    contacts: np.ndarray | None = None
    contact_body_names: tuple[str, ...] = ()
    limb_names: tuple[str, ...] = ()
    limb_body_names: tuple[tuple[str, str], ...] = ()
    limb_offset_b: np.ndarray | None = None
    limb_human_dir: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.root_pos.shape[0])

    @property
    def qpos(self) -> np.ndarray:
        """(T, 7 + n) MuJoCo qpos: root position, root quaternion wxyz, joints."""
        return np.concatenate([self.root_pos, self.root_quat_wxyz, self.dof_pos], axis=-1)

    @property
    def ok(self) -> bool:
        return SolveStatus.ok(self.status)
