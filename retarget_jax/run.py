"""Hydra entry point: ``python -m retarget_jax.run +experiment=<name> [key=value ...]``.

Hydra and OmegaConf stay here: the config becomes typed options (RunConfig) before
anything is compiled, so library code never needs Hydra. Unknown or misspelled keys fail
before any work starts, naming the key.
"""

from __future__ import annotations

import dataclasses
import glob
import sys
import time
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from retarget_jax.problem.recipe import config_dir
from retarget_jax.solve.batch import DEFAULT_BUCKETS


@dataclasses.dataclass
class InputConfig:
    path: str | None = None  # file or directory; None = the embedded demo walk
    format: str = "bvh_lafan1"  # see retarget_jax.formats (the CLI's --format names)
    pattern: str | None = None  # inside a directory; None = the format's default (**/*.bvh, ...)
    joint_map: str | None = None  # shipped map name or YAML file (required for format bvh)
    fps: float | None = None  # resample every clip to this rate on exact times; None = keep
    demo_frames: int = 150


@dataclasses.dataclass
class BodyModelConfig:
    dir: str | None = None  # SMPL/SMPL-H/SMPL-X model files; None = built-in neutral skeletons
    gender: str | None = None  # override the files' gender (neutral, male, female)


@dataclasses.dataclass
class SolverConfig:
    max_iters: int = 30
    rtol: float = 1e-5
    damping: float = 1e-3


@dataclasses.dataclass
class WeightsConfig:
    smooth_position: float = 0.02
    smooth_rotation: float = 0.005
    smooth_joint: float = 0.002
    posture: float = 0.02
    floor: float = 50.0  # sole points below z = 0


@dataclasses.dataclass
class BatchConfig:
    max_batch: int = 64
    buckets: list[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_BUCKETS))


@dataclasses.dataclass
class OutputConfig:
    dir: str = "outputs/retarget"
    formats: list[str] = dataclasses.field(default_factory=lambda: ["npz"])


