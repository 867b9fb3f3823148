"""``retarget-jax dataset build | reshard | check-fk`` (host, command line).

    retarget-jax dataset build --spec spec.yaml [--output-root DIR] [--force] [--jobs N]
        [--max-shard-mb MB] [--json] [--no-progress] [--cache-dir DIR]
    retarget-jax dataset reshard --input DIR --output DIR --max-size-gb X [--json]
    retarget-jax dataset check-fk --npz CLIP_OR_SHARD [--robot R] [--json]

:func:`add_parsers` registers the ``dataset`` command on the ``retarget-jax`` parser's
subparsers. Exit status: 0 when everything went through; 1 when a build has failed clips
or check-fk finds a clip over its thresholds; 2 for a typed error (printed by
``retarget_jax.cli.main``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``dataset`` (with ``build``, ``reshard``, ``check-fk``) to ``subparsers``."""
    d = subparsers.add_parser(
        "dataset",
        help="training datasets: build from a spec, reshard, check FK",
        description="Training datasets (docs/datasets.md): build shards from a YAML spec "
        "of many sources, split or merge shards, check body poses against "
        "MuJoCo FK.",
    )
    sub = d.add_subparsers(dest="dataset_command", required=True)
    b = sub.add_parser("build", help="retarget, filter, split and shard every source of a spec")
    b.add_argument("--spec", "-s", required=True, help="the dataset spec (YAML; every key: docs/datasets.md, The spec)")
    b.add_argument("--output-root", "-o", help="the dataset goes to <output-root>/<name> (default outputs/datasets)")
    b.add_argument("--force", action="store_true", help="redo every clip (default: reuse clips/ from earlier runs)")
    b.add_argument("--jobs", "-j", type=int, help="host threads reading and preparing clips")
    b.add_argument("--max-shard-mb", type=float, help="frame data per shard at most (default: the spec's, 256)")
    b.add_argument("--json", action="store_true", help="print the build info as JSON on stdout")
    b.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    b.add_argument("--cache-dir", default="~/.cache/retarget_jax/xla", help="persistent XLA cache ('' = off)")
    b.set_defaults(func=run_build)
    r = sub.add_parser("reshard", help="split or merge shards into a new size")
    r.add_argument("--input", "-i", required=True, help="a dataset folder (train/, val/) or a folder of shards")
    r.add_argument("--output", "-o", required=True, help="an empty folder for the new shards (same layout)")
    r.add_argument("--max-size-gb", type=float, required=True, help="frame data per output shard at most, GB")
    r.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    r.set_defaults(func=run_reshard)
    c = sub.add_parser("check-fk", help="recompute body poses with MuJoCo FK and compare")
    c.add_argument("--npz", required=True, help="a shard, a result npz or an mjlab npz")
    c.add_argument("--robot", "-r", help="robot name or MJCF (default: the file's; required for mjlab npz)")
    c.add_argument("--json", action="store_true", help="print every clip's figures as JSON on stdout")
    c.set_defaults(func=run_check_fk)
    return d


def run_build(args: argparse.Namespace) -> int:
    from retarget_jax.dataset.build import build_dataset

    if args.cache_dir:
        import jax

        jax.config.update("jax_compilation_cache_dir", str(Path(args.cache_dir).expanduser()))
    info = build_dataset(
        args.spec,
        args.output_root,
        force=args.force,
        jobs=args.jobs,
        max_shard_mb=args.max_shard_mb,
        progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_summary(info)
    return 0 if info["counts"]["failed"] == 0 else 1


def _print_summary(info: dict) -> None:
    print(f"{'source':<20} {'inputs':>6} {'kept':>6} {'dropped':>7} {'failed':>6} {'train':>6} {'val':>5} {'hours':>8}")
    for name, s in info["per_source"].items():
        print(
            f"{name:<20} {s['inputs']:>6} {s['kept']:>6} {s['dropped']:>7} {s['failed']:>6} {s['train']:>6} "
            f"{s['val']:>5} {s['hours']:>8.3f}"
        )
    drops = ", ".join(f"{k} {v}" for k, v in info["drops_per_filter"].items() if v) or "none"
    print(f"dropped by filter: {drops}")
    for split, s in info["per_split"].items():
        print(f"{split}: {s['clips']} clips, {s['frames']} frames in {len(s['shards'])} shard(s)")
    fk = info["fk_check"]
    if fk["clips_checked"]:
        print(
            f"check-fk on {fk['clips_checked']} kept clip(s): pos_max {fk['pos_max_m']:.2e} m, "
            f"quat_mean {fk['quat_mean_rad_max']:.2e} rad, quat_p95 {fk['quat_p95_rad_max']:.2e} rad (worst clip)"
        )
    print(f"{info['output']} ({info['wall_time_s']:.1f} s, peak RSS {info['peak_rss_mib']:.0f} MiB)")


def run_reshard(args: argparse.Namespace) -> int:
    from retarget_jax.dataset.shards import reshard
    from retarget_jax.errors import ConfigError

    if not args.max_size_gb > 0:
        raise ConfigError(f"reshard: --max-size-gb must be > 0, got {args.max_size_gb}")
    summary = reshard(args.input, args.output, int(args.max_size_gb * 1e9))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for split, s in summary["splits"].items():
            print(f"{split}: {s['clips']} clips, {s['frames']} frames -> {s['shards']} shard(s) in {args.output}")
    return 0


def run_check_fk(args: argparse.Namespace) -> int:
    from retarget_jax.dataset.fk import FK_THRESHOLDS, check_fk_file

    results = check_fk_file(args.npz, args.robot)
    failed = [cid for cid, f in results if not f.passed]
    if args.json:
        print(
            json.dumps(
                {
                    "file": args.npz,
                    "thresholds": FK_THRESHOLDS,
                    "clips": len(results),
                    "failed": failed,
                    "figures": {cid: f.as_dict() for cid, f in results},
                },
                indent=2,
            )
        )
    else:
        print(f"{'clip':<48} {'pos_max m':>10} {'quat_mean':>10} {'quat_p95':>10}  ok")
        for cid, f in results:
            print(
                f"{cid[-48:]:<48} {f.pos_max:>10.2e} {f.quat_mean:>10.2e} {f.quat_p95:>10.2e}  "
                f"{'yes' if f.passed else 'NO: ' + '; '.join(f.failures())}"
            )
        print(
            f"{len(results) - len(failed)} of {len(results)} clip(s) pass (pos_max < {FK_THRESHOLDS['pos_max']:g} m, "
            f"quat_mean < {FK_THRESHOLDS['quat_mean']:g} rad, quat_p95 < {FK_THRESHOLDS['quat_p95']:g} rad)",
            file=sys.stderr,
        )
    return 0 if not failed else 1
