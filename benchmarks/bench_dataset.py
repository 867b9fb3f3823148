"""Benchmark of ``retarget-jax dataset build``: wall time, clips/s and peak memory.

Writes a corpus of small synthetic clips, a quarter in each of four sources (keypoints
npz of the demo walk, retargeted by the solver; GMR pickles, SEED CSVs at 120 fps and
result npz of a standing, arm-swinging G1, converted), and builds it twice: at half and
at full size, each build in a fresh process, so each process's peak RSS is its own.
Memory is bounded if the full build's peak is not much above the half build's (the
build holds one shard being filled and, in stage 1, at most the batch driver's prefetch of
4 device batches of prepared human clips, whatever the number of clips). The default
device batch is 8 clips, so both builds have more human clips than that prefetch holds
and the bound is reached in both. Then a rebuild of the full corpus shows stage 2 alone
(every clip reused).

``--shared`` builds the three shared clips whole instead (LAFAN1 BVH, mocapbank BVH,
OMOMO keypoints; ``$RETARGET_JAX_SHARED_DATA`` or ``--data``).

    python benchmarks/bench_dataset.py [--clips 300] [--frames 40,120] [--max-iters N]
    python benchmarks/bench_dataset.py --shared [--data ../shared/data]

The solver compiles once per process (the persistent cache, ``--cache-dir``, makes later
processes load it); the times include it, as a user's build does. Prints a table and
writes JSON (default ``benchmarks/results/dataset_<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _platform import select_platform  # benchmarks/ is sys.path[0] when run as a script

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=300, help="clips in the full corpus (default 300)")
    p.add_argument("--frames", default="40,120", help="min,max frames per clip at 30 fps (default 40,120)")
    p.add_argument("--max-iters", type=int, default=None, help="solver iterations at most (default: the solver's)")
    p.add_argument(
        "--max-batch",
        type=int,
        default=8,
        help="clips per device batch (default 8: the half corpus already holds more than 4 batches of human clips)",
    )
    p.add_argument("--max-shard-mb", type=float, default=16.0, help="shard size bound (default 16 MB: several shards)")
    p.add_argument("--shared", action="store_true", help="build the shared clips (whole) instead")
    p.add_argument(
        "--data",
        default=None,
        help="shared data folder (default $RETARGET_JAX_SHARED_DATA or ../shared/data beside the repository)",
    )
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto")
    p.add_argument("--cache-dir", default=str(REPO_ROOT / ".jax_cache"), help="persistent XLA compilation cache")
    p.add_argument("--workdir", default=None, help="where the corpus and datasets go (default: a temporary folder)")
    p.add_argument("--output", default="benchmarks/results/dataset_{device}.json")
    p.add_argument("--child", nargs=3, metavar=("SPEC", "ROOT", "OUT_JSON"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- corpus


def write_corpus(root: Path, n: int, lo: int, hi: int, seed: int = 0) -> dict[str, int]:
    """n clips in four source folders under root; returns clips per source."""
    import csv

    import numpy as np

    from retarget_jax.io import save_result, write_gmr_pkl
    from retarget_jax.io.readers import SEED_ROOT_COLUMNS
    from retarget_jax.motion.demo import demo_motion
    from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP
    from retarget_jax.result import RetargetingResult
    from retarget_jax.robots import load_robot
    from retarget_jax.robots.kinematics import host_body_poses

    rng = np.random.default_rng(seed)
    g1 = load_robot("unitree_g1")
    names = {role: name for name, role in LAFAN1_JOINT_MAP.items()}
    walk = demo_motion(num_frames=hi + 200)
    counts = {"kp": 0, "gmr": 0, "seed": 0, "ready": 0}

    def robot_clip(T: int, fps: float) -> RetargetingResult:
        t = np.arange(T) / fps
        dof = np.zeros((T, g1.num_dof))
        for j in ("left_shoulder_pitch_joint", "right_shoulder_pitch_joint", "left_elbow_joint"):
            dof[:, g1.dof_names.index(j)] = 0.3 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.3, 1.2) * t)
        yaw = rng.uniform(-np.pi, np.pi)
        root = np.c_[0.1 * t * np.cos(yaw), 0.1 * t * np.sin(yaw), np.full(T, g1.standing_height)]
        quat = np.tile([np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)], (T, 1))
        pos, rot = host_body_poses(g1, np.concatenate([root, quat, dof], axis=-1))
        return RetargetingResult(fps, root, quat, dof, g1.dof_names, g1.body_names, pos, rot, 0, 0.0, 0, g1.name)

    for i in range(n):
        T = int(rng.integers(lo, hi + 1))
        kind = ("kp", "gmr", "seed", "ready")[i % 4]
        folder = root / kind / f"part{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        counts[kind] += 1
        if kind == "kp":
            s = int(rng.integers(0, 200))
            pos = walk.positions[s : s + T] + rng.normal(0, 0.002, (T, 1, 3))
            np.savez(
                folder / f"walk_{i:04d}.npz",
                positions=pos.astype(np.float32),
                joint_names=np.array([names[j] for j in walk.joint_names]),
                fps=np.float32(30.0),
            )
        elif kind == "gmr":
            write_gmr_pkl(robot_clip(T, 30.0), folder / f"stand_{i:04d}.pkl")
        elif kind == "ready":
            save_result(robot_clip(T, 30.0), folder / f"stand_{i:04d}.npz")
        else:
            r = robot_clip(4 * T, 120.0)
            yaw = 2 * np.arctan2(r.root_quat_wxyz[:, 3], r.root_quat_wxyz[:, 0])
            with open(folder / f"stand_{i:04d}.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow([*SEED_ROOT_COLUMNS, *(f"{j}_dof" for j in g1.dof_names)])
                for t in range(r.num_frames):
                    w.writerow(
                        [
                            t,
                            *(
                                f"{v:.6f}"
                                for v in (
                                    *(r.root_pos[t] * 100),
                                    0.0,
                                    0.0,
                                    np.degrees(yaw[t]),
                                    *np.degrees(r.dof_pos[t]),
                                )
                            ),
                        ]
                    )
    return counts


def corpus_spec(path: Path, corpus: Path, name: str, args) -> Path:
    import yaml

    spec = {
        "name": name,
        "robot": "unitree_g1",
        "target_fps": 30,
        "val_percent": 5,
        "hash_salt": "",
        "max_shard_mb": args.max_shard_mb,
        "batch": {"max_batch": args.max_batch},
        "sources": [
            {"name": "kp", "type": "keypoints", "input": str(corpus / "kp")},
            {"name": "gmr", "type": "pkl", "input": str(corpus / "gmr")},
            {"name": "seed", "type": "seed_csv", "input": str(corpus / "seed"), "weight": 0.5},
            {"name": "ready", "type": "npz", "input": str(corpus / "ready")},
        ],
    }
    if args.max_iters is not None:
        spec["solver"] = {"max_iters": args.max_iters}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def shared_spec(path: Path, data: Path, args) -> Path:
    import yaml

    folder = path.parent / "shared_inputs"
    for sub, name in (
        ("lafan1", "lafan1_skeleton_clip_a.bvh"),
        ("mocapbank", "mocapbank_19joint_clip.bvh"),
        ("omomo", "omomo_sub3_largebox_003_joints.npz"),
    ):
        if not (data / name).exists():
            sys.exit(f"{data / name} not found: give --data or set RETARGET_JAX_SHARED_DATA")
        (folder / sub).mkdir(parents=True, exist_ok=True)
        link = folder / sub / name
        if not link.exists():
            link.symlink_to((data / name).resolve())
    spec = {
        "name": "shared",
        "robot": "unitree_g1",
        "target_fps": 30,
        "val_percent": 5,
        "max_shard_mb": args.max_shard_mb,
        "batch": {"max_batch": args.max_batch},
        "sources": [
            {"name": "lafan1", "type": "bvh", "bvh_format": "lafan1", "input": str(folder / "lafan1")},
            {"name": "mocapbank", "type": "bvh", "joint_map": "mocapbank_19", "input": str(folder / "mocapbank")},
            {"name": "omomo", "type": "keypoints", "input": str(folder / "omomo")},
        ],
    }
    if args.max_iters is not None:
        spec["solver"] = {"max_iters": args.max_iters}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# --------------------------------------------------------------------------- one build per process


def child(spec: str, root: str, out_json: str, cache_dir: str) -> None:
    """One build in this process; writes its figures as JSON."""
    import resource

    import jax

    jax.config.update("jax_compilation_cache_dir", cache_dir)
    from retarget_jax.dataset.build import build_dataset
    from retarget_jax.robots import load_robot

    load_robot("unitree_g1")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t0 = time.perf_counter()
    info = build_dataset(spec, root, progress=False, log=lambda m: None)
    wall = time.perf_counter() - t0
    Path(out_json).write_text(
        json.dumps(
            {
                "wall_s": wall,
                "clips_per_s": info["counts"]["inputs"] / wall,
                "inputs": info["counts"]["inputs"],
                "kept": info["counts"]["kept"],
                "dropped": info["counts"]["dropped"],
                "failed": info["counts"]["failed"],
                "frames": info["frames"],
                "hours": info["hours"],
                "stage1": info["stage1"],
                "stage2_s": info["stage2_seconds"],
                "shards": sum(len(s["shards"]) for s in info["per_split"].values()),
                "shard_mb_max": max(
                    (x["bytes"] / 1e6 for s in info["per_split"].values() for x in s["shards"]), default=0
                ),
                "peak_rss_mib": info["peak_rss_mib"],
                "rss_before_build_mib": round(base, 1),
                "fk_pos_max_m": info["fk_check"]["pos_max_m"],
            }
        )
    )


def run_child(spec: Path, root: Path, args) -> dict:
    out = root / f"{spec.stem}_{time.monotonic_ns()}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--device",
            args.device,
            "--cache-dir",
            args.cache_dir,
            "--child",
            str(spec),
            str(root / "datasets"),
            str(out),
        ],
        env=env,
        check=True,
    )
    return json.loads(out.read_text())


def main(argv=None) -> None:
    args = parse_args(argv)
    select_platform(args.device)
    if args.child:
        child(*args.child, args.cache_dir)
        return
    import jax

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_dataset_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.shared:
        data = Path(args.data or os.environ.get("RETARGET_JAX_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")
        spec = shared_spec(work / "shared.yaml", data, args)
        rows.append(("shared data, first build", run_child(spec, work, args)))
        rows.append(("shared data, rebuild", run_child(spec, work, args)))
    else:
        lo, hi = (int(x) for x in args.frames.split(","))
        for n in (args.clips // 2, args.clips):
            corpus = work / f"corpus_{n}"
            counts = write_corpus(corpus, n, lo, hi)
            spec = corpus_spec(work / f"synthetic_{n}.yaml", corpus, f"synthetic_{n}", args)
            rows.append(
                (f"{n} clips ({', '.join(f'{v} {k}' for k, v in counts.items())})", run_child(spec, work, args))
            )
        rows.append((f"{args.clips} clips, rebuild (all reused)", run_child(spec, work, args)))
    device = jax.devices()[0].platform
    print(f"\ndataset build on {device} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)")
    print(
        f"{'build':<52} {'clips':>6} {'kept':>5} {'frames':>7} {'wall s':>7} {'clips/s':>8} {'stage2 s':>8} "
        f"{'shards':>6} {'peak RSS MiB':>12} {'before MiB':>10}"
    )
    for name, r in rows:
        print(
            f"{name:<52} {r['inputs']:>6} {r['kept']:>5} {r['frames']:>7} {r['wall_s']:>7.1f} "
            f"{r['clips_per_s']:>8.3g} {r['stage2_s']:>8.2f} {r['shards']:>6} {r['peak_rss_mib']:>12.0f} "
            f"{r['rss_before_build_mib']:>10.0f}"
        )
    out = Path(args.output.format(device=device))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": device,
                "cpus": os.cpu_count(),
                "args": {k: v for k, v in vars(args).items() if k != "child"},
                "builds": [{"name": n, **r} for n, r in rows],
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
