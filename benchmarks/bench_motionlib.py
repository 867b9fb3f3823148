"""Benchmark of the MotionLib query (``retarget_jax.motionlib.MotionLib``).

Packs a library of ``--motions`` motions of 60 to 600 frames (30 fps, smooth random
states, unit quaternions) for the ``smpl`` figure (24 bodies, 69 DoF) and the G1 (30 bodies,
29 DoF) shapes, then times, for ``--queries`` queries (4096 by default, as many as a
trainer's parallel environments):

* first call: ``get_motion_state`` traced, compiled and run once;
* query: median over ``--repeats`` steady-state jitted calls (``sample_motions`` and
  ``sample_times`` outside the timing), each ended by ``jax.block_until_ready``;
  states/s = queries / query time;
* sample + query: ``sample_motions``, ``sample_times`` and ``get_motion_state`` in a row;
* numpy: the same query on the host (``get_motion_state_numpy``).

Prints a markdown table and writes JSON (default ``benchmarks/results/bench_motionlib.json``).
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

SHAPES = {"smpl": (24, 69, 4), "unitree_g1": (30, 29, 2)}  # bodies, DoF, contact bodies


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=4096, help="queries per call (default: 4096)")
    p.add_argument("--motions", type=int, default=500, help="motions in the library (default: 500)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls; median reported (default: 20)")
    p.add_argument(
        "--device",
        choices=("cpu", "gpu", "auto"),
        default="cpu",
        help="JAX platform; cpu/gpu set JAX_PLATFORMS before JAX starts (default: cpu)",
    )
    p.add_argument("--output", default="benchmarks/results/bench_motionlib.json", help="JSON path")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _wave(rng, T: int, *shape: int):
    """(T, *shape) sinusoids of random rates and phases, at 30 fps."""
    import numpy as np

    t = (np.arange(T) / 30.0).reshape(T, *([1] * len(shape)))
    return np.sin(t * rng.uniform(1, 6, shape) + rng.uniform(0, 6, shape))


def make_library(shape: str, M: int, seed: int):
    import numpy as np

    from retarget_jax.motionlib.library import pack_library
    from retarget_jax.motionlib.states import MotionStates
    from retarget_jax.rotations import quat_exp

    B, n, F = SHAPES[shape]
    rng = np.random.default_rng(seed)
    motions = []
    for _ in range(M):
        T = int(rng.integers(60, 601))

        def wave(*s, T=T):
            return _wave(rng, T, *s)

        quat = quat_exp(0.5 * wave(B, 3))
        motions.append(
            MotionStates(
                fps=30.0,
                root_pos=wave(3),
                root_quat_wxyz=quat[:, 0],
                root_lin_vel_w=wave(3),
                root_ang_vel_w=wave(3),
                dof_pos=wave(n),
                dof_vel=wave(n),
                body_pos_w=wave(B, 3),
                body_quat_w=quat,
                body_lin_vel_w=wave(B, 3),
                body_ang_vel_w=wave(B, 3),
                contacts=wave(F) > 0,
                body_names=[f"b{i}" for i in range(B)],
                dof_names=[f"d{i}" for i in range(n)],
                contact_body_names=[f"b{i}" for i in range(F)],
            )
        )
    return pack_library(
        motions,
        names=[f"m{i}" for i in range(M)],
        files=["synthetic"] * M,
        weights=rng.uniform(0.1, 2.0, M),
        slices=[(0.0, m.duration_s) for m in motions],
        metadata={"target": shape},
    )


def timed(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    select_platform(args.device)
    import jax
    import numpy as np

    from retarget_jax.motionlib import MotionLib

    rows = []
    for shape in SHAPES:
        t0 = time.perf_counter()
        lib = MotionLib(make_library(shape, args.motions, args.seed))
        pack_s = time.perf_counter() - t0
        Q = args.queries
        ids = lib.sample_motions(jax.random.key(1), Q)
        times = lib.sample_times(jax.random.key(2), ids)
        t0 = time.perf_counter()
        jax.block_until_ready(lib.get_motion_state(ids, times))
        first = time.perf_counter() - t0
        query = timed(
            lambda lib=lib, ids=ids, times=times: jax.block_until_ready(lib.get_motion_state(ids, times)), args.repeats
        )
        keys = iter(jax.random.split(jax.random.key(3), args.repeats + 1))

        def step(lib=lib, Q=Q, keys=keys):
            key = next(keys)
            i = lib.sample_motions(key, Q)
            jax.block_until_ready(lib.get_motion_state(i, lib.sample_times(jax.random.fold_in(key, 1), i)))

        step()
        sample_query = timed(step, args.repeats)
        ids_np, times_np = np.asarray(ids), np.asarray(times)
        numpy_s = timed(
            lambda lib=lib, i=ids_np, t=times_np: lib.get_motion_state_numpy(i, t), max(3, args.repeats // 4)
        )
        lib_mb = sum(v.nbytes for v in lib.library.frames.values()) / 2**20
        rows.append(
            {
                "shape": shape,
                "motions": lib.num_motions,
                "frames": lib.library.total_frames,
                "library_mb": round(lib_mb, 1),
                "queries": Q,
                "pack_s": round(pack_s, 3),
                "first_call_s": round(first, 3),
                "query_ms": round(query * 1e3, 3),
                "states_per_s": round(Q / query),
                "sample_query_ms": round(sample_query * 1e3, 3),
                "numpy_ms": round(numpy_s * 1e3, 3),
                "numpy_states_per_s": round(Q / numpy_s),
            }
        )
    device = str(jax.devices()[0])
    print(
        f"\nMotionLib query, {args.queries} queries, device {device}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs\n"
    )
    print(
        "| shape | motions | frames | MB | first call s | query ms | states/s | sample+query ms | numpy ms | "
        "numpy states/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['shape']} | {r['motions']} | {r['frames']} | {r['library_mb']} | {r['first_call_s']} | "
            f"{r['query_ms']} | {r['states_per_s']:,} | {r['sample_query_ms']} | {r['numpy_ms']} | "
            f"{r['numpy_states_per_s']:,} |"
        )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": device,
                "python": sys.version.split()[0],
                "jax": jax.__version__,
                "cpus": os.cpu_count(),
                "load_avg": os.getloadavg(),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
