"""Plausibility terms off vs on, on a real clip: retarget it both ways, evaluate both
results with the package's metrics, print a table and write JSON.

    python scripts/evaluate_plausibility.py [--clip ../shared/data/lafan1_skeleton_clip_a.bvh]
        [--robot unitree_g1] [--out-dir outputs/plausibility] [--reuse]

``--reuse`` evaluates results already in ``--out-dir`` instead of solving again. The
human source's own stance-foot speed (raw and as scaled for the robot) comes from the
result's provenance: the figure the robot's ``foot_sliding`` is compared with.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(REPO.parent / "shared" / "data" / "lafan1_skeleton_clip_a.bvh"))
    ap.add_argument("--format", default="bvh_lafan1")
    ap.add_argument("--robot", default="unitree_g1")
    ap.add_argument("--out-dir", default="outputs/plausibility")
    ap.add_argument("--reuse", action="store_true", help="evaluate the results already in --out-dir")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_compilation_cache_dir", str(Path("~/.cache/retarget_jax/xla").expanduser()))
    from retarget_jax.formats import default_recipe
    from retarget_jax.io import atomic_write_text, load_result, save_result
    from retarget_jax.metrics.report import evaluate_results
    from retarget_jax.motion import read_motion
    from retarget_jax.pipeline import retarget_motions
    from retarget_jax.problem import CostWeights, load_recipe
    from retarget_jax.robots import load_robot

    robot = load_robot(args.robot)
    out = Path(args.out_dir)
    settings = {"off": CostWeights().without_plausibility(), "on": CostWeights()}
    results, seconds = {}, {}
    if args.reuse:
        results = {k: load_result(out / f"{k}.npz") for k in settings}
    else:
        motion = read_motion(args.clip, args.format)
        recipe = load_recipe(default_recipe(args.format, robot.name, motion))
        for k, w in settings.items():
            t0 = time.perf_counter()
            (results[k],) = retarget_motions([motion], recipe, robot, weights=w)
            seconds[k] = round(time.perf_counter() - t0, 1)
            save_result(results[k], out / f"{k}.npz")
    reports = dict(zip(settings, evaluate_results(list(results.values()), robot, ids=list(settings)), strict=True))

    def val(rep, name, key=None):
        v = rep["metrics"][name]["value"]
        return v[key] if key is not None else v

    rows = [
        ("foot_sliding (m/s)", lambda r: val(r, "foot_sliding")),
        ("contact_preservation", lambda r: val(r, "contact_preservation")),
        ("ground penetration max (m)", lambda r: val(r, "penetration", "ground_max")),
        ("self penetration max (m)", lambda r: val(r, "penetration", "self_max")),
        ("penetration mean (m)", lambda r: val(r, "penetration", "mean")),
        ("tracking_error mean (m)", lambda r: val(r, "tracking_error", "mean")),
        ("tracking_error p95 (m)", lambda r: val(r, "tracking_error", "p95")),
        ("joint_limit_violation max (rad)", lambda r: val(r, "joint_limit_violation", "max_rad")),
        ("jerk (rad/s^3)", lambda r: val(r, "jerk")),
        ("optimization_cost", lambda r: val(r, "optimization_cost")),
    ]
    plan = results["on"].provenance.get("contact_plan", {})
    print(f"| {Path(args.clip).name} -> {robot.name}, {results['on'].num_frames} frames | off | on |")
    print("|---|---|---|")
    for name, fn in rows:
        print(f"| {name} | {fn(reports['off']):.4g} | {fn(reports['on']):.4g} |")
    print(
        f"| solve status / iterations | {results['off'].provenance.get('status_name')} / {results['off'].iterations} "
        f"| {results['on'].provenance.get('status_name')} / {results['on'].iterations} |"
    )
    print(
        f"human stance-foot speed: {plan.get('human_stance_foot_speed_mps', float('nan')):.4f} m/s raw, "
        f"{plan.get('human_stance_foot_speed_scaled_mps', float('nan')):.4f} m/s scaled; "
        f"stance fraction {plan.get('stance_fraction')}"
    )
    summary = {
        "clip": args.clip,
        "robot": robot.name,
        "frames": results["on"].num_frames,
        "seconds": seconds,
        "human_stance_foot_speed_mps": plan.get("human_stance_foot_speed_mps"),
        "human_stance_foot_speed_scaled_mps": plan.get("human_stance_foot_speed_scaled_mps"),
        "reports": reports,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "plausibility.json", json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
