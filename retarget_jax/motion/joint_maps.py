"""Joint maps: a source skeleton's joint names -> canonical roles, units and axes (host).

A joint map is a small YAML file, shipped in ``configs/joint_maps/<name>.yaml`` or
anywhere on disk::

    name: mixamo
    description: Mixamo FBX -> BVH exports   # optional
    length_unit: centimetre   # metre | centimetre | millimetre | inch, or metres per file unit
    up_axis: y                # y (rotated to Z-up by the reader) or z
    conventions: world_tpose_z_forward   # a table of motion.conventions.NAMES, or null
    joints: {mixamorig:Hips: pelvis, mixamorig:LeftUpLeg: left_hip, ...}

``joints`` maps each source joint name to a :class:`~retarget_jax.motion.HumanJoint`
role; a source joint left out of it is dropped by the readers, and a role no source joint
maps to is simply absent from the motion. ``conventions`` names the table of the
skeleton's joint frames in its reference T-pose; ``null`` means the frames are unknown
(or the zero pose is no T-pose) and the solver tracks positions only.

**BVH End Sites.** Many rigs carry wrists, hands, toes or the head top only as End Sites
(a joint's closing ``End Site { OFFSET ... }``, no channels). A map names one as its
joint's name plus ``/End``::

    joints: {forearm.L: left_elbow, forearm.L/End: left_wrist, foot.L/End: left_toe, ...}

The BVH reader then gives that role a position-only joint at the joint's pose plus the
End Site's OFFSET; it takes the joint's orientation (an End Site has no rotation of its
own) and is left out of the conventions table, so no orientation target is built from it.
A joint's second End Site, if any, is ``/End2``. End Sites the map does not name are
ignored; naming one the file lacks raises
:class:`~retarget_jax.errors.UnknownNameError` with the file's joint and End Site names.

``length_unit`` and ``up_axis`` describe BVH files. Keypoint sequences are metres, Z-up
by their format, so :func:`~retarget_jax.motion.keypoints.read_keypoints` uses a map's
``joints`` only.

Every problem raises a typed error naming the file and the field:
:class:`~retarget_jax.errors.UnknownNameError` for an unknown map name, role or
conventions table (with the valid choices), :class:`~retarget_jax.errors.ConfigError`
for anything else.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from retarget_jax.errors import ConfigError, UnknownNameError
from retarget_jax.files.resources import joint_maps_dir
from retarget_jax.motion.conventions import NAMES, get_conventions
from retarget_jax.motion.skeleton import HumanJoint

__all__ = [
    "END_SITE_SUFFIX",
    "JointMap",
    "LENGTH_UNITS",
    "joint_map_from_dict",
    "is_end_site_name",
    "load_joint_map",
    "shipped_joint_maps",
]

#: Unit names accepted by ``length_unit`` -> metres per unit.
LENGTH_UNITS: Mapping[str, float] = types.MappingProxyType(
    {
        "metre": 1.0,
        "meter": 1.0,
        "m": 1.0,
        "centimetre": 0.01,
        "centimeter": 0.01,
        "cm": 0.01,
        "millimetre": 0.001,
        "millimeter": 0.001,
        "mm": 0.001,
        "inch": 0.0254,
        "in": 0.0254,
    }
)
UP_AXES = ("y", "z")
_KEYS = ("name", "description", "length_unit", "up_axis", "conventions", "joints")
_REQUIRED = ("length_unit", "up_axis", "joints")
#: A BVH End Site is named as its joint's name plus this suffix: ``forearm.L/End``.
END_SITE_SUFFIX = "/End"
_END_SITE_NAME = re.compile(re.escape(END_SITE_SUFFIX) + r"\d*$")


def is_end_site_name(name: str) -> bool:
    """Whether a source joint name names a BVH End Site (``<joint>/End``, ``<joint>/End2``)."""
    return bool(_END_SITE_NAME.search(name))


def _err(where: str, field: str | None, message: str) -> ConfigError:
    loc = f"{where}, field '{field}'" if field else where
    return ConfigError(f"{loc}: {message}")


@dataclasses.dataclass(frozen=True)
class JointMap:
    """A source skeleton's joint names mapped to canonical roles.

    Attributes:
        name: the map's name (a shipped map's file stem).
        joints: source joint name -> role, in file order; roles are unique.
        length_scale: metres per file length unit (BVH only).
        up_axis: "y" or "z", the file's up axis (BVH only).
        conventions: name of the reference-frame table
            (:data:`retarget_jax.motion.conventions.NAMES`), or None: joint frames unknown,
            positions only.
        path: file the map was read from ("" when built in code).
        description: free text.
    """

    name: str
    joints: Mapping[str, HumanJoint]
    length_scale: float
    up_axis: str
    conventions: str | None = None
    path: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        where = self.path or f"joint map '{self.name}'"
        parsed: dict[str, HumanJoint] = {}
        seen: dict[HumanJoint, str] = {}
        for src, role in dict(self.joints).items():
            if not isinstance(src, str) or not src.strip():
                raise _err(where, "joints", f"source joint names must be non-empty strings, found {src!r}")
            if is_end_site_name(src) and not _END_SITE_NAME.sub("", src).strip():
                raise _err(
                    where,
                    f"joints.{src}",
                    f"an End Site is named after its joint, '<joint name>{END_SITE_SUFFIX}'; '{src}' names no joint",
                )
            r = HumanJoint.parse(role, where=f"{where}, field 'joints.{src}'")
            if r in seen:
                raise _err(
                    where,
                    f"joints.{src}",
                    f"role '{r.value}' is already mapped from '{seen[r]}'; each role takes one source joint",
                )
            seen[r] = src
            parsed[src] = r
        if not parsed:
            raise _err(where, "joints", "maps no joint")
        if self.up_axis not in UP_AXES:
            raise _err(where, "up_axis", f"expected one of {', '.join(UP_AXES)}, found {self.up_axis!r}")
        if not (
            isinstance(self.length_scale, int | float) and math.isfinite(self.length_scale) and self.length_scale > 0
        ):
            raise _err(where, "length_unit", f"metres per unit must be a positive number, found {self.length_scale!r}")
        if self.conventions is not None:
            if self.conventions not in NAMES:
                raise UnknownNameError(
                    "source convention", str(self.conventions), NAMES, where=f"{where}, field 'conventions'"
                )
        object.__setattr__(self, "joints", types.MappingProxyType(parsed))
        object.__setattr__(self, "length_scale", float(self.length_scale))

    @property
    def roles(self) -> tuple[HumanJoint, ...]:
        return tuple(self.joints.values())

    def conventions_table(self) -> Mapping[HumanJoint, np.ndarray] | None:
        """The joint-frame table named by ``conventions``, or None (positions only)."""
        if self.conventions is None:
            return None
        return get_conventions(self.conventions)

    def matched(self, names: Iterable[str]) -> tuple[str, ...]:
        """The names among ``names`` that this map knows, in the given order."""
        return tuple(n for n in names if n in self.joints)


# ---------------------------------------------------------------------------------------
# Loading


def shipped_joint_maps() -> tuple[str, ...]:
    """Names of the shipped joint maps, sorted."""
    d = joint_maps_dir()
    return tuple(sorted(p.stem for p in d.glob("*.yaml"))) if d.is_dir() else ()


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicated mapping keys (plain YAML keeps the last one)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # the base constructor reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicated key {key!r} (first at line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _length_scale(value: Any, where: str) -> float:
    if isinstance(value, str):
        key = value.strip().lower()
        if key in LENGTH_UNITS:
            return LENGTH_UNITS[key]
        try:
            value = float(key)
        except ValueError:
            raise _err(
                where,
                "length_unit",
                f"unknown unit '{value}'; expected one of {', '.join(LENGTH_UNITS)} "
                "or a positive number of metres per file unit",
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise _err(
            where,
            "length_unit",
            f"expected a unit name ({', '.join(LENGTH_UNITS)}) or a positive number of "
            f"metres per file unit, found {value!r}",
        )
    return float(value)


def joint_map_from_dict(data: Any, *, where: str = "<joint map>", default_name: str = "") -> JointMap:
    """Validate a parsed YAML document into a :class:`JointMap`.

    Raises:
        ConfigError: not a mapping, unknown or missing keys, bad unit or up axis,
            duplicated roles, malformed ``joints``.
        UnknownNameError: an unknown role or conventions table.
    """
    if not isinstance(data, Mapping):
        raise _err(where, None, f"a joint map must be a YAML mapping, found {type(data).__name__}")
    unknown = [k for k in data if k not in _KEYS]
    if unknown:
        raise _err(where, str(unknown[0]), f"unknown key; valid keys: {', '.join(_KEYS)}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise _err(where, missing[0], "missing required key")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise _err(where, "name", f"expected a non-empty string, found {name!r}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise _err(where, "description", f"expected a string, found {description!r}")
    up = data["up_axis"]
    if not isinstance(up, str) or up.lower() not in UP_AXES:
        raise _err(where, "up_axis", f"expected one of {', '.join(UP_AXES)}, found {up!r}")
    conventions = data.get("conventions")
    if conventions is not None and not isinstance(conventions, str):
        raise _err(where, "conventions", f"expected a table name or null, found {conventions!r}")
    joints = data["joints"]
    if not isinstance(joints, Mapping) or not joints:
        raise _err(where, "joints", "expected a non-empty mapping of source joint name -> role")
    for src, role in joints.items():
        if not isinstance(src, str):
            raise _err(
                where,
                "joints",
                f"source joint names must be strings, found {src!r} (quote names YAML reads as numbers or booleans)",
            )
        if not isinstance(role, str | HumanJoint):
            raise _err(where, f"joints.{src}", f"expected a role name, found {role!r}")
    return JointMap(
        name=name,
        joints=dict(joints),
        length_scale=_length_scale(data["length_unit"], where),
        up_axis=up.lower(),
        conventions=conventions,
        path=where if where != "<joint map>" else "",
        description=description,
    )


def load_joint_map(name_or_path: str | os.PathLike | JointMap) -> JointMap:
    """A shipped joint map by name (``configs/joint_maps/<name>.yaml``) or any YAML file.

    A string without a path separator or ``.yaml``/``.yml`` suffix is a shipped name; a
    :class:`JointMap` is returned as is.

    Raises:
        UnknownNameError: no shipped map of that name (lists the shipped names), or an
            unknown role or conventions table in the file.
        ConfigError: the file cannot be read or is invalid (names the file and field).
    """
    if isinstance(name_or_path, JointMap):
        return name_or_path
    text = os.fspath(name_or_path)
    p = Path(text)
    is_path = (
        isinstance(name_or_path, os.PathLike)
        or p.suffix in (".yaml", ".yml")
        or os.sep in text
        or (os.altsep is not None and os.altsep in text)
    )
    if not is_path:
        p = joint_maps_dir() / f"{text}.yaml"
        if not p.is_file():
            raise UnknownNameError("joint map", text, shipped_joint_maps())
    try:
        raw = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: joint map file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read joint map: {e}") from None
    try:
        data = yaml.load(raw, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{p}{line}: invalid YAML: {problem}") from None
    return joint_map_from_dict(data, where=str(p), default_name=p.stem)
