"""Calibration: fit a recipe's continuous parameters to motion clips (``retarget-jax calibrate``).

An outer optimisation over what a recipe leaves to hand-tuning (each scale group's
factor, each target's position and rotation offset, the ground offset), minimising an
outer loss on the *solved* retargets (limb directions, end effectors normalised by limb
length, foot sliding, penetration, stance-foot height), with gradients from the
solver's implicit differentiation. Modules, in the order the command runs them:

- :mod:`~retarget_jax.calibrate.data` (host): clips, the held-in / held-out split, windows;
- :mod:`~retarget_jax.calibrate.params`: the parameters, and how they set a compiled
  problem's arrays (jit), exactly as compiling the fitted recipe would;
- :mod:`~retarget_jax.calibrate.outer` (jit): the outer loss of a solved window;
- :mod:`~retarget_jax.calibrate.fit` (jit): the batched step (solve, loss, gradient, optax);
- :mod:`~retarget_jax.calibrate.recipes` (host): the fitted recipe's YAML, a rough start;
- :mod:`~retarget_jax.calibrate.driver` (host): the command: checkpoints, progress,
  loss curve, report.
"""

import importlib

# Imported on first use, so that ``retarget-jax --help`` does not pull in JAX.
_EXPORTS = {
    "CalibrateConfig": "driver",
    "calibrate": "driver",
    "parse_weights": "driver",
    "TERMS": "outer",
    "OuterWeights": "outer",
    "PARAM_KINDS": "params",
    "CalibParams": "params",
    "ParamLayout": "params",
    "fitted_recipe": "params",
    "rough_recipe": "recipes",
    "write_fitted_recipe": "recipes",
    "write_recipe": "recipes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"retarget_jax.calibrate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'retarget_jax.calibrate' has no attribute '{name}'")
