"""``build_report``: an HTML page of a batch evaluation (host).

Stage: reporting, after ``retarget-jax evaluate --batch-manifest``::

    evaluation_manifest.json -> per-clip metrics reports -> one series per metric value
      -> histograms (PNG) + worst-N tables -> stills of the worst clips (MuJoCo renderer)
      -> report.html + report_assets/

Inputs are read, never changed. Outputs: ``output_html`` and ``<stem>_assets/`` beside it
(``plots/`` histograms, ``stills/`` contact sheets, ``videos/`` MP4s), every file written
through :mod:`retarget_jax.files.atomic`, the page last. A clip whose metrics report is
unreadable, or whose stills cannot be rendered, is named on the page; the rest of the
report is still written.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import retarget_jax
from retarget_jax.errors import ConfigError, MotionFormatError, RetargetError
from retarget_jax.files.atomic import atomic_write_bytes, atomic_write_text
from retarget_jax.formats import result_stem
from retarget_jax.io import load_result
from retarget_jax.manifest import (
    RUN_CONFIG_NAME,
    BatchManifest,
    EvaluationManifest,
    manifest_path,
    utc_now,
)
from retarget_jax.metrics.registry import registered_metrics
from retarget_jax.report import page
from retarget_jax.report.collect import (
    DIRECTIONS,
    WORSE,
    ClipReport,
    collect_series,
    load_metrics_report,
    worst_clips,
)
from retarget_jax.report.plots import histogram_png, require_matplotlib
from retarget_jax.robots import load_robot

#: Longest run config shown (characters); a longer one is cut with a note.
MAX_RUN_CONFIG_CHARS = 200_000
#: Provenance fields of the batch records whose distinct values the settings list.
PROVENANCE_FIELDS = ("robot", "recipe", "config_hash", "package_version")


@dataclasses.dataclass(frozen=True)
class ReportSummary:
    """What :func:`generate_report` wrote (the ``retarget-jax report`` JSON line)."""

    html: Path
    assets: Path
    clips: int  # clips with a readable metrics report
    metrics: int  # series: one histogram and one worst table each
    stills: int  # contact sheets written
    videos: int  # MP4s written
    render_failed: int  # worst clips without stills (failed, or rendering unavailable)
    unreadable_reports: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "report": str(self.html),
            "clips": self.clips,
            "metrics": self.metrics,
            "stills": self.stills,
            "videos": self.videos,
            "render_failed": self.render_failed,
            "unreadable_reports": self.unreadable_reports,
            "seconds": self.seconds,
        }


def build_report(
    evaluation_manifest: str | os.PathLike,
    output_html: str | os.PathLike,
    *,
    worst: int = 5,
    render: bool = True,
    videos: bool = False,
    render_options: Any = None,
    progress: bool = True,
) -> Path:
    """Write an HTML report of a batch evaluation; returns the page's path.

    Args:
        evaluation_manifest: the ``evaluation_manifest.json`` of ``retarget-jax evaluate
            --batch-manifest``.
        output_html: the page to write; its assets go to ``<stem>_assets/`` beside it.
        worst: rows of each worst table (>= 1).
        render: render a contact sheet of each clip in a worst table (each clip once).
        videos: also render an MP4 of each of them (needs ``render``).
        render_options: a :class:`retarget_jax.render.RenderOptions`, or None for its defaults.
        progress: a progress bar on stderr while rendering.

    Raises:
        ConfigError: for bad options (``worst`` < 1, ``videos`` without ``render``, an
            output path that is a folder, matplotlib missing).
        MotionFormatError: naming the file when the evaluation manifest is missing or
            malformed. A malformed per-clip report, a missing batch manifest or a clip that
            cannot be rendered is reported on the page instead.
    """
    return generate_report(
        evaluation_manifest,
        output_html,
        worst=worst,
        render=render,
        videos=videos,
        render_options=render_options,
        progress=progress,
    ).html


def generate_report(
    evaluation_manifest: str | os.PathLike,
    output_html: str | os.PathLike,
    *,
    worst: int = 5,
    render: bool = True,
    videos: bool = False,
    render_options: Any = None,
    progress: bool = True,
    worse: Mapping[str, str] | None = None,
) -> ReportSummary:
    """:func:`build_report`, returning a :class:`ReportSummary`. ``worse`` replaces the
    :data:`~retarget_jax.report.collect.WORSE` table (``name`` or ``name.key`` ->
    ``"higher"`` / ``"lower"``)."""
    t0 = time.perf_counter()
    worse_table = _check_options(worst, render, videos, output_html, worse)
    require_matplotlib()
    ev_path = Path(evaluation_manifest)
    out = Path(output_html)
    html_dir = out.parent
    assets = html_dir / f"{out.stem}_assets"

    ev = _load_evaluation(ev_path)
    batch_path = manifest_path(ev_path, ev.batch_manifest) if ev.batch_manifest else None
    batch, batch_note = _load_batch(batch_path)
    clips, unreadable = _read_clip_reports(ev, ev_path, html_dir)

    plugins = registered_metrics()
    series = collect_series(
        clips, table=worse_table, descriptions={n: p.description for n, p in plugins.items()}, order=list(plugins)
    )
    by_id = {c.job_id: c for c in clips}

    # histograms
    used: set[str] = set()
    plot_urls, slugs = {}, {}
    for s in series:
        slugs[s.name] = _unique_slug(s.name, used)
        png = assets / "plots" / f"{slugs[s.name]}.png"
        atomic_write_bytes(png, histogram_png(s))
        plot_urls[s.name] = page.href(png, html_dir)

    # worst tables, and each clip in any of them once
    worst_of = {s.name: worst_clips(s, worst) for s in series}
    worst_in: dict[str, list[page.Link]] = {}  # job id -> "metric (#rank)" links to the metric's section
    for s in series:
        for i, (job_id, _) in enumerate(worst_of[s.name]):
            worst_in.setdefault(job_id, []).append(page.Link(f"{s.name} (#{i + 1})", f"#metric-{slugs[s.name]}"))
    anchors = {job_id: f"clip-{_slug(job_id)}" for job_id in worst_in}
    clip_views, render_note, counts = _clip_views(
        worst_in,
        by_id,
        anchors,
        assets,
        html_dir,
        render=render,
        videos=videos,
        render_options=render_options,
        progress=progress,
    )
    files = {c.job_id: c.links for c in clip_views}
    series_views = []
    for s in series:
        rows = [
            page.WorstRow(
                rank=i + 1,
                job_id=job_id,
                value=value,
                solve_status=by_id[job_id].solve_status,
                evaluation_status=by_id[job_id].status,
                links=files[job_id],
                clip_anchor=anchors[job_id],
            )
            for i, (job_id, value) in enumerate(worst_of[s.name])
        ]
        series_views.append(page.SeriesView(s, f"metric-{slugs[s.name]}", plot_urls[s.name], rows))

    data = page.PageData(
        title=f"Retargeting report: {ev_path.parent.name or ev_path.name}",
        generated_at=utc_now(),
        package_version=_package_version(),
        evaluation_manifest=str(ev_path),
        worst=worst,
        evaluation_counts={s: getattr(ev, f"{s}_count") for s in ev.STATUSES} | {"total": ev.total},
        batch_manifest=str(batch_path) if batch_path else None,
        batch_note=batch_note,
        batch_counts=(
            {s: getattr(batch, f"{s}_count") for s in batch.STATUSES} | {"total": batch.total} if batch else {}
        ),
        settings=_settings(batch),
        provenance=_provenance(batch),
        run_config=_run_config(batch_path),
        problems=_problems(ev, batch),
        unreadable=unreadable,
        series=series_views,
        clips=clip_views,
        render_note=render_note,
        direction_table=dict(worse_table),
    )
    atomic_write_text(out, page.render_page(data))
    return ReportSummary(
        html=out,
        assets=assets,
        clips=len(clips),
        metrics=len(series),
        stills=counts["stills"],
        videos=counts["videos"],
        render_failed=counts["failed"],
        unreadable_reports=len(unreadable),
        seconds=round(time.perf_counter() - t0, 2),
    )


# --------------------------------------------------------------------------- inputs


def _check_options(
    worst: Any, render: bool, videos: bool, output_html: Any, worse: Mapping[str, str] | None
) -> dict[str, str]:
    if isinstance(worst, bool) or not isinstance(worst, int) or worst < 1:
        raise ConfigError(f"report: worst must be an integer >= 1, got {worst!r}")
    if videos and not render:
        raise ConfigError("report: videos=True needs render=True (--videos with --no-render)")
    out = Path(output_html)
    if out.is_dir():
        raise ConfigError(f"report: the output {out} is a folder; give the HTML file to write (report.html)")
    if not out.name or not out.stem:
        raise ConfigError(f"report: the output {str(output_html)!r} is not a file name")
    table = dict(WORSE if worse is None else worse)
    bad = {k: v for k, v in table.items() if v not in DIRECTIONS}
    if bad:
        k, v = next(iter(bad.items()))
        raise ConfigError(f"report: worse[{k!r}] is {v!r}; expected one of {', '.join(DIRECTIONS)}")
    return table


def _load_evaluation(path: Path) -> EvaluationManifest:
    try:
        return EvaluationManifest.load(path)
    except FileNotFoundError:
        raise MotionFormatError(
            path, "no such evaluation manifest (written by `retarget-jax evaluate --batch-manifest M --output-dir D`)"
        ) from None
    except IsADirectoryError:
        raise MotionFormatError(path, "is a folder, not an evaluation manifest") from None


def _load_batch(path: Path | None) -> tuple[BatchManifest | None, str | None]:
    """(manifest, None) or (None, why it could not be read): the run's settings are
    context, so a moved or broken batch manifest does not stop the report."""
    if path is None:
        return None, "The evaluation manifest names no batch manifest; run settings unknown."
    try:
        return BatchManifest.load(path), None
    except FileNotFoundError:
        return None, f"Batch manifest {path} not found; run settings unknown."
    except (RetargetError, OSError) as e:
        return None, f"Batch manifest unreadable; run settings unknown: {type(e).__name__}: {e}"


def _read_clip_reports(ev: EvaluationManifest, ev_path: Path, html_dir: Path):
    clips: list[ClipReport] = []
    unreadable: list[tuple[str, page.Link | None, str]] = []
    for rec in ev.records:
        if rec.status not in ("success", "partial"):
            continue
        if not rec.report:
            unreadable.append((rec.job_id, None, f"the evaluation record ({rec.status}) names no report"))
            continue
        rpath = manifest_path(ev_path, rec.report)
        try:
            report = load_metrics_report(rpath)
        except MotionFormatError as e:
            link = page.Link("report", page.href(rpath, html_dir)) if rpath.is_file() else None
            unreadable.append((rec.job_id, link, str(e)))
            continue
        result = manifest_path(ev_path, rec.result) if rec.result else None
        clips.append(ClipReport(rec.job_id, result, rpath, report, rec.status))
    return clips, unreadable


def _settings(batch: BatchManifest | None) -> list[tuple[str, str]]:
    if batch is None:
        return []

    def show(v: str | None) -> str:
        return "—" if v is None else v

    return [
        ("input_dir", show(batch.input_dir)),
        ("pattern", show(batch.pattern)),
        ("output_dir", show(batch.output_dir)),
        ("created_at", show(batch.created_at)),
        ("updated_at", show(batch.updated_at)),
    ]


def _provenance(batch: BatchManifest | None) -> dict[str, list[tuple[str, int]]]:
    if batch is None:
        return {}
    out = {}
    for field in PROVENANCE_FIELDS:
        c = collections.Counter(str(r.provenance[field]) for r in batch.records if r.provenance.get(field) is not None)
        out[field] = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
    return out


def _run_config(batch_path: Path | None) -> tuple[str, str] | None:
    if batch_path is None:
        return None
    path = batch_path.parent / RUN_CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:  # absent (older runs) or unreadable: the page says there is none
        return None
    if len(text) > MAX_RUN_CONFIG_CHARS:
        text = text[:MAX_RUN_CONFIG_CHARS] + f"\n... (cut at {MAX_RUN_CONFIG_CHARS} characters)\n"
    return str(path), text


def _problems(ev: EvaluationManifest, batch: BatchManifest | None) -> list[tuple[str, str, str, str]]:
    batch_by_id = batch.records_by_id() if batch else {}
    out = []
    for rec in ev.records:
        if rec.status == "success":
            continue
        b = batch_by_id.get(rec.job_id)
        b_status = "?" if b is None else b.status + (f" ({b.error_type})" if b.error_type else "")
        message = rec.message or (b.message if b else "")
        out.append((rec.job_id, b_status, rec.status, message))
    return out


def _package_version() -> str:
    return retarget_jax.__version__


# --------------------------------------------------------------------------- stills


def _slug(name: str) -> str:
    """A file and anchor name for ``name``: its safe characters, plus a hash of the whole
    so that names differing only in unsafe characters stay apart."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:60] or "x"
    return f"{safe}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


