"""Hydra entry point of the motion-library build (driver, host):

    python -m retarget_jax.motionlib.run source_root=/data/amass output_dir=out/smpl \
        'motion_configs=[train.yaml,val.yaml]' target=smpl output_fps=30 shards=4

The keys are :class:`MotionLibRunConfig`'s (the ``retarget-jax motionlib build`` flags with
underscores); unknown or mistyped keys fail before anything is built. Hydra and OmegaConf
stay here: the config becomes a typed :class:`~retarget_jax.motionlib.config.BuildOptions`
first, so the library code never needs Hydra. Sweeps work as for ``retarget_jax.run``
(``-m target=smpl,unitree_g1``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from retarget_jax.motionlib.config import BuildOptions, ContactRule

# defaults come from the library's own types, never copied by hand
_BUILD = {f.name: f.default for f in dataclasses.fields(BuildOptions)}
_CONTACT = ContactRule()


@dataclasses.dataclass
class MotionLibRunConfig:
    source_root: str = MISSING  # folder the configs' file paths are relative to
    output_dir: str = MISSING
    motion_configs: list[str] = MISSING  # one library per config (train, val, ...)
    target: str = "smpl"  # smpl | smplx | unitree_g1 | unitree_h1 | booster_t1 | <robot.xml>
    output_fps: float = _BUILD["output_fps"]
    shards: int = _BUILD["shards"]
    force_remake: bool = _BUILD["force_remake"]
    format: str = _BUILD["format"]
    prefix: str = _BUILD["prefix"]
    body_model_dir: str | None = _BUILD["body_model_dir"]
    gender: str | None = _BUILD["gender"]
    joint_map: str | None = _BUILD["joint_map"]
    recipe: str | None = _BUILD["recipe"]
    max_iters: int | None = _BUILD["max_iters"]  # None: the solver's default
    window: int | None = _BUILD["window"]
    overlap: int = _BUILD["overlap"]
    chunk: int = _BUILD["chunk"]
    max_batch: int = _BUILD["max_batch"]
    contact_speed: float = _CONTACT.speed
    contact_height: float = _CONTACT.height
    protomotions: bool = False  # also write <library>.pt in ProtoMotions' layout (needs torch)
    cache_dir: str | None = "~/.cache/retarget_jax/xla"
    progress: bool = True


ConfigStore.instance().store(name="motionlib", node=MotionLibRunConfig)


def typed_config(cfg: DictConfig) -> MotionLibRunConfig:
    """The composed config as the dataclass (OmegaConf checks the keys and types)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(MotionLibRunConfig), cfg))


def build_options(cfg: MotionLibRunConfig) -> BuildOptions:
    return BuildOptions(
        target=cfg.target,
        output_fps=cfg.output_fps,
        shards=cfg.shards,
        force_remake=cfg.force_remake,
        format=cfg.format,
        prefix=cfg.prefix,
        body_model_dir=cfg.body_model_dir,
        gender=cfg.gender,
        joint_map=cfg.joint_map,
        recipe=cfg.recipe,
        max_iters=cfg.max_iters,
        window=cfg.window or None,
        overlap=cfg.overlap,
        chunk=cfg.chunk,
        max_batch=cfg.max_batch,
        contacts=ContactRule(speed=cfg.contact_speed, height=cfg.contact_height),
    )


def execute(cfg: MotionLibRunConfig) -> dict:
    """Run the build of a typed config; returns the summary (as the CLI prints it)."""
    options = build_options(cfg)
    if cfg.cache_dir:
        import jax

        jax.config.update("jax_compilation_cache_dir", str(Path(cfg.cache_dir).expanduser()))
    from retarget_jax.motionlib.build import build_libraries

    summary = build_libraries(
        cfg.source_root, cfg.output_dir, cfg.motion_configs, options, progress=cfg.progress
    ).to_json()
    if cfg.protomotions:
        from retarget_jax.motionlib.export import export_protomotions

        summary["protomotions"] = [
            str(export_protomotions(p, Path(p).with_suffix(".pt")))
            for paths in summary["libraries"].values()
            for p in paths
        ]
    return summary


@hydra.main(version_base="1.3", config_path=None, config_name="motionlib")
def main(cfg: DictConfig) -> None:
    print(json.dumps(execute(typed_config(cfg))))


if __name__ == "__main__":
    main()
