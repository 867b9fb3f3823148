"""Retarget a slice of a real clip to a robot and render stills of it: the README's picture.

    python scripts/render_readme_still.py ../shared/data/lafan1_skeleton_clip_a.bvh \
        --start 0 --frames 300 --output-dir docs/images

Writes ``<stem>_<robot>.npz`` (the result), one still per ``--still`` frame and a contact
sheet, and prints one JSON line with the solve's and the render's timings. The source
skeleton is drawn beside the robot, scaled as the solver saw it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from retarget_jax.formats import default_recipe
from retarget_jax.io import save_result
from retarget_jax.metrics import metric_summary
from retarget_jax.motion import read_motion
from retarget_jax.pipeline import retarget_motions
from retarget_jax.problem import load_recipe
from retarget_jax.render import (
    RenderOptions,
    render_contact_sheet,
    render_stills,
    render_video,
    skeleton_from_motion,
)
from retarget_jax.robots import load_robot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", help="motion file")
    ap.add_argument("--format", default="bvh_lafan1")
    ap.add_argument("--robot", default="unitree_g1")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--still", type=int, action="append", help="frame of the slice to render (repeatable)")
    ap.add_argument("--layout", default="beside", choices=("overlay", "beside", "robot"))
    ap.add_argument("--video", action="store_true", help="also render the slice as an MP4")
    ap.add_argument("--output-dir", default="docs/images")
    args = ap.parse_args()

    t0 = time.perf_counter()
    motion = read_motion(args.source, args.format).slice(args.start, args.start + args.frames)
    robot = load_robot(args.robot)
    recipe = load_recipe(default_recipe(args.format, robot.name, motion))
    (result,) = retarget_motions([motion], recipe, robot)
    solve_s = time.perf_counter() - t0
    out = Path(args.output_dir)
    stem = f"{Path(args.source).stem}_{robot.name}"
    save_result(result, out / f"{stem}.npz")
    opts = RenderOptions(layout=args.layout)
    name = f"{Path(args.source).name} [{args.start}:{args.start + args.frames}]"
    t1 = time.perf_counter()
    skeleton = skeleton_from_motion(result, robot, motion, recipe)  # the whole skeleton, as the solver saw it
    stills = render_stills(
        result, robot, args.still or [args.frames // 2], out, stem=stem, options=opts, name=name, skeleton=skeleton
    )
    sheet = render_contact_sheet(
        result,
        robot,
        out / f"{stem}.sheet.png",
        name=name,
        skeleton=skeleton,
        options=RenderOptions(width=320, height=240, layout=args.layout, label=False),
    )
    render_s = time.perf_counter() - t1
    summary = {
        "result": str(out / f"{stem}.npz"),
        "stills": [str(s) for s in stills],
        "sheet": str(sheet),
        "frames": result.num_frames,
        "status": result.provenance.get("status_name"),
        "solve_and_compile_s": round(solve_s, 1),
        "stills_s": round(render_s, 1),
        **{
            k: round(v, 4)
            for k, v in metric_summary(result, robot, plugins=("tracking_error", "joint_limit_violation")).items()
            if k in ("tracking_error.mean", "joint_limit_violation.max_rad")
        },
    }
    if args.video:
        t2 = time.perf_counter()
        summary["video"] = str(
            render_video(result, robot, out / f"{stem}.mp4", options=opts, name=name, skeleton=skeleton)
        )
        summary["video_s"] = round(time.perf_counter() - t2, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
