"""Writers and readers of retargeting results and motion files (stage: io, host, numpy).

- :func:`save_result` / :func:`load_result` / :func:`validate_result_npz`: the package's
  own pickle-free result NPZ.
- :func:`write_mjlab_npz`, :func:`write_gmr_pkl`: downstream trackers' formats;
  :func:`write_result` dispatches on a format name.
- :func:`read_robot_motion` (:func:`read_gmr_pkl`, :func:`read_mjlab_npz`,
  :func:`read_seed_csv`): robot-space motion files loaded as results, without a solve.
- :func:`write_bvh`: a parsed BVH clip back to a file (the reader is
  :mod:`retarget_jax.motion.bvh`).
- :func:`atomic_write` (:func:`atomic_write_bytes`, :func:`atomic_write_text`): the one
  way outputs and manifests are written (temp file in the same folder, fsync, rename);
  :func:`restricted_load`: unpickle third-party motion pickles allowing only numpy and
  builtin data. Both live in :mod:`retarget_jax.files` (stage: base), where every stage
  can reach them, and are named here as part of the readers' and writers' API.
"""

from retarget_jax.files.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from retarget_jax.files.safe_pickle import restricted_load, restricted_loads
from retarget_jax.io.bvh import write_bvh
from retarget_jax.io.readers import (
    ROBOT_MOTION_READERS,
    read_gmr_pkl,
    read_mjlab_npz,
    read_robot_motion,
    read_seed_csv,
)
from retarget_jax.io.result_npz import (
    SCHEMA_VERSION,
    load_result,
    save_result,
    validate_result_npz,
)
from retarget_jax.io.writers import (
    WRITERS,
    angular_velocity_w,
    linear_velocity,
    write_gmr_pkl,
    write_mjlab_npz,
    write_result,
)

__all__ = [
    "ROBOT_MOTION_READERS",
    "SCHEMA_VERSION",
    "WRITERS",
    "angular_velocity_w",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "linear_velocity",
    "load_result",
    "read_gmr_pkl",
    "read_mjlab_npz",
    "read_robot_motion",
    "read_seed_csv",
    "restricted_load",
    "restricted_loads",
    "save_result",
    "validate_result_npz",
    "write_bvh",
    "write_gmr_pkl",
    "write_mjlab_npz",
    "write_result",
]
