"""The ``calibrate`` subcommand's flags (host); the work is :func:`retarget_jax.calibrate.calibrate`.

retarget-jax calibrate --input DIR --format F --robot R [--recipe X] --output calibrated.yaml
    [--holdout-percent 20] [--steps N] [--batch B] [--window W] [--seed S] [--lr LR]
    [--fit scales,offsets,rotations,ground] [--weights direction=30,sliding=1]
    [--checkpoint-dir D] [--checkpoint-every K] [--no-resume] [--no-progress]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: the parameter kinds (retarget_jax.calibrate.params.PARAM_KINDS, kept here so --help imports no JAX)
PARAM_KINDS = ("scales", "offsets", "rotations", "ground")


def config_from_args(args: argparse.Namespace):
    """CalibrateConfig of the flags (ConfigError / UnknownNameError for a bad value)."""
    from retarget_jax.calibrate.driver import CalibrateConfig, parse_weights
    from retarget_jax.errors import UnknownNameError

    fit = tuple(k.strip() for k in args.fit.split(",") if k.strip())
    for k in fit:
        if k not in PARAM_KINDS:
            raise UnknownNameError("parameter kind", k, PARAM_KINDS, where="--fit")
    return CalibrateConfig(
        input=args.input,
        format=args.format,
        robot=args.robot,
        output=args.output,
        recipe=args.recipe,
        holdout_percent=args.holdout_percent,
        split=args.split,
        pattern=args.pattern,
        joint_map=args.joint_map,
        fps=args.fps,
        steps=args.steps,
        batch=args.batch,
        window=args.window,
        seed=args.seed,
        lr=args.lr,
        prior=args.prior,
        fit=fit,
        weights=parse_weights(args.weights),
        max_iters=args.max_iters,
        eval_windows=args.eval_windows,
        eval_every=args.eval_every,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume,
        name=args.name,
        progress=not args.no_progress,
        report=args.report,
    )


def _run(args: argparse.Namespace) -> int:
    from retarget_jax.calibrate.driver import calibrate

    cfg = config_from_args(args)
    if args.cache_dir:
        import jax

        jax.config.update("jax_compilation_cache_dir", str(Path(args.cache_dir).expanduser()))
    report = calibrate(cfg)
    ho = report["held_out"]
    print(
        json.dumps(
            {
                "output": report["output"],
                "report": str(cfg.report_path()),
                "split": report["split"],
                "held_out_loss_before": ho["before"].get("loss"),
                "held_out_loss_after": ho["after"].get("loss"),
                "steps": report["steps"],
                "seconds": report["seconds"],
            }
        )
    )
    return 0


def add_parser(sub) -> None:
    """Add ``calibrate`` to the ``retarget-jax`` subcommands."""
    c = sub.add_parser(
        "calibrate",
        help="fit a recipe's scale factors, target offsets and ground offset to clips "
        "(outer optimisation through the solver; README 'Calibrating a recipe')",
    )
    c.add_argument("--input", "-i", required=True, help="folder of motion files (or one file)")
    c.add_argument("--format", "-f", required=True, help="input format (see `retarget-jax formats`)")
    c.add_argument("--robot", "-r", required=True, help="built-in robot name or an MJCF path")
    c.add_argument("--recipe", help="recipe name or YAML file to start from (default: <family>_<robot>)")
    c.add_argument("--output", "-o", required=True, help="the fitted recipe (.yaml); it extends --recipe")
    c.add_argument(
        "--holdout-percent",
        type=float,
        default=20.0,
        help="clips (or, with one clip, final frames) held out for the before/after report (default 20)",
    )
    c.add_argument(
        "--split",
        choices=("auto", "clips", "time"),
        default="auto",
        help="hold out whole clips or each clip's last frames (auto: clips when there are 2 or more)",
    )
    c.add_argument("--pattern", help="glob below --input (default: the format's, e.g. **/*.bvh)")
    c.add_argument("--joint-map", help="joint map for --format bvh / keypoints")
    c.add_argument("--fps", type=float, help="resample every clip to this rate first (default: keep)")
    c.add_argument("--steps", type=int, default=100, help="outer optimisation steps (default 100)")
    c.add_argument("--batch", type=int, default=4, help="windows solved per step (default 4)")
    c.add_argument("--window", type=int, default=64, help="frames per window (default 64)")
    c.add_argument("--seed", type=int, default=0, help="seed of the window draws (default 0)")
    c.add_argument("--lr", type=float, default=0.01, help="Adam learning rate, cosine-decayed (default 0.01)")
    c.add_argument("--prior", type=float, default=0.001, help="weight of the pull towards the start (default 0.001)")
    c.add_argument(
        "--fit",
        default=",".join(PARAM_KINDS),
        help=f"parameter kinds to fit, comma-separated (default: all of {','.join(PARAM_KINDS)})",
    )
    c.add_argument(
        "--weights",
        help="outer-loss term weights, e.g. direction=30,end_effector=1,sliding=1,"
        "penetration=10,foot_height=1 (the defaults; unlisted terms keep theirs)",
    )
    c.add_argument(
        "--max-iters",
        type=int,
        default=30,
        help="full-rate solver iterations per window (default 30: the gradient needs converged solves)",
    )
    c.add_argument(
        "--eval-windows",
        type=int,
        default=32,
        help="at most this many windows per before/after evaluation (default 32)",
    )
    c.add_argument(
        "--eval-every",
        type=int,
        default=25,
        help="held-out evaluations every N steps for the loss curve (default 25; 0: before and after only)",
    )
    c.add_argument("--checkpoint-dir", help="orbax checkpoints (default: <output stem>.checkpoints beside it)")
    c.add_argument("--checkpoint-every", type=int, default=10, help="steps between checkpoints (default 10)")
    c.add_argument("--no-resume", action="store_true", help="delete an existing checkpoint folder and start over")
    c.add_argument("--name", help="name of the fitted recipe (default <recipe>_calibrated)")
    c.add_argument("--report", help=f"report file (default: {'calibration_report.json'} beside --output)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    c.add_argument("--cache-dir", default="~/.cache/retarget_jax/xla", help="persistent XLA cache ('' = off)")
    c.set_defaults(func=_run)
