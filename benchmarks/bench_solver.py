"""Benchmark of the batched whole-trajectory solve (host driver around the jitted stage).

Builds B clips of T frames of the procedural demo walk, compiles them with the
``lafan1_g1`` recipe onto ``unitree_g1``, pads them to their length bucket, stacks them
and times ``retarget_jax.solve.batch._solve_batch_jit`` (the function ``solve_batch``
calls) for each B:

* compile: wall time of ``_solve_batch_jit.lower(batch, options).compile()`` (AOT), with
  the persistent compilation cache off unless ``--compilation-cache`` is given;
* time/call: median wall time of ``repeats`` calls of the compiled executable, each
  ended by ``jax.block_until_ready``;
* frames/s: B * T / (time/call), counting real frames only, not the padding;
* iterations (mean over clips) and the fraction of clips with status ``converged``;
* host memory: peak RSS of the process (``ru_maxrss``) after the row and its growth
  during the row; XLA's own estimate of temporaries (``memory_analysis``);
* device memory: ``peak_bytes_in_use`` from ``memory_stats()`` on a GPU, null on CPU.

Prints a table, the ratio to the reference throughputs, and writes JSON.
See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

# Reference throughputs the project compares against (frames per second).
REFERENCE_CPU_FPS = 250.0  # per-frame GMR-style IK on the project's 2-core CPU
REFERENCE_GPU_FPS = 100_000.0  # target for the batched solve on one GPU

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batch-sizes", default="1,8,64", help="comma-separated clip counts B (default: 1,8,64)")
    p.add_argument(
        "--frames", default="300", help="comma-separated frames T per clip, one table block each (default: 300)"
    )
    p.add_argument(
        "--plot",
        default="benchmarks/results/solver_{device}.png",
        help="PNG of frames/s against B, one line per T ('' for none; needs matplotlib)",
    )
    p.add_argument(
        "--max-frames-per-call",
        type=int,
        default=None,
        help="skip (B, T) with B*T above this (e.g. B=4096 x T=1200 on a CPU); default: no limit",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed calls per B after compilation; the median is reported (default: 3)",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "gpu", "auto"),
        default="auto",
        help="JAX platform; cpu/gpu set JAX_PLATFORMS before JAX starts (default: auto)",
    )
    p.add_argument(
        "--output",
        default="benchmarks/results/solver_{device}.json",
        help="JSON path; '{device}' becomes the platform (default: %(default)s)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: B=1,8, T=120, 1 repeat (overrides those three options)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the per-clip perturbation")
    p.add_argument(
        "--noise-mm",
        type=float,
        default=3.0,
        help="std of the per-clip, per-frame joint position noise in mm (default: 3)",
    )
    p.add_argument(
        "--compilation-cache",
        default=None,
        metavar="DIR",
        help="use a persistent JAX compilation cache here (compile times then "
        "measure cache hits on a second run); off by default",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.frames, args.repeats = "1,8", "120", 1

    def int_list(option: str, text, least: int) -> list[int]:
        try:
            values = [int(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            p.error(f"{option} must be comma-separated integers, got {text!r}")
        if not values or min(values) < least:
            p.error(f"{option} needs integers >= {least}, got {text!r}")
        return values

    args.batch_sizes = int_list("--batch-sizes", args.batch_sizes, 1)
    args.frames = int_list("--frames", args.frames, 2)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    return args


def _configure_jax(args: argparse.Namespace) -> None:
    """Pick the platform before JAX initialises its backends."""
    from _platform import select_platform

    select_platform(args.device)


def _rss_now_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _rss_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _device_peak_mb(device) -> float | None:
    try:
        stats = device.memory_stats()
    except Exception:  # some backends raise instead of returning None
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def build_clips(num_clips: int, T: int, seed: int, noise_mm: float):
    """``num_clips`` compiled demo-walk clips of T frames, each a little different.

    Clip i is the window of a longer walk starting at frame ``3 * i`` (a different gait
    phase and place), plus Gaussian noise on the joint positions (orientations are left
    as they are: the noise is a few mm, the point is only that the clips differ).
    """
    import dataclasses

    import numpy as np

    from retarget_jax.motion.demo import demo_motion
    from retarget_jax.problem.compile import RetargetingProblem, compile_problem
    from retarget_jax.problem.recipe import load_recipe
    from retarget_jax.robots.spec import load_robot

    robot = load_robot("unitree_g1")
    recipe = load_recipe("lafan1_g1")
    stride = 3
    long = demo_motion(num_frames=T + stride * (num_clips - 1))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num_clips):
        s = stride * i
        pos = long.positions[s : s + T].copy()
        pos += rng.normal(scale=noise_mm * 1e-3, size=pos.shape)
        motion = dataclasses.replace(
            long,
            positions=pos,
            orientations=None if long.orientations is None else long.orientations[s : s + T].copy(),
            source_path=f"demo_walk[{s}:{s + T}]",
        )
        out.append(compile_problem(RetargetingProblem(motion, recipe, robot)))
    return out


def bench_one(problems, B: int, repeats: int, device) -> dict:
    import jax
    import numpy as np

    from retarget_jax.result import SolveStatus
    from retarget_jax.solve.batch import (
        _solve_batch_jit,
        bucket_length,
        pad_problem,
        stack_problems,
    )
    from retarget_jax.solve.gauss_newton import SolverOptions

    T = problems[0].num_frames
    Tb = bucket_length(T)
    rss_before = _rss_peak_mb()
    rss_now_before = _rss_now_mb()
    batch = stack_problems([pad_problem(p, Tb) for p in problems[:B]])
    batch = jax.block_until_ready(batch)
    options = SolverOptions()

    t0 = time.perf_counter()
    compiled = _solve_batch_jit.lower(batch, options).compile()
    compile_s = time.perf_counter() - t0
    rss_after_compile = _rss_peak_mb()
    xla_temp_mb = None
    try:
        ma = compiled.memory_analysis()
        if ma is not None:
            xla_temp_mb = ma.temp_size_in_bytes / 2**20
    except Exception:  # not every backend implements it
        pass

    # First call (allocations, thread pools), then the timed repeats.
    c0, t0 = time.process_time(), time.perf_counter()
    out = jax.block_until_ready(compiled(batch, options))
    first_call_s = time.perf_counter() - t0
    first_call_cpu_s = time.process_time() - c0
    times, cpu_times = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = jax.block_until_ready(compiled(batch, options))
        times.append(time.perf_counter() - t0)
        # CPU time of all the process's threads: far above wall time means parallel work,
        # far below means the call waited (for the scheduler or the device).
        cpu_times.append(time.process_time() - c0)
    call_s = statistics.median(times)

    iters = np.asarray(out.solve.iterations)
    status = np.asarray(out.solve.status)
    cost = np.asarray(out.solve.cost)
    rss_peak = _rss_peak_mb()
    return {
        "B": B,
        "T": T,
        "bucket": Tb,
        "real_frames": B * T,
        "padded_frames": B * Tb,
        "compile_s": compile_s,
        "first_call_s": first_call_s,
        "first_call_process_cpu_s": first_call_cpu_s,
        "call_s": call_s,
        "call_s_all": times,
        "call_s_min": min(times),
        "process_cpu_s_all": cpu_times,
        "frames_per_s_best": B * T / min(times),
        "frames_per_s": B * T / call_s,
        "ratio_to_cpu_reference": B * T / call_s / REFERENCE_CPU_FPS,
        "ratio_to_gpu_target": B * T / call_s / REFERENCE_GPU_FPS,
        "iterations_mean": float(iters.mean()),
        "iterations_max": int(iters.max()),
        "converged_fraction": float(np.mean(status == SolveStatus.CONVERGED)),
        "status_counts": {
            SolveStatus.name(s): int(n) for s, n in zip(*np.unique(status, return_counts=True), strict=True)
        },
        "final_cost_mean": float(np.mean(cost)),
        "peak_rss_mb": rss_peak,
        "peak_rss_delta_mb": rss_peak - rss_before,
        "peak_rss_after_compile_mb": rss_after_compile,
        "rss_now_before_mb": rss_now_before,
        "rss_now_after_mb": _rss_now_mb(),
        "xla_temp_mb": xla_temp_mb,
        "device_peak_mb": _device_peak_mb(device),
    }


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict], platform_name: str) -> None:
    head = (
        f"{'B':>4} {'T':>5} {'bucket':>6} {'compile s':>9} {'time/call s':>11} {'best s':>7} {'frames/s':>9} "
        f"{'iters':>6} {'conv':>5} {'peak RSS MB':>11} {'dRSS MB':>8} {'XLA tmp MB':>10} "
        f"{'dev mem MB':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['B']:>4} {r['T']:>5} {r['bucket']:>6} {r['compile_s']:>9.1f} {r['call_s']:>11.3f} "
            f"{r['call_s_min']:>7.3f} {r['frames_per_s']:>9.1f} {r['iterations_mean']:>6.1f} "
            f"{r['converged_fraction']:>5.2f} "
            f"{r['peak_rss_mb']:>11.0f} {r['peak_rss_delta_mb']:>8.0f} {_fmt(r['xla_temp_mb'], '10.1f')} "
            f"{_fmt(r['device_peak_mb'], '10.1f')}"
        )
    print()
    for r in rows:
        line = (
            f"B={r['B']:>4} T={r['T']:>4}: {r['frames_per_s']:9.1f} frames/s = {r['ratio_to_cpu_reference']:6.2f}x "
            f"the {REFERENCE_CPU_FPS:.0f} frames/s per-frame CPU reference"
        )
        if platform_name == "gpu":
            line += f", {r['ratio_to_gpu_target']:.4f}x the {REFERENCE_GPU_FPS:,.0f} frames/s GPU target"
        print(line)
    for T in sorted({r["T"] for r in rows}):
        print(f"T={T}: throughput within 90% of its best from B = {saturation_batch(rows, T)}")
    for r in rows:
        spread = max(r["call_s_all"]) / min(r["call_s_all"])
        if spread > 1.5:
            print(
                f"warning: B={r['B']}: call times varied {spread:.1f}x ({[round(t, 3) for t in r['call_s_all']]}); the "
                "machine was probably busy. frames/s uses the median; 'best s' is the fastest call"
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _configure_jax(args)

    import jax

    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", str(args.compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    else:
        # Measure cold compiles even where the environment configures a cache.
        jax.config.update("jax_enable_compilation_cache", False)

    import retarget_jax

    device = jax.devices()[0]
    platform_name = "gpu" if device.platform in ("gpu", "cuda", "rocm") else device.platform
    info = {
        "device_kind": device.device_kind,
        "platform": device.platform,
        "num_devices": jax.device_count(),
        "jax_version": jax.__version__,
        "jaxlib_version": None,
        "retarget_jax_version": retarget_jax.__version__,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "host": platform.node(),
    }
    try:
        import jaxlib

        info["jaxlib_version"] = jaxlib.__version__
    except Exception:
        pass
    print(
        f"device: {info['device_kind']} ({info['platform']}), jax {info['jax_version']}, {info['cpu_count']} CPUs",
        flush=True,
    )

    batch_sizes = sorted(set(args.batch_sizes))
    rows = []
    for T in sorted(set(args.frames)):
        sizes = [B for B in batch_sizes if args.max_frames_per_call is None or B * T <= args.max_frames_per_call]
        if not sizes:
            print(f"T={T}: every B is above --max-frames-per-call, skipped", flush=True)
            continue
        t0 = time.perf_counter()
        problems = build_clips(max(sizes), T, args.seed, args.noise_mm)
        print(f"built {len(problems)} clips of {T} frames in {time.perf_counter() - t0:.1f} s", flush=True)
        for B in sizes:
            print(f"B={B} T={T}: compiling and timing ...", flush=True)
            rows.append(bench_one(problems, B, args.repeats, device))
            r = rows[-1]
            print(
                f"  compile {r['compile_s']:.1f} s, first call {r['first_call_s']:.3f} s "
                f"(process CPU {r['first_call_process_cpu_s']:.3f} s), "
                f"calls {[round(t, 3) for t in r['call_s_all']]} s "
                f"(process CPU {[round(t, 3) for t in r['process_cpu_s_all']]} s), {r['status_counts']}",
                flush=True,
            )
        del problems

    print()
    print_table(rows, platform_name)

    out_path = Path(args.output.format(device=platform_name))
    if not out_path.is_absolute():
        out_path = Path.cwd() / out_path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "solver",
        "created_unix": time.time(),
        "args": {
            "batch_sizes": batch_sizes,
            "frames": sorted(set(args.frames)),
            "max_frames_per_call": args.max_frames_per_call,
            "repeats": args.repeats,
            "device": args.device,
            "quick": args.quick,
            "seed": args.seed,
            "noise_mm": args.noise_mm,
            "compilation_cache": args.compilation_cache,
        },
        "recipe": "lafan1_g1",
        "robot": "unitree_g1",
        "solver_options": "SolverOptions() defaults",
        "reference_fps": {"cpu_per_frame_ik": REFERENCE_CPU_FPS, "gpu_target": REFERENCE_GPU_FPS},
        "device": info,
        "rows": rows,
        "saturation_batch": {str(T): saturation_batch(rows, T) for T in sorted({r["T"] for r in rows})},
    }
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(out_path)
    print(f"\nwrote {out_path}")
    if args.plot:
        plot_path = Path(args.plot.format(device=platform_name))
        plot_rows(rows, plot_path, f"{info['device_kind']} ({info['platform']})")
        print(f"wrote {plot_path}")
    return 0


def saturation_batch(rows: list[dict], T: int, within: float = 0.9) -> int | None:
    """Smallest B of length T whose frames/s is within ``within`` of the best B's."""
    rs = sorted((r for r in rows if r["T"] == T), key=lambda r: r["B"])
    if not rs:
        return None
    best = max(r["frames_per_s"] for r in rs)
    return next(r["B"] for r in rs if r["frames_per_s"] >= within * best)


def plot_rows(rows: list[dict], path: Path, device: str) -> None:
    """frames/s against B (log-log), one line per T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for T in sorted({r["T"] for r in rows}):
        rs = sorted((r for r in rows if r["T"] == T), key=lambda r: r["B"])
        ax.plot([r["B"] for r in rs], [r["frames_per_s"] for r in rs], marker="o", label=f"T = {T}")
    ax.axhline(REFERENCE_CPU_FPS, color="grey", ls="--", lw=1, label="per-frame IK reference (250)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("clips per batch B")
    ax.set_ylabel("frames / s (steady state)")
    ax.set_title(f"retarget_jax batched solve, unitree_g1: {device}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    raise SystemExit(main())
