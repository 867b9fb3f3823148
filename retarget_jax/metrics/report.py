"""Evaluation reports: one JSON document of metrics per result (host).

Stage: metrics, host side. :func:`evaluate_results` groups results by padded length
(and by the target bodies and contact links they carry), runs the jitted pass
(:func:`retarget_jax.metrics.batch.evaluate_batch`) once per group (unless no chosen
plugin needs it), then every metric
plugin (:mod:`retarget_jax.metrics.registry`) once per result, and returns one report
dict per result, in input order. :func:`write_report` writes one atomically.

Report schema (version 1)::

    {
      "schema_version": 1,
      "kind": "retarget_jax.metrics_report",
      "status": "success" | "partial",
      "result": {"id", "path", "robot", "source_path", "config_hash", "recipe", "solve_status"},
      "frames": T, "qpos_dim": 7 + n, "fps": frames per second,
      "metrics": {name: {"value": float | {key: float} | null, "unit": str | {key: str},
                         ...extras ("basis"), "not_applicable": why | "error": what}},
      "problem": {"recipe", "weights", "contact_plan", "iterations", "final_cost"},
      "warnings": [str],
      "package_version": str,
      "evaluated_at": ISO 8601 UTC
    }

``null`` marks a value that does not apply (with ``not_applicable`` and a warning; the
report stays ``success``) or that failed (with ``error`` and a warning; the report is
``partial``). A plugin that raises or returns a non-finite value never stops the batch.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import retarget_jax
from retarget_jax.buckets import bucket_length
from retarget_jax.errors import ConfigError
from retarget_jax.files.atomic import atomic_write
from retarget_jax.metrics.batch import MetricBatch, check_result, evaluate_batch, metric_geometry
from retarget_jax.metrics.registry import (
    MetricContext,
    MetricPlugin,
    get_metric,
    registered_metrics,
)
from retarget_jax.result import RetargetingResult, SolveStatus
from retarget_jax.robots.spec import RobotSpec

REPORT_SCHEMA_VERSION = 1
REPORT_KIND = "retarget_jax.metrics_report"
#: Largest number of clips in one jitted pass; groups are cut into chunks of this size.
MAX_BATCH = 256


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _batch_size(n: int, max_batch: int) -> int:
    """n rounded up to a power of two (at most ``max_batch``): groups of 5 and 7 clips
    share the compile of 8, at the price of a few masked clips."""
    return min(1 << max(n - 1, 0).bit_length(), max(max_batch, n))


def _group_key(r: RetargetingResult) -> tuple:
    targets = tuple(r.target_body_names) if r.target_pos_w is not None and len(r.target_body_names) else ()
    contacts = tuple(r.contact_body_names) if r.contacts is not None and len(r.contact_body_names) else ()
    return bucket_length(r.num_frames), targets, contacts


def _resolve_plugins(plugins) -> list[MetricPlugin]:
    if plugins is None:
        return list(registered_metrics().values())
    return [p if isinstance(p, MetricPlugin) else get_metric(str(p)) for p in plugins]


def evaluate_results(
    results: Sequence[RetargetingResult],
    robot: RobotSpec,
    *,
    ids: Sequence[str] | None = None,
    paths: Sequence[str | os.PathLike | None] | None = None,
    contact_bodies: Sequence[str] | None = None,
    plugins: Sequence[str | MetricPlugin] | None = None,
    max_batch: int = MAX_BATCH,
    progress: Callable[[int], Any] | None = None,
) -> list[dict]:
    """One report dict per result (in input order), see the module docstring.

    Args:
        results: results of ``robot``.
        robot: their robot.
        ids: report ids (default: the path, else the source path, else ``result_<i>``).
        paths: where each result was read from (recorded in the report).
        contact_bodies: contact links for results without a contact plan (foot sliding
            by the proxy basis); results with a plan use its links.
        plugins: plugin names or objects (default: every registered plugin). When none
            of them ``needs_core``, the jitted pass is skipped (no compile).
        max_batch: most clips per jitted pass.
        progress: called with the number of results just reported, after each group.

    Raises:
        ConfigError: when a result is not of ``robot`` (checked before any work), or when
            ``ids`` / ``paths`` do not have one entry per result. Failures of a group's pass
            or of a plugin are reported in the reports (status ``partial``), never raised.
    """
    results = list(results)
    n = len(results)
    for name, seq in (("ids", ids), ("paths", paths)):
        if seq is not None and len(seq) != n:
            raise ConfigError(f"evaluate_results: {len(seq)} {name} for {n} results")
    path_strs = [None if paths is None or paths[i] is None else str(paths[i]) for i in range(n)]
    id_strs = [
        str(ids[i])
        if ids is not None
        else (path_strs[i] or str((results[i].provenance or {}).get("source_path") or f"result_{i}"))
        for i in range(n)
    ]
    for i, r in enumerate(results):
        check_result(r, robot, f"result '{id_strs[i]}'")
    plugin_list = _resolve_plugins(plugins)
    need_core = any(p.needs_core for p in plugin_list)

    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(results):
        groups.setdefault(_group_key(r), []).append(i)
    reports: list[dict | None] = [None] * n
    for (T_pad, _, _), members in sorted(groups.items(), key=lambda kv: kv[0][0]):
        for s in range(0, len(members), max_batch):
            chunk = members[s : s + max_batch]
            if need_core:
                cores, failure = _evaluate_group(
                    [results[i] for i in chunk], robot, [id_strs[i] for i in chunk], T_pad, contact_bodies, max_batch
                )
            else:  # host-only plugins: no jitted pass, no compile
                cores, failure = [{} for _ in chunk], None
            for j, i in enumerate(chunk):
                reports[i] = build_report(
                    results[i], robot, cores[j], id_strs[i], path_strs[i], plugin_list, group_failure=failure
                )
            if progress is not None:
                progress(len(chunk))
    assert all(r is not None for r in reports)
    return reports  # type: ignore[return-value]


def _evaluate_group(results, robot, ids, T_pad, contact_bodies, max_batch):
    """(per-result core dicts, None) or (empty dicts, failure message) for one jitted pass."""
    try:
        batch = MetricBatch.from_results(
            results,
            robot,
            contact_bodies=contact_bodies,
            length=T_pad,
            batch_size=_batch_size(len(results), max_batch),
            ids=ids,
        )
        geometry = metric_geometry(robot, batch.contact_bodies, dtype=batch.qpos.dtype)
        out = jax.device_get(evaluate_batch(batch, geometry))
    except Exception as e:  # a failed pass becomes partial reports, never a stopped batch
        msg = f"the jitted metrics pass failed for this group of {len(results)} result(s): {type(e).__name__}: {e}"
        return [{} for _ in results], msg
    arrays = {k: np.asarray(v, np.float64) for k, v in out.items()}
    return [{k: float(a[j]) for k, a in arrays.items()} for j in range(len(results))], None


# --------------------------------------------------------------------------- one report


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool | np.bool_)


def _check_value(name: str, value: Any) -> tuple[Any, list[str]]:
    """(JSON value, problems) for a plugin's return value; non-finite numbers become None."""
    if _is_number(value):
        v = float(value)
        return (v, []) if math.isfinite(v) else (None, [f"non-finite value {v}"])
    if isinstance(value, Mapping):
        out, problems = {}, []
        for k, v in value.items():
            if not _is_number(v):
                out[str(k)] = None
                problems.append(f"'{k}' is {type(v).__name__}, not a number")
            elif not math.isfinite(float(v)):
                out[str(k)] = None
                problems.append(f"non-finite value {k}={float(v)}")
            else:
                out[str(k)] = float(v)
        return out, problems
    return None, [f"returned {type(value).__name__}, expected a float, a dict of floats or None"]


