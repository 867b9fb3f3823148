"""``retarget-jax calibrate``: fit a recipe's continuous parameters to clips (host driver).

    clips (files) -> read, compile whole -> held-in / held-out split
      -> evaluate held-out (before) -> outer steps (checkpointed) -> evaluate (after)
      -> fitted recipe YAML (extends the original), report JSON, loss curve

Checkpoints (orbax-checkpoint) hold the parameters, the optimiser state and the step;
their metadata holds the loss history, the seed and a hash of every setting that changes
the result. A run whose checkpoint folder exists resumes from its latest step (a run
with other settings is refused, naming what differs); since a step's windows depend only
on the seed and the step (:func:`~retarget_jax.calibrate.data.sample_windows`), a resumed
run ends with the parameters an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from retarget_jax.calibrate.data import (
    CalibClip,
    calib_clip,
    find_inputs,
    make_batch,
    sample_windows,
    split_clips,
    tile_windows,
)
from retarget_jax.calibrate.fit import FitOptions, Fitter, summarise
from retarget_jax.calibrate.outer import TERMS, OuterWeights, outer_spec
from retarget_jax.calibrate.params import (
    PARAM_KINDS,
    CalibParams,
    ParamLayout,
    fitted_recipe,
    stack_contexts,
)
from retarget_jax.calibrate.recipes import write_fitted_recipe
from retarget_jax.errors import ConfigError, RetargetError, UnknownNameError
from retarget_jax.files.atomic import atomic_write_text
from retarget_jax.formats import DEFAULT_PATTERNS, MotionFormat, default_recipe
from retarget_jax.motion import read_motion
from retarget_jax.pipeline import ProblemSettings, prepare_clip
from retarget_jax.problem import load_recipe
from retarget_jax.robots import load_robot
from retarget_jax.solve.gauss_newton import SolverOptions

REPORT_NAME = "calibration_report.json"


@dataclasses.dataclass(frozen=True)
class CalibrateConfig:
    """Every setting of a calibration run (the command's flags)."""

    input: str
    format: str
    robot: str
    output: str
    recipe: str | None = None  # None: the format's shipped recipe for the robot
    holdout_percent: float = 20.0
    split: str = "auto"  # auto | clips | time
    pattern: str | None = None  # None: the format's default (**/*.bvh, ...)
    joint_map: str | None = None
    fps: float | None = None
    steps: int = 100
    batch: int = 4  # windows per outer step
    window: int = 64  # frames per window
    seed: int = 0
    lr: float = 0.01
    prior: float = 0.001
    fit: tuple[str, ...] = PARAM_KINDS
    weights: OuterWeights = dataclasses.field(default_factory=OuterWeights)
    max_iters: int = 30  # full-rate solver iterations (short windows also get the coarse budget)
    eval_windows: int = 32  # at most this many windows of the held-out (and of the held-in) frames
    eval_every: int = 25  # held-out evaluations between the first and last step (0: none), for the curve
    checkpoint_dir: str | None = None  # None: <output stem>.checkpoints beside the output
    checkpoint_every: int = 10
    resume: bool = True
    name: str | None = None  # of the fitted recipe; None: <recipe>_calibrated
    progress: bool = True
    report: str | None = None  # None: calibration_report.json beside the output

    def result_hash(self) -> str:
        """A hash of the settings that change the fitted parameters (not of where files
        go, the progress bar or how many windows are evaluated)."""
        keys = (
            "input",
            "format",
            "robot",
            "recipe",
            "holdout_percent",
            "split",
            "pattern",
            "joint_map",
            "fps",
            "steps",
            "batch",
            "window",
            "seed",
            "lr",
            "prior",
            "fit",
            "max_iters",
        )
        d = {k: getattr(self, k) for k in keys}
        d["weights"] = dataclasses.asdict(self.weights)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def checkpoint_path(self) -> Path:
        out = Path(self.output)
        return Path(self.checkpoint_dir) if self.checkpoint_dir else out.with_name(out.stem + ".checkpoints")

    def report_path(self) -> Path:
        return Path(self.report) if self.report else Path(self.output).with_name(REPORT_NAME)


def parse_weights(text: str | None) -> OuterWeights:
    """``direction=1,sliding=0.2`` -> OuterWeights (unlisted terms keep their defaults)."""
    if not text:
        return OuterWeights()
    vals: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, _, v = part.partition("=")
        key = key.strip()
        if key not in TERMS:
            raise UnknownNameError("outer-loss term", key, TERMS, where="--weights")
        try:
            vals[key] = float(v)
        except ValueError:
            raise ConfigError(f"--weights: {key}={v!r} is not a number") from None
        if not (np.isfinite(vals[key]) and vals[key] >= 0):
            raise ConfigError(f"--weights: {key} must be finite and >= 0, got {vals[key]}")
    return dataclasses.replace(OuterWeights(), **vals)


def _check(cfg: CalibrateConfig) -> None:
    for key, v, lo in (
        ("--steps", cfg.steps, 0),
        ("--batch", cfg.batch, 1),
        ("--window", cfg.window, 8),
        ("--checkpoint-every", cfg.checkpoint_every, 1),
        ("--eval-windows", cfg.eval_windows, 1),
        ("--max-iters", cfg.max_iters, 1),
        ("--eval-every", cfg.eval_every, 0),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"{key}: expected an integer >= {lo}, got {v!r}")
    if not cfg.output.endswith((".yaml", ".yml")):
        raise ConfigError(f"--output {cfg.output}: the fitted recipe is written as YAML (.yaml)")


def load_setup(cfg: CalibrateConfig, log: Callable[[str], None]):
    """(robot, base recipe, clips, split mode, failures) of a config (host; typed errors)."""

    fmt = MotionFormat.parse(cfg.format, where="--format")
    if fmt.is_robot_space:
        raise ConfigError(f"--format {fmt.value}: calibration needs human motion, not a robot-space trajectory")
    files = find_inputs(cfg.input, cfg.pattern or DEFAULT_PATTERNS[fmt.value])
    robot = load_robot(cfg.robot)
    failures: list[dict[str, str]] = []
    motions = []
    for f in files:
        try:
            motions.append((f, read_motion(f, fmt, joint_map=cfg.joint_map)))
        except RetargetError as e:
            failures.append({"path": str(f), "error": f"{type(e).__name__}: {e}"})
    if not motions:
        raise ConfigError(
            f"--input {cfg.input}: none of the {len(files)} file(s) could be read as {fmt.value}: "
            + "; ".join(x["error"] for x in failures[:3])
        )
    try:
        recipe = load_recipe(cfg.recipe or default_recipe(fmt, robot.name, motions[0][1]))
    except UnknownNameError as e:
        raise UnknownNameError(e.kind, e.name, e.valid, where="--recipe") from None
    spec = outer_spec(recipe, robot)
    base = Path(cfg.input) if Path(cfg.input).is_dir() else Path(cfg.input).parent
    settings = ProblemSettings(fps=cfg.fps)
    clips: list[CalibClip] = []
    for f, m in motions:
        try:
            name = f.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            name = f.name
        try:
            clips.append(calib_clip(name, prepare_clip(m, recipe, robot, settings), spec))
        except RetargetError as e:
            failures.append({"path": str(f), "error": f"{type(e).__name__}: {e}"})
    if not clips:
        raise ConfigError(
            f"--input {cfg.input}: no clip could be prepared for recipe {recipe.name}: "
            + "; ".join(x["error"] for x in failures[:3])
        )
    for x in failures:
        log(f"skipped {x['path']}: {x['error']}")
    mode = split_clips(clips, cfg.holdout_percent, cfg.split)
    return robot, recipe, spec, clips, mode, failures


def evaluate(fitter: Fitter, params: CalibParams, contexts, clips, which: str, cfg: CalibrateConfig) -> dict:
    """Outer metrics of the ``which`` frames ("held_in" / "held_out") at ``params``."""
    import jax

    windows = tile_windows(clips, which, cfg.window, cfg.eval_windows)
    if not windows:
        return {"windows": 0, "loss": float("nan")}
    terms, ok = [], []
    for s in range(0, len(windows), cfg.batch):
        chunk = windows[s : s + cfg.batch]
        t, o, _, _ = jax.device_get(fitter.evaluate(params, contexts, make_batch(clips, chunk, cfg.window, cfg.batch)))
        terms.append(np.asarray(t)[: len(chunk)])
        ok.append(np.asarray(o)[: len(chunk)])
    out = summarise(np.concatenate(terms), np.concatenate(ok), np.asarray(cfg.weights.array()))
    out["windows_total"] = len(windows)
    out["frames"] = int(sum(e - s for _, s, e in windows))
    return out


class _Checkpoints:
    """orbax-checkpoint manager of a run: state = params, optimiser state, step."""

    def __init__(self, path: Path, keep: int = 2):
        import orbax.checkpoint as ocp

        self.ocp = ocp
        self.path = path.resolve()
        self.mngr = ocp.CheckpointManager(
            self.path,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=True),
        )

    def latest(self) -> int | None:
        return self.mngr.latest_step()

    def save(self, step: int, params, opt_state, meta: dict) -> None:
        ocp = self.ocp
        state = {"params": params.to_dict(), "opt_state": opt_state, "step": np.asarray(step, np.int64)}
        self.mngr.save(
            step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True
        )
        self.mngr.wait_until_finished()

    def restore(self, step: int, params, opt_state):
        ocp = self.ocp
        target = {"params": params.to_dict(), "opt_state": opt_state, "step": np.asarray(0, np.int64)}
        r = self.mngr.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
        )
        return CalibParams.from_dict(r.state["params"]), r.state["opt_state"], int(r.state["step"]), r.meta

    def close(self) -> None:
        self.mngr.close()


