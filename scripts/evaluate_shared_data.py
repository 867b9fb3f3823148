"""Retarget every real clip of ../shared/data to every built-in robot; print a table, write JSON.

    python scripts/evaluate_shared_data.py [--data ../shared/data] [--json out.json] [--frames N]

Each file is read in its format with the shipped recipe of its family and the robot
(LAFAN1 BVH: bvh_lafan1 -> lafan1_*; the 19-joint BVH: bvh with joint map mocapbank_19,
whose joint frames are unknown -> keypoints_*; the OMOMO SMPL-H keypoints -> keypoints_*).
Figures per result: tracking error of the tracked points
(mean, p95, cm), uprightness (min cos of the pelvis z axis to world z), stance sole
height of each foot (mean and p95 |h|, cm), joint-limit violation, solve status and time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from retarget_jax.files.atomic import atomic_write_text
from retarget_jax.formats import default_recipe
from retarget_jax.metrics import metric_summary
from retarget_jax.motion import read_motion
from retarget_jax.pipeline import ClipFailure, retarget_motions
from retarget_jax.problem import load_recipe
from retarget_jax.robots import load_robot
from retarget_jax.rotations import quat_rotate

FILES = [  # file, format, joint map
    ("lafan1_skeleton_clip_a.bvh", "bvh_lafan1", None),
    ("mocapbank_19joint_clip.bvh", "bvh", "mocapbank_19"),
    ("omomo_sub3_largebox_003_joints.npz", "keypoints", None),
]
ROBOTS = ("unitree_g1", "unitree_h1", "booster_t1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("RETARGET_JAX_SHARED_DATA") or str(
        Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    ap.add_argument("--data", default=default_data)
    ap.add_argument("--robots", nargs="+", default=list(ROBOTS))
    ap.add_argument("--frames", type=int, default=None, help="only the first N frames of each clip")
    ap.add_argument("--files", nargs="+", default=[f for f, _, _ in FILES], help="a subset of the files")
    ap.add_argument("--json", default="benchmarks/results/shared_data_eval.json")
    ap.add_argument("--cache-dir", default="~/.cache/retarget_jax/xla")
    args = ap.parse_args()
    if args.cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(Path(args.cache_dir).expanduser()))
    rows = []
    for robot_name in args.robots:
        robot = load_robot(robot_name)
        for fname, fmt, jmap in (f for f in FILES if f[0] in args.files):
            path = Path(args.data) / fname
            motion = read_motion(path, fmt, joint_map=jmap)
            if args.frames:
                motion = motion.slice(0, args.frames)
            recipe = load_recipe(default_recipe(fmt, robot.name, motion))
            t0 = time.perf_counter()
            (res,) = retarget_motions([motion], recipe, robot, max_batch=1)
            wall = time.perf_counter() - t0
            row = {
                "file": fname,
                "format": fmt,
                "robot": robot.name,
                "recipe": recipe.name,
                "frames": motion.num_frames,
                "wall_s_incl_compile": round(wall, 1),
            }
            if isinstance(res, ClipFailure):
                row.update(status="failed", error=f"{res.error_type}: {res.message}")
            else:
                m = metric_summary(res, robot)
                feet = recipe.ground_bodies
                # upright, judged against the human: the pelvis lean beyond the human trunk's
                # (pelvis -> neck) in the same frame; a robot without a waist pitch joint
                # must lean its pelvis as far as the human bends its spine
                trunk = motion.positions[:, motion.index("neck")] - motion.positions[:, motion.index("pelvis")]
                human_lean = np.degrees(np.arccos(np.clip(trunk[:, 2] / np.linalg.norm(trunk, axis=-1), -1, 1)))
                up = quat_rotate(res.root_quat_wxyz, np.array([0.0, 0.0, 1.0]))[:, 2]
                robot_lean = np.degrees(np.arccos(np.clip(up, -1, 1)))
                row.update(
                    status=res.provenance["status_name"],
                    iterations=res.iterations,
                    tracking_mean_cm=100 * m["tracking_error.mean"],
                    tracking_p95_cm=100 * m["tracking_error.p95"],
                    upright_min_cos=m["upright"],
                    limit_violation_rad=m["joint_limit_violation.max_rad"],
                    human_trunk_lean_max_deg=float(human_lean.max()),
                    robot_lean_max_deg=float(robot_lean.max()),
                    lean_beyond_human_max_deg=float((robot_lean - human_lean).max()),
                    stance_sole_mean_cm=[100 * m[f"stance_feet.{b}_stance_sole_height_mean"] for b in feet],
                    stance_sole_p95_abs_cm=[100 * m[f"stance_feet.{b}_stance_sole_height_p95_abs"] for b in feet],
                    sole_min_cm=[100 * m[f"stance_feet.{b}_sole_height_min"] for b in feet],
                    jerk_mean=m.get("jerk_mean_abs_rad_s3"),
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    hdr = (
        f"{'file':36s} {'robot':11s} {'frames':>6s} {'track mean/p95 cm':>18s} {'upright':>7s} "
        f"{'lean/human/excess deg':>22s} "
        f"{'stance sole mean L/R cm':>24s} {'p95|h| L/R cm':>14s} {'limits':>7s} {'status':>15s} {'wall s':>7s}"
    )
    print("\n" + hdr)
    for r in rows:
        if r["status"] == "failed":
            print(f"{r['file']:36s} {r['robot']:11s} FAILED {r['error']}")
            continue
        sm, sp = r["stance_sole_mean_cm"], r["stance_sole_p95_abs_cm"]
        print(
            f"{r['file']:36s} {r['robot']:11s} {r['frames']:6d} "
            f"{r['tracking_mean_cm']:8.2f} / {r['tracking_p95_cm']:5.2f}"
            f"   {r['upright_min_cos']:7.3f} {r['robot_lean_max_deg']:6.0f} / "
            f"{r['human_trunk_lean_max_deg']:3.0f} / {r['lean_beyond_human_max_deg']:4.0f}"
            f" {sm[0]:11.2f} / {sm[1]:5.2f}       {sp[0]:5.2f} / {sp[1]:5.2f}"
            f" {r['limit_violation_rad']:7.1e} {r['status']:>15s} {r['wall_s_incl_compile']:7.1f}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"device": str(jax.devices()[0]), "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
