"""Motion-library configs and build options (stage: motion libraries, host code).

A motion config lists the clips of one split in the layout ProtoMotions' AMASS configs use::

    motions:
      - file: CMU/45/45_01_poses.npz     # relative to the source root
        fps: 120.0                       # optional: the clip's true rate (overrides the file's)
        weight: 1.0                      # optional, >= 0, default 1
        format: amass                    # optional: overrides the build's --format
        sub_motions:                     # optional: none = the whole clip
          - timings: {start: 0.0, end: 3.8}   # seconds on the clip's clock; end optional
            weight: 0.5                  # optional: this slice's weight (default: the entry's)

Every clip and every slice becomes one *row* of the build (one motion of the library). A
malformed config raises :class:`~retarget_jax.errors.MotionConfigError` naming the YAML file
and the field (``motions[3].sub_motions[0].timings.end``) before anything is built. Keys
this reader does not use (ProtoMotions' ``idx``, ``labels``, ...) are kept out of the
build with one warning naming them, so configs written for ProtoMotions load as they are.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path
from typing import Any

import yaml

from retarget_jax.errors import ConfigError, MotionConfigError
from retarget_jax.motion.human_motion import fps_problem

__all__ = ["BODY_MODEL_TARGETS", "BuildOptions", "ContactRule", "MotionConfig", "MotionRow", "load_motion_config"]

#: Targets whose states come from the SMPL-family body model (FK, no solve).
BODY_MODEL_TARGETS = ("smpl", "smplx")

_ENTRY_KEYS = {"file", "fps", "weight", "format", "sub_motions"}
_SUB_KEYS = {"timings", "weight"}
_TIMING_KEYS = {"start", "end"}


@dataclasses.dataclass(frozen=True)
class MotionRow:
    """One motion of a split: a clip, or a slice of one.

    Attributes:
        config: the config's name (its file stem, e.g. ``train``).
        row: position of this row in the config (0, 1, ...), over entries and their slices.
        file: the clip's path as written in the config (relative to the source root).
        fps: the clip's frame rate from the config, or None (use the file's).
        weight: sampling weight (>= 0).
        start: slice start, seconds on the clip's clock.
        end: slice end, seconds, or None (the clip's end).
        format: the entry's input format, or None (the build's).
    """

    config: str
    row: int
    file: str
    fps: float | None
    weight: float
    start: float = 0.0
    end: float | None = None
    format: str | None = None

    @property
    def job_id(self) -> str:
        return f"{self.config}/{self.row:05d}"

    @property
    def source_key(self) -> tuple:
        """What the motion's states depend on (rows of two configs with one key share them)."""
        return (self.file, self.fps, self.start, self.end, self.format)


@dataclasses.dataclass(frozen=True)
class MotionConfig:
    """A parsed motion config: its file, name (file stem) and rows in order."""

    path: Path
    name: str
    rows: tuple[MotionRow, ...]


