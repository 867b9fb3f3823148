"""Benchmark of the jitted batch metrics (``retarget_jax.metrics.evaluate_batch``).

Builds ``--batch`` G1 results of ``--frames`` frames (random in-range joints smoothed over
time, a slowly walking and turning root, MuJoCo C forward kinematics for the body poses,
targets near six bodies with a few missing, contacts from a foot-height rule), then times:

* pack: ``MetricBatch.from_results`` + ``metric_geometry`` (host), up to the arrays
  being on the device;
* first call: the first ``evaluate_batch`` call (trace, compile, run), ONE jitted call
  over all B results; the persistent compilation cache is off unless
  ``--compilation-cache`` is given, so this is a cold compile;
* eval: median over ``--repeats`` (>= 5 by default) steady-state calls, each ended by
  ``jax.block_until_ready``; frames/s = B * T / eval, real frames only;
* reports: ``evaluate_results`` on the same results (packing, the cached jitted pass and
  every metric plugin per result: what ``retarget-jax evaluate`` costs per batch).

Prints a markdown table and writes JSON (default ``benchmarks/results/bench_metrics.json``).
See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from _platform import select_platform  # benchmarks/ is sys.path[0] when run as a script

REPO_ROOT = Path(__file__).resolve().parents[1]
FEET = ("left_ankle_roll_link", "right_ankle_roll_link")
TARGETS = (
    "pelvis",
    "torso_link",
    "left_wrist_yaw_link",
    "right_wrist_yaw_link",
    "left_ankle_roll_link",
    "right_ankle_roll_link",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64, help="results B in the one jitted call (default: 64)")
    p.add_argument("--frames", type=int, default=300, help="frames T per result (default: 300)")
    p.add_argument("--repeats", type=int, default=5, help="timed steady-state calls; median reported (default: 5)")
    p.add_argument(
        "--device",
        choices=("cpu", "gpu", "auto"),
        default="auto",
        help="JAX platform; cpu/gpu set JAX_PLATFORMS before JAX starts (default: auto)",
    )
    p.add_argument("--output", default="benchmarks/results/bench_metrics.json", help="JSON path (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--compilation-cache",
        default=None,
        metavar="DIR",
        help="use a persistent JAX compilation cache here; off by default (cold compiles)",
    )
    args = p.parse_args(argv)
    if args.batch < 1 or args.frames < 4 or args.repeats < 1:
        p.error("need --batch >= 1, --frames >= 4, --repeats >= 1")
    return args


def build_results(robot, B: int, T: int, seed: int):
    """B results: smoothed random joints, MuJoCo FK, targets and a contact rule (host)."""
    import numpy as np

    from retarget_jax.result import RetargetingResult, SolveStatus
    from retarget_jax.robots.kinematics import host_body_poses

    rng = np.random.default_rng(seed)
    lo, hi = robot.dof_ranges[:, 0], robot.dof_ranges[:, 1]
    fps = 30.0
    knots = np.arange(0, T + 30, 30)  # a random pose every second, linearly blended, then smoothed
    kernel = np.hanning(15)
    kernel /= kernel.sum()
    tidx = [robot.body_names.index(b) for b in TARGETS]
    feet = [robot.body_names.index(b) for b in FEET]
    out = []
    for i in range(B):
        frac = rng.uniform(0.35, 0.65, size=(len(knots), robot.num_dof))
        dof = np.stack([np.interp(np.arange(T), knots, frac[:, j]) for j in range(robot.num_dof)], 1)
        pad = np.pad(dof, ((7, 7), (0, 0)), mode="edge")
        dof = lo + (hi - lo) * np.stack([np.convolve(pad[:, j], kernel, "valid") for j in range(robot.num_dof)], 1)
        t = np.arange(T) / fps
        yaw = 0.3 * np.sin(0.5 * t + i)
        root = np.c_[0.5 * t, 0.1 * np.sin(t + i), np.full(T, robot.standing_height - 0.02)]
        quat = np.c_[np.cos(yaw / 2), np.zeros(T), np.zeros(T), np.sin(yaw / 2)]
        pos, rot = host_body_poses(robot, np.concatenate([root, quat, dof], axis=-1))
        targets = pos[:, tidx] + rng.normal(scale=0.01, size=(T, len(tidx), 3))
        targets[rng.uniform(size=(T, len(tidx))) < 0.02] = np.nan
        fz = pos[:, feet, 2]
        contacts = fz < fz.min(0, keepdims=True) + 0.03  # the foot near its lowest height: stance
        out.append(
            RetargetingResult(
                fps=fps,
                root_pos=root,
                root_quat_wxyz=quat,
                dof_pos=dof,
                dof_names=robot.dof_names,
                body_names=robot.body_names,
                body_pos_w=pos,
                body_quat_w=rot,
                status=SolveStatus.CONVERGED,
                final_cost=float(rng.uniform(0.01, 0.1)),
                iterations=12,
                robot=robot.name,
                provenance={"source_path": f"bench/clip_{i:03d}", "recipe": "bench"},
                target_pos_w=targets,
                target_body_names=TARGETS,
                target_offset_b=np.zeros((len(tidx), 3)),
                contacts=contacts,
                contact_body_names=FEET,
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    select_platform(args.device)

    import jax

    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", str(args.compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    else:
        jax.config.update("jax_enable_compilation_cache", False)

    import numpy as np

    import retarget_jax
    from retarget_jax.metrics import batch as mb
    from retarget_jax.metrics import evaluate_results
    from retarget_jax.robots import load_robot

    device = jax.devices()[0]
    info = {
        "device_kind": device.device_kind,
        "platform": device.platform,
        "jax_version": jax.__version__,
        "retarget_jax_version": retarget_jax.__version__,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "host": platform.node(),
    }
    print(
        f"device: {info['device_kind']} ({info['platform']}), jax {info['jax_version']}, {info['cpu_count']} CPUs",
        flush=True,
    )

    robot = load_robot("unitree_g1")
    B, T = args.batch, args.frames
    t0 = time.perf_counter()
    results = build_results(robot, B, T, args.seed)
    build_s = time.perf_counter() - t0
    print(f"built {B} results of {T} frames (MuJoCo FK) in {build_s:.1f} s", flush=True)

    t0 = time.perf_counter()
    batch = mb.MetricBatch.from_results(results, robot)
    geometry = mb.metric_geometry(robot, batch.contact_bodies, dtype=batch.qpos.dtype)
    batch = jax.block_until_ready(batch)
    pack_s = time.perf_counter() - t0

    traces = mb.TRACE_COUNT
    t0 = time.perf_counter()
    out = jax.block_until_ready(mb.evaluate_batch(batch, geometry))
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(mb.evaluate_batch(batch, geometry))
        times.append(time.perf_counter() - t0)
    eval_s = statistics.median(times)
    traced = mb.TRACE_COUNT - traces
    assert traced == 1, f"expected one trace for the whole batch, got {traced}"

    t0 = time.perf_counter()
    reports = evaluate_results(results, robot)
    reports_s = time.perf_counter() - t0
    partial = sum(r["status"] != "success" for r in reports)

    core = {k: np.asarray(v) for k, v in jax.device_get(out).items()}
    row = {
        "B": B,
        "T": T,
        "bucket": batch.num_frames,
        "real_frames": B * T,
        "padded_frames": B * batch.num_frames,
        "K": len(TARGETS),
        "F": len(FEET),
        "dtype": str(batch.qpos.dtype),
        "jit_calls_per_eval": 1,
        "traces": traced,
        "build_s": build_s,
        "pack_s": pack_s,
        "first_call_s": first_s,
        "eval_s": eval_s,
        "eval_s_all": times,
        "eval_s_min": min(times),
        "frames_per_s": B * T / eval_s,
        "reports_s": reports_s,
        "reports_partial": partial,
        "metric_means": {k: float(np.mean(v)) for k, v in core.items()},
    }

    print()
    print("| B | T | bucket | pack s | compile s (first call) | eval s | frames/s | reports s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {B} | {T} | {row['bucket']} | {pack_s:.3f} | {first_s:.2f} | {eval_s:.4f} | "
        f"{row['frames_per_s']:,.0f} | {reports_s:.3f} |"
    )
    spread = max(times) / min(times)
    if spread > 1.5:
        print(
            f"\nwarning: call times varied {spread:.1f}x ({[round(t, 4) for t in times]}); the machine was "
            "probably busy"
        )

    out_path = Path(args.output)
    if not out_path.is_absolute():
        out_path = Path.cwd() / out_path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "metrics",
        "created_unix": time.time(),
        "args": vars(args),
        "robot": robot.name,
        "device": info,
        "rows": [row],
    }
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(out_path)
    print(f"\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    raise SystemExit(main())
