"""``retarget-jax motionlib ...`` and ``retarget-jax view``: command-line tools of the
motion-library stage (host).

    retarget-jax motionlib build AMASS_ROOT OUTPUT_DIR --motion-config train.yaml \
        [--motion-config val.yaml ...] --target smpl|smplx|unitree_g1|unitree_h1|booster_t1|robot.xml \
        [--output-fps 30] [--shards N] [--force-remake] [--protomotions] [...]
    retarget-jax motionlib info LIBRARY
    retarget-jax motionlib export LIBRARY --protomotions OUT.pt
    retarget-jax view LIBRARY_OR_RESULT_DIR [--port 8080]

:func:`add_parsers` registers them on the ``retarget-jax`` parser's subparsers (the only
hook in :mod:`retarget_jax.cli`). Handlers print one JSON line and return an exit status;
typed errors are printed by ``retarget_jax.cli.main``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_parsers", "build_options"]


def add_parsers(subparsers: Any) -> None:
    """Add ``motionlib`` (``build``, ``info``, ``export``) and ``view`` to ``subparsers``."""
    ml = subparsers.add_parser(
        "motionlib",
        help="packaged motion libraries for RL trainers (build, info, export)",
        description="Build, inspect and export motion libraries (docs/motionlib.md).",
    )
    sub = ml.add_subparsers(dest="motionlib_command", required=True)
    b = sub.add_parser("build", help="motion configs -> per-motion states -> one library per config")
    b.add_argument("source_root", help="folder the configs' file paths are relative to (e.g. the AMASS root)")
    b.add_argument("output_dir", help="libraries, per-motion states (motions/<target>/) and motionlib_manifest.json")
    b.add_argument(
        "--motion-config",
        "-m",
        action="append",
        required=True,
        dest="motion_configs",
        help="YAML of motions (file, fps, weight, sub_motions); repeat for train / val / test",
    )
    b.add_argument(
        "--target",
        "-t",
        required=True,
        help="smpl or smplx (body model FK, no solve), a built-in robot name, or an MJCF path",
    )
    b.add_argument("--output-fps", type=float, default=30.0, help="rate of the states (default 30)")
    b.add_argument("--shards", type=int, default=1, help="files per library, balanced by frames (default 1)")
    b.add_argument("--force-remake", action="store_true", help="recompute every motion and rewrite every library")
    b.add_argument(
        "--format",
        "-f",
        default="amass",
        help="input format of the files (default amass; see `retarget-jax formats`); an entry's format: overrides",
    )
    b.add_argument("--prefix", default="amass", help="library names are <prefix>_<config stem>.npz (default amass)")
    b.add_argument("--body-model-dir", help="SMPL/SMPL-H/SMPL-X model files (default: built-in neutral skeletons)")
    b.add_argument("--gender", choices=("neutral", "male", "female"), help="override the files' gender")
    b.add_argument("--joint-map", help="joint map for bvh / keypoints inputs")
    b.add_argument("--recipe", help="retargeting recipe for robot targets (default: the shipped one)")
    b.add_argument(
        "--max-iters", type=int, default=None, help="full-rate solver iterations (robot targets; default: the solver's)"
    )
    b.add_argument(
        "--window", type=int, default=1024, help="longer clips are solved in windows (default 1024; 0 = whole clips)"
    )
    b.add_argument("--overlap", type=int, default=64, help="frames shared by consecutive windows (default 64)")
    b.add_argument("--chunk", type=int, default=256, help="motions per solve call (default 256)")
    b.add_argument("--max-batch", type=int, default=64, help="clips per device batch of the solve (default 64)")
    b.add_argument("--contact-speed", type=float, default=0.15, help="body-model contact speed threshold, m/s")
    b.add_argument("--contact-height", type=float, default=0.1, help="body-model contact height threshold, m")
    b.add_argument(
        "--protomotions",
        action="store_true",
        help="also write each library in ProtoMotions' packaged layout (<library>.pt; needs torch)",
    )
    b.add_argument("--cache-dir", default="~/.cache/retarget_jax/xla", help="persistent XLA cache ('' = off)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    b.set_defaults(func=_build)
    i = sub.add_parser("info", help="what a library holds (motions, frames, bodies, metadata)")
    i.add_argument("library", help="a library npz (or <name>_slurmrank.npz)")
    i.add_argument("--rank", type=int, help="rank for a _slurmrank path (default: from the environment)")
    i.set_defaults(func=_info)
    e = sub.add_parser("export", help="write a library in another trainer's layout")
    e.add_argument("library", help="a library npz")
    e.add_argument(
        "--protomotions",
        required=True,
        metavar="OUT.pt",
        help="ProtoMotions' packaged MotionLib (.pt, loads with torch.load(weights_only=True))",
    )
    e.set_defaults(func=_export)
    v = subparsers.add_parser("view", help="browser viewer (viser) of a motion library or a folder of results")
    v.add_argument("path", help="a library npz, a folder of libraries, or a folder of result npz files")
    v.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    v.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    v.add_argument(
        "--jerk-threshold",
        type=float,
        default=1000.0,
        help="highlight frames whose joint jerk exceeds this, rad/s^3 (adjustable in the page)",
    )
    v.set_defaults(func=_view)


def build_options(args: argparse.Namespace):
    """BuildOptions from the ``motionlib build`` flags (ConfigError for a bad value)."""
    from retarget_jax.motionlib.config import BuildOptions, ContactRule

    return BuildOptions(
        target=args.target,
        output_fps=args.output_fps,
        shards=args.shards,
        force_remake=args.force_remake,
        format=args.format,
        prefix=args.prefix,
        body_model_dir=args.body_model_dir,
        gender=args.gender,
        joint_map=args.joint_map,
        recipe=args.recipe,
        max_iters=args.max_iters,
        window=args.window or None,
        overlap=args.overlap,
        chunk=args.chunk,
        max_batch=args.max_batch,
        contacts=ContactRule(speed=args.contact_speed, height=args.contact_height),
    )


def _build(args: argparse.Namespace) -> int:
    options = build_options(args)  # bad flags fail before anything is read
    if args.cache_dir:
        import jax

        jax.config.update("jax_compilation_cache_dir", str(Path(args.cache_dir).expanduser()))
    from retarget_jax.motionlib.build import build_libraries

    summary = build_libraries(
        args.source_root, args.output_dir, args.motion_configs, options, progress=not args.no_progress
    )
    out = summary.to_json()
    if args.protomotions:
        from retarget_jax.motionlib.export import export_protomotions

        out["protomotions"] = [
            str(export_protomotions(p, Path(p).with_suffix(".pt")))
            for paths in summary.libraries.values()
            for p in paths
        ]
    print(json.dumps(out))
    return 0 if summary.failed == 0 else 1


def _info(args: argparse.Namespace) -> int:
    from retarget_jax.motionlib.library import load_library

    lib = load_library(args.library, rank=args.rank)
    print(
        json.dumps(
            {
                "library": lib.path,
                "motions": lib.num_motions,
                "frames": lib.total_frames,
                "duration_s": round(float(lib.motion_duration_s.sum()), 3),
                "bodies": len(lib.body_names),
                "dof": len(lib.dof_names),
                "contact_bodies": list(lib.contact_body_names),
                "metadata": {k: v for k, v in lib.metadata.items() if k != "settings"},
            }
        )
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from retarget_jax.motionlib.export import export_protomotions

    print(
        json.dumps({"library": args.library, "protomotions": str(export_protomotions(args.library, args.protomotions))})
    )
    return 0


def _view(args: argparse.Namespace) -> int:
    from retarget_jax.motionlib.viewer import serve

    serve(args.path, host=args.host, port=args.port, jerk_threshold=args.jerk_threshold)
    return 0
