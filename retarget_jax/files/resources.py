"""Where the files shipped with the package are (stage: base, host code).

The Hydra configs (recipes, joint maps, experiments) sit in ``configs/`` inside the
installed package or, in a source checkout, at the repository root; the robot MJCFs and
the neutral body-model figures sit beside the code that reads them. Every stage finds
them here, so none has to import a later stage for a path.
"""

from __future__ import annotations

from pathlib import Path

from retarget_jax.errors import ConfigError

__all__ = ["BODY_MODEL_ASSETS", "ROBOT_ASSETS", "config_dir", "joint_maps_dir"]

_PACKAGE = Path(__file__).resolve().parents[1]

#: The robots shipped inside the package (``BUILTIN_ROBOTS`` paths are relative to it).
ROBOT_ASSETS = _PACKAGE / "robots" / "assets"

#: The vendored neutral SMPL / SMPL-X figures (MJCF).
BODY_MODEL_ASSETS = _PACKAGE / "body_models" / "assets"


def config_dir() -> Path:
    """The Hydra config directory: inside the installed package, or the repo's ``configs/``."""
    here = _PACKAGE
    for cand in (here / "configs", here.parent / "configs"):
        if (cand / "config.yaml").exists():
            return cand
    raise ConfigError(f"config directory not found next to {here}")


def joint_maps_dir() -> Path:
    """``configs/joint_maps`` of the installed package or the repository."""
    return config_dir() / "joint_maps"
