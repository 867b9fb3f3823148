"""``retarget-jax report``: the HTML page of an evaluated batch (retarget_jax.report).

One small batch is built without the solver (synthetic G1 trajectories saved as results, a
batch manifest with a failed job), evaluated by the real ``retarget-jax evaluate
--batch-manifest`` path (one compile of the metrics pass, B=8 padded), and reported. The
page is parsed (every tag closed, every link resolves), the histograms are checked to be
one per metric value and not blank, and each worst table is recomputed here from the
per-clip metrics reports. Rendering is tested twice: with a stand-in renderer (call
counts, failures, videos; no OpenGL needed) and with the real one where it can draw.
"""

from __future__ import annotations

import argparse
import html.parser
import io
import json
import shutil
import types
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from inputs import synthetic_trajectory

from retarget_jax.cli import main as cli_main
from retarget_jax.errors import ConfigError, MotionFormatError, RenderError
from retarget_jax.io import atomic_write_bytes, save_result
from retarget_jax.manifest import BatchManifest, BatchRunRecord, EvaluationManifest, manifest_path
from retarget_jax.report import build as build_mod
from retarget_jax.report import build_report, generate_report
from retarget_jax.report.cli import add_report_parser

PIL_Image = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")

ODD_ID = "odd/<b>&\"q'#1 %20.npz"  # markup, quotes, a fragment mark, a space and a percent-escape
FAILED_ID = "broken/<script>.bvh"
FEET = ("left_ankle_roll_link", "right_ankle_roll_link")
TARGETS = ("pelvis", "left_wrist_yaw_link", "right_knee_link")
RUN_CONFIG = 'solver: {max_iters: 30}\n# a <comment> & "quotes"\nbatch: {max_batch: 8}\n'
# written here, independently of retarget_jax.report.WORSE
LOWER_IS_WORSE = {"contact_preservation"}


def _clip(g1, seed: int, T: int = 16):
    """A synthetic G1 result with targets near its bodies and a contact plan (so that
    every built-in metric has a value), all clips with the same shapes (one compile)."""
    r = synthetic_trajectory(g1, T, seed=seed)
    rng = np.random.default_rng(100 + seed)
    idx = [g1.body_names.index(b) for b in TARGETS]
    r.target_pos_w = r.body_pos_w[:, idx] + rng.normal(scale=0.01 * (1 + seed), size=(T, len(idx), 3))
    r.target_body_names = TARGETS
    r.target_offset_b = np.zeros((len(idx), 3))
    r.contacts = rng.uniform(size=(T, 2)) < 0.5
    r.contact_body_names = FEET
    r.final_cost = 0.1 * (seed + 1)
    r.iterations = 20
    r.provenance = {
        "robot": "unitree_g1",
        "recipe": "lafan1_g1",
        "config_hash": "cafe01",
        "package_version": "0.1.0",
        "source_path": f"motions/{seed}.bvh",
    }
    return r


@pytest.fixture(scope="module")
def batch(tmp_path_factory, g1):
    """run/ (results, batch_manifest.json, run_config.yaml) and eval/ (reports and
    evaluation_manifest.json) of 5 results and one failed job."""
    root = tmp_path_factory.mktemp("report_batch")
    run = root / "run"
    ids = ["a/walk.npz", "a/run.npz", "b/jump.npz", "c/not_solved.npz", ODD_ID]
    records = []
    for i, job_id in enumerate(ids):
        r = _clip(g1, seed=i)
        if job_id == "c/not_solved.npz":  # a loaded trajectory: optimization_cost is null
            r.final_cost, r.iterations = float("nan"), 0
        save_result(r, run / "results" / job_id)
        records.append(
            BatchRunRecord(
                job_id,
                f"motions/{job_id}",
                f"results/{job_id}",
                "success",
                message="converged",
                provenance=dict(r.provenance),
            )
        )
    records.insert(
        2,
        BatchRunRecord(
            FAILED_ID,
            f"motions/{FAILED_ID}",
            None,
            "failed",
            message="line 3: <bad> & broken",
            error_type="motion_format",
        ),
    )
    mpath = BatchManifest.from_records(
        records, input_dir="motions", output_dir="results", pattern="**/*.bvh"
    ).save_json(run / "batch_manifest.json")
    atomic_write_bytes(run / "run_config.yaml", RUN_CONFIG.encode())
    rc = cli_main(["evaluate", "--batch-manifest", str(mpath), "--output-dir", str(root / "eval"), "--no-progress"])
    assert rc == 0
    return root


