"""``retarget-jax``: command-line tools (host). Hydra sweeps use ``python -m retarget_jax.run``.

    retarget-jax retarget INPUT --format F --robot R --output OUT.npz [options]
    retarget-jax formats        # the input format names and what they read

``retarget`` reads one file, retargets it (or, for a robot-space format, loads it) and
writes one result. The output format follows the file name (``.npz`` result,
``.mjlab.npz`` mjlab/BeyondMimic, ``.pkl`` GMR) unless ``--output-format`` says.
Errors are printed as ``error: <ErrorClass>: <message>`` with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from retarget_jax.errors import RetargetError

_OUTPUT_FORMATS = ("npz", "mjlab_npz", "gmr_pkl")


def _output_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    name = path.name.lower()
    if name.endswith(".mjlab.npz"):
        return "mjlab_npz"
    if name.endswith(".pkl"):
        return "gmr_pkl"
    return "npz"


def _retarget(args: argparse.Namespace) -> int:
    from retarget_jax.formats import MotionFormat, default_recipe, read_motion, read_robot_motion
    from retarget_jax.io import write_result
    from retarget_jax.robots import load_robot

    t0 = time.perf_counter()
    fmt = MotionFormat.parse(args.format, where="--format")
    robot = load_robot(args.robot)
    out = Path(args.output)
    out_fmt = _output_format(out, args.output_format)
    if fmt.is_robot_space:
        result = read_robot_motion(args.input, fmt, robot)
        summary = {"frames": result.num_frames, "fps": result.fps, "solved": False}
    else:
        if args.cache_dir:
            import jax

            jax.config.update("jax_compilation_cache_dir", str(Path(args.cache_dir).expanduser()))
        from retarget_jax.pipeline import ClipFailure, retarget_motions
        from retarget_jax.problem import load_recipe
        from retarget_jax.solve import SolverOptions

        motion = read_motion(args.input, fmt, joint_map=args.joint_map, body_model_dir=args.body_model_dir,
                             gender=args.gender)
        recipe = load_recipe(args.recipe or default_recipe(fmt, robot.name, motion))
        print(f"[retarget-jax] {args.input}: {motion.num_frames} frames at {motion.fps:g} fps "
              f"({fmt.value}) -> {robot.name}, recipe {recipe.name}"
              + (f", resampled to {args.fps:g} fps" if args.fps else ""), file=sys.stderr, flush=True)
        print("[retarget-jax] compiling and solving (the first solve of a shape compiles; later runs "
              "reuse the cache)...", file=sys.stderr, flush=True)
        (result,) = retarget_motions([motion], recipe, robot, fps=args.fps,
                                     options=SolverOptions(max_iters=args.max_iters))
        if isinstance(result, ClipFailure):
            print(f"error: {result.error_type}: {result.message}", file=sys.stderr)
            return 2
        from retarget_jax.metrics import recipe_metrics

        m = recipe_metrics(result, robot, recipe)
        summary = {"frames": result.num_frames, "fps": result.fps, "solved": True,
                   "status": result.provenance.get("status_name"), "iterations": result.iterations,
                   "final_cost": result.final_cost, "source_fps": result.provenance.get("source_fps"),
                   **{k: round(v, 5) for k, v in m.items() if k.startswith(("tracking", "upright", "joint_limit"))}}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(result, out, out_fmt)
    summary.update(output=str(out), output_format=out_fmt, robot=robot.name,
                   seconds=round(time.perf_counter() - t0, 2))
    print(json.dumps(summary))
    return 0


def _formats(_: argparse.Namespace) -> int:
    from retarget_jax.formats import MotionFormat

    for f in MotionFormat:
        kind = "robot space" if f.is_robot_space else f"human, recipe family '{f.family}'"
        print(f"{f.value:14s} {kind}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="retarget-jax", description="GPU-batched motion retargeting.")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("retarget", help="retarget (or load) one motion file and write one result")
    r.add_argument("input", help="motion file")
    r.add_argument("--format", "-f", required=True, help="input format (see `retarget-jax formats`)")
    r.add_argument("--robot", "-r", default="unitree_g1", help="built-in robot name or an MJCF path")
    r.add_argument("--output", "-o", required=True, help="output file (.npz, .mjlab.npz or .pkl)")
    r.add_argument("--output-format", choices=_OUTPUT_FORMATS, help="override the format the file name implies")
    r.add_argument("--recipe", help="recipe name or YAML file (default: <family>_<robot>)")
    r.add_argument("--joint-map", help="joint map name (e.g. mixamo) or YAML file; required for --format bvh")
    r.add_argument("--body-model-dir", help="SMPL/SMPL-H/SMPL-X model files (default: built-in neutral skeletons)")
    r.add_argument("--gender", choices=("neutral", "male", "female"), help="override the file's gender")
    r.add_argument("--fps", type=float, default=None, help="resample to this rate first (default: keep)")
    r.add_argument("--max-iters", type=int, default=30, help="Gauss-Newton iterations at most")
    r.add_argument("--cache-dir", default="~/.cache/retarget_jax/xla", help="persistent XLA cache ('' = off)")
    r.set_defaults(func=_retarget)
    f = sub.add_parser("formats", help="list the input formats")
    f.set_defaults(func=_formats)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RetargetError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: FileNotFoundError: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
