"""Batch reports: one HTML page of an evaluated batch run (stage: reporting, host).

    evaluation_manifest.json (``retarget-jax evaluate --batch-manifest``)
      -> :func:`build_report` -> report.html + report_assets/ (histograms, stills, videos)

- :mod:`~retarget_jax.report.collect`: reading metrics reports, one
  :class:`MetricSeries` per metric value, :data:`WORSE` (which way is worse per metric)
  and :func:`worst_clips`.
- :mod:`~retarget_jax.report.plots`: histogram PNGs (matplotlib, Agg canvas).
- :mod:`~retarget_jax.report.page`: the HTML (escaped, no script).
- :mod:`~retarget_jax.report.build`: :func:`build_report` / :func:`generate_report`.
- :mod:`~retarget_jax.report.cli`: the ``retarget-jax report`` subcommand.
"""

import importlib
from typing import Any

#: Public name -> defining module, imported on first use: ``retarget-jax --help`` registers
#: the ``report`` subcommand (:mod:`retarget_jax.report.cli`) without loading the builder,
#: which reads results with the robots and the metrics (JAX, MuJoCo).
_EXPORTS = {
    "ReportSummary": "build",
    "build_report": "build",
    "generate_report": "build",
    "WORSE": "collect",
    "ClipReport": "collect",
    "MetricSeries": "collect",
    "collect_series": "collect",
    "load_metrics_report": "collect",
    "worse_direction": "collect",
    "worst_clips": "collect",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'retarget_jax.report' has no attribute '{name}'")
    return getattr(importlib.import_module(f"retarget_jax.report.{_EXPORTS[name]}"), name)
