"""The dataset spec: one YAML file naming every source and every setting of a build (host).

Stage: dataset (after the batch driver). Host code only; nothing here compiles or solves.

:func:`load_spec` reads the YAML and returns a typed, frozen :class:`DatasetSpec`. Every
problem fails before any work, as a :class:`~retarget_jax.errors.DatasetSpecError` that
names the file and the key (``sources[2].weight``), what was expected and what was found;
an unknown key lists the valid ones. Relative ``input`` paths are resolved against the
spec file's folder. The reference table of every key is in docs/datasets.md (The spec).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from retarget_jax.errors import DatasetSpecError
from retarget_jax.formats import MotionFormat
from retarget_jax.solve.gauss_newton import SolverOptions

#: spec ``type`` -> input format name (:mod:`retarget_jax.formats`); ``bvh`` takes its
#: format from ``bvh_format``, ``npz`` is detected per file (our result npz or mjlab npz)
SOURCE_TYPES: dict[str, str | None] = {
    "bvh": None,
    "bvh_lafan1": "bvh_lafan1",
    "bvh_nokov": "bvh_nokov",
    "bvh_hc_mocap": "bvh_hc_mocap",
    "amass": "amass",
    "smpl": "smpl",
    "smplh": "smplh",
    "smplx": "smplx",
    "keypoints": "keypoints",
    "pkl": "gmr_pkl",
    "gmr_pkl": "gmr_pkl",
    "seed_csv": "seed_csv",
    "mjlab_npz": "mjlab_npz",
    "npz": None,
}
#: ``bvh_format`` of a ``type: bvh`` source -> input format; ``generic`` needs ``joint_map``
BVH_FORMATS = {"lafan1": "bvh_lafan1", "nokov": "bvh_nokov", "hc_mocap": "bvh_hc_mocap", "generic": "bvh"}
#: the format name of ``type: npz`` sources (our result npz or an mjlab npz, told apart by their keys)
NPZ_AUTO = "npz"
GROUND_ALIGN = ("none", "clip_min_foot")
SPLITS = ("train", "val")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One source of a dataset: a folder (or one file) of clips in one format.

    Attributes:
        name: unique within the spec; the first part of every clip id (``<name>/<path>``).
        type: the spec's ``type`` as written (``bvh``, ``pkl``, ``npz``, ...).
        format: the input format it resolves to (:class:`~retarget_jax.formats.MotionFormat`
            value), or ``npz`` for result / mjlab npz detected per file.
        input: the folder or file, absolute.
        pattern: glob below a folder (None: the format's default, e.g. ``**/*.bvh``).
        weight: sampling weight of every clip of the source (> 0).
        max_frames: keep at most this many frames of a clip, at ``target_fps`` (0: all).
        joint_map, recipe, body_model_dir, gender: reader and solver options of human formats.
    """

    name: str
    type: str
    format: str
    input: Path
    pattern: str | None = None
    weight: float = 1.0
    max_frames: int = 0
    bvh_format: str | None = None
    joint_map: str | None = None
    recipe: str | None = None
    body_model_dir: str | None = None
    gender: str | None = None

    @property
    def is_human(self) -> bool:
        """Whether clips of this source are retargeted (a solve), not converted."""
        return self.format != NPZ_AUTO and not MotionFormat(self.format).is_robot_space


