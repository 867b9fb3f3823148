"""Where one solver iteration spends its time: each stage jitted and timed on its own.

    python benchmarks/profile_solver.py [--frames 256] [--device cpu]

One demo-walk clip of T frames (``lafan1_g1`` on ``unitree_g1``), the problem passed as
a traced argument (as in the real solve, so nothing is constant-folded). Stages: the
frame residuals with Jacobians, the whole normal equations (frame, pair and triple
terms assembled into the banded blocks), the block-pentadiagonal solve, one cost
evaluation (the LM acceptance test), and the full solve (iterations reported). Prints a
table and writes JSON (``benchmarks/results/profile_solver_<platform>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto")
    ap.add_argument("--output", default="benchmarks/results/profile_solver_{device}.json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _platform import select_platform

    select_platform(args.device)
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_compilation_cache", False)
    from bench_solver import build_clips

    from retarget_jax.solve import costs
    from retarget_jax.solve.gauss_newton import SolverOptions, _project, initial_guess, solve
    from retarget_jax.solve.linalg import block_banded_solve

    (p,) = build_clips(1, args.frames, 0, 3.0)
    tpos, tquat = costs.targets(p)
    q0 = _project(p, initial_guess(p, tpos, tquat))
    masks = costs.frame_masks(p)

    def timed(f, *a):
        t0 = time.perf_counter()
        c = eqx.filter_jit(f).lower(*a).compile()
        compile_s = time.perf_counter() - t0
        out = jax.block_until_ready(c(*a))
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = jax.block_until_ready(c(*a))
            ts.append(time.perf_counter() - t0)
        return compile_s, min(ts), out

    rows = []
    stages = [
        (
            "frame residuals + Jacobians",
            lambda p, q, a, b, m: jax.vmap(lambda q, x, y, mm: costs.frame_residual(p, q, x, y, mm, jacobian=True))(
                q, a, b, m
            ),
            (p, q0, tpos, tquat, masks),
        ),
        (
            "normal equations (D, L1, L2, g)",
            lambda p, q, a, b: costs.normal_equations(p, q, a, b),
            (p, q0, tpos, tquat),
        ),
        ("cost F (no Jacobians)", lambda p, q, a, b: costs.total_cost(p, q, a, b), (p, q0, tpos, tquat)),
    ]
    D, L1, L2, g, _ = eqx.filter_jit(costs.normal_equations)(p, q0, tpos, tquat)
    nv = D.shape[-1]
    stages.append(
        (
            "block-pentadiagonal solve",
            lambda D, L1, L2, g: block_banded_solve(D + 1e-3 * jnp.eye(nv, dtype=D.dtype), L1, L2, g),
            (D, L1, L2, g),
        )
    )
    for name, f, a in stages:
        c, t, _ = timed(f, *a)
        rows.append({"stage": name, "compile_s": c, "ms": t * 1e3})
    opts = SolverOptions()
    c, t, out = timed(lambda p: solve(p, opts), p)
    it = int(out.iterations)
    rows.append(
        {
            "stage": f"whole solve ({it} iterations)",
            "compile_s": c,
            "ms": t * 1e3,
            "ms_per_iteration": t * 1e3 / max(it, 1),
            "frames_per_s": args.frames / t,
        }
    )
    dev = jax.devices()[0]
    print(f"T={args.frames}, nv={nv}, device {dev.platform} ({dev.device_kind})")
    print(f"{'stage':<36} {'compile s':>9} {'ms':>9}")
    for r in rows:
        print(f"{r['stage']:<36} {r['compile_s']:>9.1f} {r['ms']:>9.2f}")
    last = rows[-1]
    print(f"{last['ms_per_iteration']:.1f} ms per iteration, {last['frames_per_s']:.0f} frames/s for one clip")
    out_path = Path(args.output.format(device=dev.platform))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps({"frames": args.frames, "device": dev.device_kind, "platform": dev.platform, "rows": rows}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
