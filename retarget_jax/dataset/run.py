"""Hydra entry of the dataset build: ``python -m retarget_jax.dataset.run dataset=spec.yaml``.

    python -m retarget_jax.dataset.run dataset=specs/g1_mix.yaml [output_root=DIR] [force=true]
        [jobs=4] [max_shard_mb=256] [progress=false] [+set.val_percent=10]
        [+set.preprocess.min_frames=60] [-m +set.hash_salt=a,b]

The same build as ``retarget-jax dataset build``; ``set`` overrides keys of the spec file
(mappings are merged, lists replaced), so sweeps over a spec's settings need no copies
of it. Hydra and OmegaConf stay here: the config becomes plain arguments of
:func:`retarget_jax.dataset.build.build_dataset` and a dict of overrides, checked like
the file itself (an unknown key fails before any work, naming the key and the file).
Hydra writes nothing of its own (no ``outputs/<date>``, no ``.hydra/``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


@dataclasses.dataclass
class DatasetRunConfig:
    dataset: str = MISSING  # the dataset spec (YAML)
    output_root: str | None = None  # default outputs/datasets
    force: bool = False
    jobs: int | None = None
    max_shard_mb: float | None = None
    progress: bool = True
    jax_cache_dir: str | None = "~/.cache/retarget_jax/xla"
    set: dict[str, Any] = dataclasses.field(default_factory=dict)


ConfigStore.instance().store(name="dataset_run_schema", node=DatasetRunConfig)
ConfigStore.instance().store(
    name="dataset_run",
    node={
        "defaults": ["dataset_run_schema", "_self_"],
        "hydra": {"run": {"dir": "."}, "sweep": {"dir": ".", "subdir": "."}, "output_subdir": None},
    },
)


def typed(cfg: DictConfig) -> DatasetRunConfig:
    """The composed config as a DatasetRunConfig (ConfigError naming a bad key)."""
    from retarget_jax.errors import ConfigError

    if "hydra" in cfg:
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        merged = OmegaConf.merge(OmegaConf.structured(DatasetRunConfig), OmegaConf.to_container(cfg, resolve=True))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except Exception as e:  # omegaconf's errors name the key and the expected type
        raise ConfigError(f"bad dataset run config: {e}") from None


def execute(run: DatasetRunConfig) -> dict:
    from pathlib import Path

    from retarget_jax.dataset.build import build_dataset
    from retarget_jax.dataset.spec import load_spec

    if run.jax_cache_dir:
        import jax

        jax.config.update("jax_compilation_cache_dir", str(Path(run.jax_cache_dir).expanduser()))
    spec = load_spec(run.dataset, overrides=dict(run.set) if run.set else None)
    return build_dataset(
        spec, run.output_root, force=run.force, jobs=run.jobs, max_shard_mb=run.max_shard_mb, progress=run.progress
    )


@hydra.main(version_base="1.3", config_path=None, config_name="dataset_run")
def main(cfg: DictConfig) -> None:
    import sys

    from retarget_jax.errors import RetargetError

    try:
        info = execute(typed(cfg))
    except RetargetError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
    if info["counts"]["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
