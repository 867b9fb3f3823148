"""Histograms of a metric over a batch, as PNG bytes (host, matplotlib).

Stage: reporting. Figures are drawn on matplotlib's Agg canvas directly
(``Figure`` + ``FigureCanvasAgg``), not through ``pyplot``: no global backend is chosen
or changed (a user's notebook keeps its own), no figure registry needs closing, and it
works without a display. The caller writes the bytes atomically.
"""

from __future__ import annotations

import io

import numpy as np

from retarget_jax.errors import ConfigError
from retarget_jax.report.collect import MetricSeries

#: Most bins of a histogram (numpy's "auto" rule, capped: a few hundred clips need no more).
MAX_BINS = 40


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ConfigError(
            "retarget-jax report draws its histograms with matplotlib, which is not "
            f"installed ({e}); pip install matplotlib (or the 'bench' extra)"
        ) from None
    return Figure, FigureCanvasAgg


def require_matplotlib() -> None:
    """Raise ConfigError (with the install command) before any work when matplotlib is missing."""
    _matplotlib()


def axis_label(s: MetricSeries) -> str:
    return f"{s.name} [{s.unit}]" if s.unit else s.name


def histogram_png(s: MetricSeries, *, width_in: float = 6.0, height_in: float = 3.2, dpi: int = 100) -> bytes:
    """A PNG histogram of the series' values (nulls left out and counted in the title);
    a series without values gets a labelled empty plot, so every series has one image."""
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    values = np.fromiter(s.values.values(), dtype=np.float64, count=len(s.values))
    n_null = len(s.nulls)
    if values.size:
        edges = np.histogram_bin_edges(values, bins="auto")
        bins = edges if len(edges) - 1 <= MAX_BINS else MAX_BINS
        if np.ptp(values) == 0:  # one value: a bar around it instead of numpy's unit-wide range
            v = float(values[0])
            half = abs(v) * 0.05 or 0.5
            bins = np.linspace(v - half, v + half, 6)
        ax.hist(values, bins=bins, color="#4c72b0", edgecolor="white")
        median = float(np.median(values))
        ax.axvline(median, color="#dd8452", linestyle="--", linewidth=1.2, label=f"median {median:.4g}")
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    else:
        ax.text(
            0.5,
            0.5,
            f"no values ({n_null} null)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=12,
            color="#555555",
        )
        ax.set_xticks([])
    ax.set_xlabel(axis_label(s))
    ax.set_ylabel("clips")
    title = f"{s.name}: {values.size} clip{'s' if values.size != 1 else ''}"
    if n_null:
        title += f", {n_null} null"
    title += f" ({s.worse} is worse{'' if s.known_direction else ', assumed'})"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