def _number(path, field: str, v: Any, *, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise MotionConfigError(path, field, f"expected a number, found {type(v).__name__} {v!r}")
    x = float(v)
    if not math.isfinite(x):
        raise MotionConfigError(path, field, f"expected a finite number, found {v!r}")
    if minimum is not None and (x <= minimum if strict else x < minimum):
        raise MotionConfigError(path, field, f"expected a number {'>' if strict else '>='} {minimum:g}, found {x:g}")
    return x


def _mapping(path, field: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise MotionConfigError(path, field, f"expected a mapping, found {type(v).__name__} {v!r}")
    return v


def load_motion_config(path: str | os.PathLike) -> MotionConfig:
    """Read and check one motion config (see the module docstring).

    Raises:
        FileNotFoundError: the file does not exist.
        MotionConfigError: not YAML, no ``motions`` list, or a field is malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"motion config not found: {path}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MotionConfigError(path, None, f"not valid YAML: {e}") from None
    data = _mapping(path, None, data) if data is not None else {}
    motions = data.get("motions")
    if not isinstance(motions, list) or not motions:
        raise MotionConfigError(path, "motions", f"expected a non-empty list of motion entries, found {motions!r}")
    rows: list[MotionRow] = []
    ignored: set[str] = set()
    name = path.stem
    for i, entry in enumerate(motions):
        f = f"motions[{i}]"
        entry = _mapping(path, f, entry)
        ignored |= {f"{k}" for k in entry if k not in _ENTRY_KEYS}
        file = entry.get("file")
        if not isinstance(file, str) or not file.strip():
            raise MotionConfigError(path, f"{f}.file", f"expected a file path, found {file!r}")
        fps = entry.get("fps")
        if fps is not None:
            fps = _number(path, f"{f}.fps", fps)
            bad = fps_problem(fps)
            if bad:
                raise MotionConfigError(path, f"{f}.fps", f"frame rate {bad}")
        weight = _number(path, f"{f}.weight", entry.get("weight", 1.0), minimum=0.0)
        fmt = entry.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise MotionConfigError(path, f"{f}.format", f"expected a format name, found {fmt!r}")
        subs = entry.get("sub_motions")
        if subs is None or subs == []:
            rows.append(MotionRow(name, len(rows), file, fps, weight, 0.0, None, fmt))
            continue
        if not isinstance(subs, list):
            raise MotionConfigError(path, f"{f}.sub_motions", f"expected a list, found {type(subs).__name__}")
        for j, sub in enumerate(subs):
            fs = f"{f}.sub_motions[{j}]"
            sub = _mapping(path, fs, sub)
            ignored |= {f"sub_motions.{k}" for k in sub if k not in _SUB_KEYS}
            timings = _mapping(path, f"{fs}.timings", sub.get("timings", {}) or {})
            ignored |= {f"timings.{k}" for k in timings if k not in _TIMING_KEYS}
            start = _number(path, f"{fs}.timings.start", timings.get("start", 0.0), minimum=0.0)
            end = timings.get("end")
            if end is not None:
                end = _number(path, f"{fs}.timings.end", end)
                if end <= start:
                    raise MotionConfigError(
                        path, f"{fs}.timings.end", f"the slice must end after it starts ({start:g} s), found {end:g} s"
                    )
            w = _number(path, f"{fs}.weight", sub["weight"], minimum=0.0) if "weight" in sub else weight
            rows.append(MotionRow(name, len(rows), file, fps, w, start, end, fmt))
    if ignored:
        warnings.warn(f"{path}: keys not used by the motion-library build: {', '.join(sorted(ignored))}", stacklevel=2)
    if not any(r.weight > 0 for r in rows):
        raise MotionConfigError(path, "motions", "every weight is 0: nothing could ever be sampled")
    return MotionConfig(path, name, tuple(rows))


@dataclasses.dataclass(frozen=True)
class ContactRule:
    """Foot-contact labels of body-model targets: a foot body is in contact where its height
    above the ground is below ``height`` (m) and its speed below ``speed`` (m/s) (the
    thresholds ProtoMotions' AMASS conversion documents)."""

    speed: float = 0.15
    height: float = 0.1

    def __post_init__(self) -> None:
        for k in ("speed", "height"):
            v = getattr(self, k)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ConfigError(f"contacts.{k} must be a positive number, got {v!r}")


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How a build turns rows into states and libraries.

    Attributes:
        target: ``smpl`` / ``smplx`` (body model FK, no solve), a built-in robot name
            (``unitree_g1``, ``unitree_h1``, ``booster_t1``) or an MJCF path.
        output_fps: rate of every state (slices are sampled at ``start + k / output_fps``).
        shards: write each library as this many files balanced by frames (1 = one file).
        force_remake: recompute every per-motion state and rewrite every library.
        format: input format of the files (see ``retarget-jax formats``), unless an entry says.
        prefix: library file names are ``<prefix>_<config name>.npz``.
        body_model_dir, gender: SMPL-family model files (default: built-in neutral skeletons).
        joint_map: joint map for ``bvh`` / ``keypoints`` inputs.
        recipe: retargeting recipe for robot targets (default: the shipped one for the format).
        max_iters: full-rate solver iterations (robot targets; None: the solver's default).
        window, overlap: long clips are solved in overlapping windows (robot targets).
        chunk: rows solved per call (bounds memory and the work a kill can lose).
        max_batch: clips per device batch of the solve (robot targets).
        contacts: the contact rule of body-model targets.
    """

    target: str
    output_fps: float = 30.0
    shards: int = 1
    force_remake: bool = False
    format: str = "amass"
    prefix: str = "amass"
    body_model_dir: str | None = None
    gender: str | None = None
    joint_map: str | None = None
    recipe: str | None = None
    max_iters: int | None = None
    window: int | None = 1024
    overlap: int = 64
    chunk: int = 256
    max_batch: int = 64
    contacts: ContactRule = dataclasses.field(default_factory=ContactRule)

    def __post_init__(self) -> None:
        bad = fps_problem(float(self.output_fps))
        if bad:
            raise ConfigError(f"output_fps: frame rate {bad}")
        if int(self.shards) < 1:
            raise ConfigError(f"shards must be >= 1, got {self.shards}")
        if min(int(self.max_iters or 1), int(self.chunk), int(self.max_batch)) < 1:
            raise ConfigError(
                f"max_iters, chunk and max_batch must be >= 1, got {self.max_iters}, {self.chunk} and {self.max_batch}"
            )
        if not self.prefix or "/" in self.prefix:
            raise ConfigError(f"prefix must be a plain file-name prefix, got {self.prefix!r}")

    @property
    def is_body_model(self) -> bool:
        return self.target in BODY_MODEL_TARGETS
