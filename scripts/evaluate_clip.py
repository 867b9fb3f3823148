"""Retarget one motion file and print its quality figures as JSON (host script).

    python scripts/evaluate_clip.py ../shared/data/lafan1_skeleton_clip_a.bvh --output out.npz
    python scripts/evaluate_clip.py CLIP.bvh --robot unitree_h1 --frames 1000:1300

``--recipe`` defaults to ``lafan1_<robot without vendor prefix>`` (lafan1_g1, lafan1_h1,
lafan1_t1); ``--frames START:STOP`` solves a slice (scales are then measured on it too).

Figures: tracking error of the mapped body points (mean, p95), mean absolute joint jerk,
uprightness, sole height of the feet during stance, joint-limit violation, solve time.
"""

from __future__ import annotations

import argparse
import json
import time

from retarget_jax.io import save_result
from retarget_jax.metrics import metric_summary
from retarget_jax.motion import read_motion
from retarget_jax.pipeline import ClipFailure, retarget_motions
from retarget_jax.problem import load_recipe
from retarget_jax.robots import load_robot


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--format", default="bvh_lafan1")
    ap.add_argument("--robot", default="unitree_g1")
    ap.add_argument("--recipe", default=None, help="default: lafan1_<robot suffix>, e.g. lafan1_h1")
    ap.add_argument("--frames", default=None, help="START:STOP, a slice of the clip")
    ap.add_argument("--output", default=None)
    args = ap.parse_args()
    recipe_name = args.recipe or f"lafan1_{args.robot.split('_')[-1]}"
    robot, recipe = load_robot(args.robot), load_recipe(recipe_name)
    motion = read_motion(args.path, args.format)
    if args.frames:
        start, _, stop = args.frames.partition(":")
        motion = motion.slice(int(start or 0), int(stop) if stop else motion.num_frames)
    t0 = time.perf_counter()
    (res,) = retarget_motions([motion], recipe, robot)
    if isinstance(res, ClipFailure):
        raise SystemExit(f"{res.error_type}: {res.message}")
    wall = time.perf_counter() - t0
    m = metric_summary(res, robot)
    m.update(
        robot=robot.name,
        recipe=recipe.name,
        frames=res.num_frames,
        status=res.provenance["status_name"],
        iterations=res.iterations,
        final_cost=res.final_cost,
        wall_s_including_compile=round(wall, 2),
    )
    if args.output:
        save_result(res, args.output)
        m["output"] = args.output
    print(json.dumps(m, indent=2))


if __name__ == "__main__":
    main()
