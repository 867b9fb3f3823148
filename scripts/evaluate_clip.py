"""Retarget one motion file and print its quality figures as JSON (host script).

    python scripts/evaluate_clip.py ../shared/data/lafan1_skeleton_clip_a.bvh --output out.npz

Figures: tracking error of the mapped body points (mean, p95), mean absolute joint jerk,
uprightness, sole height of the feet during stance, joint-limit violation, solve time.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from retarget_jax.io import save_result
from retarget_jax.metrics import clip_metrics
from retarget_jax.pipeline import read_motion, retarget_motions
from retarget_jax.problem import load_recipe
from retarget_jax.robots import load_robot


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--format", default="bvh_lafan1")
    ap.add_argument("--robot", default="unitree_g1")
    ap.add_argument("--recipe", default="lafan1_g1")
    ap.add_argument("--output", default=None)
    args = ap.parse_args()
    robot, recipe = load_robot(args.robot), load_recipe(args.recipe)
    motion = read_motion(args.path, args.format)
    t0 = time.perf_counter()
    (res,) = retarget_motions([motion], recipe, robot)
    wall = time.perf_counter() - t0
    offsets = [t.offset for t in recipe.targets if t.position_weight > 0]
    m = clip_metrics(res, robot, foot_bodies=tuple(recipe.ground_bodies), pos_offsets=np.array(offsets))
    m.update(frames=res.num_frames, status=res.provenance["status_name"], iterations=res.iterations,
             final_cost=res.final_cost, wall_s_including_compile=round(wall, 2))
    if args.output:
        save_result(res, args.output)
        m["output"] = args.output
    print(json.dumps(m, indent=2))


if __name__ == "__main__":
    main()