def build_report(
    result: RetargetingResult,
    robot: RobotSpec,
    core: Mapping[str, float],
    result_id: str,
    path: str | None,
    plugins: Sequence[MetricPlugin],
    *,
    group_failure: str | None = None,
) -> dict:
    """The report of one result from its jitted figures ``core`` (see the module docstring)."""
    warnings: list[str] = []
    partial = False
    if group_failure:
        warnings.append(group_failure)
        partial = True
    metrics: dict[str, dict] = {}
    for plugin in plugins:
        entry: dict[str, Any] = {"unit": dict(plugin.unit) if isinstance(plugin.unit, Mapping) else plugin.unit}
        if plugin.needs_core and group_failure:
            entry.update(value=None, error="not computed: the jitted metrics pass failed")
            metrics[plugin.name] = entry
            continue
        ctx = MetricContext(result=result, robot=robot, core=dict(core), result_id=result_id)
        try:
            raw = plugin.fn(ctx)
        except Exception as e:
            entry.update(value=None, error=f"{type(e).__name__}: {e}")
            warnings.append(f"metric '{plugin.name}' failed: {type(e).__name__}: {e}")
            partial = True
            metrics[plugin.name] = entry
            continue
        if raw is None:
            reason = ctx.reason or "the plugin returned None"
            entry.update(value=None, not_applicable=reason)
            warnings.append(f"metric '{plugin.name}' not applicable: {reason}")
        else:
            value, problems = _check_value(plugin.name, raw)
            entry["value"] = value
            if problems:
                entry["error"] = "; ".join(problems)
                warnings.append(f"metric '{plugin.name}': {'; '.join(problems)}")
                partial = True
        entry.update(_jsonable(ctx.extras))
        metrics[plugin.name] = entry

    prov = dict(result.provenance or {})
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": REPORT_KIND,
        "status": "partial" if partial else "success",
        "result": {
            "id": result_id,
            "path": path,
            "robot": result.robot,
            "source_path": prov.get("source_path"),
            "config_hash": prov.get("config_hash"),
            "recipe": prov.get("recipe"),
            "solve_status": SolveStatus.name(result.status),
        },
        "frames": result.num_frames,
        "qpos_dim": robot.nq,
        "fps": float(result.fps),
        "metrics": metrics,
        "problem": {
            "recipe": prov.get("recipe"),
            "weights": _jsonable(prov.get("weights")),
            "contact_plan": _jsonable(prov.get("contact_plan")),
            "iterations": int(result.iterations),
            "final_cost": _finite_or_none(result.final_cost),
        },
        "warnings": warnings,
        "package_version": retarget_jax.__version__,
        "evaluated_at": _utc_now(),
    }