@pytest.fixture(scope="module")
def report(batch):
    """The page without rendering, 3 worst per metric (fewer than the 5 clips)."""
    out = batch / "site" / "report.html"
    summary = generate_report(batch / "eval" / "evaluation_manifest.json", out, worst=3, render=False, progress=False)
    return summary, Page.load(out)


# --------------------------------------------------------------------------- parsing

_VOID = {"img", "meta", "br", "link", "hr", "input", "source"}


class Node:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.iter()

    def has(self, key: str, value: str) -> bool:
        if key == "class":
            return value in (self.attrs.get("class") or "").split()
        return self.attrs.get(key) == value

    def find_all(self, tag, **attrs):
        """Descendants ``<tag>`` with these attributes (``class_`` matches one class)."""
        return [n for n in self.iter() if n.tag == tag and all(n.has(k.rstrip("_"), v) for k, v in attrs.items())]


class Page(html.parser.HTMLParser):
    """A tree of the page; fails on an end tag that closes something else."""

    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.path, self.root = path, Node("#root", {})
        self.cur = self.root

    @classmethod
    def load(cls, path: Path) -> Page:
        p = cls(path)
        p.raw = path.read_text(encoding="utf-8")
        p.feed(p.raw)
        p.close()
        assert p.cur is p.root, f"unclosed <{p.cur.tag}>"
        return p

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if tag not in _VOID:
            self.cur = node

    def handle_endtag(self, tag):
        assert self.cur.tag == tag, f"</{tag}> closes <{self.cur.tag}>"
        self.cur = self.cur.parent

    def handle_data(self, data):
        self.cur.children.append(data)

    def urls(self) -> list[str]:
        return [n.attrs[a] for n in self.root.iter() for a in ("href", "src") if a in n.attrs]

    def worst_tables(self) -> dict[str, list[tuple[str, float]]]:
        return {
            t.attrs["data-metric"]: [
                (tr.attrs["data-job"], float(tr.attrs["data-value"]))
                for tr in t.find_all("tr")
                if "data-job" in tr.attrs
            ]
            for t in self.root.find_all("table", class_="worst")
        }

    def rows(self, cls: str) -> list[list[str]]:
        (table,) = self.root.find_all("table", class_=cls)
        return [[td.text() for td in tr.find_all("td")] for tr in table.find_all("tr") if tr.find_all("td")]


def _file(page: Page, url: str) -> Path:
    assert "://" not in url and not url.startswith("/"), url  # relative links only
    return page.path.parent / urllib.parse.unquote(url)


def _reports(batch: Path) -> dict[str, dict]:
    """job id -> its metrics report, read here from the evaluation manifest's records."""
    ev_path = batch / "eval" / "evaluation_manifest.json"
    ev = EvaluationManifest.load(ev_path)
    return {r.job_id: json.loads(manifest_path(ev_path, r.report).read_text()) for r in ev.records if r.report}