@dataclasses.dataclass
class RunConfig:
    name: str = "run"
    robot: str = "unitree_g1"
    recipe: str | None = None  # None = the shipped recipe for the input's family and the robot
    input: InputConfig = dataclasses.field(default_factory=InputConfig)
    body_model: BodyModelConfig = dataclasses.field(default_factory=BodyModelConfig)
    solver: SolverConfig = dataclasses.field(default_factory=SolverConfig)
    weights: WeightsConfig = dataclasses.field(default_factory=WeightsConfig)
    batch: BatchConfig = dataclasses.field(default_factory=BatchConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    # Persistent XLA compilation cache: a second run of the same shapes skips compiling.
    jax_cache_dir: str | None = "~/.cache/retarget_jax/xla"


ConfigStore.instance().store(name="run_schema", node=RunConfig)
_ = MISSING


def _inputs(cfg: RunConfig) -> list[Path]:
    if cfg.input.path is None:
        return []
    p = Path(cfg.input.path).expanduser()
    if p.is_dir():
        from retarget_jax.formats import DEFAULT_PATTERNS

        pattern = cfg.input.pattern or DEFAULT_PATTERNS.get(cfg.input.format, "**/*")
        files = sorted(Path(f) for f in glob.glob(str(p / pattern), recursive=True))
        if not files:
            raise SystemExit(f"no files matching '{pattern}' in {p}")
        return files
    if not p.exists():
        raise SystemExit(f"input.path does not exist: {p}")
    return [p]


def execute(cfg: RunConfig) -> dict:
    """Run a retargeting job from a typed config; returns a summary (also printed)."""
    import logging

    import jax

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    if cfg.jax_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(Path(cfg.jax_cache_dir).expanduser()))
    from retarget_jax.errors import RetargetError
    from retarget_jax.formats import MotionFormat, default_recipe, read_motion, read_robot_motion
    from retarget_jax.io import write_result
    from retarget_jax.motion.demo import demo_motion
    from retarget_jax.pipeline import ClipFailure, retarget_motions
    from retarget_jax.problem import CostWeights, load_recipe
    from retarget_jax.robots import load_robot
    from retarget_jax.solve import SolverOptions

    t0 = time.perf_counter()
    fmt = MotionFormat.parse(cfg.input.format, where="input.format")
    robot = load_robot(cfg.robot)
    files = _inputs(cfg)
    motions, failures, names, loaded = [], [], [], []
    if not files:
        motions.append(demo_motion(num_frames=cfg.input.demo_frames))
        names.append(Path("demo_walk"))

    def rel(f: Path) -> Path:
        return f.relative_to(Path(cfg.input.path)) if Path(cfg.input.path).is_dir() else Path(f.name)

    for f in files:
        try:
            if fmt.is_robot_space:
                loaded.append((rel(f), read_robot_motion(f, fmt, robot)))
            else:
                motions.append(read_motion(f, fmt, joint_map=cfg.input.joint_map,
                                           body_model_dir=cfg.body_model.dir, gender=cfg.body_model.gender))
                names.append(rel(f))
        except (RetargetError, OSError) as e:
            failures.append({"source": str(f), "error_type": getattr(e, "error_type", type(e).__name__),
                             "message": str(e)})
    results: list = []
    if motions:
        # one recipe per run: the files of one format and joint map share their skeleton
        recipe = load_recipe(cfg.recipe or default_recipe(fmt if files else "bvh_lafan1", robot.name, motions[0]))
        print(f"[retarget_jax] {len(motions)} clip(s), robot {robot.name}, recipe {recipe.name}", flush=True)
        results = retarget_motions(
            motions, recipe, robot,
            weights=CostWeights(**dataclasses.asdict(cfg.weights)),
            options=SolverOptions(max_iters=cfg.solver.max_iters, rtol=cfg.solver.rtol, damping=cfg.solver.damping),
            buckets=tuple(cfg.batch.buckets), max_batch=cfg.batch.max_batch, fps=cfg.input.fps,
        )
    for name, res in loaded:  # robot-space inputs: converted, not solved
        names.append(name)
        results.append(res)
    out_dir = Path(cfg.output.dir).expanduser()
    written = []
    suffix = {"npz": ".npz", "mjlab_npz": ".mjlab.npz", "gmr_pkl": ".gmr.pkl"}
    for name, res in zip(names, results, strict=True):
        if isinstance(res, ClipFailure):
            failures.append(dataclasses.asdict(res))
            continue
        for fmt in cfg.output.formats:
            path = out_dir / name.with_suffix(suffix.get(fmt, "." + fmt))
            path.parent.mkdir(parents=True, exist_ok=True)
            write_result(res, path, fmt)
            written.append(str(path))
        print(f"  {name}: {res.num_frames} frames, status {res.provenance.get('status_name', 'loaded')}, "
              f"cost {res.final_cost:.4g}, {res.iterations} iterations", flush=True)
    frames = sum(r.num_frames for r in results if not isinstance(r, ClipFailure))
    summary = {"written": written, "failed": failures, "frames": frames,
               "seconds": round(time.perf_counter() - t0, 2)}
    for f in failures:
        print(f"  FAILED {f['source']}: {f['error_type']}: {f['message']}", file=sys.stderr)
    print(f"[retarget_jax] wrote {len(written)} file(s) to {out_dir.resolve()} "
          f"({frames} frames in {summary['seconds']} s, {len(failures)} failed)", flush=True)
    for w in written:
        print(f"  {w}")
    return summary


def typed_config(cfg: DictConfig) -> RunConfig:
    """The composed config as a RunConfig. Merging into the schema also rejects keys that
    were appended with ``+key=...`` (Hydra lets those through a structured config)."""
    from retarget_jax.errors import ConfigError

    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.to_container(cfg, resolve=True))
    except Exception as e:  # omegaconf's errors name the key and the expected type
        raise ConfigError(f"bad config: {e}") from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> None:
    execute(typed_config(cfg))


if __name__ == "__main__":
    main()
