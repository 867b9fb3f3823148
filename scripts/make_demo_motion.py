"""Write the procedural demo walk to a BVH file for inspection in any BVH viewer.

    python scripts/make_demo_motion.py demo_walk.bvh --frames 300 --fps 30

The file uses LAFAN1's layout (centimetres, Y-up, ``Zrotation Yrotation Xrotation``
channels, root position channels) so that ``read_bvh`` with its defaults reads it back
to the same motion; the script checks that round trip before it returns.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from retarget_jax.files.atomic import atomic_write_text
from retarget_jax.motion.bvh import Y_UP_TO_Z_UP, read_bvh
from retarget_jax.motion.demo import demo_motion
from retarget_jax.motion.human_motion import HumanMotion
from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP
from retarget_jax.rotations import quat_to_mat


def _euler_zyx_deg(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) angles (z, y, x) in degrees with R = Rz @ Ry @ Rx."""
    y = np.arcsin(np.clip(-R[..., 2, 0], -1.0, 1.0))
    z = np.arctan2(R[..., 1, 0], R[..., 0, 0])
    x = np.arctan2(R[..., 2, 1], R[..., 2, 2])
    # Gimbal lock (|y| = 90 degrees): only z -/+ x is defined; put it all in z.
    lock = np.abs(R[..., 2, 0]) > 1.0 - 1e-12
    z_lock = np.arctan2(-R[..., 0, 1], R[..., 1, 1])
    z = np.where(lock, z_lock, z)
    x = np.where(lock, 0.0, x)
    return np.degrees(np.stack([z, y, x], axis=-1))


def write_bvh(path: str | Path, motion: HumanMotion, *, length_scale: float = 0.01) -> None:
    """Write a motion with orientations as a Y-up BVH (inverse of ``read_bvh`` defaults).

    Local offsets are taken from the first frame and must be constant over the clip
    (true for any motion built by forward kinematics, such as the demo walk).
    """
    if motion.orientations is None:
        raise ValueError("write_bvh needs orientations")
    C = Y_UP_TO_Z_UP
    pos = np.einsum("ij,tkj->tki", C.T, motion.positions) / length_scale  # file units, Y-up
    R = np.einsum("ij,tkjl->tkil", C.T, quat_to_mat(motion.orientations))
    parents = [int(p) for p in motion.parents]
    J = len(parents)
    local_R = np.empty_like(R)
    offsets = np.zeros((J, 3))
    for j, p in enumerate(parents):
        if p < 0:
            local_R[:, j] = R[:, j]
            continue
        local_R[:, j] = np.swapaxes(R[:, p], -1, -2) @ R[:, j]
        off = np.einsum("tji,tj->ti", R[:, p], pos[:, j] - pos[:, p])
        if np.abs(off - off[0]).max() > 1e-6:
            raise ValueError(f"joint {motion.joint_names[j]}: local offset changes over time")
        offsets[j] = off[0]
    angles = _euler_zyx_deg(local_R)  # (T, J, 3)

    # LAFAN1's spelling where every role has one, so read_bvh's defaults read it back.
    lafan1_name = {role: name for name, role in LAFAN1_JOINT_MAP.items()}
    if all(j in lafan1_name for j in motion.joint_names):
        names = tuple(lafan1_name[j] for j in motion.joint_names)
    else:
        names = motion.source_joint_names or tuple(str(j) for j in motion.joint_names)
    children: dict[int, list[int]] = {j: [] for j in range(J)}
    for j, p in enumerate(parents):
        if p >= 0:
            children[p].append(j)
    lines = ["HIERARCHY"]
    order: list[int] = []

    def emit(j: int, depth: int) -> None:
        ind = "\t" * depth
        kind = "ROOT" if parents[j] < 0 else "JOINT"
        lines.append(f"{ind}{kind} {names[j]}")
        lines.append(f"{ind}{{")
        lines.append(f"{ind}\tOFFSET {offsets[j, 0]:.6f} {offsets[j, 1]:.6f} {offsets[j, 2]:.6f}")
        pos_ch = "Xposition Yposition Zposition " if parents[j] < 0 else ""
        n = 6 if parents[j] < 0 else 3
        lines.append(f"{ind}\tCHANNELS {n} {pos_ch}Zrotation Yrotation Xrotation")
        order.append(j)
        for k in children[j]:
            emit(k, depth + 1)
        if not children[j]:
            lines.extend(
                [
                    f"{ind}\tEnd Site",
                    f"{ind}\t{{",
                    f"{ind}\t\tOFFSET 0.000000 0.000000 0.000000",
                    f"{ind}\t}}",
                ]
            )
        lines.append(f"{ind}}}")

    for root in (j for j in range(J) if parents[j] < 0):
        emit(root, 0)
    T = motion.num_frames
    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / motion.fps:.8f}"]
    for t in range(T):
        vals: list[float] = []
        for j in order:
            if parents[j] < 0:
                vals.extend(pos[t, j])
            vals.extend(angles[t, j])
        lines.append(" ".join(f"{v:.6f}" for v in vals))
    atomic_write_text(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="BVH file to write")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--fps", type=float, default=30.0)
    args = ap.parse_args(argv)
    motion = demo_motion(args.frames, args.fps)
    write_bvh(args.out, motion)
    back = read_bvh(args.out, source_format="bvh_demo")
    err = float(np.abs(back.positions - motion.positions).max())
    if err > 1e-6 or not math.isclose(back.fps, motion.fps, rel_tol=1e-6):
        raise SystemExit(f"round trip failed: max position error {err:.3g} m")
    print(
        f"wrote {args.out}: {motion.num_frames} frames at {motion.fps:g} fps, "
        f"{len(motion.joint_names)} joints (round trip max error {err:.1e} m)"
    )


if __name__ == "__main__":
    main()
