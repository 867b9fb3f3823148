"""Limb direction against the other quality figures, for a sweep of the direction weight.

    python benchmarks/limb_direction.py [--clip ../shared/data/lafan1_skeleton_clip_a.bvh]
        [--robot unitree_g1] [--weights 0 0.1 0.2 0.3 0.5] [--set contact_slide=10] [--json out.json]

Retargets one clip once per ``CostWeights.direction`` value (everything else at its
default, or as ``--set`` says) and prints, per value: the limb-direction cosine (mean over limbs and frames,
the lowest per-limb mean, the 5th percentile, the upper arms and thighs), foot sliding,
ground penetration, joint-limit violation, jerk, and the end-effector error (wrists and
ankles: distance of the tracked point from its scaled human target, mean over frames).
This is the measurement behind the default weight (see docs / the README table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
END_EFFECTORS = ("left_wrist", "right_wrist", "left_ankle", "right_ankle")


def end_effector_error(result, recipe) -> float:
    """Mean distance (m) of the wrists' and ankles' tracked points from their targets."""
    import numpy as np

    from retarget_jax.rotations import quat_rotate

    pos_t = [t for t in recipe.targets if t.position_weight > 0]
    errs = []
    for k, t in enumerate(pos_t):
        if t.human.value not in END_EFFECTORS:
            continue
        b = result.body_names.index(t.body)
        pts = result.body_pos_w[:, b] + quat_rotate(result.body_quat_w[:, b], np.asarray(t.offset, np.float64))
        d = np.linalg.norm(pts - result.target_pos_w[:, k], axis=-1)
        errs.append(d[np.isfinite(d)])
    return float(np.mean(np.concatenate(errs)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(REPO.parent / "shared" / "data" / "lafan1_skeleton_clip_a.bvh"))
    ap.add_argument("--format", default="bvh_lafan1")
    ap.add_argument("--robot", default="unitree_g1")
    ap.add_argument("--recipe", default=None, help="recipe name or file (default: the format's for the robot)")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5])
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="other CostWeights for every row (e.g. contact_slide=10, the weight before 0.2)",
    )
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args(argv)

    from retarget_jax.xla_flags import configure_xla

    configure_xla()
    import jax

    jax.config.update("jax_compilation_cache_dir", str(Path("~/.cache/retarget_jax/xla").expanduser()))
    from retarget_jax.formats import default_recipe
    from retarget_jax.metrics.report import evaluate_results
    from retarget_jax.motion import read_motion
    from retarget_jax.motion.skeleton import LIMBS
    from retarget_jax.pipeline import retarget_motions
    from retarget_jax.problem import CostWeights, load_recipe
    from retarget_jax.robots import load_robot

    robot = load_robot(args.robot)
    motion = read_motion(args.clip, args.format)
    recipe = load_recipe(args.recipe or default_recipe(args.format, robot.name, motion))
    others = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    rows = []
    for w in args.weights:
        t0 = time.perf_counter()
        weights = dataclasses.replace(CostWeights(), **others, direction=w)
        (res,) = retarget_motions([motion], recipe, robot, weights=weights)
        secs = time.perf_counter() - t0
        (rep,) = evaluate_results([res], robot)
        m = rep["metrics"]
        ld = m["limb_direction"]["value"]
        per_limb = {limb.name: ld[f"{limb.name}_mean"] for limb in LIMBS if f"{limb.name}_mean" in ld}
        rows.append(
            {
                "direction_weight": w,
                "weights": dataclasses.asdict(weights),
                "seconds": round(secs, 1),
                "frames": res.num_frames,
                "limb_mean": ld["mean"],
                "limb_p5": ld["p5"],
                "limb_min_mean": min(per_limb.values()),
                "per_limb_mean": per_limb,
                "per_limb_p5": {limb.name: ld[f"{limb.name}_p5"] for limb in LIMBS if f"{limb.name}_p5" in ld},
                "foot_sliding": m["foot_sliding"]["value"],
                "ground_penetration_max": m["penetration"]["value"]["ground_max"],
                "self_penetration_max": m["penetration"]["value"]["self_max"],
                "joint_limit_max": m["joint_limit_violation"]["value"]["max_rad"],
                "jerk": m["jerk"]["value"],
                "tracking_mean": m["tracking_error"]["value"]["mean"],
                "end_effector_error": end_effector_error(res, recipe),
            }
        )
    base = rows[0]
    print(
        f"{Path(args.clip).name} -> {robot.name}, {base['frames']} frames, recipe {recipe.name}, "
        f"other weights {others or 'default'}"
    )
    print(
        "| direction | limb mean | lowest limb | limb p5 | L/R upper arm | L/R thigh | sliding m/s | ground pen mm "
        "| joint limit rad | jerk | EE error mm | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pl = r["per_limb_mean"]
        print(
            f"| {r['direction_weight']:g} | {r['limb_mean']:.4f} | {r['limb_min_mean']:.4f} | {r['limb_p5']:.4f} "
            f"| {pl.get('left_upper_arm', float('nan')):.3f} / {pl.get('right_upper_arm', float('nan')):.3f} "
            f"| {pl.get('left_thigh', float('nan')):.3f} / {pl.get('right_thigh', float('nan')):.3f} "
            f"| {r['foot_sliding']:.4f} | {1000 * r['ground_penetration_max']:.2f} | {r['joint_limit_max']:.2g} "
            f"| {r['jerk']:.2f} | {1000 * r['end_effector_error']:.1f} | {r['seconds']} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"clip": args.clip, "robot": robot.name, "recipe": recipe.name, "set": others, "rows": rows}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
