"""What a batch report shows, gathered from an evaluation's files (host, no jit).

Stage: reporting, after metrics. :func:`load_metrics_report` reads one per-result metrics
report (schema: :mod:`retarget_jax.metrics.report`) and checks the fields the report
uses; :func:`collect_series` turns the reports of a batch into one :class:`MetricSeries`
per scalar value (``jerk``) or per key of a dict-valued metric (``penetration.max``);
:func:`worst_clips` ranks a series by :data:`WORSE`, the written table of which way is
worse for each built-in metric.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retarget_jax.errors import MotionFormatError

#: Which way is worse, per metric (``name``) or per key of a dict-valued one
#: (``name.key``, looked up first). ``"higher"``: a larger value is worse; ``"lower"``:
#: a smaller one is. A metric absent here (a plugin) is ranked higher-is-worse, and the
#: report says that this was assumed.
WORSE: dict[str, str] = {
    "optimization_cost": "higher",  # the solver's objective at the solution
    "foot_sliding": "higher",  # m/s of a foot that should stand still
    "contact_preservation": "lower",  # fraction of frames and feet that agree with the plan
    "penetration": "higher",  # m into the ground or another link (every key)
    "tracking_error": "higher",  # m from the targets (every key)
    "joint_limit_violation": "higher",  # rad past a limit, fraction of frames past one
    "jerk": "higher",  # rad/s^3: a jittery trajectory
}
DIRECTIONS = ("higher", "lower")

# the metrics report this module understands (retarget_jax.metrics.report); repeated here
# so that reading reports does not import the jitted metrics stage
_REPORT_KIND = "retarget_jax.metrics_report"
_REPORT_SCHEMA_VERSION = 1


def worse_direction(series: str, table: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """(``"higher"`` or ``"lower"``, whether the table knew it) for ``name`` or ``name.key``."""
    table = WORSE if table is None else table
    metric = series.split(".", 1)[0]
    for key in (series, metric):
        if key in table:
            return table[key], True
    return "higher", False


# --------------------------------------------------------------------------- one report


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def load_metrics_report(path: str | os.PathLike) -> dict:
    """Read one metrics report and check what a batch report uses of it.

    Raises:
        MotionFormatError: naming the file (and the field) when it is missing, is not
            UTF-8 JSON, is not a metrics report of schema 1, or has a malformed ``metrics``
            entry (a value that is not a number, a dict of numbers or null).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MotionFormatError(path, "no such metrics report") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MotionFormatError(path, f"cannot read the metrics report: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise MotionFormatError(path, f"not valid JSON: {e.msg} (column {e.colno})", line=e.lineno) from None
    if not isinstance(data, dict):
        raise MotionFormatError(path, f"expected a JSON object, found {type(data).__name__}")
    if data.get("kind") != _REPORT_KIND:
        raise MotionFormatError(path, f"expected {_REPORT_KIND!r}, found {data.get('kind')!r}", field="kind")
    if data.get("schema_version") != _REPORT_SCHEMA_VERSION:
        raise MotionFormatError(
            path,
            f"expected schema version {_REPORT_SCHEMA_VERSION}, found {data.get('schema_version')!r}",
            field="schema_version",
        )
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        raise MotionFormatError(path, f"expected a JSON object, found {type(metrics).__name__}", field="metrics")
    for name, entry in metrics.items():
        where = f"metrics.{name}"
        if not isinstance(entry, dict):
            raise MotionFormatError(path, f"expected a JSON object, found {type(entry).__name__}", field=where)
        v = entry.get("value")
        ok = v is None or _is_number(v) or (isinstance(v, dict) and all(x is None or _is_number(x) for x in v.values()))
        if not ok:
            raise MotionFormatError(
                path,
                f"expected a number, a JSON object of numbers or null, found {type(v).__name__}",
                field=f"{where}.value",
            )
        unit = entry.get("unit")
        if unit is not None and not isinstance(unit, str | dict):
            raise MotionFormatError(
                path, f"expected a string or a JSON object, found {type(unit).__name__}", field=f"{where}.unit"
            )
    for key in ("result", "problem"):
        if not isinstance(data.get(key, {}), dict):
            raise MotionFormatError(path, f"expected a JSON object, found {type(data[key]).__name__}", field=key)
    if not isinstance(data.get("warnings", []), list):
        raise MotionFormatError(path, "expected a JSON array", field="warnings")
    return data


# --------------------------------------------------------------------------- series


@dataclasses.dataclass(frozen=True)
class ClipReport:
    """One evaluated clip: its job, its files and its metrics report."""

    job_id: str
    result_path: Path | None
    report_path: Path
    report: dict
    status: str  # the evaluation record's: success / partial

    @property
    def solve_status(self) -> str:
        return str(self.report.get("result", {}).get("solve_status") or "?")


@dataclasses.dataclass
class MetricSeries:
    """One histogram and one worst table: a scalar metric or one key of a dict-valued one.

    Attributes:
        name: ``metric`` or ``metric.key``.
        metric: the metric's name.
        unit: the unit the reports give ("" if none).
        description: the registered plugin's description ("" for an unregistered one).
        worse: ``"higher"`` or ``"lower"``.
        known_direction: whether :data:`WORSE` names it (else higher-is-worse is assumed).
        values: job id -> value, for the clips with a value.
        nulls: job ids whose value is null (not applicable or failed).
        reasons: job id -> why the value is null (``not_applicable`` / ``error``), if given.
    """

    name: str
    metric: str
    unit: str
    description: str
    worse: str
    known_direction: bool
    values: dict[str, float] = dataclasses.field(default_factory=dict)
    nulls: list[str] = dataclasses.field(default_factory=list)
    reasons: dict[str, str] = dataclasses.field(default_factory=dict)


def _unit_of(unit: Any, key: str | None) -> str:
    if isinstance(unit, dict):
        return str(unit.get(key, "")) if key is not None else ""
    return "" if unit is None else str(unit)


def collect_series(
    clips: Sequence[ClipReport],
    *,
    table: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    order: Sequence[str] = (),
) -> list[MetricSeries]:
    """One series per scalar metric value across ``clips``.

    A metric is dict-valued when any clip gives it a dict; its series are the union of
    the keys. A clip without a value for a series (null, non-finite, the metric or key
    missing from its report) counts as a null of that series. Series come in ``order`` of
    metric names first (the registry's), then the other metrics sorted; keys sorted.
    """
    descriptions = descriptions or {}
    keys: dict[str, set[str] | None] = {}  # metric -> its keys, or None for a scalar metric
    units: dict[str, str] = {}
    for clip in clips:
        for metric, entry in clip.report["metrics"].items():
            v, unit = entry.get("value"), entry.get("unit")
            if isinstance(v, dict):
                keys[metric] = (keys.get(metric) or set()) | set(v)
                for k in v:
                    units.setdefault(f"{metric}.{k}", _unit_of(unit, k))
            else:
                keys.setdefault(metric, None)
                if not isinstance(unit, dict):
                    units.setdefault(metric, _unit_of(unit, None))

    series: dict[str, MetricSeries] = {}
    for metric, ks in keys.items():
        for name in [metric] if ks is None else [f"{metric}.{k}" for k in sorted(ks)]:
            worse, known = worse_direction(name, table)
            series[name] = MetricSeries(name, metric, units.get(name, ""), descriptions.get(metric, ""), worse, known)
    for clip in clips:
        for metric, ks in keys.items():
            entry = clip.report["metrics"].get(metric)
            if entry is None:
                v, why = None, "the report has no such metric"
            else:
                v, why = entry.get("value"), entry.get("error") or entry.get("not_applicable")
            if ks is None:
                _add(series[metric], clip.job_id, v, why)
                continue
            for k in ks:
                x = v.get(k) if isinstance(v, dict) else None
                if isinstance(v, dict) and k not in v:
                    why = f"the value has no key {k!r}"
                elif v is not None and not isinstance(v, dict):
                    why = "a single number where other reports give a dict"
                _add(series[f"{metric}.{k}"], clip.job_id, x, why)

    rank = {m: i for i, m in enumerate(order)}
    return sorted(series.values(), key=lambda s: (rank.get(s.metric, len(rank)), s.metric, s.name))


def _add(s: MetricSeries, job_id: str, value: Any, why: Any) -> None:
    if value is None or not _is_number(value) or not math.isfinite(float(value)):
        if job_id not in s.nulls:
            s.nulls.append(job_id)
            if why:
                s.reasons[job_id] = str(why)
    else:
        s.values[job_id] = float(value)


def worst_clips(s: MetricSeries, n: int) -> list[tuple[str, float]]:
    """The ``n`` worst (job id, value) of a series, worst first; ties by job id."""
    sign = -1.0 if s.worse == "higher" else 1.0
    return sorted(s.values.items(), key=lambda kv: (sign * kv[1], kv[0]))[:n]