def _expected_series(reports: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """series name -> job id -> value (None for null), computed from the reports."""
    dict_metrics = {m for rep in reports.values() for m, e in rep["metrics"].items() if isinstance(e["value"], dict)}
    out: dict[str, dict[str, float | None]] = {}
    for job, rep in reports.items():
        for m, e in rep["metrics"].items():
            if m in dict_metrics:
                for k, v in (e["value"] or {}).items():
                    out.setdefault(f"{m}.{k}", {})[job] = v
            else:
                out.setdefault(m, {})[job] = e["value"]
    return out


def _copy(batch: Path, dst: Path) -> Path:
    """A copy of the batch whose evaluation manifest points into the copy (the evaluator
    records results and the batch manifest outside its folder by absolute path)."""
    shutil.copytree(batch, dst)
    ev = dst / "eval" / "evaluation_manifest.json"
    ev.write_text(ev.read_text().replace(json.dumps(str(batch))[1:-1], json.dumps(str(dst))[1:-1]))
    return dst


def _is_blank(png: Path) -> bool:
    img = np.asarray(PIL_Image.open(png).convert("RGB"))
    return img.size == 0 or len(np.unique(img.reshape(-1, 3), axis=0)) < 3


def _coloured(png: Path) -> float:
    """Fraction of saturated pixels: bars, not just grey axes and text."""
    img = np.asarray(PIL_Image.open(png).convert("RGB")).astype(int)
    return float(((img.max(-1) - img.min(-1)) > 60).mean())


# --------------------------------------------------------------------------- the page


def test_page_parses_and_every_link_resolves(report):
    summary, page = report
    assert summary.html.is_file() and summary.assets == summary.html.parent / "report_assets"
    urls = page.urls()
    ids = {n.attrs["id"] for n in page.root.iter() if "id" in n.attrs}
    files = [u for u in urls if not u.startswith("#")]
    assert files and all(_file(page, u).is_file() for u in files), [u for u in files if not _file(page, u).is_file()]
    assert all(u[1:] in ids for u in urls if u.startswith("#")), [
        u for u in urls if u.startswith("#") and u[1:] not in ids
    ]
    assert not page.root.find_all("script")


def test_one_histogram_per_metric_value_not_blank(batch, report):
    summary, page = report
    expected = _expected_series(_reports(batch))
    assert {"penetration.max", "joint_limit_violation.max_rad", "tracking_error.p95", "jerk"} <= set(expected)
    plots = sorted((summary.assets / "plots").glob("*.png"))
    assert sorted(p.stem for p in plots) == sorted(expected) and summary.metrics == len(expected)
    shown = {_file(page, n.attrs["src"]).resolve() for n in page.root.find_all("img", class_="hist")}
    assert shown == {p.resolve() for p in plots}
    assert [p.name for p in plots if _is_blank(p)] == []
    with_values = {k for k, v in expected.items() if any(x is not None for x in v.values())}
    assert with_values and [p.name for p in plots if p.stem in with_values and _coloured(p) < 0.02] == []


def test_worst_tables_follow_the_reports(batch, report):
    _, page = report
    expected = _expected_series(_reports(batch))
    tables = page.worst_tables()
    assert set(tables) == {k for k, v in expected.items() if any(x is not None for x in v.values())}
    for name, rows in tables.items():
        values = {j: v for j, v in expected[name].items() if v is not None}
        lower = name.split(".")[0] in LOWER_IS_WORSE
        ranked = sorted(values.values(), reverse=not lower)[:3]
        assert [v for _, v in rows] == ranked, name
        assert all(values[j] == v for j, v in rows), name  # each row's value is its clip's
        (table,) = page.root.find_all("table", class_="worst", **{"data-metric": name})
        assert table.attrs["data-worse"] == ("lower" if lower else "higher")
    # the null optimization_cost is left out, and counted
    assert "c/not_solved.npz" not in dict(tables["optimization_cost"])
    (h,) = page.root.find_all("h3", id="metric-optimization_cost")
    captions = [n.text() for n in h.parent.find_all("p", class_="caption")]
    assert any(c.startswith("4 clip(s) with a value, 1 null") for c in captions), captions


def test_failed_jobs_settings_and_escaping(batch, report):
    _, page = report
    problems = page.rows("problems")
    (failed,) = [r for r in problems if r[0] == FAILED_ID]
    assert failed[1] == "failed (motion_format)" and failed[2] == "skipped" and "line 3: <bad> & broken" in failed[3]
    for raw in (ODD_ID, FAILED_ID, "<bad>", "<comment>"):  # never raw markup in the page ...
        assert raw not in page.raw
    odd_rows = [tr for tr in page.root.find_all("tr") if tr.attrs.get("data-job") == ODD_ID]
    assert odd_rows and all(tr.find_all("td")[1].text() == ODD_ID for tr in odd_rows)
    # ... but shown as text, and its links reach its files
    (clip_div,) = [n for n in page.root.find_all("div", class_="clip") if n.attrs["data-job"] == ODD_ID]
    links = {a.text(): _file(page, a.attrs["href"]) for a in clip_div.find_all("a")}
    assert links["result"] == batch / "site" / ".." / "run" / "results" / ODD_ID
    assert links["result"].is_file() and links["metrics"].is_file()
    (pre,) = page.root.find_all("pre", class_="run-config")
    assert pre.text() == RUN_CONFIG
    settings = dict((r[0], r[1]) for r in page.rows("settings"))
    assert settings["input_dir"] == "motions" and settings["pattern"] == "**/*.bvh"
    assert settings["robot (jobs)"] == "unitree_g1 (5)" and settings["config_hash (jobs)"] == "cafe01 (5)"
    assert "success 5, skipped 0, failed 1" in settings["batch jobs"]
    counts = dict((r[0], int(r[1])) for r in page.rows("evaluation-counts"))
    assert counts["success"] + counts["partial"] == 5 and counts["skipped"] == 1 and counts["total"] == 6


def test_no_render_writes_no_stills(report):
    summary, page = report
    assert summary.stills == 0 and not (summary.assets / "stills").exists()
    assert not (summary.assets / "videos").exists()
    assert not page.root.find_all("img", class_="still")
    assert "Stills not rendered (--no-render)." in page.raw


# --------------------------------------------------------------------------- bad input


def test_a_corrupt_metrics_report_is_listed_and_the_rest_renders(batch, tmp_path):
    root = _copy(batch, tmp_path / "copy")
    bad = root / "eval" / "a" / "run.metrics.json"
    bad.write_bytes(b'{"kind": "retarget_jax.metrics_report", "schema_')
    gone = root / "eval" / "b" / "jump.metrics.json"
    gone.unlink()
    summary = generate_report(root / "eval" / "evaluation_manifest.json", root / "r.html", render=False, progress=False)
    page = Page.load(summary.html)
    assert summary.unreadable_reports == 2 and summary.clips == 3
    rows = {r[0]: r for r in page.rows("unreadable")}
    assert set(rows) == {"a/run.npz", "b/jump.npz"}
    assert "run.metrics.json" in rows["a/run.npz"][2] and "not valid JSON" in rows["a/run.npz"][2]
    assert "jump.metrics.json" in rows["b/jump.npz"][2] and "no such metrics report" in rows["b/jump.npz"][2]
    assert {j for t in page.worst_tables().values() for j, _ in t} == {"a/walk.npz", "c/not_solved.npz", ODD_ID}


def test_a_plugin_metric_is_ranked_higher_is_worse_and_says_so(batch, tmp_path):
    root = _copy(batch, tmp_path / "copy")
    for i, p in enumerate(sorted((root / "eval").rglob("*.metrics.json"))):
        rep = json.loads(p.read_text())
        rep["metrics"]["my_plugin"] = {"unit": "widgets", "value": float(i)}
        p.write_text(json.dumps(rep))
    summary = generate_report(
        root / "eval" / "evaluation_manifest.json", root / "r.html", worst=2, render=False, progress=False
    )
    page = Page.load(summary.html)
    assert [v for _, v in page.worst_tables()["my_plugin"]] == [4.0, 3.0]
    (h,) = page.root.find_all("h3", id="metric-my_plugin")
    section = h.parent.text()
    assert "Unknown metric" in section and "ranked higher is worse by default" in section
    assert (summary.assets / "plots" / "my_plugin.png").is_file()


def test_bad_manifests_and_options_are_typed_errors(batch, tmp_path):
    ev = batch / "eval" / "evaluation_manifest.json"
    with pytest.raises(MotionFormatError, match=r"nope\.json: no such evaluation manifest"):
        build_report(tmp_path / "nope.json", tmp_path / "r.html", render=False)
    corrupt = tmp_path / "evaluation_manifest.json"
    corrupt.write_text('{"schema_version": 1, "records": [')
    with pytest.raises(MotionFormatError, match=r"evaluation_manifest\.json.*not valid JSON"):
        build_report(corrupt, tmp_path / "r.html", render=False)
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="worst must be an integer >= 1"):
            build_report(ev, tmp_path / "r.html", worst=bad, render=False)
    with pytest.raises(ConfigError, match="videos=True needs render=True"):
        build_report(ev, tmp_path / "r.html", render=False, videos=True)
    with pytest.raises(ConfigError, match="is a folder"):
        build_report(ev, tmp_path, render=False)
    with pytest.raises(ConfigError, match="expected one of higher, lower"):
        generate_report(ev, tmp_path / "r.html", render=False, worse={"jerk": "up"})
    assert not (tmp_path / "r.html").exists()


