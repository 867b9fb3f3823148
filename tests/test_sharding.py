"""Tests for retarget_jax.solve.batch on several devices: the clip axis split over a mesh.

A CPU offers several devices only when XLA is told so before JAX starts
(``--xla_force_host_platform_device_count``), so the sharded solve runs in a child
process with 4 host devices; this process solves the same clips on its one device and
compares. Each side compiles one solver program (about a minute on a 2-core CPU, cached
on disk like every test compile, see conftest.py): the child's (B=4 split 1 per device),
this process's (B=4, padded). They are the programs of tests/test_batch_driver.py too
(keypoint files of the demo walk, lafan1_g1, bucket 64, 50 iterations at most), so the
suite compiles each once. The child is this file run as a script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from retarget_jax.motion.demo import demo_motion
from retarget_jax.problem import RetargetingProblem, compile_problem, load_recipe
from retarget_jax.robots import load_robot
from retarget_jax.solve.batch import (
    CLIP_AXIS,
    _solve_batch_jit,
    clip_mesh,
    pad_problem,
    shard_batch,
    solve_batch,
    solve_many,
    stack_problems,
)
from retarget_jax.solve.gauss_newton import SolverOptions

NUM_DEVICES = 4
BUCKETS = (64,)
OPTIONS = SolverOptions(max_iters=50)  # to convergence: capped solves drift apart (see below)
CACHE_DIR_ENV = "RETARGET_JAX_CACHE_DIR"
# Different compiled programs (B=4 on one device, B=1 on each of 4) round float32
# differently: converged solutions differ by up to about 1.5e-4 rad (1.45e-4 measured
# with projected-Newton LM stopping on steps under 1e-4; 1.4e-5 with the earlier
# absolute-damping LM). With the solve capped at 8 iterations, unconverged, LM's
# accept/reject decisions diverge and they differ by 1e-3. A clip solved with another
# clip's data would be off by centimetres.
QPOS_ATOL = 3e-4


def make_problems():
    """Three clips of bucket 64 with different lengths and speeds, read back from keypoint
    files as the batch driver's tests read theirs (same skeleton, same programs)."""
    import tempfile

    from retarget_jax.motion import read_motion

    robot, recipe = load_robot("unitree_g1"), load_recipe("lafan1_g1")
    motions = (
        demo_motion(num_frames=40),
        demo_motion(num_frames=60, fps=24.0).slice(8, 60),
        demo_motion(num_frames=50).slice(10, 50),
    )
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, m in enumerate(motions):
            path = Path(tmp) / f"clip{i}.npz"
            np.savez(
                path,
                positions=m.positions,
                joint_names=np.array([j.value for j in m.joint_names]),
                fps=np.float64(m.fps),
            )
            problems.append(compile_problem(RetargetingProblem(read_motion(path, "keypoints"), recipe, robot)))
    return problems


def flatten(results, prefix: str) -> dict[str, np.ndarray]:
    """solve_many's per-clip tuples as named arrays (clips differ in length)."""
    arrays = {}
    for i, (out, xpos, xquat) in enumerate(results):
        arrays |= {
            f"{prefix}qpos_{i}": out.qpos,
            f"{prefix}cost_{i}": out.cost,
            f"{prefix}status_{i}": out.status,
            f"{prefix}iterations_{i}": out.iterations,
            f"{prefix}xpos_{i}": xpos,
            f"{prefix}xquat_{i}": xquat,
        }
    return arrays


