"""A new robot from a rough start: does calibration reach the hand-written recipe?

    python benchmarks/calibrate_new_robot.py [--clip ../shared/data/lafan1_skeleton_clip_a.bvh]
        [--robot booster_t1] [--recipe lafan1_t1] [--steps 150] [--out benchmarks/results/calibrate_t1]

Builds the rough start a first draft for the robot would be (the hand-written recipe's
targets, weights and scale groups, with every target offset and rotation offset 0, every
scale factor 1 and no ground offset: :func:`retarget_jax.calibrate.rough_recipe`), runs
``retarget-jax calibrate`` on the clip's first 80% of frames, and scores three recipes
on the held-out last 20% with the same outer loss and the same windows: the rough start,
the calibrated recipe (loaded from the YAML the command wrote, so this also checks that
it loads and solves) and the hand-written recipe. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(REPO.parent / "shared" / "data" / "lafan1_skeleton_clip_a.bvh"))
    ap.add_argument("--format", default="bvh_lafan1")
    ap.add_argument("--robot", default="booster_t1")
    ap.add_argument("--recipe", default="lafan1_t1", help="the hand-written recipe (the rough start is made from it)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--weights", default=None, help="outer-loss weights, as `retarget-jax calibrate --weights`")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "calibrate_new_robot"))
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu", "auto"))
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--cache-dir", default="~/.cache/retarget_jax/xla", help="persistent XLA cache")
    args = ap.parse_args(argv)

    from _platform import select_platform

    select_platform(args.device)
    import jax
    import numpy as np

    jax.config.update("jax_compilation_cache_dir", str(Path(args.cache_dir).expanduser()))
    from retarget_jax.calibrate import (
        CalibParams,
        CalibrateConfig,
        ParamLayout,
        calibrate,
        rough_recipe,
        write_recipe,
    )
    from retarget_jax.calibrate.driver import evaluate, load_setup, parse_weights
    from retarget_jax.calibrate.fit import FitOptions, Fitter
    from retarget_jax.calibrate.outer import TERMS
    from retarget_jax.calibrate.params import stack_contexts
    from retarget_jax.problem import load_recipe
    from retarget_jax.solve.gauss_newton import SolverOptions

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hand = load_recipe(args.recipe)
    rough_path = out / f"{hand.name}_rough.yaml"
    write_recipe(
        rough_path,
        rough_recipe(hand),
        f"Rough start made from {args.recipe} by {Path(__file__).name}: "
        "target offsets and rotation offsets 0, scale factors 1, no "
        "ground offset.",
    )
    cfg = CalibrateConfig(
        input=args.clip,
        format=args.format,
        robot=args.robot,
        recipe=str(rough_path),
        output=str(out / f"{hand.name}_calibrated.yaml"),
        steps=args.steps,
        batch=args.batch,
        window=args.window,
        seed=args.seed,
        eval_windows=args.eval_windows,
        split="time",
        weights=parse_weights(args.weights),
        checkpoint_dir=str(out / "checkpoints"),
        resume=False,
        progress=not args.no_progress,
        report=str(out / "calibration_report.json"),
    )
    # one outer loss for all three: the rough start's measurement points must be the
    # hand-written recipe's (the same bodies and offsets), or the comparison means nothing
    spec_hand = load_setup(dataclasses.replace(cfg, recipe=args.recipe), lambda s: None)[2]
    spec_rough = load_setup(cfg, lambda s: None)[2]
    same = all(
        bool(np.array_equal(np.asarray(a), np.asarray(b)))
        for a, b in zip(jax.tree.leaves(spec_rough), jax.tree.leaves(spec_hand), strict=True)
    )
    if not same or spec_rough.limb_body != spec_hand.limb_body or spec_rough.ee_body != spec_hand.ee_body:
        raise SystemExit(
            "the rough start's outer-loss points differ from the hand-written recipe's: an offset "
            "it zeroed is where a limb ends on its body (structure, not tuning); give it in the "
            "rough start"
        )
    t0 = time.perf_counter()
    report = calibrate(cfg)
    calib_seconds = time.perf_counter() - t0

    # the three recipes on the same held-out windows, with the same outer loss
    rows = {}
    for label, recipe_ref in (
        ("rough start", str(rough_path)),
        ("calibrated", cfg.output),
        ("hand-written", args.recipe),
    ):
        c = dataclasses.replace(cfg, recipe=recipe_ref)
        robot, recipe, _, clips, mode, _ = load_setup(c, lambda s: None)
        layout = ParamLayout.of(recipe)
        fitter = Fitter(layout, spec_hand, SolverOptions(max_iters=c.max_iters), FitOptions(steps=1))
        ctx = stack_contexts([cl.context for cl in clips])
        rows[label] = evaluate(fitter, CalibParams.zeros(layout), ctx, clips, "held_out", c)
    cal_in_run = report["held_out"]["after"]

    print(
        f"\n{Path(args.clip).name} -> {args.robot}: calibrate {args.steps} steps x {args.batch} windows of "
        f"{args.window} frames on the first 80% of frames; held-out: the last 20% "
        f"({rows['hand-written']['windows']} windows, {rows['hand-written']['frames']} frames)"
    )
    print(
        "| recipe | outer loss | limb cosine | 1 - cos | end effector | sliding m/s | penetration mm "
        "| stance foot height mm |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        print(
            f"| {label} | {r['loss']:.5f} | {r['limb_cosine_mean']:.5f} | {r['direction']:.5f} "
            f"| {r['end_effector']:.4f} | {r['sliding']:.4f} | {1000 * r['penetration']:.3f} "
            f"| {1000 * r['foot_height']:.2f} |"
        )
    print(
        f"calibration: {calib_seconds:.0f} s in all, median step {report['step_seconds_median']:.2f} s; the "
        f"in-run after-evaluation of the calibrated parameters gave outer loss {cal_in_run['loss']:.5f} "
        f"(the YAML's, re-compiled: {rows['calibrated']['loss']:.5f})"
    )
    verdict = {t: rows["calibrated"][t] <= rows["hand-written"][t] for t in ("loss", *TERMS)}
    print("calibrated <= hand-written: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in verdict.items()))
    (out / "calibrate_new_robot.json").write_text(
        json.dumps(
            {
                "clip": args.clip,
                "robot": args.robot,
                "recipe": args.recipe,
                "steps": args.steps,
                "batch": args.batch,
                "window": args.window,
                "seed": args.seed,
                "weights": dataclasses.asdict(cfg.weights),
                "device": str(jax.devices()[0]),
                "rows": rows,
                "calibrated_in_run": cal_in_run,
                "calibrated_not_worse": verdict,
                "calibration_seconds": calib_seconds,
                "step_seconds_median": report["step_seconds_median"],
                "params": report["params"],
                "param_names": report["param_names"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