@dataclasses.dataclass(frozen=True)
class PreprocessSpec:
    """What happens to every clip after it is retargeted or loaded, before it is packed.

    ``None`` switches a filter off. Heights are metres above the ground after alignment.
    """

    normalize_root_xy: bool = True
    ground_align: str = "clip_min_foot"
    min_frames: int = 30
    max_root_lin_vel: float | None = 6.0
    min_peak_body_height: float | None = 0.4
    max_all_off_ground_s: float | None = 1.0
    feet: tuple[str, ...] | None = None
    contact_height: float = 0.05
    contact_speed: float = 0.3


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """How human sources feed the solver (:class:`~retarget_jax.batch.worker.RetargetWorker`)."""

    max_batch: int = 64
    window: int | None = 1024
    overlap: int = 64
    buckets: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A whole dataset build, as resolved from its YAML file (see the module docstring)."""

    name: str
    robot: str
    sources: tuple[SourceSpec, ...]
    target_fps: float = 30.0
    val_percent: float = 5.0
    hash_salt: str = ""
    preprocess: PreprocessSpec = dataclasses.field(default_factory=PreprocessSpec)
    solver: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch: BatchSpec = dataclasses.field(default_factory=BatchSpec)
    max_shard_mb: float = 256.0
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as resolved (absolute inputs, every default filled in), JSON-able."""
        d = dataclasses.asdict(self)
        d.pop("path")
        d["solver"] = dict(self.solver)
        for s in d["sources"]:
            s["input"] = str(s["input"])
        return _jsonable(d)

    def config_hash(self) -> str:
        """sha256 (16 hex digits) of :meth:`to_dict`: what the build's output depends on."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (YAML keeps the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_spec(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> DatasetSpec:
    """Read and check a dataset spec YAML (see the module docstring).

    ``overrides`` (the Hydra entry's ``set``) are merged into the file's mappings before the
    checks: ``{"val_percent": 10, "preprocess": {"min_frames": 10}}``; a list is replaced whole.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetSpecError(path, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetSpecError(path, None, f"cannot read: {e}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise DatasetSpecError(path, None, f"not valid YAML: {e}") from None
    if overrides:
        data = _merge(data, overrides)
    return spec_from_dict(data, where=path, base_dir=path.parent)


def _merge(base: Any, over: Mapping[str, Any]) -> Any:
    if not isinstance(base, dict):
        return dict(over)
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k), v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def spec_from_dict(
    data: Any, *, where: str | os.PathLike = "<spec>", base_dir: str | os.PathLike | None = None
) -> DatasetSpec:
    """A :class:`DatasetSpec` from a parsed YAML mapping; relative inputs are taken from
    ``base_dir`` (default: the current folder)."""
    c = _Checker(Path(where) if not isinstance(where, Path) else where)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    top = c.mapping(
        data,
        None,
        required=("name", "robot", "sources"),
        optional=("target_fps", "val_percent", "hash_salt", "preprocess", "solver", "batch", "max_shard_mb"),
    )
    name = c.name(top["name"], "name")
    robot = c.string(top["robot"], "robot")
    if robot.lower().endswith(".xml") and not Path(robot).is_absolute():
        robot = str((base / robot).resolve())
    target_fps = c.number(top.get("target_fps", 30.0), "target_fps", low=0.0, low_open=True)
    val_percent = c.number(top.get("val_percent", 5.0), "val_percent", low=0.0, high=100.0)
    salt = top.get("hash_salt", "")
    salt = "" if salt is None else c.string(salt, "hash_salt", empty_ok=True)
    max_shard_mb = c.number(top.get("max_shard_mb", 256.0), "max_shard_mb", low=0.0, low_open=True)
    pre = _preprocess(c, top.get("preprocess"))
    batch = _batch(c, top.get("batch"))
    solver = _solver(c, top.get("solver"))
    raw_sources = top["sources"]
    if not isinstance(raw_sources, list) or not raw_sources:
        raise DatasetSpecError(
            c.path, "sources", f"expected a non-empty list of sources, found {_describe(raw_sources)}"
        )
    sources = []
    for i, s in enumerate(raw_sources):
        sources.append(_source(c, s, f"sources[{i}]", base))
    names = [s.name for s in sources]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise DatasetSpecError(
                c.path, f"sources[{i}].name", f"source name '{n}' is used twice (sources[{names.index(n)}] too)"
            )
    return DatasetSpec(
        name=name,
        robot=robot,
        sources=tuple(sources),
        target_fps=target_fps,
        val_percent=val_percent,
        hash_salt=salt,
        preprocess=pre,
        solver=solver,
        batch=batch,
        max_shard_mb=max_shard_mb,
        path=c.path,
    )


def _source(c: _Checker, data: Any, key: str, base: Path) -> SourceSpec:
    fields = [f.name for f in dataclasses.fields(SourceSpec) if f.name != "format"]
    s = c.mapping(
        data,
        key,
        required=("name", "type", "input"),
        optional=tuple(f for f in fields if f not in ("name", "type", "input")),
    )
    name = c.name(s["name"], f"{key}.name")
    typ = c.string(s["type"], f"{key}.type")
    if typ not in SOURCE_TYPES:
        raise DatasetSpecError(
            c.path, f"{key}.type", f"unknown source type '{typ}'; valid: {', '.join(sorted(SOURCE_TYPES))}"
        )
    opt = {
        k: (None if s.get(k) is None else c.string(s[k], f"{key}.{k}"))
        for k in ("pattern", "bvh_format", "joint_map", "recipe", "body_model_dir", "gender")
    }
    fmt = SOURCE_TYPES[typ]
    if typ == "bvh":
        bf = opt["bvh_format"] or ("generic" if opt["joint_map"] else None)
        if bf is None:
            raise DatasetSpecError(
                c.path,
                f"{key}.bvh_format",
                f"a 'bvh' source needs bvh_format ({', '.join(BVH_FORMATS)}) or a joint_map",
            )
        if bf not in BVH_FORMATS:
            raise DatasetSpecError(
                c.path, f"{key}.bvh_format", f"unknown BVH format '{bf}'; valid: {', '.join(BVH_FORMATS)}"
            )
        if bf == "generic" and not opt["joint_map"]:
            raise DatasetSpecError(
                c.path, f"{key}.joint_map", "bvh_format 'generic' needs a joint_map (a shipped map name or a YAML file)"
            )
        fmt = BVH_FORMATS[bf]
    elif opt["bvh_format"] is not None:
        raise DatasetSpecError(
            c.path, f"{key}.bvh_format", f"only 'bvh' sources take a bvh_format, this one is '{typ}'"
        )
    fmt = fmt or NPZ_AUTO
    inp = Path(c.string(s["input"], f"{key}.input")).expanduser()
    inp = (inp if inp.is_absolute() else base / inp).resolve()
    if not inp.exists():
        raise DatasetSpecError(c.path, f"{key}.input", f"{inp} does not exist")
    for k in ("joint_map", "recipe", "body_model_dir"):  # a file path is taken from the spec's folder
        v = opt[k]
        if v and (("/" in v) or v.endswith((".yaml", ".yml"))) and not Path(v).is_absolute():
            opt[k] = str((base / v).resolve())
    weight = c.number(s.get("weight", 1.0), f"{key}.weight", low=0.0, low_open=True)
    max_frames = c.integer(s.get("max_frames", 0), f"{key}.max_frames", low=0)
    if opt["gender"] is not None and opt["gender"] not in ("neutral", "male", "female"):
        raise DatasetSpecError(c.path, f"{key}.gender", f"expected neutral, male or female, found '{opt['gender']}'")
    return SourceSpec(name=name, type=typ, format=fmt, input=inp, weight=weight, max_frames=max_frames, **opt)


def _preprocess(c: _Checker, data: Any) -> PreprocessSpec:
    if data is None:
        return PreprocessSpec()
    names = tuple(f.name for f in dataclasses.fields(PreprocessSpec))
    p = c.mapping(data, "preprocess", required=(), optional=names)
    d = PreprocessSpec()
    out: dict[str, Any] = {}
    if "normalize_root_xy" in p:
        out["normalize_root_xy"] = c.boolean(p["normalize_root_xy"], "preprocess.normalize_root_xy")
    if "ground_align" in p:
        g = "none" if p["ground_align"] is None else c.string(p["ground_align"], "preprocess.ground_align")
        if g not in GROUND_ALIGN:
            raise DatasetSpecError(
                c.path, "preprocess.ground_align", f"unknown value '{g}'; valid: {', '.join(GROUND_ALIGN)}"
            )
        out["ground_align"] = g
    if "min_frames" in p:
        out["min_frames"] = 0 if p["min_frames"] is None else c.integer(p["min_frames"], "preprocess.min_frames", low=0)
    for k in ("max_root_lin_vel", "max_all_off_ground_s"):
        if k in p:
            out[k] = None if p[k] is None else c.number(p[k], f"preprocess.{k}", low=0.0, low_open=True)
    if "min_peak_body_height" in p:
        k = "min_peak_body_height"
        out[k] = None if p[k] is None else c.number(p[k], f"preprocess.{k}")
    for k in ("contact_height", "contact_speed"):
        if k in p:
            out[k] = c.number(p[k], f"preprocess.{k}", low=0.0, low_open=True)
    if p.get("feet") is not None:
        feet = p["feet"]
        if not isinstance(feet, list) or not feet or not all(isinstance(f, str) and f for f in feet):
            raise DatasetSpecError(
                c.path, "preprocess.feet", f"expected a non-empty list of robot body names, found {_describe(feet)}"
            )
        out["feet"] = tuple(feet)
    return dataclasses.replace(d, **out)


def _batch(c: _Checker, data: Any) -> BatchSpec:
    if data is None:
        return BatchSpec()
    names = tuple(f.name for f in dataclasses.fields(BatchSpec))
    b = c.mapping(data, "batch", required=(), optional=names)
    out: dict[str, Any] = {}
    if "max_batch" in b:
        out["max_batch"] = c.integer(b["max_batch"], "batch.max_batch", low=1)
    if "window" in b:
        out["window"] = None if b["window"] is None else c.integer(b["window"], "batch.window", low=2)
    if "overlap" in b:
        out["overlap"] = c.integer(b["overlap"], "batch.overlap", low=0)
    if b.get("buckets") is not None:
        bk = b["buckets"]
        if (
            not isinstance(bk, list)
            or not bk
            or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in bk)
        ):
            raise DatasetSpecError(
                c.path, "batch.buckets", f"expected a list of positive frame counts, found {_describe(bk)}"
            )
        out["buckets"] = tuple(sorted(bk))
    return dataclasses.replace(BatchSpec(), **out)


def _solver(c: _Checker, data: Any) -> dict[str, Any]:
    """``solver``: keyword arguments of :class:`~retarget_jax.solve.SolverOptions` (its own
    fields are the valid keys, so the spec follows the solver as it changes)."""
    if data is None:
        return {}
    names = tuple(f.name for f in dataclasses.fields(SolverOptions))
    s = c.mapping(data, "solver", required=(), optional=names)
    out = {}
    for k, v in s.items():
        if isinstance(v, bool) or not isinstance(v, int | float) and v is not None:
            raise DatasetSpecError(c.path, f"solver.{k}", f"expected a number, found {_describe(v)}")
        out[k] = v
    return out


def _describe(v: Any) -> str:
    r = repr(v)
    return f"{type(v).__name__} {r[:60]}{'...' if len(r) > 60 else ''}"


@dataclasses.dataclass
class _Checker:
    """Type and range checks that raise DatasetSpecError naming the file and the key."""

    path: Path

    def fail(self, key: str | None, message: str) -> DatasetSpecError:
        return DatasetSpecError(self.path, key, message)

    def mapping(
        self, data: Any, key: str | None, *, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, f"expected a mapping, found {_describe(data)}")
        valid = (*required, *optional)
        for k in data:
            if k not in valid:
                full = f"{key}.{k}" if key else str(k)
                raise self.fail(full, f"unknown key '{k}'; valid keys here: {', '.join(sorted(valid))}")
        for k in required:
            if k not in data or data[k] is None:
                raise self.fail(f"{key}.{k}" if key else k, "required key is missing")
        return data

    def string(self, v: Any, key: str, *, empty_ok: bool = False) -> str:
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise self.fail(key, f"expected a string, found {_describe(v)}")
        s = str(v)
        if not s and not empty_ok:
            raise self.fail(key, "expected a non-empty string")
        return s

    def name(self, v: Any, key: str) -> str:
        s = self.string(v, key)
        if not _NAME.match(s):
            raise self.fail(key, f"'{s}' is not a valid name (letters, digits, '_', '.', '-'; it names a folder)")
        return s

    def number(
        self, v: Any, key: str, *, low: float | None = None, high: float | None = None, low_open: bool = False
    ) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
            raise self.fail(key, f"expected a finite number, found {_describe(v)}")
        x = float(v)
        if low is not None and (x < low or (low_open and x == low)):
            raise self.fail(key, f"expected a number {'>' if low_open else '>='} {low:g}, found {x:g}")
        if high is not None and x > high:
            raise self.fail(key, f"expected a number <= {high:g}, found {x:g}")
        return x

    def integer(self, v: Any, key: str, *, low: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"expected an integer, found {_describe(v)}")
        if low is not None and v < low:
            raise self.fail(key, f"expected an integer >= {low}, found {v}")
        return int(v)

    def boolean(self, v: Any, key: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(key, f"expected true or false, found {_describe(v)}")
        return v