def _finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _jsonable(x: Any) -> Any:
    """A JSON-able copy: numpy to Python, tuples to lists, non-finite floats to None."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x


def report_json(report: Mapping) -> str:
    """The report as JSON text: sorted keys, non-finite numbers as null (never NaN)."""
    return json.dumps(_jsonable(report), sort_keys=True, allow_nan=False, indent=2) + "\n"


def write_report(report: Mapping, path: str | os.PathLike) -> Path:
    """Write ``report`` to ``path`` as JSON atomically (temporary file + rename)."""
    path = Path(path)
    text = report_json(report).encode("utf-8")
    with atomic_write(path) as fh:
        fh.write(text)
    return path


def metric_summary(
    result: RetargetingResult, robot: RobotSpec, *, plugins: Sequence[str | MetricPlugin] | None = None
) -> dict:
    """:func:`report_summary` of one result's report (``plugins`` as in :func:`evaluate_results`)."""
    return report_summary(evaluate_results([result], robot, plugins=plugins)[0])


def report_summary(report: Mapping) -> dict:
    """A flat dict of a report's scalar values (``name`` or ``name.key``), for one-line output."""
    out: dict[str, Any] = {}
    for name, entry in sorted(report.get("metrics", {}).items()):
        v = entry.get("value")
        if isinstance(v, Mapping):
            out.update({f"{name}.{k}": x for k, x in v.items()})
        else:
            out[name] = v
    return out
