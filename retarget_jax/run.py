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
    max_iters: int = 50
    rtol: float = 1e-5
    damping: float = 1e-3


@dataclasses.dataclass
class WeightsConfig:
    """Cost weights (retarget_jax.problem.CostWeights); 0 switches a term off."""

    smooth_position: float = 0.02
    smooth_rotation: float = 0.005
    smooth_joint: float = 0.002
    accel_position: float = 2e-5
    accel_rotation: float = 1e-5
    accel_joint: float = 1e-5
    posture: float = 0.02
    ground: float = 1000.0  # every collision geom above the ground
    contact_height: float = 50.0  # stance soles on the ground, level
    contact_slide: float = 10.0  # stance soles not sliding
    self_collision: float = 2000.0  # declared geom pairs kept apart
    joint_velocity: float = 1.0  # joint speeds within their limits


@dataclasses.dataclass
class ContactsConfig:
    """ContactPlan: detected from the source (thresholds, see retarget_jax.problem.contacts),
    or given by ``path`` (an .npz/.csv plan for a single input file)."""

    path: str | None = None
    height_on: float = 0.03
    height_off: float = 0.05
    speed_on: float = 0.30
    speed_off: float = 0.45
    min_duration: float = 0.1


@dataclasses.dataclass
class LimitsConfig:
    joint_velocity: float = 20.0  # rad/s, every joint
    joint_velocity_per_joint: dict[str, float] = dataclasses.field(default_factory=dict)


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
    # False zeroes every physical-plausibility weight (acceleration, ground, contacts,
    # self-collision, joint speed): the plain tracking problem, for comparison
    plausibility: bool = True
    contacts: ContactsConfig = dataclasses.field(default_factory=ContactsConfig)
    limits: LimitsConfig = dataclasses.field(default_factory=LimitsConfig)
    terrain: str | None = None  # height field .npz (heights, origin, cell); None = flat z = 0
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
    from retarget_jax.errors import ConfigError, RetargetError
    from retarget_jax.formats import MotionFormat, default_recipe, read_motion, read_robot_motion
    from retarget_jax.io import write_result
    from retarget_jax.manifest import BATCH_MANIFEST_NAME, BatchManifest, BatchRunRecord, utc_now
    from retarget_jax.motion.demo import demo_motion
    from retarget_jax.pipeline import ClipFailure, retarget_motions
    from retarget_jax.problem import CostWeights, load_recipe
    from retarget_jax.problem.compile import JointVelocityLimits
    from retarget_jax.problem.contacts import ContactThresholds, load_contact_plan
    from retarget_jax.robots import load_robot
    from retarget_jax.robots.collision import load_height_field
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
    started = utc_now()
    if motions:
        # one recipe per run: the files of one format and joint map share their skeleton
        recipe = load_recipe(cfg.recipe or default_recipe(fmt if files else "bvh_lafan1", robot.name, motions[0]))
        print(f"[retarget_jax] {len(motions)} clip(s), robot {robot.name}, recipe {recipe.name}", flush=True)
        weights = CostWeights(**dataclasses.asdict(cfg.weights))
        if not cfg.plausibility:
            weights = weights.without_plausibility()
        c = cfg.contacts
        plans = None
        if c.path is not None:
            if len(motions) != 1:
                raise ConfigError(f"contacts.path gives one clip's plan, but the input has {len(motions)} clips")
            plans = [load_contact_plan(c.path, recipe.ground_joints, motions[0].num_frames)]
        results = retarget_motions(
            motions, recipe, robot, weights=weights,
            options=SolverOptions(max_iters=cfg.solver.max_iters, rtol=cfg.solver.rtol, damping=cfg.solver.damping),
            buckets=tuple(cfg.batch.buckets), max_batch=cfg.batch.max_batch, fps=cfg.input.fps,
            contacts=plans,
            contact_thresholds=ContactThresholds(c.height_on, c.height_off, c.speed_on, c.speed_off, c.min_duration),
            joint_velocity_limits=JointVelocityLimits(cfg.limits.joint_velocity,
                                                      dict(cfg.limits.joint_velocity_per_joint)),
            terrain=load_height_field(cfg.terrain) if cfg.terrain else None,
        )
    for name, res in loaded:  # robot-space inputs: converted, not solved
        names.append(name)
        results.append(res)
    out_dir = Path(cfg.output.dir).expanduser()
    written = []
    records = [BatchRunRecord(job_id=str(f["source"]), motion=str(f["source"]), output=None, status="failed",
                              started_at=started, finished_at=utc_now(), message=f["message"],
                              error_type=f["error_type"]) for f in failures]
    suffix = {"npz": ".npz", "mjlab_npz": ".mjlab.npz", "gmr_pkl": ".gmr.pkl"}
    for name, res in zip(names, results, strict=True):
        if isinstance(res, ClipFailure):
            failures.append(dataclasses.asdict(res))
            records.append(BatchRunRecord(job_id=str(name), motion=res.source, output=None, status="failed",
                                          started_at=started, finished_at=utc_now(), message=res.message,
                                          error_type=res.error_type))
            continue
        outputs = []
        for fmt in cfg.output.formats:
            path = out_dir / name.with_suffix(suffix.get(fmt, "." + fmt))
            path.parent.mkdir(parents=True, exist_ok=True)
            write_result(res, path, fmt)
            written.append(str(path))
            outputs.append(path.relative_to(out_dir).as_posix())
        records.append(BatchRunRecord(
            job_id=str(name.as_posix()), motion=str(res.provenance.get("source_path") or name), output=outputs[0],
            status="success", started_at=started, finished_at=utc_now(),
            message=str(res.provenance.get("status_name", "loaded")),
            provenance={k: res.provenance.get(k) for k in ("config_hash", "recipe", "robot", "package_version")}))
        print(f"  {name}: {res.num_frames} frames, status {res.provenance.get('status_name', 'loaded')}, "
              f"cost {res.final_cost:.4g}, {res.iterations} iterations", flush=True)
    frames = sum(r.num_frames for r in results if not isinstance(r, ClipFailure))
    manifest = BatchManifest.from_records(
        records, input_dir=str(Path(cfg.input.path).expanduser()) if cfg.input.path else None,
        output_dir=str(out_dir), pattern=cfg.input.pattern)
    if records:
        written.append(str(manifest.save_json(out_dir / BATCH_MANIFEST_NAME)))
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