def child(path: str) -> None:
    """Solve on 4 host devices; check the placement and the compile count; save."""
    import time

    jax.config.update("jax_compilation_cache_dir", os.environ[CACHE_DIR_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    devices = jax.local_devices()
    assert len(devices) == NUM_DEVICES, devices
    mesh = clip_mesh()
    assert mesh is not None and mesh.size == NUM_DEVICES and mesh.axis_names == (CLIP_AXIS,)
    problems = make_problems()

    # the input: 3 clips padded (last clip again) to 4, one per device, robot on all 4
    batch = shard_batch(stack_problems([pad_problem(p, BUCKETS[0]) for p in [*problems, problems[-1]]]), mesh)
    pos = batch.clip.human_pos
    assert pos.sharding.device_set == set(devices)
    assert sorted(s.data.shape[0] for s in pos.addressable_shards) == [1] * NUM_DEVICES
    assert batch.robot.q_lower.sharding.is_fully_replicated
    assert len(batch.robot.q_lower.sharding.device_set) == NUM_DEVICES

    t0 = time.perf_counter()
    many = solve_many(problems, OPTIONS, buckets=BUCKETS, max_batch=8)
    t_first = time.perf_counter() - t0
    n_compiled = _solve_batch_jit._cache_size()

    # the output of the SPMD program stays split: each device solved its own clip
    t0 = time.perf_counter()
    out = solve_batch(batch, OPTIONS)
    qpos = out.solve.qpos
    assert qpos.sharding.device_set == set(devices), qpos.sharding
    assert sorted(s.data.shape[0] for s in qpos.addressable_shards) == [1] * NUM_DEVICES, qpos.sharding
    out = jax.device_get(out)

    # 2 clips pad to the same B=4: the same program, no new compile
    again = solve_many(problems[1::-1], OPTIONS, buckets=BUCKETS, max_batch=8)
    # 5 clips on CPU devices: two calls of one clip per device (B=4 each), same program
    five = solve_many([*problems, *problems[:2]], OPTIONS, buckets=BUCKETS, max_batch=8)
    t_again = time.perf_counter() - t0
    assert _solve_batch_jit._cache_size() == n_compiled == 1, _solve_batch_jit._cache_size()
    for k, i in enumerate((0, 1, 2, 0, 1)):
        assert np.array_equal(five[k][0].qpos, many[i][0].qpos)

    np.savez(
        path,
        **flatten(many, ""),
        **flatten(again, "again_"),
        batch_qpos=np.asarray(out.solve.qpos),
        t_first=t_first,
        t_again=t_again,
    )


def test_sharded_solve_matches_one_device(tmp_path):
    out = tmp_path / "sharded.npz"
    repo = Path(__file__).resolve().parents[1]
    cache = jax.config.jax_compilation_cache_dir or str(repo / ".jax_cache")
    env = {
        **os.environ,
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={NUM_DEVICES}".strip(),
        "JAX_PLATFORMS": "cpu",
        CACHE_DIR_ENV: cache,
        # a script's sys.path starts at tests/: put this checkout's package first
        "PYTHONPATH": os.pathsep.join(filter(None, (str(repo), os.environ.get("PYTHONPATH")))),
    }
    proc = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    sharded = dict(np.load(out))

    # the same clips on one CPU device, in this process
    cpu = None if jax.default_backend() == "cpu" else jax.devices("cpu")[:1]
    problems = make_problems()
    if len(jax.local_devices()) == 1:
        assert clip_mesh() is None  # one device: the batch is passed on as it is
    reference = flatten(
        solve_many(problems, OPTIONS, buckets=BUCKETS, max_batch=NUM_DEVICES, devices=cpu, fixed_batch=True), ""
    )

    diffs = {}
    for k, v in reference.items():
        kind = k.rsplit("_", 1)[0]
        d = float(np.max(np.abs(sharded[k].astype(np.float64) - v.astype(np.float64))))
        diffs[kind] = max(diffs.get(kind, 0.0), d)
    print(
        f"\nsharded (4 devices) vs 1 device, max |difference|: {diffs}\n"
        f"child: first solve_many {float(sharded['t_first']):.1f} s, "
        f"then solve_batch and solve_many of 2 and 5 clips {float(sharded['t_again']):.2f} s"
    )
    for i in range(len(problems)):
        assert sharded[f"status_{i}"] == reference[f"status_{i}"]
        assert sharded[f"iterations_{i}"] == reference[f"iterations_{i}"]
        np.testing.assert_allclose(sharded[f"qpos_{i}"], reference[f"qpos_{i}"], rtol=0, atol=QPOS_ATOL)
        np.testing.assert_allclose(sharded[f"cost_{i}"], reference[f"cost_{i}"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(sharded[f"xpos_{i}"], reference[f"xpos_{i}"], rtol=0, atol=QPOS_ATOL)
    # solve_batch on the stacked [a, b, c, c] and the reordered second batch agree with them
    # within the one sharded program, a clip's result does not depend on its device or
    # batch-mates: bit for bit
    for i in range(len(problems)):
        T = reference[f"qpos_{i}"].shape[0]
        np.testing.assert_array_equal(sharded["batch_qpos"][i, :T], sharded[f"qpos_{i}"])
    for j, i in enumerate((1, 0)):
        np.testing.assert_array_equal(sharded[f"again_qpos_{j}"], sharded[f"qpos_{i}"])


if __name__ == "__main__":
    child(sys.argv[1])
