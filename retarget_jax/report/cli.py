"""``retarget-jax report``: the HTML report of an evaluated batch (host, command line).

    retarget-jax report --evaluation-manifest D/evaluation_manifest.json --output report.html \
        [--worst 5] [--no-render] [--videos] [--width 640] [--height 480] [--no-progress]

:func:`add_report_parser` registers the subcommand on the ``retarget-jax`` parser's
subparsers; its handler (``args.func(args)``) prints one JSON line and returns 0. Errors
are the package's typed ones (``ConfigError`` for bad flags, ``MotionFormatError`` for a
missing or malformed evaluation manifest), printed by ``retarget_jax.cli.main``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from retarget_jax.errors import ConfigError


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``report`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``); returns it."""
    p = subparsers.add_parser(
        "report",
        help="an HTML report of an evaluated batch: metric histograms, worst clips, stills",
        description="Write an HTML page (and <stem>_assets/ beside it) from the evaluation manifest of "
        "`retarget-jax evaluate --batch-manifest`: a histogram per metric value, the worst "
        "clips of each, stills of those clips, the run's settings and its failed jobs.",
    )
    p.add_argument(
        "--evaluation-manifest",
        "-m",
        required=True,
        help="evaluation_manifest.json written by `retarget-jax evaluate --batch-manifest`",
    )
    p.add_argument("--output", "-o", required=True, help="the HTML file to write (assets go to <stem>_assets/)")
    p.add_argument("--worst", type=int, default=5, help="clips in each metric's worst table (default 5)")
    p.add_argument("--no-render", action="store_true", help="no stills (no MuJoCo rendering)")
    p.add_argument("--videos", action="store_true", help="also render an MP4 of each worst clip")
    p.add_argument("--width", type=int, help="still / video width in pixels (default: the renderer's)")
    p.add_argument("--height", type=int, help="still / video height in pixels (default: the renderer's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run_report)
    return p


def _render_options(args: argparse.Namespace):
    """RenderOptions from --width / --height, or None (the renderer's defaults)."""
    sizes = {k: getattr(args, k) for k in ("width", "height") if getattr(args, k) is not None}
    for k, v in sizes.items():
        if v < 1:
            raise ConfigError(f"report: --{k} must be a positive number of pixels, got {v}")
    if not sizes or args.no_render:
        return None
    try:
        from retarget_jax.render import RenderOptions
    except ImportError:  # the page then says the renderer is unavailable
        return None
    return RenderOptions(**sizes)


def run_report(args: argparse.Namespace) -> int:
    """The handler of ``retarget-jax report``: build the report, print its JSON summary line."""
    from retarget_jax.report.build import generate_report

    summary = generate_report(
        args.evaluation_manifest,
        args.output,
        worst=args.worst,
        render=not args.no_render,
        videos=args.videos,
        render_options=_render_options(args),
        progress=not args.no_progress,
    )
    print(json.dumps(summary.to_json()))
    return 0
