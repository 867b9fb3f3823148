"""Metrics of retargeting results (stage: metrics).

- :mod:`~retarget_jax.metrics.batch` (jit): :func:`evaluate_batch`, one compiled reduction
  over a padded batch of results (:class:`MetricBatch`, :class:`MetricGeometry`).
- :mod:`~retarget_jax.metrics.registry` (host): metric plugins turning those figures into
  report values, and host-only plugins (uprightness, stance sole heights) that need no
  jitted pass; register your own with :func:`register_metric`.
- :mod:`~retarget_jax.metrics.report` (host): :func:`evaluate_results` -> report dicts,
  :func:`write_report`, :func:`metric_summary` (one result's flat values).
"""

from retarget_jax.metrics.batch import (
    CORE_KEYS,
    MetricBatch,
    MetricGeometry,
    evaluate_batch,
    evaluate_results_core,
    metric_geometry,
)
from retarget_jax.metrics.registry import (
    MetricContext,
    MetricPlugin,
    get_metric,
    register_metric,
    registered_metrics,
    unregister_metric,
)
from retarget_jax.metrics.report import (
    REPORT_KIND,
    REPORT_SCHEMA_VERSION,
    build_report,
    evaluate_results,
    metric_summary,
    report_json,
    report_summary,
    write_report,
)

__all__ = [
    "CORE_KEYS",
    "REPORT_KIND",
    "REPORT_SCHEMA_VERSION",
    "MetricBatch",
    "MetricContext",
    "MetricGeometry",
    "MetricPlugin",
    "build_report",
    "evaluate_batch",
    "evaluate_results",
    "evaluate_results_core",
    "get_metric",
    "metric_geometry",
    "metric_summary",
    "register_metric",
    "registered_metrics",
    "report_json",
    "report_summary",
    "unregister_metric",
    "write_report",
]
