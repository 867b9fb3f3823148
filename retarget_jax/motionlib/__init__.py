"""Motion libraries for motion-tracking trainers (stage: motion libraries, after the solve).

    motion configs (rows: file, slice, weight) -> per-motion states (body-model FK, or the
      retargeted robot) -> packaged library per config (npz, sharded by frames)
      -> MotionLib: sample_motions / sample_times / get_motion_state (jit + vmap, or numpy)

- :mod:`~retarget_jax.motionlib.config` (host): motion configs and :class:`BuildOptions`.
- :mod:`~retarget_jax.motionlib.states` (host): one motion's rigid-body states.
- :mod:`~retarget_jax.motionlib.build` (host): :func:`build_libraries`, resumable.
- :mod:`~retarget_jax.motionlib.library` (host): the packaged npz, shards, rank resolution.
- :mod:`~retarget_jax.motionlib.query` (jit and numpy): :class:`MotionLib`.
- :mod:`~retarget_jax.motionlib.export` (host, torch): ProtoMotions' packaged layout.
- :mod:`~retarget_jax.motionlib.viewer` (host, viser): the browser viewer.

See docs/motionlib.md for the commands, the file layout and measured figures.
"""

import importlib

#: Public name -> defining module; imported on first use, so that ``retarget-jax --help``
#: (which registers this stage's subcommands) does not import JAX.
_EXPORTS = {
    "BuildSummary": "build",
    "build_libraries": "build",
    "BuildOptions": "config",
    "ContactRule": "config",
    "MotionConfig": "config",
    "MotionRow": "config",
    "load_motion_config": "config",
    "MotionLibrary": "library",
    "load_library": "library",
    "resolve_library_path": "library",
    "save_library": "library",
    "MotionLib": "query",
    "MotionState": "query",
    "state_at": "query",
    "MotionStates": "states",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"retarget_jax.motionlib.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'retarget_jax.motionlib' has no attribute {name!r}")
