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

from retarget_jax.report.build import ReportSummary, build_report, generate_report
from retarget_jax.report.collect import (
    WORSE,
    ClipReport,
    MetricSeries,
    collect_series,
    load_metrics_report,
    worse_direction,
    worst_clips,
)

__all__ = [
    "WORSE",
    "ClipReport",
    "MetricSeries",
    "ReportSummary",
    "build_report",
    "collect_series",
    "generate_report",
    "load_metrics_report",
    "worse_direction",
    "worst_clips",
]
