"""Recipes in and out of a calibration: the fitted recipe's YAML, and a rough start (host).

The fitted recipe is written as a small file that ``extends:`` the one it started from
and carries only the keys calibration changes. ``extends`` replaces top-level keys
whole, so those keys are written whole: every scale group (with its fitted ``factor``),
every target (fitted ``offset`` and ``rotation_offset``) and the ``ground`` block (fitted
``offset``). Floats are written with Python's repr, which reads back to the same double.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from retarget_jax.errors import ConfigError
from retarget_jax.files.atomic import atomic_write_text
from retarget_jax.problem.recipe import Recipe, ScaleGroup, TargetSpec, load_recipe

_ZERO3 = (0.0, 0.0, 0.0)


def rough_recipe(recipe: Recipe, *, name: str | None = None) -> Recipe:
    """The recipe as a first draft for a new robot would have it: every target offset and
    rotation offset 0, every scale factor 1, no ground offset. Its targets, weights, scale
    groups (the chains they are measured on) and poses are kept."""
    return dataclasses.replace(
        recipe,
        name=name or f"{recipe.name}_rough",
        targets=tuple(dataclasses.replace(t, offset=_ZERO3, rotation_offset=_ZERO3) for t in recipe.targets),
        scale_groups=tuple(dataclasses.replace(g, factor=1.0) for g in recipe.scale_groups),
        ground_offset=0.0,
    )


def _group_dict(g: ScaleGroup) -> dict[str, Any]:
    d: dict[str, Any] = {
        "human_chain": [j.value for j in g.human_chain],
        "robot_chain": list(g.robot_chain),
        "bones": [j.value for j in g.bones],
    }
    if g.measure != "chain":
        d["measure"] = g.measure
    if tuple(g.robot_offset) != _ZERO3:
        d["robot_offset"] = [float(x) for x in g.robot_offset]
    if g.lateral:
        d["lateral"] = True
    d["factor"] = float(g.factor)
    return d


def _target_dict(t: TargetSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"human": t.human.value, "body": t.body, "position_weight": float(t.position_weight)}
    if t.orientation_weight:
        d["orientation_weight"] = float(t.orientation_weight)
    if tuple(t.offset) != _ZERO3:
        d["offset"] = [float(x) for x in t.offset]
    if t.offset_z_from_ground:
        d["offset_z_from_ground"] = True
    if t.flat_with is not None:
        d["flat_with"] = t.flat_with.value
    if t.level_with:
        d["level_with"] = [j.value for j in t.level_with]
    if t.level_if_unknown:
        d["level_if_unknown"] = True
    if tuple(t.rotation_offset) != _ZERO3:
        d["rotation_offset"] = [float(x) for x in t.rotation_offset]
    return d


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    """Every key of a recipe as plain data (what ``recipe_from_dict`` reads back)."""
    d: dict[str, Any] = {
        "name": recipe.name,
        "robot": recipe.robot,
        "root": {"human": recipe.root_human.value, "body": recipe.root_body},
        "robot_reference_pose": dict(recipe.robot_reference_pose),
        "default_pose": dict(recipe.default_pose),
        "root_scale_group": recipe.root_scale_group,
        "scale_groups": {g.name: _group_dict(g) for g in recipe.scale_groups},
        "targets": [_target_dict(t) for t in recipe.targets],
    }
    if recipe.source_conventions:
        d["source_conventions"] = recipe.source_conventions
    d.update(_ground_dict(recipe))
    if recipe.limb_weights:
        d["limbs"] = {k: float(v) for k, v in recipe.limb_weights.items()}
    return d


def _ground_dict(recipe: Recipe) -> dict[str, Any]:
    if not (recipe.ground_joints or recipe.ground_bodies or recipe.ground_offset):
        return {}
    return {
        "ground": {
            "human": [j.value for j in recipe.ground_joints],
            "bodies": list(recipe.ground_bodies),
            "offset": float(recipe.ground_offset),
        }
    }


def extends_reference(base: str | Path, output: Path) -> str:
    """How the fitted file names its base: a shipped recipe by name; a file by its path
    relative to the fitted file's folder (absolute if on another drive)."""
    p = Path(base)
    if not p.suffix:
        return str(base)
    try:
        return os.path.relpath(p.resolve(), output.resolve().parent)
    except ValueError:
        return str(p.resolve())


def write_fitted_recipe(path: str | Path, fitted: Recipe, base: str | Path, header: str = "") -> Recipe:
    """Write ``fitted`` as a recipe that extends ``base`` (a shipped name or a YAML path),
    read it back and check it loads to ``fitted``; returns the loaded recipe."""
    path = Path(path)
    data: dict[str, Any] = {
        "extends": extends_reference(base, path),
        "name": fitted.name,
        "scale_groups": {g.name: _group_dict(g) for g in fitted.scale_groups},
    }
    data.update(_ground_dict(fitted))
    data["targets"] = [_target_dict(t) for t in fitted.targets]
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, comment + text)
    loaded = load_recipe(path)
    if loaded != fitted:
        raise ConfigError(
            f"{path}: the written recipe does not load back to the fitted one (base {base}: "
            "does it still match the recipe calibration started from?)"
        )
    return loaded


def write_recipe(path: str | Path, recipe: Recipe, header: str = "") -> None:
    """Write a whole recipe (no ``extends``) as YAML, e.g. a rough start to calibrate."""
    text = yaml.safe_dump(recipe_dict(recipe), sort_keys=False, default_flow_style=None, width=120)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, comment + text)