def _unique_slug(name: str, used: set[str]) -> str:
    """``name`` itself when it is a safe file name (plots keep their metric's name), else
    :func:`_slug`."""
    plain = name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", name) else _slug(name)
    slug = plain if plain.lower() not in used else _slug(name)
    used.add(slug.lower())
    return slug


def _renderer():
    """(module, None), or (None, why rendering is unavailable)."""
    try:
        import retarget_jax.render as render
    except ImportError as e:
        return None, f"Stills not rendered: the renderer (retarget_jax.render) is unavailable: {e}"
    return render, None


def _clip_views(
    worst_in: dict[str, list[page.Link]],
    by_id: dict[str, ClipReport],
    anchors: dict[str, str],
    assets: Path,
    html_dir: Path,
    *,
    render: bool,
    videos: bool,
    render_options: Any,
    progress: bool,
) -> tuple[list[page.ClipView], str | None, dict[str, int]]:
    """One view per clip of a worst table, rendering its stills (and video) once."""
    from tqdm import tqdm

    counts = {"stills": 0, "videos": 0, "failed": 0}
    renderer, note = _renderer() if render and worst_in else (None, None)
    if not render:
        note = "Stills not rendered (--no-render)."
    views = []
    for job_id in tqdm(
        worst_in, desc="render", unit="clip", file=sys.stderr, disable=not (progress and renderer is not None)
    ):
        clip = by_id[job_id]
        links = [page.Link("metrics", page.href(clip.report_path, html_dir))]
        notes: list[str] = []
        still_url = None
        rpath = clip.result_path
        if rpath is not None and rpath.is_file():
            links.insert(0, page.Link("result", page.href(rpath, html_dir)))
            links += [page.Link(label, page.href(f, html_dir)) for label, f in _run_renders(rpath)]
        if renderer is not None:
            slug = _slug(job_id)
            still, video = assets / "stills" / f"{slug}.png", assets / "videos" / f"{slug}.mp4"
            try:
                result, robot = _load_clip(rpath)
                renderer.render_contact_sheet(result, robot, still, options=render_options, name=job_id)
                counts["stills"] += 1
                still_url = page.href(still, html_dir)
                links.append(page.Link("still", still_url))
                if videos:
                    renderer.render_video(result, robot, video, options=render_options, name=job_id, progress=False)
                    counts["videos"] += 1
                    links.append(page.Link("rendered video", page.href(video, html_dir)))
            except (RetargetError, OSError) as e:
                what = "video" if still_url else "stills"
                notes.append(f"Could not render the {what} of this clip: {type(e).__name__}: {e}")
                counts["failed"] += still_url is None
        elif render:
            counts["failed"] += 1
        views.append(page.ClipView(job_id, anchors[job_id], still_url, links, notes, worst_in[job_id]))
    return views, note, counts


def _run_renders(result_path: Path) -> list[tuple[str, Path]]:
    """Renders a batch run left beside a result (``render.video`` / ``render.stills``):
    ``<stem>.mp4`` and ``<stem>.frame_<t>.png``, the stem being the file name without its
    result suffix (:func:`retarget_jax.formats.result_stem`), as the run names them."""
    stem = result_stem(result_path)
    found = []
    video = result_path.with_name(f"{stem}.mp4")
    if video.is_file():
        found.append(("video", video))
    for still in sorted(result_path.parent.glob(f"{glob.escape(stem)}.frame_*.png")):
        found.append((f"run still {still.name[len(stem) + 1 : -4]}", still))
    return found


def _load_clip(path: Path | None):
    if path is None:
        raise MotionFormatError("(none)", "the evaluation record names no result file")
    if not path.is_file():
        raise MotionFormatError(path, "the result file is missing")
    result = load_result(path)
    return result, load_robot(result.robot)
