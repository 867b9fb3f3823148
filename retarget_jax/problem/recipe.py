"""Recipes: which human joint drives which robot body, with what weight (host side).

A recipe is plain data (YAML in ``configs/recipes/``) turned into typed objects here;
every name in it is checked once, against the human joint vocabulary and the robot,
by :func:`retarget_jax.problem.compile.compile_problem`.

Orientation targets need to know how a source skeleton's joint frames sit in a reference
T-pose (its *conventions*) and the robot joint angles of that same T-pose
(``robot_reference_pose``). The constant offset between a human joint frame and its
robot body frame is then derived, not typed by hand:
``R_offset = C_human^T R_robot(reference pose)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from retarget_jax.errors import ConfigError, UnknownNameError
from retarget_jax.files.resources import config_dir
from retarget_jax.motion.conventions import get_conventions
from retarget_jax.motion.skeleton import LIMBS, HumanJoint

LIMB_NAMES = tuple(limb.name for limb in LIMBS)


def source_conventions(name: str) -> Mapping[HumanJoint, np.ndarray]:
    """Reference T-pose joint frames (3x3, columns = joint axes in a Z-up, +X-facing world).

    A motion normally brings its own (``HumanMotion.conventions``, set by its reader); a
    recipe's ``source_conventions`` is the fallback for motions built without one.
    """
    return get_conventions(name)


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """One human joint driving one robot body.

    ``offset`` is the tracked point in the body frame (metres). ``offset_z_from_ground``
    lifts the target by the human's rest-height difference between this joint and the
    ground joints (ankles), so a flat human foot asks for a flat robot foot (toes).
    ``flat_with`` (orientation targets) levels the bone from this joint to that one at
    rest: a human ankle frame points down the foot, a robot ankle frame is level, and
    the foot's rest pitch (from the clip's ankle and toe heights) is taken out.
    ``level_with`` lowers the target by the clip's median height of this joint above the
    mean of those joints (scaled): a pelvis target levelled with the hips sits at hip
    height whether the source's root joint is 2 cm (LAFAN1) or 9 cm (SMPL) above them.
    ``level_if_unknown`` (orientation targets): when the source has no frame for this
    joint (keypoints, a skeleton of unknown conventions), ask for the body as it is in
    the robot's reference pose, turned to the hips' heading, instead of dropping the
    target: a foot stays level rather than free to roll into the floor.
    ``rotation_offset`` (orientation targets): a rotation vector (radians, axis times
    angle, in the body frame) applied after the derived offset; 0 by hand,
    fitted by ``retarget-jax calibrate``.
    """

    human: HumanJoint
    body: str
    position_weight: float = 1.0
    orientation_weight: float = 0.0
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    offset_z_from_ground: bool = False
    flat_with: HumanJoint | None = None
    level_with: tuple[HumanJoint, ...] = ()
    level_if_unknown: bool = False
    rotation_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class ScaleGroup:
    """Bones whose length is scaled by one ratio, measured on a chain of both skeletons.

    ratio = |p_robot(robot_chain[1]) - p_robot(robot_chain[0])| at the reference pose
            / human length, where the human length is the sum of the median segment
            lengths from human_chain[0] to [1] (``measure: chain``, for limbs, which bend)
            or the median straight distance between the two (``measure: straight``, for
            the trunk, whose many short segments do not line up with the robot's).
    """

    name: str
    human_chain: tuple[HumanJoint, HumanJoint]
    robot_chain: tuple[str, str]
    bones: tuple[HumanJoint, ...]
    measure: str = "chain"
    robot_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # point in robot_chain[0]'s frame
    # True: the ratio scales only the bones' component along the hip axis (left hip minus
    # right hip, per frame); the rest follows the root scale. For a robot whose legs are
    # set wider than a scaled human's: SMPL's hip bones also drop 9 cm from the root
    # joint, and that drop must not be stretched with the width.
    lateral: bool = False
    #: multiplies the measured ratio (1 by hand; ``retarget-jax calibrate`` fits it)
    factor: float = 1.0


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    robot: str
    source_conventions: str  # fallback joint-frame table ("" = none); see source_conventions()
    root_human: HumanJoint
    root_body: str
    targets: tuple[TargetSpec, ...]
    scale_groups: tuple[ScaleGroup, ...]
    root_scale_group: str
    robot_reference_pose: Mapping[str, float]
    default_pose: Mapping[str, float]
    ground_joints: tuple[HumanJoint, ...]  # human joints that touch the floor (ankles)
    ground_bodies: tuple[str, ...]  # robot bodies that carry the soles
    #: metres added to the measured vertical shift that puts the soles on the floor
    ground_offset: float = 0.0
    #: per-limb multipliers of the direction cost (names: retarget_jax.motion.skeleton.LIMBS;
    #: unlisted limbs take the table's default, 1 but 0 for the forearms; 0 switches one off)
    limb_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)


_KNOWN_KEYS = {
    "name",
    "robot",
    "source_conventions",
    "description",
    "root",
    "targets",
    "scale_groups",
    "root_scale_group",
    "robot_reference_pose",
    "default_pose",
    "ground",
    "limbs",
}


def _check_keys(d: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(known)}")


def recipe_from_dict(d: Mapping[str, Any], *, where: str = "recipe") -> Recipe:
    """Build a typed Recipe from plain data (a parsed YAML file or an OmegaConf container)."""
    d = dict(d)
    _check_keys(d, _KNOWN_KEYS, where)
    try:
        targets = []
        for i, t in enumerate(d["targets"]):
            t = dict(t)
            _check_keys(t, {f.name for f in dataclasses.fields(TargetSpec)}, f"{where}: targets[{i}]")
            targets.append(
                TargetSpec(
                    human=HumanJoint.parse(t["human"], where=f"{where}: targets[{i}].human"),
                    body=str(t["body"]),
                    position_weight=float(t.get("position_weight", 1.0)),
                    orientation_weight=float(t.get("orientation_weight", 0.0)),
                    offset=tuple(float(x) for x in t.get("offset", (0.0, 0.0, 0.0))),
                    offset_z_from_ground=bool(t.get("offset_z_from_ground", False)),
                    flat_with=(
                        HumanJoint.parse(t["flat_with"], where=f"{where}: targets[{i}].flat_with")
                        if t.get("flat_with") is not None
                        else None
                    ),
                    level_with=tuple(
                        HumanJoint.parse(j, where=f"{where}: targets[{i}].level_with") for j in t.get("level_with", ())
                    ),
                    level_if_unknown=bool(t.get("level_if_unknown", False)),
                    rotation_offset=tuple(float(x) for x in t.get("rotation_offset", (0.0, 0.0, 0.0))),
                )
            )
            for key in ("offset", "rotation_offset"):
                if len(getattr(targets[-1], key)) != 3:
                    raise ConfigError(f"{where}: targets[{i}].{key} must have 3 numbers")
            if targets[-1].position_weight < 0 or targets[-1].orientation_weight < 0:
                raise ConfigError(f"{where}: targets[{i}]: weights must be >= 0")
        groups = []
        for gname, g in dict(d["scale_groups"]).items():
            g = dict(g)
            _check_keys(
                g,
                {"human_chain", "robot_chain", "bones", "measure", "robot_offset", "lateral", "factor"},
                f"{where}: scale_groups.{gname}",
            )
            measure = str(g.get("measure", "chain"))
            if measure not in ("chain", "straight"):
                raise ConfigError(
                    f"{where}: scale_groups.{gname}.measure must be 'chain' or 'straight', got '{measure}'"
                )
            hc = tuple(
                HumanJoint.parse(j, where=f"{where}: scale_groups.{gname}.human_chain") for j in g["human_chain"]
            )
            rc = tuple(str(b) for b in g["robot_chain"])
            if len(hc) != 2 or len(rc) != 2:
                raise ConfigError(f"{where}: scale_groups.{gname}: chains need exactly 2 entries")
            bones = tuple(HumanJoint.parse(j, where=f"{where}: scale_groups.{gname}.bones") for j in g["bones"])
            groups.append(
                ScaleGroup(
                    str(gname),
                    hc,
                    rc,
                    bones,
                    measure,
                    tuple(float(x) for x in g.get("robot_offset", (0, 0, 0))),  # type: ignore[arg-type]
                    bool(g.get("lateral", False)),
                    float(g.get("factor", 1.0)),
                )
            )
            if not (np.isfinite(groups[-1].factor) and groups[-1].factor > 0):
                raise ConfigError(
                    f"{where}: scale_groups.{gname}.factor must be finite and > 0, got {groups[-1].factor}"
                )
        root = dict(d["root"])
        ground = dict(d.get("ground", {}))
        _check_keys(ground, {"human", "bodies", "offset"}, f"{where}: ground")
        limbs = {str(k): float(v) for k, v in dict(d.get("limbs") or {}).items()}
        for k, v in limbs.items():
            if k not in LIMB_NAMES:
                raise UnknownNameError("limb", k, list(LIMB_NAMES), where=f"{where}: limbs")
            if not (np.isfinite(v) and v >= 0):
                raise ConfigError(f"{where}: limbs.{k} must be finite and >= 0, got {v}")
        return Recipe(
            name=str(d["name"]),
            robot=str(d["robot"]),
            source_conventions=str(d.get("source_conventions") or ""),
            root_human=HumanJoint.parse(root["human"], where=f"{where}: root.human"),
            root_body=str(root["body"]),
            targets=tuple(targets),
            scale_groups=tuple(groups),
            root_scale_group=str(d["root_scale_group"]),
            robot_reference_pose={str(k): float(v) for k, v in dict(d.get("robot_reference_pose", {})).items()},
            default_pose={str(k): float(v) for k, v in dict(d.get("default_pose", {})).items()},
            ground_joints=tuple(HumanJoint.parse(j, where=f"{where}: ground.human") for j in ground.get("human", ())),
            ground_bodies=tuple(str(b) for b in ground.get("bodies", ())),
            ground_offset=float(ground.get("offset", 0.0)),
            limb_weights=limbs,
        )
    except UnknownNameError:  # a KeyError too, but it is not a missing key
        raise
    except KeyError as e:
        raise ConfigError(f"{where}: missing required key {e}") from None
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError | UnknownNameError):
            raise
        raise ConfigError(f"{where}: {e}") from None


def shipped_recipes() -> list[str]:
    """Names of the recipes in ``configs/recipes/``."""
    return sorted(f.stem for f in (config_dir() / "recipes").glob("*.yaml"))


def _recipe_path(name_or_path: str | Path, base_dir: Path | None = None) -> Path:
    p = Path(name_or_path)
    if p.suffix:
        if not p.is_absolute() and base_dir is not None and (base_dir / p).exists():
            return base_dir / p
        return p
    p = config_dir() / "recipes" / f"{name_or_path}.yaml"
    if not p.exists():
        raise UnknownNameError("recipe", str(name_or_path), shipped_recipes())
    return p


def _recipe_data(p: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Plain data of a recipe file, with ``extends`` resolved (the file's keys win)."""
    if p.resolve() in chain:
        raise ConfigError(f"{p}: 'extends' loops: {' -> '.join(str(c) for c in (*chain, p))}")
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: cannot read recipe: {e}") from e
    if isinstance(data, dict) and "recipe" in data and len(data) == 1:
        data = data["recipe"]
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a recipe must be a mapping, got {type(data).__name__}")
    base = data.pop("extends", None)
    if base is None:
        return data
    merged = _recipe_data(_recipe_path(str(base), p.parent), (*chain, p.resolve()))
    merged.update(data)
    return merged


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load a shipped recipe by name (``configs/recipes/<name>.yaml``) or any YAML file.

    A recipe may start from another with ``extends: <name or path>``: top-level keys of
    the file replace the base's (``targets`` is replaced whole, not merged).
    """
    p = _recipe_path(name_or_path)
    return recipe_from_dict(_recipe_data(p), where=str(p))
