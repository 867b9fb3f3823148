"""Side by side with a peer: our batched whole-trajectory solve against per-frame mink IK
(GMR style, see ``peer_mink.py``) on the same real clips, robot and targets, in one run.

    python benchmarks/compare_peer.py --quick           # 2 clips x 240 frames, < 5 min on 2 CPU cores
    python benchmarks/compare_peer.py --clips 8 --frames 300 --device gpu
    python benchmarks/compare_peer.py --long            # the whole 7184-frame clip, file to written result

Clips are windows of ``lafan1_skeleton_clip_a.bvh`` (real LAFAN1 capture, 30 fps) from the
shared data folder (``--data`` or ``$RETARGET_JAX_SHARED_DATA``), retargeted to the G1 with
the ``lafan1_g1`` recipe. Both solvers get the same compiled problems (scaled targets,
weights, joint ranges); both results are scored by our own metrics (``evaluate_results``):

* frames/s: ours is the steady-state wall time of one batched call over all clips (after
  a first call that compiles; its extra time is reported as compile time), the peer's the
  wall time of its per-frame loop over the same clips;
* tracking error (m): mean distance of each tracked point to its target over frames, for
  the mapped end-effectors (targets on bodies that are no other target's ancestor: feet
  and wrists) and for all targets;
* jerk (rad/s^3): mean absolute third difference of the joint angles.

``--long`` instead takes the whole clip from its file to a written result, both ways, as a
user would: ours reads the BVH, prepares it and solves it as ``retarget-jax retarget``
does (the run settings of :mod:`retarget_jax.config`: overlapping windows, batched) and
writes the result npz, timed twice in one process (the first call compiles, unless the
persistent cache already holds the programs); the peer reads and prepares the same file,
solves frame by frame and writes its result the same way. Wall seconds cover file to
file; quality is scored as above.

Prints a table, writes JSON (``--output``) and ends with one JSON line on stdout.
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
CLIP = "lafan1_skeleton_clip_a.bvh"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 clips of 240 frames (overrides --clips/--frames)")
    p.add_argument("--long", action="store_true", help="the whole clip, file to written result, both solvers")
    p.add_argument("--clips", type=int, default=8, help="windows of the clip to solve (default 8)")
    p.add_argument("--frames", type=int, default=300, help="frames per window (default 300)")
    p.add_argument(
        "--data",
        default=os.environ.get("RETARGET_JAX_SHARED_DATA") or str(REPO_ROOT.parent / "shared" / "data"),
        help="folder holding " + CLIP,
    )
    p.add_argument("--max-iters", type=int, default=None, help="our solver's iteration cap (default: solver default)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto")
    p.add_argument("--output", default="benchmarks/results/compare_peer_{device}.json")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="our solver's processes on CPU, each solving its share of the clips on one core "
        "(default 1; ignored on GPU)",
    )
    p.add_argument(
        "--compilation-cache",
        default=None,
        metavar="DIR",
        help="persistent JAX compilation cache (off by default: compile time is measured)",
    )
    a = p.parse_args(argv)
    if a.quick:
        a.clips, a.frames = 2, 240
    if a.clips < 1 or a.frames < 8:
        p.error("--clips must be >= 1 and --frames >= 8")
    return a


def end_effector_targets(robot, body_names) -> list[int]:
    """Indices of targets on bodies that are no other target body's ancestor."""
    bodies = {robot.body_index(b) for b in body_names}
    parents = robot.tree.parents

    def ancestors(b):
        out = set()
        while parents[b] >= 0:
            b = parents[b]
            out.add(b)
        return out

    inner = set().union(*(ancestors(b) for b in bodies)) if bodies else set()
    return [k for k, b in enumerate(body_names) if robot.body_index(b) not in inner]


def point_errors(result, robot, which):
    """(frames x targets) distances of the tracked points ``which`` to their targets (NaN
    where a target is invalid)."""
    import numpy as np

    from retarget_jax.rotations import quat_rotate

    idx = [robot.body_index(result.target_body_names[k]) for k in which]
    pos = result.body_pos_w[:, idx] + quat_rotate(result.body_quat_w[:, idx], result.target_offset_b[which])
    return np.linalg.norm(pos - result.target_pos_w[:, which], axis=-1)


