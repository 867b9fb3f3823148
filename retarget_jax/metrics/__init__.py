"""Metrics of a RetargetingResult (host, numpy). Issue #4 moves these to jitted batch reductions."""

from retarget_jax.metrics.basic import clip_metrics, recipe_metrics

__all__ = ["clip_metrics", "recipe_metrics"]
