"""Files: what every stage reads and writes through (stage: base, host code).

Nothing here knows a pipeline stage, so any module may import it without pulling in a
later one:

- :mod:`~retarget_jax.files.atomic`: :func:`atomic_write` (:func:`atomic_write_bytes`,
  :func:`atomic_write_text`), the one way outputs and manifests are written.
- :mod:`~retarget_jax.files.resources`: where the shipped configs, robots and body-model
  figures are (:func:`config_dir`, :data:`ROBOT_ASSETS`, ...).
- :mod:`~retarget_jax.files.npz`: :func:`load_npz` / :func:`read_npz`, npz archives read
  without pickle, every failure a MotionFormatError naming the file and field.
- :mod:`~retarget_jax.files.safe_pickle`: :func:`restricted_load`, unpickling that allows
  only numpy and builtin data.
"""

from retarget_jax.files.atomic import (
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    is_temp_file,
)
from retarget_jax.files.npz import load_npz, read_npz
from retarget_jax.files.resources import BODY_MODEL_ASSETS, ROBOT_ASSETS, config_dir, joint_maps_dir
from retarget_jax.files.safe_pickle import restricted_load, restricted_loads

__all__ = [
    "BODY_MODEL_ASSETS",
    "ROBOT_ASSETS",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "config_dir",
    "fsync_dir",
    "is_temp_file",
    "joint_maps_dir",
    "load_npz",
    "read_npz",
    "restricted_load",
    "restricted_loads",
]
