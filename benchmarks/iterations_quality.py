"""Iterations against quality: the curve behind the solver's stopping rule and defaults.

    python benchmarks/iterations_quality.py                 # 8 windows x 300 frames of clip a
    python benchmarks/iterations_quality.py --clips 2 --frames 240

The solve runs in two levels (``retarget_jax.solve.SolverOptions``): the clip at a quarter
of its frame rate from the default pose (at most ``coarse_iters`` iterations, stopping at
``coarse_rtol``), then ``max_iters`` full-rate iterations from its interpolated solution.
This script solves the same real clips (windows of ``lafan1_skeleton_clip_a.bvh``,
``lafan1_g1`` on the G1, as ``compare_peer.py``) with a grid of both counts, one compile
per distinct shape, and scores every solution with the package's metrics:

* end-effector tracking error (mm; feet and wrists, as ``compare_peer.py``), all-target
  tracking error (mm), jerk (rad/s^3), foot sliding (m/s), deepest penetration (mm);
* the final cost relative to a reference solve (``--reference``: a single-level solve from
  the default pose to rtol 1e-7, up to 200 iterations);
* wall seconds of one batched call (after the compiling one) and frames/s.

Prints a table, writes JSON and, with matplotlib, a PNG of each figure against the
full-rate iterations, one line per coarse budget.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from _platform import select_platform  # benchmarks/ is sys.path[0] when run as a script

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument(
        "--data", default=os.environ.get("RETARGET_JAX_SHARED_DATA") or str(REPO_ROOT.parent / "shared" / "data")
    )
    p.add_argument("--coarse", default="0,10,20,30", help="coarse iteration budgets (0: no coarse level)")
    p.add_argument("--fine", default="1,2,3,4,6", help="full-rate iteration counts")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto")
    p.add_argument("--output", default="benchmarks/results/iterations_quality_{device}.json")
    p.add_argument("--plot", default="benchmarks/results/iterations_quality_{device}.png")
    p.add_argument("--compilation-cache", default=None, metavar="DIR")
    args = p.parse_args(argv)
    select_platform(args.device)
    import jax
    import numpy as np

    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    from compare_peer import build_clips, end_effector_targets, point_errors

    from retarget_jax.buckets import bucket_length
    from retarget_jax.metrics.report import evaluate_results
    from retarget_jax.pipeline import finish_clip
    from retarget_jax.solve.batch import solve_many
    from retarget_jax.solve.gauss_newton import SolverOptions

    robot, clips = build_clips(argparse.Namespace(data=args.data, frames=args.frames, clips=args.clips))
    problems = [c.compiled for c in clips]
    frames = sum(c.num_frames for c in clips)
    buckets = [bucket_length(args.frames)]

    def solve(options):
        def call():
            return jax.block_until_ready(solve_many(problems, options, buckets=buckets, max_batch=len(problems)))

        t0 = time.perf_counter()
        solved = call()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        solved = call()
        return solved, time.perf_counter() - t0, first

    def score(solved):
        results = [finish_clip(c, s) for c, s in zip(clips, solved, strict=True)]
        ee = end_effector_targets(robot, results[0].target_body_names)
        reports = evaluate_results(results, robot)
        ee_err = np.concatenate([point_errors(r, robot, ee).ravel() for r in results])
        m = [rep["metrics"] for rep in reports]
        return {
            "ee_mm": 1e3 * float(np.nanmean(ee_err)),
            "all_mm": 1e3 * float(np.mean([x["tracking_error"]["value"]["mean"] for x in m])),
            "jerk": float(np.mean([x["jerk"]["value"] for x in m])),
            "slide": float(np.mean([x["foot_sliding"]["value"] for x in m])),
            "pen_mm": 1e3 * float(np.max([x["penetration"]["value"]["max"] for x in m])),
            "cost": float(np.mean([float(s[0].cost) for s in solved])),
        }

    ref_opts = SolverOptions(max_iters=200, coarse_iters=0, rtol=1e-7, step_tol=1e-7)
    ref_solved, _, _ = solve(ref_opts)
    ref = score(ref_solved)
    rows = [{"coarse_iters": "ref", "max_iters": 200, **ref, "cost_rel": 1.0, "seconds": None, "fps": None}]
    print(
        f"{args.clips} clips x {args.frames} frames; reference (single level, rtol 1e-7): "
        + ", ".join(f"{k} {v:.4g}" for k, v in ref.items()),
        flush=True,
    )
    header = (
        f"{'coarse':>6} {'fine':>4} {'ee mm':>7} {'all mm':>7} {'jerk':>7} {'slide':>7} {'pen mm':>7} "
        f"{'cost/ref':>8} {'s':>7} {'frames/s':>8}"
    )
    print(header)
    for c in [int(x) for x in args.coarse.split(",")]:
        for f in [int(x) for x in args.fine.split(",")]:
            opts = SolverOptions(coarse_iters=c, max_iters=f)
            solved, secs, _ = solve(opts)
            s = score(solved)
            row = {
                "coarse_iters": c,
                "max_iters": f,
                **s,
                "cost_rel": s["cost"] / ref["cost"],
                "seconds": secs,
                "fps": frames / secs,
            }
            rows.append(row)
            print(
                f"{c:>6} {f:>4} {s['ee_mm']:7.2f} {s['all_mm']:7.2f} {s['jerk']:7.2f} {s['slide']:7.4f} "
                f"{s['pen_mm']:7.2f} {row['cost_rel']:8.4f} {secs:7.3f} {row['fps']:8.0f}",
                flush=True,
            )
    device = jax.devices()[0]
    name = (
        f"{device.platform}: {os.cpu_count()} cores, {platform.machine()}"
        if device.platform == "cpu"
        else f"{device.platform}: {device.device_kind}"
    )
    out = Path(args.output.format(device=device.platform))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": name, "clips": args.clips, "frames": args.frames, "rows": rows}, indent=2))
    print(f"[{name}] JSON: {out}")
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("no matplotlib: no plot", file=sys.stderr)
            return 0
        keys = [
            ("ee_mm", "end-effector error (mm)"),
            ("jerk", "jerk (rad/s^3)"),
            ("slide", "foot sliding (m/s)"),
            ("cost_rel", "cost / reference"),
        ]
        fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
        for ax, (k, label) in zip(axes, keys, strict=True):
            for c in sorted({r["coarse_iters"] for r in rows if r["coarse_iters"] != "ref"}):
                pts = [(r["max_iters"], r[k]) for r in rows if r["coarse_iters"] == c]
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"coarse {c}")
            ax.axhline(ref[k] if k != "cost_rel" else 1.0, color="k", lw=0.8, ls="--", label="reference")
            ax.set_xlabel("full-rate iterations")
            ax.set_title(label, fontsize=9)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        png = Path(args.plot.format(device=device.platform))
        fig.savefig(png, dpi=110)
        print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
