"""Dataset stage: from many motion sources to training shards (host code; the solves are
the batch driver's).

    spec.yaml -> load_spec() -> build_dataset(): retarget / convert (batch driver) ->
      preprocess -> filters -> check-fk -> hash split -> shards + manifest_resolved.csv
      + build_info.json -> MotionDataset (trainers), reshard(), check_fk_file()

- :mod:`.spec`: the YAML spec, typed and checked (:func:`load_spec`).
- :mod:`.build`: :func:`build_dataset`, resumable and kill-safe.
- :mod:`.preprocess`: resampling, normalization, ground alignment, contacts, filters.
- :mod:`.split`: :func:`split_of`, the salted-hash train / val split.
- :mod:`.shards`: the shard format, :class:`ShardWriter`, :func:`open_shard`, :func:`reshard`.
- :mod:`.fk`: check-fk against MuJoCo C (:func:`check_fk_file`).
- :mod:`.loader`: :class:`MotionDataset` for trainers (numpy only until JAX arrays are asked for).
- :mod:`.cli` (``retarget-jax dataset ...``) and :mod:`.run` (Hydra) are the entry points.

Names are imported on first use; importing this package compiles nothing and touches no
device.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it (imported on first use, so that
#: ``retarget-jax`` and its ``dataset`` subcommand start without loading them)
_EXPORTS = {
    "FK_THRESHOLDS": "fk",
    "FkFigures": "fk",
    "check_fk_file": "fk",
    "fk_figures": "fk",
    "MotionDataset": "loader",
    "FRAME_KEYS": "shards",
    "ShardWriter": "shards",
    "open_shard": "shards",
    "reshard": "shards",
    "DatasetSpec": "spec",
    "load_spec": "spec",
    "split_of": "split",
    "build_dataset": "build",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'retarget_jax.dataset' has no attribute '{name}'")
    return getattr(importlib.import_module(f"retarget_jax.dataset.{_EXPORTS[name]}"), name)
