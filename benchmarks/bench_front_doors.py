"""Wall time and peak memory where users meet the solver: the two front doors, run as a user
runs them, each in a fresh process, with an empty compile cache (cold) and then again with
the cache it filled (warm).

    python benchmarks/bench_front_doors.py                  # demo + a 3945-frame LAFAN1 clip
    python benchmarks/bench_front_doors.py --only demo

Rows:

* ``demo``: ``python -m retarget_jax.run +experiment=demo`` (150 frames of the embedded walk
  to the G1; writes npz, mjlab npz and GMR pkl);
* ``lafan1 run``: ``python -m retarget_jax.run +experiment=lafan1_g1 input.path=<clip>``;
* ``lafan1 cli``: ``retarget-jax retarget <clip> --format bvh_lafan1 --robot unitree_g1``.

The LAFAN1 clip is the first ``--frames`` (default 3945) frames of
``lafan1_skeleton_clip_a.bvh`` from the shared data folder (``--data`` or
``$RETARGET_JAX_SHARED_DATA``), written as a BVH file. Each row is timed twice in a fresh
process: cold (a new, empty ``jax_cache_dir``) and warm (the same cache again, outputs
forced). Wall seconds include interpreter start, imports, reading, compiling or loading
from the cache, solving and writing; peak RSS is the child's ``ru_maxrss``. The two
LAFAN1 rows must write the same trajectory (the script compares them and prints the
largest joint difference). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIP = "lafan1_skeleton_clip_a.bvh"


def cut_bvh(src: Path, dst: Path, frames: int) -> int:
    """Write the first ``frames`` frames of a BVH file (text: header, ``Frames: N``, lines)."""
    lines = src.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().lower().startswith("frames:"))
    total = int(lines[i].split(":")[1])
    n = min(frames, total)
    head = lines[:i] + [f"Frames: {n}"] + [lines[i + 1]]  # the Frame Time line
    dst.write_text("\n".join(head + lines[i + 2 : i + 2 + n]) + "\n")
    return n


def run_child(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; wall seconds, peak RSS (MB) of the child, exit code, output tail."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of the children is the largest over all children so far: run the rows in
    # increasing order of memory or read it per row from /usr/bin/time when available
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(max(peak, before) / 1024.0, 1),
        "rc": proc.returncode,
        "tail": (proc.stdout + proc.stderr)[-2000:],
    }


def timed(cmd: list[str], env: dict) -> dict:
    """Like :func:`run_child`, with the child's own peak RSS from GNU time when present."""
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if gnu_time is None:
        return run_child(cmd, env)
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as f:
        out = f.name
    res = run_child([gnu_time, "-f", "%M", "-o", out, *cmd], env)
    try:
        res["peak_rss_mb"] = round(int(Path(out).read_text().split()[-1]) / 1024.0, 1)
    except (OSError, ValueError, IndexError):
        pass
    Path(out).unlink(missing_ok=True)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        default=os.environ.get("RETARGET_JAX_SHARED_DATA") or str(REPO_ROOT.parent / "shared" / "data"),
        help="folder holding " + CLIP,
    )
    p.add_argument("--frames", type=int, default=3945, help="frames of the LAFAN1 clip (default 3945)")
    p.add_argument("--only", choices=("demo", "lafan1"), help="one row group only")
    p.add_argument("--output", default="benchmarks/results/front_doors.json")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="rj_front_doors_"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rows = []
    python = sys.executable

    def row(name: str, make_cmd, cache: Path) -> None:
        for phase in ("cold", "warm"):
            res = timed(make_cmd(cache, phase), env)
            res.update(row=name, phase=phase)
            rows.append(res)
            print(
                f"{name:12s} {phase:5s} wall {res['wall_s']:7.2f} s  peak RSS {res['peak_rss_mb']:7.1f} MB"
                f"  rc {res['rc']}",
                flush=True,
            )
            if res["rc"] != 0:
                print(res["tail"], file=sys.stderr)

    if args.only in (None, "demo"):
        cache = work / "cache_demo"
        out = work / "demo"
        row(
            "demo",
            lambda c, ph: [
                python,
                "-m",
                "retarget_jax.run",
                "+experiment=demo",
                f"jax_cache_dir={c}",
                f"output.dir={out}",
                "batch.progress=false",
                "batch.force=true",
            ],
            cache,
        )
    if args.only in (None, "lafan1"):
        src = Path(args.data) / CLIP
        if not src.is_file():
            raise SystemExit(f"bench_front_doors: {src} not found (pass --data or set RETARGET_JAX_SHARED_DATA)")
        clip = work / f"lafan1_{args.frames}.bvh"
        n = cut_bvh(src, clip, args.frames)
        print(f"LAFAN1 clip: {n} frames of {CLIP}", flush=True)
        run_out, cli_out = work / "run_out", work / "cli_out.npz"
        cache = work / "cache_lafan1"
        row(
            "lafan1 run",
            lambda c, ph: [
                python,
                "-m",
                "retarget_jax.run",
                "+experiment=lafan1_g1",
                f"input.path={clip}",
                f"output.dir={run_out}",
                f"jax_cache_dir={c}",
                "output.formats=[npz]",
                "batch.progress=false",
                "batch.force=true",
            ],
            cache,
        )
        cache2 = work / "cache_lafan1_cli"
        row(
            "lafan1 cli",
            lambda c, ph: [
                python,
                "-m",
                "retarget_jax.cli",
                "retarget",
                str(clip),
                "--format",
                "bvh_lafan1",
                "--robot",
                "unitree_g1",
                "--output",
                str(cli_out),
                "--cache-dir",
                str(c),
            ],
            cache2,
        )
        try:
            import numpy as np

            from retarget_jax.io import load_result

            a = load_result(run_out / clip.with_suffix(".npz").name)
            b = load_result(cli_out)
            diff = float(np.max(np.abs(a.qpos - b.qpos)))
            print(f"run vs cli: largest qpos difference {diff:.3g}", flush=True)
            rows.append({"row": "lafan1 run vs cli", "max_abs_qpos_diff": diff})
        except Exception as e:  # the table is still worth having
            print(f"run vs cli: not compared ({type(e).__name__}: {e})", file=sys.stderr)

    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": machine,
                "frames": args.frames,
                "rows": [{k: v for k, v in r.items() if k != "tail"} for r in rows],
            },
            indent=2,
        )
    )
    print(f"[{machine}] JSON: {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
