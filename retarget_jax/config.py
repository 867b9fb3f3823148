"""Run settings as typed options (host): the schema of ``python -m retarget_jax.run`` and of
``retarget-jax``, and the one place both front doors turn them into library settings.

The solver, cost-weight, contact and limit groups take their keys and defaults from the
library types (:class:`~retarget_jax.solve.SolverOptions`,
:class:`~retarget_jax.problem.CostWeights`,
:class:`~retarget_jax.problem.contacts.ContactThresholds`,
:class:`~retarget_jax.problem.JointVelocityLimits`): a default changed there is the default
of every front door. :func:`run_settings` builds what a solve needs from a
:class:`RunConfig`; the Hydra driver and ``retarget-jax retarget`` both call it, so the
same clip and the same settings solve with the same options, windows and batch rows.
No Hydra here: it stays in :mod:`retarget_jax.run`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from retarget_jax.buckets import DEFAULT_BUCKETS
from retarget_jax.errors import ConfigError
from retarget_jax.pipeline import ProblemSettings
from retarget_jax.problem.compile import CostWeights, JointVelocityLimits
from retarget_jax.problem.contacts import ContactThresholds
from retarget_jax.robots import load_robot
from retarget_jax.robots.collision import load_height_field
from retarget_jax.robots.spec import BUILTIN_ROBOTS
from retarget_jax.solve.gauss_newton import SolverOptions


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


def _config_fields(source, *, prefix: tuple = (), skip: tuple[str, ...] = ()) -> list[tuple]:
    """(name, type, field) for a config dataclass that takes its keys and defaults from the
    library type ``source`` (a dataclass or equinox Module): one source of truth, so a
    default changed in the library is the default of every front door."""
    out = list(prefix)
    for f in dataclasses.fields(source):
        if f.name in skip or f.name.startswith("_") or f.default is dataclasses.MISSING:
            continue
        typ = type(f.default)
        if typ not in (bool, int, float, str):
            continue
        if "None" in str(f.type):
            typ = typ | None  # e.g. SolverOptions.ground_rows: None means all rows
        out.append((f.name, typ, dataclasses.field(default=f.default)))
    return out


def _make_config(name: str, source, doc: str, **kw):
    cls = dataclasses.make_dataclass(name, _config_fields(source, **kw), namespace={"__doc__": doc})
    cls.__module__ = __name__
    return cls


#: Cost weights (retarget_jax.problem.CostWeights, whose defaults these are); 0 switches a
#: term off. ``smooth`` multiplies the three smooth_* weights (one knob for sweeps).
WeightsConfig = _make_config(
    "WeightsConfig",
    CostWeights,
    "Cost weights: the keys and defaults of retarget_jax.problem.CostWeights, "
    "plus ``smooth``, a factor on the three smooth_* weights.",
    prefix=(("smooth", float, dataclasses.field(default=1.0)),),
)

#: Config group ``solver``: the keys and defaults of retarget_jax.solve.SolverOptions, and the weights.
SolverConfig = _make_config(
    "SolverConfig",
    SolverOptions,
    "Config group ``solver``: the keys and defaults of "
    "retarget_jax.solve.SolverOptions (iterations, levels, tolerances, damping) and the cost weights.",
    prefix=(("weights", WeightsConfig, dataclasses.field(default_factory=WeightsConfig)),),
)

ContactsConfig = _make_config(
    "ContactsConfig",
    ContactThresholds,
    "ContactPlan: detected from the source with the thresholds of "
    "retarget_jax.problem.contacts.ContactThresholds (their defaults), or given by ``path`` (an .npz/.csv "
    "plan for a single input file).",
    prefix=(("path", str | None, dataclasses.field(default=None)),),
)


@dataclasses.dataclass
class LimitsConfig:
    """Joint speed limits (retarget_jax.problem.JointVelocityLimits): rad/s for every joint,
    and per-joint overrides by MJCF joint name."""

    joint_velocity: float = JointVelocityLimits.default
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


def run_robot(cfg: RunConfig):
    """The robot of a run: ``robot.mjcf``, else ``robot.name``; the G1 for the embedded demo."""
    if cfg.robot.mjcf:
        return load_robot(Path(cfg.robot.mjcf).expanduser(), name=cfg.robot.name)
    if cfg.robot.name:
        return load_robot(cfg.robot.name)
    if cfg.input.path is None:
        return load_robot("unitree_g1")  # the embedded demo walk
    raise ConfigError(
        f"no robot given for the {cfg.input.format} input {cfg.input.path}: the driver does not "
        f"guess one. Set robot=<{'|'.join(BUILTIN_ROBOTS)}> (Hydra), --robot (CLI), or robot.mjcf"
    )


def cost_weights(cfg: RunConfig) -> CostWeights:
    """CostWeights of the config: ``smooth`` multiplies the three smooth_* weights, and
    ``plausibility=false`` zeroes the plausibility terms."""
    w = dataclasses.asdict(cfg.solver.weights)
    smooth = w.pop("smooth")
    for k in ("smooth_position", "smooth_rotation", "smooth_joint"):
        w[k] *= smooth
    weights = CostWeights(**w)
    return weights if cfg.plausibility else weights.without_plausibility()


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """What a solve needs of a :class:`RunConfig` (see :func:`run_settings`)."""

    problem: object  # retarget_jax.pipeline.ProblemSettings
    options: SolverOptions
    buckets: tuple[int, ...]
    max_batch: int
    window: int | None
    overlap: int


def solver_options(cfg: RunConfig) -> SolverOptions:
    """The SolverOptions of ``cfg.solver`` (every SolverOptions key the config has)."""
    keys = {f.name for f in dataclasses.fields(SolverOptions)}
    return SolverOptions(**{k: getattr(cfg.solver, k) for k in keys if hasattr(cfg.solver, k)})


def run_settings(cfg: RunConfig) -> RunSettings:
    """Problem settings (weights, rate, contact thresholds, joint speed limits, terrain),
    solver options and batch layout of a run: the one function both front doors call."""
    c = cfg.contacts
    problem = ProblemSettings(
        weights=cost_weights(cfg),
        fps=cfg.input.fps,
        contact_thresholds=ContactThresholds(
            **{f.name: getattr(c, f.name) for f in dataclasses.fields(ContactThresholds)}
        ),
        joint_velocity_limits=JointVelocityLimits(cfg.limits.joint_velocity, dict(cfg.limits.joint_velocity_per_joint)),
        terrain=load_height_field(Path(cfg.terrain).expanduser()) if cfg.terrain else None,
    )
    b = cfg.batch
    return RunSettings(
        problem=problem,
        options=solver_options(cfg),
        buckets=tuple(b.buckets),
        max_batch=b.max_batch,
        window=b.window,
        overlap=b.overlap,
    )