def _parse(argv):
    ap = argparse.ArgumentParser(prog="retarget-jax")
    add_report_parser(ap.add_subparsers(dest="command", required=True))
    return ap.parse_args(argv)


def test_cli_handler_prints_one_json_line(batch, tmp_path, capsys):
    out = tmp_path / "cli" / "index.html"
    args = _parse(
        [
            "report",
            "--evaluation-manifest",
            str(batch / "eval" / "evaluation_manifest.json"),
            "--output",
            str(out),
            "--worst",
            "2",
            "--no-render",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert {"report", "clips", "metrics", "stills", "seconds"} <= set(summary)
    assert summary["report"] == str(out) and summary["clips"] == 5 and summary["stills"] == 0
    assert summary["metrics"] == len(list((tmp_path / "cli" / "index_assets" / "plots").glob("*.png")))
    args = _parse(["report", "--evaluation-manifest", "x.json", "--output", str(out), "--width", "0"])
    with pytest.raises(ConfigError, match="--width must be a positive"):
        args.func(args)
    args = _parse(["report", "--evaluation-manifest", "x.json", "--output", str(out), "--worst", "0"])
    with pytest.raises(ConfigError, match="worst"):
        args.func(args)


# --------------------------------------------------------------------------- rendering


def _png_bytes(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, size=(8, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PIL_Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_each_worst_clip_is_rendered_once_and_failures_are_noted(batch, tmp_path, monkeypatch):
    """A stand-in renderer: the clip with the odd id fails with RenderError, one result file
    is missing, one has a video beside it; the others get a still and a rendered video."""
    root = _copy(batch, tmp_path / "copy")
    (root / "run" / "results" / "b" / "jump.npz").unlink()
    (root / "run" / "results" / "a" / "walk.mp4").write_bytes(b"not really a video")  # a run's renders
    (root / "run" / "results" / "a" / "walk.frame_00003.png").write_bytes(_png_bytes(0))
    calls = {"sheet": [], "video": []}

    def render_contact_sheet(result, robot, output, *, frames=None, options=None, name=None):
        calls["sheet"].append(name)
        if name == ODD_ID:
            raise RenderError("no OpenGL backend (stand-in)")
        assert robot.name == result.robot == "unitree_g1" and options == "OPTS"
        return atomic_write_bytes(output, _png_bytes(len(calls["sheet"])))

    def render_video(result, robot, output, *, options=None, name=None, progress=False):
        assert name is not None and options == "OPTS"
        calls["video"].append(result.num_frames)
        return atomic_write_bytes(output, b"mp4")

    fake = types.SimpleNamespace(render_contact_sheet=render_contact_sheet, render_video=render_video)
    monkeypatch.setattr(build_mod, "_renderer", lambda: (fake, None))
    summary = generate_report(
        root / "eval" / "evaluation_manifest.json",
        root / "site" / "r.html",
        worst=5,
        videos=True,
        render_options="OPTS",
        progress=False,
    )
    page = Page.load(summary.html)
    in_tables = {j for t in page.worst_tables().values() for j, _ in t}
    assert in_tables == {"a/walk.npz", "a/run.npz", "b/jump.npz", "c/not_solved.npz", ODD_ID}
    # each clip once; the missing result never reaches the renderer
    assert sorted(calls["sheet"]) == sorted(in_tables - {"b/jump.npz"})
    assert len(calls["video"]) == 3
    assert summary.stills == 3 and summary.videos == 3 and summary.render_failed == 2
    clips = {n.attrs["data-job"]: n for n in page.root.find_all("div", class_="clip")}
    notes = {j: [p.text() for p in n.find_all("p", class_="render-note")] for j, n in clips.items()}
    assert "RenderError: no OpenGL backend (stand-in)" in notes[ODD_ID][0]
    assert "the result file is missing" in notes["b/jump.npz"][0]
    for j in ("a/walk.npz", "a/run.npz", "c/not_solved.npz"):
        assert notes[j] == [] and len(clips[j].find_all("img", class_="still")) == 1
    walk_links = {a.text(): a.attrs["href"] for a in clips["a/walk.npz"].find_all("a")}
    assert _file(page, walk_links["video"]).name == "walk.mp4"
    assert _file(page, walk_links["run still frame_00003"]).name == "walk.frame_00003.png"
    assert "video" not in {a.text() for a in clips["a/run.npz"].find_all("a")}
    assert _file(page, walk_links["rendered video"]).read_bytes() == b"mp4"
    assert all(_file(page, u).is_file() for u in page.urls() if not u.startswith("#"))


def _real_renderer(g1, tmp_path):
    """The renderer module, or skip where it cannot draw here (no OpenGL backend)."""
    render = pytest.importorskip("retarget_jax.render")
    try:
        render.render_contact_sheet(
            _clip(g1, 0, T=4), g1, tmp_path / "probe.png", options=render.RenderOptions(width=64, height=48)
        )
    except RenderError as e:
        pytest.skip(f"no offscreen rendering here: {e}")
    return render


def test_real_stills_of_the_worst_clips(batch, g1, tmp_path, monkeypatch):
    render = _real_renderer(g1, tmp_path)
    calls = []
    real = render.render_contact_sheet

    def counting(result, robot, output, **kw):
        calls.append(Path(output).name)
        return real(result, robot, output, **kw)

    monkeypatch.setattr(render, "render_contact_sheet", counting)
    summary = generate_report(
        batch / "eval" / "evaluation_manifest.json",
        tmp_path / "r.html",
        worst=1,
        render_options=render.RenderOptions(width=160, height=120),
        progress=False,
    )
    page = Page.load(summary.html)
    in_tables = {j for t in page.worst_tables().values() for j, _ in t}
    assert summary.stills == len(in_tables) == len(calls) == len(set(calls)) and summary.render_failed == 0
    stills = sorted((summary.assets / "stills").glob("*.png"))
    assert len(stills) == len(in_tables) and not [p.name for p in stills if _is_blank(p)]
    assert PIL_Image.open(stills[0]).size[1] == 120
    shown = {_file(page, n.attrs["src"]).resolve() for n in page.root.find_all("img", class_="still")}
    assert shown == {p.resolve() for p in stills}