def _loss_curve(history: list[dict], evals: list[dict], path_png: Path, path_csv: Path) -> str | None:
    """Write the loss curve as CSV, and as PNG where matplotlib is installed; returns the
    PNG path or None. ``evals``: held-out losses at some steps (step 0 = the start)."""
    lines = ["step,outer_loss,prior,windows_used,held_out_loss," + ",".join(TERMS)]
    held_out = {e["step"]: e["loss"] for e in evals}
    for e in evals:
        if e["step"] == 0:
            lines.append(f"0,,,,{e['loss']}" + "," * len(TERMS))
    for h in history:
        lines.append(
            ",".join(
                str(x) for x in (h["step"], h["outer"], h["prior"], h["used"], held_out.get(h["step"], ""), *h["terms"])
            )
        )

    atomic_write_text(path_csv, "\n".join(lines) + "\n")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = np.asarray([h["step"] for h in history])
    loss = np.asarray([h["outer"] for h in history], np.float64)
    if len(steps):
        ax.plot(steps, loss, lw=0.7, alpha=0.45, color="C0", label="held-in batch")
        k = max(1, min(15, len(loss) // 5))
        med = np.asarray([np.median(loss[max(0, i - k + 1) : i + 1]) for i in range(len(loss))])
        ax.plot(steps, med, lw=1.8, color="C0", label=f"held-in batch, running median of {k}")
    if evals:
        ax.plot([e["step"] for e in evals], [e["loss"] for e in evals], "o-", color="C3", ms=5, label="held-out")
    ax.set_yscale("log")
    ax.set_xlabel("outer step")
    ax.set_ylabel("outer loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    tmp = path_png.with_name(path_png.name + ".tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path_png)
    return str(path_png)


def table(report: dict) -> str:
    """The before / after table of a report (held-out, then held-in)."""
    rows = [
        ("loss", "{:.5f}", 1.0),
        ("limb_cosine_mean", "{:.5f}", 1.0),
        ("direction", "{:.5f}", 1.0),
        ("end_effector", "{:.4f}", 1.0),
        ("sliding", "{:.4f}", 1.0),
        ("penetration", "{:.2f}", 1000.0),
        ("foot_height", "{:.2f}", 1000.0),
    ]
    units = {"sliding": " m/s", "penetration": " mm", "foot_height": " mm"}
    out = ["| frames | metric | before | after |", "|---|---|---|---|"]
    for which in ("held_out", "held_in"):
        b, a = report[which]["before"], report[which]["after"]
        if not b.get("windows"):
            continue
        for key, fmt, scale in rows:
            out.append(
                f"| {which.replace('_', '-')} ({b['windows']} windows) | {key}{units.get(key, '')} | "
                f"{fmt.format(scale * b[key])} | {fmt.format(scale * a[key])} |"
            )
    return "\n".join(out)


def calibrate(cfg: CalibrateConfig, log: Callable[[str], None] | None = None) -> dict:
    """Run a calibration (see the module docstring); returns the report (also written)."""
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    log = log or (lambda s: print(f"[calibrate] {s}", file=sys.stderr, flush=True))
    _check(cfg)
    t_start = time.perf_counter()
    robot, recipe, spec, clips, mode, failures = load_setup(cfg, log)
    held_in = [c.name for c in clips if c.held_in]
    held_out = [c.name for c in clips if c.held_out]
    log(
        f"{len(clips)} clip(s) -> {robot.name}, recipe {recipe.name}; split by {mode}: "
        f"held-in {held_in}, held-out {held_out}"
    )
    layout = ParamLayout.of(recipe)
    fit = FitOptions(steps=cfg.steps, lr=cfg.lr, prior=cfg.prior, fit=tuple(cfg.fit))
    fitter = Fitter(layout, spec, SolverOptions(max_iters=cfg.max_iters), fit)
    contexts = stack_contexts([c.context for c in clips])
    weights = cfg.weights.array()
    prior = jnp.asarray(cfg.prior, jnp.float32)
    params = CalibParams.zeros(layout)
    opt_state = fitter.init(params)

    ck_path = cfg.checkpoint_path()
    if ck_path.exists() and not cfg.resume:
        shutil.rmtree(ck_path)
    ckpt = _Checkpoints(ck_path)
    meta: dict[str, Any] = {"result_hash": cfg.result_hash(), "history": [], "before": None, "evals": []}
    start = 0
    latest = ckpt.latest()
    if latest is not None:
        params_r, opt_r, step_r, meta_r = ckpt.restore(latest, params, opt_state)
        if meta_r.get("result_hash") != meta["result_hash"]:
            ckpt.close()
            raise ConfigError(
                f"--checkpoint-dir {ck_path}: the checkpoint was written by a run with other settings "
                f"(hash {meta_r.get('result_hash')}, this run {meta['result_hash']}); pass "
                "--no-resume to start over, or another --checkpoint-dir"
            )
        params, opt_state, start, meta = params_r, opt_r, step_r, {"evals": [], **meta_r}
        log(f"resumed from {ck_path} at step {start}")

    if meta["before"] is None:
        log("evaluating the start on held-out and held-in windows (the first solve of a shape compiles)...")
        meta["before"] = {w: evaluate(fitter, params, contexts, clips, w, cfg) for w in ("held_out", "held_in")}
        meta["evals"] = [{"step": start, "loss": meta["before"]["held_out"].get("loss")}]
        ckpt.save(start, params, opt_state, meta)
    step_seconds = []
    with tqdm(
        total=cfg.steps, initial=start, desc="calibrate", unit="step", file=sys.stderr, disable=not cfg.progress
    ) as bar:
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            batch = make_batch(
                clips, sample_windows(clips, step, cfg.seed, cfg.batch, cfg.window), cfg.window, cfg.batch
            )
            params, opt_state, info = fitter.step(params, opt_state, contexts, batch, weights, prior)
            info = jax.device_get(info)
            ok = np.asarray(info["ok"], bool)
            terms = np.asarray(info["terms"], np.float64)
            meta["history"].append(
                {
                    "step": step + 1,
                    "outer": float(info["outer"]),
                    "prior": float(info["prior"]),
                    "used": int(np.sum(info["used"])),
                    "solved": int(ok.sum()),
                    "terms": [float(x) for x in (terms[ok].mean(axis=0) if ok.any() else np.full(len(TERMS), np.nan))],
                }
            )
            step_seconds.append(time.perf_counter() - t0)
            bar.set_postfix(loss=f"{float(info['outer']):.4f}", used=f"{int(np.sum(info['used']))}/{cfg.batch}")
            bar.update(1)
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                ev = evaluate(fitter, params, contexts, clips, "held_out", cfg)
                meta["evals"].append({"step": step + 1, "loss": ev.get("loss")})
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                ckpt.save(step + 1, params, opt_state, meta)
    ckpt.close()

    idle = sum(1 for h in meta["history"] if h["used"] == 0)
    if idle:
        log(
            f"{idle} of {len(meta['history'])} steps had no converged window to take a gradient from (their "
            f"parameters did not move); solves that end at --max-iters {cfg.max_iters} are scored but not "
            "differentiated: raise --max-iters, or check the recipe (a target on the wrong point of a body)"
        )
    log("evaluating the fitted parameters...")
    after = {w: evaluate(fitter, params, contexts, clips, w, cfg) for w in ("held_out", "held_in")}
    name = cfg.name or f"{recipe.name}_calibrated"
    fitted = fitted_recipe(recipe, layout, params, name=name)
    out = Path(cfg.output)
    base_ref = cfg.recipe or recipe.name
    ho_b, ho_a = meta["before"]["held_out"], after["held_out"]
    header = (
        f"Fitted by `retarget-jax calibrate` from {base_ref} ({cfg.steps} steps of {cfg.batch} x "
        f"{cfg.window}-frame windows, seed {cfg.seed}).\n"
        f"Held-out outer loss {ho_b.get('loss', float('nan')):.5f} -> {ho_a.get('loss', float('nan')):.5f}; "
        f"see {cfg.report_path().name}."
    )
    write_fitted_recipe(out, fitted, base_ref, header)
    history = meta["history"]
    evals = [*meta["evals"], {"step": cfg.steps, "loss": ho_a.get("loss")}]
    png = _loss_curve(history, evals, out.with_name(out.stem + ".loss.png"), out.with_name(out.stem + ".loss.csv"))
    if png is None:
        log("matplotlib is not installed: the loss curve is written as CSV only (pip install retarget-jax[plot])")
    report = {
        "output": str(out),
        "recipe": base_ref,
        "recipe_name": recipe.name,
        "fitted_recipe_name": name,
        "robot": robot.name,
        "format": cfg.format,
        "input": cfg.input,
        "split": mode,
        "holdout_percent": cfg.holdout_percent,
        "clips": {"held_in": held_in, "held_out": held_out},
        "skipped": failures,
        "steps": cfg.steps,
        "batch": cfg.batch,
        "window": cfg.window,
        "seed": cfg.seed,
        "lr": cfg.lr,
        "prior": cfg.prior,
        "fit": list(cfg.fit),
        "weights": dataclasses.asdict(cfg.weights),
        "max_iters": cfg.max_iters,
        "result_hash": cfg.result_hash(),
        "held_out": {"before": ho_b, "after": ho_a},
        "held_in": {"before": meta["before"]["held_in"], "after": after["held_in"]},
        "params": {k: np.asarray(v).tolist() for k, v in params.to_dict().items()},
        "param_names": layout.names(recipe),
        "history": history,
        "steps_without_gradient": idle,
        "held_out_curve": evals,
        "step_seconds_mean": float(np.mean(step_seconds)) if step_seconds else None,
        "step_seconds_median": float(np.median(step_seconds)) if step_seconds else None,
        "seconds": round(time.perf_counter() - t_start, 2),
        "loss_curve_png": png,
        "loss_curve_csv": str(out.with_name(out.stem + ".loss.csv")),
        "checkpoint_dir": str(ck_path),
    }

    atomic_write_text(cfg.report_path(), json.dumps(report, indent=2, allow_nan=True) + "\n")
    log("\n" + table(report))
    return report
