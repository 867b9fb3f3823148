"""Tests for retarget_jax.calibrate: the parameters set a compiled problem exactly as the
fitted recipe compiles; the outer gradient (implicit differentiation through the solve)
against finite differences of re-solves; a few steps lower the held-in and held-out
loss (synthetic clips, and the shared LAFAN1 clip where present); the fitted recipe
loads (extends resolved) and solves to what the run measured; kill -9 and resume gives
the uninterrupted run's parameters; bad input fails with typed errors naming the field.

Compiles: one float64 gradient program (B=2, W=12) for the finite differences, and one
float32 step and one evaluation program (B=2, W=64, three 240-frame clips) shared by the
in-process runs and the command-line runs of the kill test (the persistent cache).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from retarget_jax.calibrate import (
    CalibParams,
    ParamLayout,
    fitted_recipe,
    rough_recipe,
    write_recipe,
)
from retarget_jax.calibrate.data import calib_clip, make_batch
from retarget_jax.calibrate.driver import (
    CalibrateConfig,
    calibrate,
    evaluate,
    load_setup,
    parse_weights,
)
from retarget_jax.calibrate.fit import FitOptions, Fitter
from retarget_jax.calibrate.outer import OuterWeights, outer_spec
from retarget_jax.calibrate.params import (
    APPLIED_FIELDS,
    apply_params,
    clip_context,
    masked_percentile,
    stack_contexts,
)
from retarget_jax.errors import ConfigError, UnknownNameError
from retarget_jax.motion.demo import demo_motion
from retarget_jax.pipeline import PreparedClip
from retarget_jax.problem import RetargetingProblem, compile_problem, load_recipe
from retarget_jax.solve.gauss_newton import SolverOptions

REPO_ROOT = Path(__file__).resolve().parents[1]
W, B = 64, 2  # window frames and windows per step of the float32 runs (bucket 64, as test_solver)
CLIP_FRAMES = 240
STEPS = 8
W64 = 12  # the float64 gradient check's windows


def random_params(layout, rng, dtype, scale=1.0):
    return CalibParams(
        jnp.asarray(rng.normal(scale=0.05 * scale, size=len(layout.groups)), dtype),
        jnp.asarray(rng.normal(scale=0.01 * scale, size=(len(layout.pos_targets), 3)), dtype),
        jnp.asarray(rng.normal(scale=0.05 * scale, size=(len(layout.rot_targets), 3)), dtype),
        jnp.asarray(0.004 * scale, dtype),
    )


# ---------------------------------------------------------------------------------------
# Parameters -> compiled arrays (no solve)


def test_masked_percentile_matches_numpy(x64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 37))
    mask = rng.uniform(size=x.shape) < 0.6
    for q in (5.0, 50.0, 97.5):
        got = np.asarray(masked_percentile(jnp.asarray(x), jnp.asarray(mask), q))
        want = [np.percentile(row[m], q) for row, m in zip(x, mask, strict=True)]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
    assert float(masked_percentile(jnp.asarray(x[0]), jnp.zeros(37, bool), 5.0)) == 0.0


@pytest.mark.parametrize("recipe_name", ["lafan1_g1", "lafan1_t1"])
def test_params_set_the_arrays_the_fitted_recipe_compiles_to(recipe_name, x64):
    """At 0 the compiled arrays bit for bit; elsewhere those of compiling the fitted
    recipe (scale factors with the re-measured ground and target heights, offsets,
    rotation offsets, limb ends, ground offset)."""
    from retarget_jax.robots import load_robot

    recipe = load_recipe(recipe_name)
    robot = load_robot(recipe.robot)
    motion = demo_motion(num_frames=90)
    prob = RetargetingProblem(motion, recipe, robot)
    cp = compile_problem(prob, dtype=jnp.float64)
    layout = ParamLayout.of(recipe)
    ctx = clip_context(prob, cp)
    at0 = apply_params(CalibParams.zeros(layout, jnp.float64), ctx, layout, cp.pos_joint)
    for name in APPLIED_FIELDS:
        assert np.array_equal(np.asarray(getattr(at0, name)), np.asarray(getattr(cp.clip, name))), name
    params = random_params(layout, np.random.default_rng(1), jnp.float64, scale=2.0)
    got = apply_params(params, ctx, layout, cp.pos_joint)
    fitted = compile_problem(
        RetargetingProblem(motion, fitted_recipe(recipe, layout, params), robot), dtype=jnp.float64
    )
    for name in APPLIED_FIELDS:
        a, b = np.asarray(getattr(got, name)), np.asarray(getattr(fitted.clip, name))
        if name == "rot_offset":  # q and -q are one rotation
            b = b * np.sign(np.sum(a * b, axis=-1, keepdims=True))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=name)
        if name != "limb_offset" or layout.limb_attach:
            assert not np.allclose(a, np.asarray(getattr(cp.clip, name))), f"{name}: the parameters changed nothing"


# ---------------------------------------------------------------------------------------
# Outer gradient vs finite differences (float64)


@pytest.fixture(scope="module")
def fd_case(g1, lafan1_g1_recipe):
    """Two clips of different lengths and rates (contexts padded), one 12-frame window
    of each, a converged-to-round-off solver."""
    with jax.enable_x64(True):
        recipe = lafan1_g1_recipe
        spec = outer_spec(recipe, g1, dtype=jnp.float64)
        clips = []
        for i, m in enumerate((demo_motion(num_frames=30), demo_motion(num_frames=40, fps=24.0).slice(4, 40))):
            prob = RetargetingProblem(m, recipe, g1)
            clips.append(calib_clip(f"m{i}", PreparedClip(prob, compile_problem(prob, dtype=jnp.float64), m.fps), spec))
        layout = ParamLayout.of(recipe)
        solver = SolverOptions(max_iters=80, rtol=1e-12, step_tol=1e-12)
        fitter = Fitter(layout, spec, solver, FitOptions())
        batch = make_batch(clips, [(0, 3, 3 + W64), (1, 14, 14 + W64)], W64, 2)
        ctx = jax.tree.map(jnp.asarray, stack_contexts([c.context for c in clips]))
        return fitter, layout, ctx, batch


def test_outer_gradient_matches_finite_differences(fd_case, x64):
    fitter, layout, ctx, batch = fd_case
    weights = OuterWeights().array(jnp.float64)
    params = random_params(layout, np.random.default_rng(2), jnp.float64)
    loss, grad, info = fitter.gradient(params, ctx, batch, weights)
    assert np.asarray(info["used"]).all(), (info["status"], info["iterations"])
    assert np.all(np.asarray(info["terms"])[:, :3] > 0)  # direction, end effector, sliding act

    outer = fitter.outer_loss
    np.testing.assert_allclose(float(outer(params, ctx, batch, weights)), float(loss), rtol=1e-9)
    gi = layout.groups.index
    # steps of 1e-4: at 1e-5 the difference of two re-solves is within their convergence
    # noise for a small derivative (legs scale: 4e-3 off at 1e-5, 1.2e-4 at 1e-4 and 1e-3)
    cases = [  # (name, field, index, step)
        ("legs scale", "log_factor", (gi("legs"),), 1e-4),
        ("arms scale", "log_factor", (gi("arms"),), 1e-4),
        ("pelvis offset z", "pos_offset", (0, 2), 1e-4),
        ("left wrist offset x", "pos_offset", (len(layout.pos_targets) - 2, 0), 1e-4),
        ("pelvis rotation y", "rot_offset", (0, 1), 1e-4),
        ("ground offset", "ground_offset", (), 1e-4),
    ]
    rows = []
    for name, field, idx, eps in cases:
        base = getattr(params, field)

        def at(sign, field=field, idx=idx, eps=eps, base=base):
            p = dataclasses.replace(params, **{field: base.at[idx].add(sign * eps)})
            return float(outer(p, ctx, batch, weights))

        fd = (at(+1) - at(-1)) / (2 * eps)
        ad = float(np.asarray(getattr(grad, field))[idx])
        rows.append((name, ad, fd))
        assert abs(fd) > 1e-4, f"{name}: vacuous finite difference {fd}"
        assert ad == pytest.approx(fd, rel=2e-3, abs=1e-6), f"d outer / d {name}: {ad} vs {fd}"
    # a random direction through every parameter at once
    rng = np.random.default_rng(5)
    d = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)
    eps = 1e-6
    plus = jax.tree.map(lambda x, y: x + eps * y, params, d)
    minus = jax.tree.map(lambda x, y: x - eps * y, params, d)
    fd = (float(outer(plus, ctx, batch, weights)) - float(outer(minus, ctx, batch, weights))) / (2 * eps)
    ad = sum(float(jnp.sum(g * v)) for g, v in zip(jax.tree.leaves(grad), jax.tree.leaves(d), strict=True))
    rows.append(("random direction", ad, fd))
    print("\n".join(f"{n}: implicit {a:.8g}, finite difference {f:.8g}" for n, a, f in rows))
    assert ad == pytest.approx(fd, rel=2e-3)


# ---------------------------------------------------------------------------------------
# Runs of the command (synthetic clips; the shared LAFAN1 clip where present)


def _demo_bvh_writer():
    spec = importlib.util.spec_from_file_location("make_demo_motion", REPO_ROOT / "scripts" / "make_demo_motion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_bvh


def _cut_bvh(src: Path, dst: Path, start: int, frames: int) -> None:
    head, _, body = src.read_text().partition("MOTION")
    lines = body.strip().splitlines()
    frame_time = next(ln for ln in lines if ln.startswith("Frame Time"))
    data = [ln for ln in lines[2:] if ln.strip()][start : start + frames]
    assert len(data) == frames
    dst.write_text(f"{head}MOTION\nFrames: {frames}\n{frame_time}\n" + "\n".join(data) + "\n")


@pytest.fixture(scope="module")
def clips_dirs(tmp_path_factory, lafan1_g1_recipe):
    """Three 240-frame clips per source (synthetic walks; cuts of the shared LAFAN1 clip),
    and a start recipe with something to fix: the rough start of lafan1_g1 (target
    offsets 0) with a 3 cm ground offset."""
    from conftest import shared_data_path

    root = tmp_path_factory.mktemp("calibrate")
    write_bvh = _demo_bvh_writer()
    synth = root / "synthetic"
    synth.mkdir()
    for i, (fps, start) in enumerate(((30.0, 0), (30.0, 37), (24.0, 11))):
        write_bvh(
            synth / f"walk{i}.bvh",
            demo_motion(num_frames=CLIP_FRAMES + start, fps=fps).slice(start, start + CLIP_FRAMES),
        )
    dirs = {"synthetic": synth}
    lafan = shared_data_path() / "lafan1_skeleton_clip_a.bvh"
    if lafan.exists():
        shared = root / "shared"
        shared.mkdir()
        for start in (500, 2600, 5100):
            _cut_bvh(lafan, shared / f"lafan_{start}.bvh", start, CLIP_FRAMES)
        dirs["shared"] = shared
    start_recipe = dataclasses.replace(rough_recipe(lafan1_g1_recipe), ground_offset=0.03)
    write_recipe(root / "start.yaml", start_recipe)
    return dirs, root / "start.yaml"


def _config(inp: Path, recipe: Path, out: Path, **kw) -> CalibrateConfig:
    return CalibrateConfig(
        input=str(inp),
        format="bvh_lafan1",
        robot="unitree_g1",
        recipe=str(recipe),
        output=str(out / "fitted.yaml"),
        steps=STEPS,
        batch=B,
        window=W,
        lr=0.02,
        seed=3,
        eval_windows=4,
        checkpoint_every=2,
        progress=False,
        **kw,
    )


@pytest.mark.parametrize("source", ["synthetic", "shared"])
def test_a_few_steps_lower_held_in_and_held_out_loss(source, clips_dirs, tmp_path):
    dirs, start = clips_dirs
    if source not in dirs:
        pytest.skip("shared test data not found")
    cfg = _config(dirs[source], start, tmp_path)
    report = calibrate(cfg)
    assert report["split"] == "clips" and len(report["clips"]["held_out"]) == 1
    for which in ("held_in", "held_out"):
        b, a = report[which]["before"], report[which]["after"]
        assert b["windows"] == a["windows"] > 0
        assert a["loss"] < b["loss"], (which, b, a)
    assert max(float(np.abs(np.asarray(v)).max()) for v in report["params"].values()) > 1e-3
    # the fitted recipe loads (extends resolved) and solves to what the run measured
    text = Path(cfg.output).read_text()
    assert "extends: ../start.yaml" in text or f"extends: {os.path.relpath(start, tmp_path)}" in text
    fitted = load_recipe(cfg.output)
    assert fitted.name == "lafan1_g1_rough_calibrated" and fitted.ground_offset != 0.03
    again = dataclasses.replace(cfg, recipe=cfg.output)
    robot, recipe, spec_f, clips, _, _ = load_setup(again, lambda s: None)
    base_spec = load_setup(cfg, lambda s: None)[2]
    fitter = Fitter(ParamLayout.of(recipe), base_spec, SolverOptions(max_iters=cfg.max_iters), FitOptions())
    ctx = stack_contexts([c.context for c in clips])
    res = evaluate(fitter, CalibParams.zeros(ParamLayout.of(recipe)), ctx, clips, "held_out", again)
    assert res["loss"] == pytest.approx(report["held_out"]["after"]["loss"], rel=2e-3, abs=1e-5)
    assert Path(report["loss_curve_csv"]).exists()
    png = report["loss_curve_png"]
    assert png is None or Path(png).read_bytes()[:4] == b"\x89PNG"
    assert Path(cfg.report_path()).exists()


# ---------------------------------------------------------------------------------------
# kill -9 and resume


def _cmd(cfg: CalibrateConfig) -> list[str]:
    from conftest import CACHE_DIR_ENV

    cache = os.environ.get(CACHE_DIR_ENV) or str(REPO_ROOT / ".jax_cache")
    return [
        sys.executable,
        "-m",
        "retarget_jax.cli",
        "calibrate",
        "--input",
        cfg.input,
        "--format",
        cfg.format,
        "--robot",
        cfg.robot,
        "--recipe",
        cfg.recipe,
        "--output",
        cfg.output,
        "--steps",
        str(cfg.steps),
        "--batch",
        str(cfg.batch),
        "--window",
        str(cfg.window),
        "--lr",
        str(cfg.lr),
        "--seed",
        str(cfg.seed),
        "--eval-windows",
        str(cfg.eval_windows),
        "--checkpoint-every",
        str(cfg.checkpoint_every),
        "--no-progress",
        "--cache-dir",
        cache,
    ]


def _env() -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("XLA_FLAGS", None)
    return env


def _steps_saved(ckpt: Path) -> list[int]:
    return sorted(int(p.name) for p in ckpt.glob("*") if p.name.isdigit()) if ckpt.exists() else []


@pytest.mark.timeout(900)
def test_kill_9_then_resume_gives_the_uninterrupted_parameters(clips_dirs, tmp_path):
    """The command killed (SIGKILL) after its second checkpoint and run again resumes and
    ends with the parameters, bit for bit, and the loss history of an uninterrupted run
    (in-process, with the compiled programs of the test above)."""
    dirs, start = clips_dirs
    ref_cfg = _config(dirs["synthetic"], start, tmp_path / "ref")
    ref_report = calibrate(ref_cfg)

    cfg = _config(dirs["synthetic"], start, tmp_path / "killed")
    ckpt = cfg.checkpoint_path()
    env = _env()
    p = subprocess.Popen(_cmd(cfg), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while p.poll() is None and not any(s >= 2 for s in _steps_saved(ckpt)):
        assert time.monotonic() - t0 < 400, "the run saved no checkpoint past step 0"
        time.sleep(0.02)
    killed_at = _steps_saved(ckpt)
    assert p.poll() is None, "the run ended before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p.stderr.close()
    assert not Path(cfg.output).exists() and max(killed_at) < STEPS

    resumed = subprocess.run(_cmd(cfg), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    report = json.loads(Path(cfg.report_path()).read_text())
    assert report["params"] == json.loads(json.dumps(ref_report["params"]))  # bit for bit (floats round-trip)
    assert [h["step"] for h in report["history"]] == list(range(1, STEPS + 1))
    assert report["history"] == json.loads(json.dumps(ref_report["history"]))

    # a run with other settings does not resume this checkpoint
    with pytest.raises(ConfigError, match=r"--checkpoint-dir .*other settings.*--no-resume"):
        calibrate(dataclasses.replace(cfg, seed=4))


# ---------------------------------------------------------------------------------------
# Bad input


def test_bad_input_raises_typed_errors_naming_the_field(clips_dirs, tmp_path):
    from retarget_jax.calibrate.cli import config_from_args
    from retarget_jax.cli import build_parser

    dirs, start = clips_dirs
    synth = dirs["synthetic"]
    with pytest.raises(ConfigError, match=r"--input .*missing: no such file or directory"):
        calibrate(_config(tmp_path / "missing", start, tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"--input .*empty: no files match --pattern '\*\*/\*\.bvh'"):
        calibrate(_config(tmp_path / "empty", start, tmp_path))
    with pytest.raises(UnknownNameError, match=r"--recipe: recipe 'no_such_recipe' not found; valid: .*lafan1_g1"):
        calibrate(dataclasses.replace(_config(synth, start, tmp_path), recipe="no_such_recipe"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.bvh").write_text("not a bvh")
    with pytest.raises(ConfigError, match=r"--input .*junk: none of the 1 file\(s\) could be read as bvh_lafan1"):
        calibrate(_config(tmp_path / "junk", start, tmp_path))
    with pytest.raises(ConfigError, match=r"--output .*fitted.txt: the fitted recipe is written as YAML"):
        calibrate(dataclasses.replace(_config(synth, start, tmp_path), output=str(tmp_path / "fitted.txt")))
    with pytest.raises(ConfigError, match=r"--holdout-percent: expected a number in \(0, 100\), got 100"):
        calibrate(dataclasses.replace(_config(synth, start, tmp_path), holdout_percent=100.0))
    with pytest.raises(ConfigError, match=r"--batch: expected an integer >= 1, got 0"):
        calibrate(dataclasses.replace(_config(synth, start, tmp_path), batch=0))
    with pytest.raises(ConfigError, match=r"--split clips needs at least 2 clips, found 1"):
        calibrate(dataclasses.replace(_config(synth / "walk0.bvh", start, tmp_path), split="clips"))
    args = build_parser().parse_args(
        [
            "calibrate",
            "--input",
            str(synth),
            "--format",
            "bvh_lafan1",
            "--robot",
            "unitree_g1",
            "--output",
            "x.yaml",
            "--fit",
            "scales,wings",
        ]
    )
    with pytest.raises(UnknownNameError, match=r"--fit: parameter kind 'wings' not found; valid: .*offsets"):
        config_from_args(args)
    with pytest.raises(UnknownNameError, match=r"--weights: outer-loss term 'speed' not found; valid: .*sliding"):
        parse_weights("direction=2,speed=1")
    with pytest.raises(ConfigError, match=r"--weights: sliding='fast' is not a number"):
        parse_weights("sliding=fast")
    assert parse_weights("sliding=0.5").sliding == 0.5 and parse_weights(None) == OuterWeights()
