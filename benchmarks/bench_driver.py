"""Benchmark of the batch driver against the bare solver on the same clips (device utilisation).

Writes a folder of N keypoint clips (windows of the procedural demo walk, each a little
different, lengths spread over one length bucket) and measures, in one process:

* bare solver: the clips already read and compiled into problems, timed through
  ``solve_many`` only (bucketed, padded, stacked, solved, copied back to the host);
* driver: ``retarget_jax.run.execute`` on the folder, end to end: globbing, reading and
  preparing in threads (prefetch), solving, building results, writing every output
  atomically, rewriting the manifest after every chunk.

Both run after a warm-up that compiles the one program they share, so neither includes
compile time. frames/s counts real frames (no padding). The driver's share of the bare
solver's frames/s is the device utilisation figure (target: at least 0.8).

    python benchmarks/bench_driver.py [--clips 64] [--frames 200,256] [--max-batch 16]

Prints a table and writes JSON (default ``benchmarks/results/driver_<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _platform import select_platform  # benchmarks/ is sys.path[0] when run as a script

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=64, help="number of clips N (default 64)")
    p.add_argument("--frames", default="200,256", help="min,max frames per clip (default 200,256: one bucket)")
    p.add_argument("--max-batch", type=int, default=16, help="clips per device batch (default 16)")
    p.add_argument("--max-iters", type=int, default=50, help="solver iterations at most (default 50)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each; the best is reported")
    p.add_argument("--max-workers", type=int, default=None, help="driver threads reading files")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto")
    p.add_argument("--output", default="benchmarks/results/driver_{device}.json")
    p.add_argument("--quick", action="store_true", help="smoke run: 16 clips of 100-128 frames, max-batch 8")
    args = p.parse_args(argv)
    if args.quick:
        args.clips, args.frames, args.max_batch, args.repeats = 16, "100,128", 8, 1
    lo, hi = (int(x) for x in args.frames.split(","))
    args.frames = (lo, hi)
    return args


def write_clips(folder: Path, n: int, lo: int, hi: int, seed: int = 0) -> int:
    """n keypoint npz files in two subfolders; returns the total number of frames."""
    import numpy as np

    from retarget_jax.motion.demo import demo_motion

    rng = np.random.default_rng(seed)
    long = demo_motion(num_frames=hi + 3 * n)
    names = np.array([j.value for j in long.joint_names])
    total = 0
    for i in range(n):
        T = int(rng.integers(lo, hi + 1))
        s = 3 * i
        pos = long.positions[s : s + T] + rng.normal(scale=0.003, size=(T, *long.positions.shape[1:]))
        path = folder / f"subject_{i % 2}" / f"clip{i:04d}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, positions=pos, joint_names=names, fps=np.float64(long.fps))
        total += T
    return total


def main(argv=None) -> int:
    args = parse_args(argv)
    select_platform(args.device)
    import jax

    from retarget_jax.batch.jobs import find_inputs
    from retarget_jax.buckets import bucket_length
    from retarget_jax.motion import read_motion
    from retarget_jax.pipeline import prepare_clip, solve_clips
    from retarget_jax.problem import load_recipe
    from retarget_jax.robots import load_robot
    from retarget_jax.run import RunConfig, execute
    from retarget_jax.solve import SolverOptions
    from retarget_jax.solve.batch import solve_many

    platform_name = jax.devices()[0].platform
    tmp = Path(tempfile.mkdtemp(prefix="bench_driver_"))
    try:
        inp = tmp / "motions"
        frames = write_clips(inp, args.clips, *args.frames)
        bucket = bucket_length(args.frames[1])
        options = SolverOptions(max_iters=args.max_iters)
        robot, recipe = load_robot("unitree_g1"), load_recipe("keypoints_g1")

        def config(out: Path) -> RunConfig:
            cfg = RunConfig()
            cfg.robot.name = "unitree_g1"
            cfg.input.path, cfg.input.format = str(inp), "keypoints"
            cfg.output.dir, cfg.output.formats = str(out), ["npz"]
            cfg.solver.max_iters = args.max_iters
            cfg.batch.max_batch, cfg.batch.buckets = args.max_batch, [bucket]
            cfg.batch.window, cfg.batch.overlap = bucket, 32
            cfg.batch.progress, cfg.batch.max_workers = False, args.max_workers
            cfg.jax_cache_dir = None
            return cfg

        # warm-up: compile the one (max_batch, bucket) program both use
        t0 = time.perf_counter()
        files = find_inputs(inp, "**/*.npz")
        clips = [prepare_clip(read_motion(f, "keypoints"), recipe, robot) for f in files]
        solve_clips(clips[: args.max_batch], options, buckets=[bucket], max_batch=args.max_batch, fixed_batch=True)
        compile_s = time.perf_counter() - t0

        bare, driver = [], []
        for _ in range(args.repeats):
            problems = [c.compiled for c in clips]
            t0 = time.perf_counter()
            solve_many(problems, options, buckets=[bucket], max_batch=args.max_batch, fixed_batch=True)
            bare.append(time.perf_counter() - t0)
            out = tmp / f"out{len(driver)}"
            t0 = time.perf_counter()
            summary = execute(config(out))
            driver.append(time.perf_counter() - t0)
            if summary["success"] != args.clips:
                raise SystemExit(f"the driver solved {summary['success']} of {args.clips} clips: {summary['failed']}")
        bare_s, driver_s = min(bare), min(driver)
        row = {
            "device": str(jax.devices()[0].device_kind),
            "platform": platform_name,
            "local_devices": jax.local_device_count(),
            "clips": args.clips,
            "frames": frames,
            "frames_per_clip": list(args.frames),
            "bucket": bucket,
            "max_batch": args.max_batch,
            "max_iters": args.max_iters,
            "warmup_compile_s": round(compile_s, 2),
            "bare_solver_s": round(bare_s, 3),
            "driver_s": round(driver_s, 3),
            "bare_solver_fps": round(frames / bare_s, 1),
            "driver_fps": round(frames / driver_s, 1),
            "driver_over_bare": round(bare_s / driver_s, 3),
            "bare_runs_s": [round(x, 3) for x in bare],
            "driver_runs_s": [round(x, 3) for x in driver],
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "python": sys.version.split()[0],
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nbatch driver vs bare solver on {row['device']} ({platform_name}, {row['local_devices']} device(s))")
    print("| clips | frames | bucket | B | bare s | driver s | bare frames/s | driver frames/s | driver/bare |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {row['clips']} | {row['frames']} | {row['bucket']} | {row['max_batch']} | {row['bare_solver_s']} | "
        f"{row['driver_s']} | {row['bare_solver_fps']:,.0f} | {row['driver_fps']:,.0f} | "
        f"{row['driver_over_bare']:.2f} |"
    )
    print(
        f"target: driver/bare >= 0.80 -> {'met' if row['driver_over_bare'] >= 0.8 else 'NOT met'}; "
        f"median bare {statistics.median(bare):.3f} s, driver {statistics.median(driver):.3f} s"
    )
    out = Path(args.output.format(device=platform_name))
    if not out.is_absolute():
        out = REPO_ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
