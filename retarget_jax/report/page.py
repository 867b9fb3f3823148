"""The report's HTML page from what :mod:`retarget_jax.report.build` gathered (host).

Stage: reporting, the writer's text. One self-contained page: inline CSS, no script,
images and videos by relative links. Every string that came from a file (job ids,
messages, paths, config text, metric names) goes through :func:`esc`; every link through
:func:`href` (percent-encoded, then escaped), so a job id like ``a/<b>&"c"#1.npz`` is
shown as text and links to the right file.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from retarget_jax.report.collect import MetricSeries


def esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def href(target: Path, base_dir: Path) -> str:
    """A link from a page in ``base_dir`` to ``target``: relative, '/'-separated and
    percent-encoded (``#``, ``?``, ``%`` and spaces in file names stay part of the path)."""
    try:
        rel = os.path.relpath(os.path.abspath(target), os.path.abspath(base_dir))
    except ValueError:  # another drive (Windows): no relative path exists
        return Path(os.path.abspath(target)).as_uri()
    return urllib.parse.quote(Path(rel).as_posix(), safe="/")


def fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "null"
    return f"{v:.6g}"


# --------------------------------------------------------------------------- page data


@dataclasses.dataclass
class Link:
    label: str
    url: str  # already from href()


@dataclasses.dataclass
class WorstRow:
    rank: int
    job_id: str
    value: float
    solve_status: str
    evaluation_status: str
    links: list[Link]
    clip_anchor: str


@dataclasses.dataclass
class SeriesView:
    series: MetricSeries
    anchor: str
    plot_url: str
    rows: list[WorstRow]


@dataclasses.dataclass
class ClipView:
    job_id: str
    anchor: str
    still_url: str | None
    links: list[Link]
    notes: list[str]
    worst_in: list[Link]  # to the sections of the metrics the clip is among the worst of


@dataclasses.dataclass
class PageData:
    title: str
    generated_at: str
    package_version: str
    evaluation_manifest: str
    worst: int
    evaluation_counts: dict[str, int]
    batch_manifest: str | None
    batch_note: str | None
    batch_counts: dict[str, int]
    settings: list[tuple[str, str]]
    provenance: dict[str, list[tuple[str, int]]]
    run_config: tuple[str, str] | None  # (path shown, text)
    problems: list[tuple[str, str, str, str]]  # job id, batch status, evaluation status, message
    unreadable: list[tuple[str, Link | None, str]]  # job id, report link, message
    series: list[SeriesView]
    clips: list[ClipView]
    render_note: str | None
    direction_table: dict[str, str]


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: .8em; overflow-x: auto; font-size: .88em; }
.note { color: #8a5a00; } .bad { color: #b00020; } .muted { color: #666; }
.clip { border: 1px solid #ddd; padding: .6em; margin: .8em 0; }
.clip img { max-width: 100%; height: auto; display: block; margin: .4em 0; }
img.hist { max-width: 100%; height: auto; }
nav a { margin-right: .8em; }
"""


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    cls: str = "",
    attrs: str = "",
    row_attrs: Sequence[str] | None = None,
) -> str:
    """A table; ``rows`` hold HTML already escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        extra = f" {row_attrs[i]}" if row_attrs else ""
        body.append(f"<tr{extra}>" + "".join(r) + "</tr>")
    cls_attr = f' class="{esc(cls)}"' if cls else ""
    return f"<table{cls_attr}{attrs}><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def _td(text: object, num: bool = False) -> str:
    return f'<td class="num">{esc(text)}</td>' if num else f"<td>{esc(text)}</td>"


def _links(links: Sequence[Link]) -> str:
    return " ".join(f'<a href="{esc(lk.url)}">{esc(lk.label)}</a>' for lk in links)


def _settings(d: PageData) -> str:
    out = ['<h2 id="settings">Run settings</h2>']
    if d.batch_manifest:
        out.append(f"<p>Batch manifest: <code>{esc(d.batch_manifest)}</code></p>")
    if d.batch_note:
        out.append(f'<p class="bad">{esc(d.batch_note)}</p>')
    rows = [[_td(k), f"<td><code>{esc(v)}</code></td>"] for k, v in d.settings]
    if d.batch_counts:
        rows.append([_td("batch jobs"), _td(", ".join(f"{s} {n}" for s, n in d.batch_counts.items()))])
    for field, values in d.provenance.items():
        text = ", ".join(f"{v} ({n})" for v, n in values) if values else "—"
        rows.append([_td(f"{field} (jobs)"), f"<td><code>{esc(text)}</code></td>"])
    if rows:
        out.append(_table(["setting", "value"], rows, cls="settings"))
    if d.run_config:
        path, text = d.run_config
        out.append(f"<details><summary>Run config <code>{esc(path)}</code></summary>")  # long: folded
        out.append(f'<pre class="run-config">{esc(text)}</pre></details>')
    else:
        out.append('<p class="muted">No run_config.yaml beside the batch manifest.</p>')
    return "\n".join(out)


def _evaluation(d: PageData) -> str:
    out = [
        '<h2 id="evaluation">Evaluation</h2>',
        _table(
            ["status", "jobs"],
            [[_td(s), _td(n, num=True)] for s, n in d.evaluation_counts.items()],
            cls="evaluation-counts",
        ),
    ]
    out.append('<h3 id="problems">Failed, skipped and partial jobs</h3>')
    if d.problems:
        rows = [[_td(j), _td(b), _td(e), _td(m)] for j, b, e, m in d.problems]
        out.append(_table(["job", "batch", "evaluation", "message"], rows, cls="problems"))
    else:
        out.append("<p>None: every job was retargeted and evaluated.</p>")
    if d.unreadable:
        out.append('<h3 id="unreadable">Unreadable metrics reports</h3>')
        out.append('<p class="bad">These clips are left out of the histograms and tables.</p>')
        rows = [[_td(j), f"<td>{_links([lk]) if lk else '—'}</td>", _td(m)] for j, lk, m in d.unreadable]
        out.append(_table(["job", "report", "problem"], rows, cls="unreadable"))
    return "\n".join(out)


def _series(d: PageData, v: SeriesView) -> str:
    s = v.series
    values = sorted(s.values.values())
    unit = f" {s.unit}" if s.unit else ""
    out = [f'<h3 id="{esc(v.anchor)}">{esc(s.name)}</h3>']
    if s.description:
        out.append(f"<p>{esc(s.description)}</p>")
    direction = "higher is worse" if s.worse == "higher" else "lower is worse"
    if s.known_direction:
        out.append(f"<p>Ranked {esc(direction)}.</p>")
    else:
        out.append(
            f'<p class="note">Unknown metric: no direction is recorded for it in '
            f"<code>retarget_jax.report.WORSE</code>, so it is ranked {esc(direction)} by default.</p>"
        )
    out.append(f'<img class="hist" src="{esc(v.plot_url)}" alt="{esc("histogram of " + s.name)}">')
    caption = f"{len(values)} clip(s) with a value, {len(s.nulls)} null (left out of the histogram)"
    if values:
        mid = (
            values[len(values) // 2]
            if len(values) % 2
            else 0.5 * (values[len(values) // 2 - 1] + values[len(values) // 2])
        )
        caption += (
            f"; min {fmt(values[0])}, median {fmt(mid)}, mean {fmt(sum(values) / len(values))}, "
            f"max {fmt(values[-1])}{unit}"
        )
    out.append(f'<p class="caption">{esc(caption)}</p>')
    if s.nulls:
        items = "".join(
            f"<li>{esc(j)}" + (f": {esc(s.reasons[j])}" if j in s.reasons else "") + "</li>" for j in s.nulls
        )
        out.append(f"<details><summary>{len(s.nulls)} null value(s)</summary><ul>{items}</ul></details>")
    if not v.rows:
        out.append('<p class="muted">No values: no worst clips.</p>')
        return "\n".join(out)
    rows, attrs = [], []
    for r in v.rows:
        rows.append(
            [
                _td(r.rank, num=True),
                _td(r.job_id),
                _td(f"{fmt(r.value)}{unit}", num=True),
                _td(r.solve_status),
                _td(r.evaluation_status),
                f'<td>{_links(r.links)} <a href="#{esc(r.clip_anchor)}">clip</a></td>',
            ]
        )
        attrs.append(f'data-job="{esc(r.job_id)}" data-value="{esc(repr(r.value))}"')
    out.append(f"<p>The {len(v.rows)} worst ({esc(direction)}):</p>")
    out.append(
        _table(
            ["#", "job", "value", "solve status", "evaluation", "files"],
            rows,
            cls="worst",
            attrs=f' data-metric="{esc(s.name)}" data-worse="{esc(s.worse)}"',
            row_attrs=attrs,
        )
    )
    return "\n".join(out)


def _clips(d: PageData) -> str:
    out = ['<h2 id="clips">Worst clips</h2>']
    if d.render_note:
        out.append(f'<p class="note">{esc(d.render_note)}</p>')
    if not d.clips:
        out.append('<p class="muted">No clip has a metric value.</p>')
    for c in d.clips:
        out.append(f'<div class="clip" id="{esc(c.anchor)}" data-job="{esc(c.job_id)}">')
        out.append(f"<h3>{esc(c.job_id)}</h3>")
        out.append(f"<p>Among the worst in: {', '.join(_links([lk]) for lk in c.worst_in)}</p>")
        if c.still_url:
            out.append(
                f'<a href="{esc(c.still_url)}"><img class="still" src="{esc(c.still_url)}" '
                f'alt="{esc("frames of " + c.job_id)}"></a>'
            )
        for note in c.notes:
            out.append(f'<p class="note render-note">{esc(note)}</p>')
        if c.links:
            out.append(f"<p>{_links(c.links)}</p>")
        out.append("</div>")
    return "\n".join(out)


def _directions(d: PageData) -> str:
    rows = [[_td(k), _td(f"{v} is worse")] for k, v in d.direction_table.items()]
    return (
        "<details><summary>Which way is worse, per metric</summary>"
        + _table(["metric", "ranking"], rows, cls="directions")
        + "<p>Any other metric (a plugin) is ranked higher-is-worse, and its section says so.</p></details>"
    )


def render_page(d: PageData) -> str:
    """The whole page (UTF-8 text)."""
    nav = [
        '<a href="#evaluation">evaluation</a>',
        '<a href="#metrics">metrics</a>',
        '<a href="#clips">worst clips</a>',
        '<a href="#settings">settings</a>',
    ]
    toc = "".join(f'<li><a href="#{esc(v.anchor)}">{esc(v.series.name)}</a></li>' for v in d.series)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(d.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(d.title)}</h1>",
        f'<p class="muted">Evaluation manifest <code>{esc(d.evaluation_manifest)}</code>; generated '
        f"{esc(d.generated_at)} by retarget_jax {esc(d.package_version)}; {d.worst} worst clip(s) per metric.</p>",
        f"<nav>{''.join(nav)}</nav>",
        _evaluation(d),
        '<h2 id="metrics">Metrics</h2>',
        _directions(d),
        f"<ul>{toc}</ul>" if toc else '<p class="muted">No metric values: no clip has a readable report.</p>',
        *(_series(d, v) for v in d.series),
        _clips(d),
        _settings(d),  # last: what a reviewer reads after the worst clips
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
