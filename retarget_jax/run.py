"""Hydra entry point: ``python -m retarget_jax.run +experiment=<name> [key=value ...]``.

Hydra and OmegaConf stay here: the config becomes typed options (RunConfig) before
anything is compiled, so library code never needs Hydra. Unknown or misspelled keys fail
before any work starts, naming the key.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from retarget_jax.problem.recipe import config_dir
from retarget_jax.solve.batch import DEFAULT_BUCKETS


@dataclasses.dataclass
class RobotConfig:
    """Config group ``robot``: ``robot=unitree_g1|unitree_h1|booster_t1``, or any MJCF with
    ``robot.mjcf=<file.xml>`` (named after the file unless ``robot.name`` is set)."""

    name: str | None = None
    mjcf: str | None = None


@dataclasses.dataclass
class InputConfig:
    """Config group ``source`` (package ``input``): what to read and how."""

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
class WeightsConfig:
    """Cost weights (retarget_jax.problem.CostWeights); 0 switches a term off."""

    smooth: float = 1.0  # multiplies the three smooth_* weights (one knob for sweeps)
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
class SolverConfig:
    """Config group ``solver``: iterations, tolerances and the cost weights."""

    max_iters: int = 50
    rtol: float = 1e-5
    damping: float = 1e-2
    weights: WeightsConfig = dataclasses.field(default_factory=WeightsConfig)


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
class DistributedConfig:
    """Multi-process runs (retarget_jax.batch.distributed): with ``enabled`` every process
    calls jax.distributed.initialize() (coordinator from SLURM / Open MPI, or the fields)."""

    enabled: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    merge_timeout_s: float = 86400.0


@dataclasses.dataclass
class BatchConfig:
    """Config group ``batch``: how the driver feeds the device (retarget_jax.batch)."""

    max_batch: int = 64  # clips (or windows) per device batch
    buckets: list[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_BUCKETS))
    window: int | None = 1024  # longer clips: overlapping windows, solved together, stitched
    overlap: int = 64  # frames shared by consecutive windows
    prefetch: int | None = None  # prepared clips held at most (memory bound); None = 4 * max_batch
    max_workers: int | None = None  # threads reading and preparing files; None = Python's default
    force: bool = False  # redo jobs whose outputs exist
    progress: bool = True  # progress bar (clips, frames/s, ETA) on stderr
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)


@dataclasses.dataclass
class OutputConfig:
    dir: str | None = None  # None = Hydra's run directory (outputs/<name>), or outputs/<name> outside Hydra
    formats: list[str] = dataclasses.field(default_factory=lambda: ["npz"])


@dataclasses.dataclass
class RenderConfig:
    """``render``: after the batch, draw every clip it solved or loaded (retarget_jax.render):
    ``render.video=true`` writes ``<result>.mp4`` beside each result, ``render.stills=[0,-1]``
    PNG stills ``<result>.frame_<t>.png`` (negative frames count from the end)."""

    video: bool = False
    stills: list[int] = dataclasses.field(default_factory=list)
    width: int = 640
    height: int = 480
    layout: str = "overlay"  # overlay | beside | robot (no skeleton)
    fps: float | None = None  # video rate; None = the result's


@dataclasses.dataclass
class RunConfig:
    name: str = "run"
    robot: RobotConfig = dataclasses.field(default_factory=RobotConfig)
    recipe: str | None = None  # None = the shipped recipe for the input's family and the robot
    input: InputConfig = dataclasses.field(default_factory=InputConfig)
    body_model: BodyModelConfig = dataclasses.field(default_factory=BodyModelConfig)
    solver: SolverConfig = dataclasses.field(default_factory=SolverConfig)
    # False zeroes every physical-plausibility weight (acceleration, ground, contacts,
    # self-collision, joint speed): the plain tracking problem, for comparison
    plausibility: bool = True
    contacts: ContactsConfig = dataclasses.field(default_factory=ContactsConfig)
    limits: LimitsConfig = dataclasses.field(default_factory=LimitsConfig)
    terrain: str | None = None  # height field .npz (heights, origin, cell); None = flat z = 0
    batch: BatchConfig = dataclasses.field(default_factory=BatchConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    render: RenderConfig = dataclasses.field(default_factory=RenderConfig)
    # Persistent XLA compilation cache: a second run of the same shapes skips compiling.
    jax_cache_dir: str | None = "~/.cache/retarget_jax/xla"


ConfigStore.instance().store(name="run_schema", node=RunConfig)
_ = MISSING


def _robot(cfg: RunConfig):
    from retarget_jax.errors import ConfigError
    from retarget_jax.robots import load_robot
    from retarget_jax.robots.spec import BUILTIN_ROBOTS

    if cfg.robot.mjcf:
        return load_robot(Path(cfg.robot.mjcf).expanduser(), name=cfg.robot.name)
    if cfg.robot.name:
        return load_robot(cfg.robot.name)
    if cfg.input.path is None:
        return load_robot("unitree_g1")  # the embedded demo walk
    raise ConfigError(f"no robot given for the {cfg.input.format} input {cfg.input.path}: the driver does not "
                      f"guess one. Set robot=<{'|'.join(BUILTIN_ROBOTS)}> (Hydra), --robot (CLI), or robot.mjcf")


def _weights(cfg: RunConfig):
    """CostWeights of the config: ``smooth`` multiplies the three smooth_* weights, and
    ``plausibility=false`` zeroes the plausibility terms."""
    from retarget_jax.problem import CostWeights

    w = dataclasses.asdict(cfg.solver.weights)
    smooth = w.pop("smooth")
    for k in ("smooth_position", "smooth_rotation", "smooth_joint"):
        w[k] *= smooth
    weights = CostWeights(**w)
    return weights if cfg.plausibility else weights.without_plausibility()


def _jobs(cfg: RunConfig, out_dir: Path, robot_name: str, config_path: str | None):
    from retarget_jax.batch.jobs import DEMO_JOB, BatchJob, find_inputs, make_jobs, output_path
    from retarget_jax.errors import ConfigError
    from retarget_jax.formats import DEFAULT_PATTERNS

    formats = list(cfg.output.formats) or ["npz"]
    if cfg.input.path is None:
        return [BatchJob(DEMO_JOB, DEMO_JOB, str(output_path(out_dir, DEMO_JOB, formats[0])), DEMO_JOB,
                         None, robot_name, config_path)], None, None
    p = Path(cfg.input.path).expanduser()
    if p.is_dir():
        pattern = cfg.input.pattern or DEFAULT_PATTERNS.get(cfg.input.format, "**/*")
        files, base = find_inputs(p, pattern), p
    elif p.exists():
        pattern, files, base = None, [p], p.parent
    else:
        raise ConfigError(f"input.path does not exist: {p}")
    jobs = make_jobs(files, base, out_dir, formats=formats, motion_format=cfg.input.format, robot=robot_name,
                     config_path=config_path)
    return jobs, str(base), pattern


def execute(cfg: RunConfig, *, config_path: str | None = None) -> dict:
    """Run a retargeting batch from a typed config; returns a summary (also printed).

    Jobs are the input files (or the embedded demo walk); see :mod:`retarget_jax.batch`
    for resuming, buckets, windows, devices and processes.
    """
    import logging

    import jax

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    if cfg.jax_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(Path(cfg.jax_cache_dir).expanduser()))
    from retarget_jax.batch import distributed
    from retarget_jax.batch.runner import BatchRunner
    from retarget_jax.batch.worker import RetargetWorker
    from retarget_jax.errors import ConfigError
    from retarget_jax.formats import MotionFormat
    from retarget_jax.manifest import BATCH_MANIFEST_NAME, RUN_CONFIG_NAME, manifest_path
    from retarget_jax.pipeline import ProblemSettings
    from retarget_jax.problem.compile import JointVelocityLimits
    from retarget_jax.problem.contacts import ContactThresholds
    from retarget_jax.robots.collision import load_height_field
    from retarget_jax.solve import SolverOptions

    t0 = time.perf_counter()
    fmt = MotionFormat.parse(cfg.input.format, where="input.format")
    robot = _robot(cfg)
    out_dir = Path(cfg.output.dir or f"outputs/{cfg.name}").expanduser()
    jobs, input_dir, pattern = _jobs(cfg, out_dir, robot.name, config_path)
    if cfg.contacts.path is not None and len(jobs) != 1:
        raise ConfigError(f"contacts.path gives one clip's plan, but the input has {len(jobs)} clips")
    weights = _weights(cfg)
    c = cfg.contacts
    settings = ProblemSettings(
        weights=weights, fps=cfg.input.fps,
        contact_thresholds=ContactThresholds(c.height_on, c.height_off, c.speed_on, c.speed_off, c.min_duration),
        joint_velocity_limits=JointVelocityLimits(cfg.limits.joint_velocity, dict(cfg.limits.joint_velocity_per_joint)),
        terrain=load_height_field(cfg.terrain) if cfg.terrain else None)
    render_opts = _render_options(cfg)  # a bad render setting fails before any work
    b = cfg.batch
    mpath = out_dir / BATCH_MANIFEST_NAME
    worker = RetargetWorker(
        robot=robot, motion_format=fmt, manifest_path=mpath, settings=settings,
        options=SolverOptions(max_iters=cfg.solver.max_iters, rtol=cfg.solver.rtol, damping=cfg.solver.damping),
        recipe=cfg.recipe, formats=list(cfg.output.formats) or ["npz"], joint_map=cfg.input.joint_map,
        body_model_dir=cfg.body_model.dir, gender=cfg.body_model.gender, contacts_path=c.path,
        buckets=tuple(b.buckets), max_batch=b.max_batch, window=b.window, overlap=b.overlap,
        demo_frames=cfg.input.demo_frames)
    d = b.distributed
    proc = distributed.initialize(d.enabled, d.coordinator_address, d.num_processes, d.process_id, d.merge_timeout_s)
    runner = BatchRunner(chunk_size=b.max_batch, prefetch=b.prefetch, progress=b.progress, process_index=proc.index,
                         process_count=proc.count, barrier=proc.barrier, merge_timeout_s=d.merge_timeout_s)
    print(f"[retarget_jax] {len(jobs)} job(s), {fmt.value} -> {robot.name}, output {out_dir}"
          + (f", process {proc.index + 1} of {proc.count}" if proc.count > 1 else ""), flush=True)
    if proc.index == 0:  # the settings of this run, for reports (retarget-jax report)
        from retarget_jax.io import atomic_write_text

        atomic_write_text(out_dir / RUN_CONFIG_NAME, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    manifest = runner.run(jobs, worker, mpath, max_workers=b.max_workers, force=b.force, input_dir=input_dir,
                          output_dir=str(out_dir), pattern=pattern)
    failed = [{"source": r.motion, "job_id": r.job_id, "error_type": r.error_type, "message": r.message}
              for r in manifest.records if r.status == "failed"]
    written = [str(manifest_path(mpath, o)) for r in manifest.records if r.status == "success"
               for o in r.provenance.get("outputs", [r.output])]
    frames = sum(int(r.provenance.get("frames", 0)) for r in manifest.records if r.status == "success")
    summary = {"written": written, "failed": failed, "frames": frames, "manifest": str(mpath),
               "success": manifest.success_count, "skipped": manifest.skipped_count,
               "failed_count": manifest.failed_count, "seconds": round(time.perf_counter() - t0, 2)}
    if render_opts is not None and proc.index == 0:
        summary["rendered"], summary["render_failed"] = _render_outputs(cfg, manifest, mpath, robot, render_opts)
    for f in failed:
        print(f"  FAILED {f['job_id']}: {f['error_type']}: {f['message']}", file=sys.stderr)
    print(f"[retarget_jax] {manifest.success_count} solved or loaded, {manifest.skipped_count} skipped, "
          f"{manifest.failed_count} failed; {frames} frames in {summary['seconds']} s; manifest {mpath}", flush=True)
    for w in written[:12]:
        print(f"  {w}")
    if len(written) > 12:
        print(f"  ... and {len(written) - 12} more (see the manifest)")
    if "rendered" in summary:
        print(f"[retarget_jax] rendered {len(summary['rendered'])} file(s) beside the results"
              + (f", {len(summary['render_failed'])} clip(s) could not be drawn" if summary["render_failed"] else ""),
              flush=True)
    return summary


def _render_options(cfg: RunConfig):
    """RenderOptions of ``render`` (None when nothing is to be rendered)."""
    r = cfg.render
    if not r.video and not r.stills:
        return None
    from retarget_jax.render import RenderOptions

    return RenderOptions(width=r.width, height=r.height, layout=r.layout, fps=r.fps)


def _render_outputs(cfg: RunConfig, manifest, mpath: Path, robot, options) -> tuple[list[str], list[dict]]:
    """Draw every result the batch wrote or kept: ``<result>.mp4`` and/or stills beside it.
    A clip that cannot be drawn is reported and the others still are."""
    from tqdm import tqdm

    from retarget_jax.errors import RetargetError
    from retarget_jax.io import load_result, read_robot_motion
    from retarget_jax.manifest import manifest_path
    from retarget_jax.render import parse_frames, render_stem, render_stills, render_video

    done: list[str] = []
    failed: list[dict] = []
    records = [r for r in manifest.records if r.status in ("success", "skipped") and r.output]
    for rec in tqdm(records, desc="render", unit="clip", file=sys.stderr, disable=not cfg.batch.progress):
        outputs = [manifest_path(mpath, o) for o in rec.provenance.get("outputs", [rec.output])]
        path = next((o for o in outputs if o.suffix == ".npz" and not o.name.endswith(".mjlab.npz")), outputs[0])
        stem = render_stem(path)
        try:
            if path.name.endswith(".mjlab.npz"):
                result = read_robot_motion(path, "mjlab_npz", robot)
            elif path.suffix == ".pkl":
                result = read_robot_motion(path, "gmr_pkl", robot)
            else:
                result = load_result(path)
            name = Path(rec.motion).name
            if cfg.render.stills:
                frames = parse_frames(list(cfg.render.stills), result.num_frames, where="render.stills")
                done += [str(p) for p in render_stills(result, robot, frames, path.parent, stem=stem,
                                                       options=options, name=name)]
            if cfg.render.video:
                done.append(str(render_video(result, robot, path.with_name(f"{stem}.mp4"), options=options,
                                             name=name)))
        except (RetargetError, OSError) as e:
            failed.append({"job_id": rec.job_id, "error_type": type(e).__name__, "message": str(e)})
            print(f"  RENDER FAILED {rec.job_id}: {type(e).__name__}: {e}", file=sys.stderr)
    return done, failed


def typed_config(cfg: DictConfig) -> RunConfig:
    """The composed config as a RunConfig. Merging into the schema also rejects keys that
    were appended with ``+key=...`` (Hydra lets those through a structured config)."""
    from retarget_jax.errors import ConfigError

    if "hydra" in cfg:  # compose(return_hydra_config=True): Hydra's own section is not ours
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.to_container(cfg, resolve=True))
    except Exception as e:  # omegaconf's errors name the key and the expected type
        raise ConfigError(f"bad config: {e}") from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def _hydra_output_dir(cfg: RunConfig) -> str:
    """Where a Hydra job writes: its run directory (``outputs/<name>``; in a multirun
    ``multirun/<name>/<job num>_<overrides>``), or, when ``output.dir`` is set, that
    directory (plus the job's own subdirectory in a multirun)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if cfg.output.dir is None:
        return str(run_dir)
    if hc.mode == RunMode.MULTIRUN:
        return str(Path(cfg.output.dir) / run_dir.name)
    return cfg.output.dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> None:
    run = typed_config(cfg)
    run.output.dir = _hydra_output_dir(run)
    execute(run)


if __name__ == "__main__":
    main()