def build_clips(args):
    """The benchmark's robot and prepared clips (windows of CLIP at evenly spread starts)."""
    import numpy as np

    from retarget_jax.motion import read_motion
    from retarget_jax.pipeline import prepare_clip
    from retarget_jax.problem.recipe import load_recipe
    from retarget_jax.robots.spec import load_robot

    path = Path(args.data) / CLIP
    if not path.is_file():
        raise SystemExit(f"compare_peer: {path} not found (pass --data or set RETARGET_JAX_SHARED_DATA)")
    robot = load_robot("unitree_g1")
    recipe = load_recipe("lafan1_g1")
    motion = read_motion(path, "bvh_lafan1")
    span = motion.num_frames - args.frames
    if span < 0:
        raise SystemExit(f"compare_peer: {CLIP} has {motion.num_frames} frames, fewer than --frames {args.frames}")
    starts = np.linspace(0, span, args.clips + 2).astype(int)[1:-1] if args.clips > 1 else [span // 2]
    return robot, [prepare_clip(motion.slice(int(s), int(s) + args.frames), recipe, robot) for s in starts]


def solve_ours(clips, args, barrier=None):
    """Our solve of ``clips`` in one batched call: (first-call s, steady s per repeat, outputs).
    ``barrier`` lines the repeats up with the other processes'."""
    import jax

    from retarget_jax.buckets import bucket_length
    from retarget_jax.solve.batch import solve_many
    from retarget_jax.solve.gauss_newton import SolverOptions

    options = SolverOptions() if args.max_iters is None else SolverOptions(max_iters=args.max_iters)
    problems = [c.compiled for c in clips]

    def ours():
        return jax.block_until_ready(
            solve_many(problems, options, buckets=[bucket_length(args.frames)], max_batch=len(problems))
        )

    t0 = time.perf_counter()
    solved = ours()
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(2):
        if barrier is not None:
            barrier.wait()
        t0 = time.perf_counter()
        solved = ours()
        times.append(time.perf_counter() - t0)
    return first_s, times, jax.device_get(solved)


def _solve_share(args, share, nproc, barrier, queue):
    """Worker process: clips share, share + nproc, ... on one single-threaded CPU device."""
    select_platform("cpu")
    import jax

    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    else:
        jax.config.update("jax_enable_compilation_cache", False)
    _, clips = build_clips(args)
    queue.put((share, *solve_ours(clips[share::nproc], args, barrier)))


def solve_ours_parallel(clips, args, nproc):
    """``solve_ours`` split over ``nproc`` processes started together; a repeat's time is
    its slowest process's (they start at one barrier)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(nproc), ctx.Queue()
    procs = [ctx.Process(target=_solve_share, args=(args, k, nproc, barrier, queue)) for k in range(nproc)]
    for p in procs:
        p.start()
    parts = dict((r[0], r[1:]) for r in (queue.get() for _ in procs))
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"compare_peer: solver process exited with {p.exitcode}")
    first_s = max(parts[k][0] for k in parts)
    times = [max(parts[k][1][r] for k in parts) for r in range(2)]
    solved = [parts[i % nproc][2][i // nproc] for i in range(len(clips))]
    return first_s, times, solved


def run_long(args) -> int:
    """``--long``: the whole clip from file to written result, ours and the peer's."""
    import tempfile

    import jax
    import numpy as np
    from peer_mink import solve_clip

    from retarget_jax.config import RunConfig, run_settings
    from retarget_jax.io import write_result
    from retarget_jax.metrics.report import evaluate_results
    from retarget_jax.motion import read_motion
    from retarget_jax.pipeline import finish_clip, prepare_clip, retarget_motions
    from retarget_jax.problem.recipe import load_recipe
    from retarget_jax.result import SolveStatus
    from retarget_jax.robots.kinematics import host_body_poses
    from retarget_jax.robots.spec import load_robot
    from retarget_jax.solve.gauss_newton import SolveOutput

    path = Path(args.data) / CLIP
    if not path.is_file():
        raise SystemExit(f"compare_peer: {path} not found (pass --data or set RETARGET_JAX_SHARED_DATA)")
    robot, recipe = load_robot("unitree_g1"), load_recipe("lafan1_g1")
    cfg = RunConfig()
    cfg.input.format = "bvh_lafan1"
    rs = run_settings(cfg)
    out_dir = Path(tempfile.mkdtemp(prefix="rj_compare_long_"))

    def ours():
        motion = read_motion(path, "bvh_lafan1")
        p = rs.problem
        (result,) = retarget_motions(
            [motion],
            recipe,
            robot,
            fps=p.fps,
            weights=p.weights,
            contact_thresholds=p.contact_thresholds,
            joint_velocity_limits=p.joint_velocity_limits,
            options=rs.options,
            buckets=rs.buckets,
            max_batch=rs.max_batch,
            window=rs.window,
            overlap=rs.overlap,
            fixed_batch=True,
        )
        write_result(result, out_dir / "ours.npz", "npz")
        return result

    t0 = time.perf_counter()
    ours_result = ours()
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours_result = ours()
    ours_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    clip = prepare_clip(read_motion(path, "bvh_lafan1"), recipe, robot, rs.problem)
    run = solve_clip(clip.compiled, robot)
    out = SolveOutput(
        qpos=run.qpos,
        cost=np.float64("nan"),
        iterations=np.int32(run.iterations),
        status=np.int32(SolveStatus.CONVERGED),
    )
    peer_result = finish_clip(clip, (out, *host_body_poses(robot, run.qpos)))
    write_result(peer_result, out_dir / "peer.npz", "npz")
    peer_s = time.perf_counter() - t0

    ee = end_effector_targets(robot, ours_result.target_body_names)

    def score(r):
        rep = evaluate_results([r], robot)[0]["metrics"]
        return {
            "tracking_error_end_effectors": float(np.nanmean(point_errors(r, robot, ee))),
            "tracking_error_all": float(rep["tracking_error"]["value"]["mean"]),
            "jerk": float(rep["jerk"]["value"]),
            "foot_sliding": float(rep["foot_sliding"]["value"]),
            "penetration_max": float(rep["penetration"]["value"]["max"]),
        }

    frames = ours_result.num_frames
    q_ours, q_peer = score(ours_result), score(peer_result)
    device = jax.devices()[0]
    name = f"{device.platform} ({os.cpu_count()} cores, {platform.machine()})"
    print(f"{CLIP}: {frames} frames, unitree_g1, lafan1_g1, file to written result; device {name}")
    print(
        f"ours: first call {first_s:.1f} s (compiles unless cached), steady {ours_s:.2f} s = "
        f"{frames / ours_s:.0f} frames/s; peer (mink per-frame IK): {peer_s:.2f} s = {frames / peer_s:.0f} frames/s"
    )
    for k in q_ours:
        scale = 1e3 if k.startswith(("tracking", "penetration")) else 1.0
        print(f"  {k:30s} ours {q_ours[k] * scale:9.3f}   peer {q_peer[k] * scale:9.3f}")
    line = {
        "mode": "long",
        "frames": frames,
        "ours_first_s": round(first_s, 2),
        "ours_s": round(ours_s, 3),
        "peer_s": round(peer_s, 3),
        "ratio": round(peer_s / ours_s, 2),
        "device": name,
        "ours": q_ours,
        "peer": q_peer,
    }
    outp = Path(args.output.format(device=device.platform)).with_name(f"compare_peer_long_{device.platform}.json")
    outp.parent.mkdir(parents=True, exist_ok=True)
    outp.write_text(json.dumps(line, indent=2))
    print(json.dumps(line))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    select_platform(args.device)
    if args.long:
        import jax

        if args.compilation_cache:
            jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        else:
            jax.config.update("jax_enable_compilation_cache", False)
        return run_long(args)
    import jax
    import numpy as np

    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    else:
        jax.config.update("jax_enable_compilation_cache", False)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peer_mink import solve_clip

    from retarget_jax.metrics.report import evaluate_results
    from retarget_jax.pipeline import finish_clip
    from retarget_jax.result import SolveStatus
    from retarget_jax.robots.kinematics import host_body_poses
    from retarget_jax.solve.gauss_newton import SolveOutput

    robot, clips = build_clips(args)
    frames = sum(c.num_frames for c in clips)
    device = jax.devices()[0]
    device_name = f"{device.platform}: {getattr(device, 'device_kind', '')}".strip()
    nproc = 1
    if device.platform == "cpu":
        device_name += f" ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
        nproc = max(1, min(args.processes, len(clips)))
    if nproc > 1:
        first_s, times, solved = solve_ours_parallel(clips, args, nproc)
    else:
        first_s, times, solved = solve_ours(clips, args)
    ours_s = min(times)
    ours_results = [finish_clip(c, s) for c, s in zip(clips, solved, strict=True)]

    peer_runs = [solve_clip(c.compiled, robot) for c in clips]
    peer_s = sum(r.seconds for r in peer_runs)

    peer_results = []
    for c, r in zip(clips, peer_runs, strict=True):
        out = SolveOutput(
            qpos=r.qpos,
            cost=np.float64("nan"),
            iterations=np.int32(r.iterations),
            status=np.int32(SolveStatus.CONVERGED),
        )
        peer_results.append(finish_clip(c, (out, *host_body_poses(robot, r.qpos))))

    ee = end_effector_targets(robot, ours_results[0].target_body_names)

    def score(results):
        reports = evaluate_results(results, robot)
        ee_err = np.concatenate([point_errors(r, robot, ee).ravel() for r in results])
        return {
            "tracking_error_end_effectors": float(np.nanmean(ee_err)),
            "tracking_error_all": float(
                np.mean([rep["metrics"]["tracking_error"]["value"]["mean"] for rep in reports])
            ),
            "jerk": float(np.mean([rep["metrics"]["jerk"]["value"] for rep in reports])),
            "foot_sliding": float(np.mean([rep["metrics"]["foot_sliding"]["value"] for rep in reports])),
            "penetration_max": float(np.max([rep["metrics"]["penetration"]["value"]["max"] for rep in reports])),
        }

    q_ours, q_peer = score(ours_results), score(peer_results)
    ours_fps, peer_fps = frames / ours_s, frames / peer_s
    rows = [
        ("", "ours (retarget_jax)", "peer (mink per-frame IK)"),
        ("frames/s", f"{ours_fps:.0f}", f"{peer_fps:.0f}"),
        ("wall s", f"{ours_s:.3f}", f"{peer_s:.3f}"),
        ("compile s (first call - steady)", f"{first_s - ours_s:.1f}", "-"),
        (
            "iterations / clip",
            f"{np.mean([int(s[0].iterations) for s in solved]):.1f}",
            f"{np.mean([r.iterations for r in peer_runs]):.0f} "
            f"({np.mean([r.iterations / r.qpos.shape[0] for r in peer_runs]):.1f}/frame)",
        ),
    ]
    for key, unit, scale in (
        ("tracking_error_end_effectors", "mm", 1e3),
        ("tracking_error_all", "mm", 1e3),
        ("jerk", "rad/s^3", 1.0),
        ("foot_sliding", "m/s", 1.0),
        ("penetration_max", "mm", 1e3),
    ):
        rows.append((f"{key} ({unit})", f"{q_ours[key] * scale:.3f}", f"{q_peer[key] * scale:.3f}"))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    print(
        f"{len(clips)} clips x {args.frames} frames of {CLIP}, unitree_g1, lafan1_g1; device {device_name}; "
        f"ours in {nproc} process(es), peer in 1"
    )
    for r in rows:
        print(" | ".join(s.ljust(w[i]) for i, s in enumerate(r)))
    print(f"ours / peer frames/s: {ours_fps / peer_fps:.1f}x; jerk ours / peer: {q_ours['jerk'] / q_peer['jerk']:.3f}")

    line = {
        "ours_fps": round(ours_fps, 1),
        "peer_fps": round(peer_fps, 1),
        "ratio": round(ours_fps / peer_fps, 2),
        "ours_tracking_error": q_ours["tracking_error_end_effectors"],
        "peer_tracking_error": q_peer["tracking_error_end_effectors"],
        "ours_jerk": q_ours["jerk"],
        "peer_jerk": q_peer["jerk"],
        "device": device_name,
        "clips": len(clips),
        "frames": frames,
        "processes": nproc,
        "compile_s": round(first_s - ours_s, 2),
        "ours": q_ours,
        "peer": q_peer,
    }
    out = Path(args.output.format(device=device.platform))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), **line}, indent=2))
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
