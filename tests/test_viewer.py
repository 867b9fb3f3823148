"""Tests for retarget_jax.motionlib.viewer: geometry and jerk on known inputs, the panel's
controls, and a screenshot of the page in headless Chromium showing the figure.

The screenshot test needs viser (the ``viewer`` extra, in the test extras) and a Chromium
binary (``apt-get install chromium``, not a Python package); it skips, saying which, where
either is missing.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import mujoco
import numpy as np
import pytest
from PIL import Image
from test_motionlib import TRAIN, write_config, write_tree

from retarget_jax.motionlib import BuildOptions, build_libraries
from retarget_jax.motionlib.viewer import ROBOT_COLOR, frame_jerk, geom_mesh, load_motions

CHROMIUM = next(
    (
        shutil.which(n)
        for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
        if shutil.which(n)
    ),
    None,
)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("viewer")
    write_tree(d / "amass")
    cfg = write_config(d / "train.yaml", TRAIN[:1])
    s = build_libraries(d / "amass", d / "out", [cfg], BuildOptions(target="smpl"), progress=False)
    return Path(s.libraries["train"][0])


def test_frame_jerk_of_a_cubic_is_six():
    fps = 50.0
    t = np.arange(20) / fps
    q = np.stack([t**3, -2 * t**3, t], axis=1)  # third derivatives 6, -12, 0
    j = frame_jerk(q, fps)
    np.testing.assert_allclose(j[1:-2], 12.0, rtol=1e-6)
    assert j[0] == 0 and j[-2:].tolist() == [0, 0] and frame_jerk(q[:3], fps).tolist() == [0, 0, 0]


def test_geom_meshes_fill_their_geoms():
    xml = """<mujoco><worldbody><body><freejoint/>
      <geom name="box" type="box" size=".1 .2 .3"/><geom name="capsule" type="capsule" size=".05 .2"/>
      <geom name="cylinder" type="cylinder" size=".04 .1"/><geom name="sphere" type="sphere" size=".07"/>
    </body><geom name="plane" type="plane" size="1 1 .1"/></worldbody></mujoco>"""
    m = mujoco.MjModel.from_xml_string(xml)
    expect = {
        "box": [0.1, 0.2, 0.3],
        "capsule": [0.05, 0.05, 0.25],
        "cylinder": [0.04, 0.04, 0.1],
        "sphere": [0.07, 0.07, 0.07],
    }
    for name, half in expect.items():
        v, f = geom_mesh(m, m.geom(name).id)
        np.testing.assert_allclose(np.abs(v).max(axis=0), half, rtol=1e-6)
        assert f.max() < len(v) and len(f) >= 12
        # closed and outward: the signed volume is positive
        vol = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6
        assert vol > 0
    assert geom_mesh(m, m.geom("plane").id) is None


def test_load_motions_of_a_library_and_of_result_files(library, tmp_path, g1, g1_trajectory):
    motions, model = load_motions(library)
    assert [m.name for m in motions] == ["SubjectA/walk_00_poses@0-1.5", "SubjectA/walk_00_poses@1-2.5"]
    assert model.nbody - 1 == len(motions[0].body_names) == 24 and motions[1].metrics["weight"] == 3.0
    from retarget_jax.io import save_result

    save_result(g1_trajectory, tmp_path / "a" / "clip.npz")
    motions, model = load_motions(tmp_path)
    assert len(motions) == 1 and motions[0].metrics["robot"] == "unitree_g1" and model.nbody - 1 == 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _figure_pixels(img: np.ndarray) -> np.ndarray:
    """Mask of the figure's colour (shaded magenta) in the scene part of a screenshot (the
    left 60%: viser's panel sits on the right)."""
    scene = img[:, : int(img.shape[1] * 0.6)].astype(int)
    r, g, b = scene[..., 0], scene[..., 1], scene[..., 2]
    return (r > 110) & (b > 110) & (g < 0.6 * np.minimum(r, b))


def _screenshots(url: str, profile: Path, deadline_s: float):
    """Open ``url`` in headless Chromium and take a screenshot every second (through the
    DevTools protocol, in real time: the page's scene arrives over a websocket after it
    loads) until one shows the figure or the deadline passes; returns the last as an RGB
    array. Chromium runs in its own process group and is killed whole at the end, so no
    browser process outlives the test."""
    from websockets.sync.client import connect  # a dependency of viser

    cmd = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=900,600",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    end = time.monotonic() + deadline_s
    try:
        active = profile / "DevToolsActivePort"
        while not (active.is_file() and active.read_text().strip()):
            assert time.monotonic() < end and proc.poll() is None, "Chromium did not start its DevTools server"
            time.sleep(0.05)
        port = int(active.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            ids = iter(range(1, 1_000_000))

            def call(method: str, **params):
                i = next(ids)
                ws.send(json.dumps({"id": i, "method": method, "params": params}))
                while True:
                    msg = json.loads(ws.recv(timeout=max(1.0, end - time.monotonic())))
                    if msg.get("id") == i:
                        assert "error" not in msg, msg
                        return msg["result"]

            call("Page.navigate", url=url)
            while True:
                time.sleep(1.0)
                png = base64.b64decode(call("Page.captureScreenshot", format="png")["data"])
                img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
                if _figure_pixels(img).mean() > 0.002 or time.monotonic() > end:
                    return img
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.timeout(240)
def test_page_in_headless_chromium_shows_the_figure(library, tmp_path):
    pytest.importorskip("viser", reason="the viewer needs viser (pip install 'retarget-jax[viewer]')")
    if CHROMIUM is None:
        pytest.skip("no headless Chromium on PATH (apt-get install chromium): the screenshot test needs a browser")
    from retarget_jax.motionlib.viewer import FLAG_COLOR, serve

    port = _free_port()
    viewer = serve(library, port=port, jerk_threshold=1e12, block=False)
    try:
        # the panel's controls, driven as the page's callbacks drive them
        assert viewer.motion.name.endswith("@0-1.5") and viewer.playing
        t0 = viewer.time_s
        time.sleep(0.5)
        assert viewer.time_s != t0  # playing
        viewer.g_play.value = False
        viewer.playing = False
        viewer._select(1)
        assert viewer.motion.name.endswith("@1-2.5") and viewer.g_time.max == pytest.approx(1.5)
        viewer.g_jerk.value = 0.0  # every frame with jerk > 0 is flagged
        viewer._update_flags()
        assert "of 46 frames over 0: 1-43" in viewer.g_flags.content
        viewer._show(0)
        assert not viewer._flagged and all(tuple(m.color) == ROBOT_COLOR for m in viewer.meshes)
        viewer._next_flag()
        assert viewer.frame == 1 and viewer._flagged and all(tuple(m.color) == FLAG_COLOR for m in viewer.meshes)
        viewer.g_jerk.value = 1e12
        viewer._select(0)
        img = _screenshots(f"http://127.0.0.1:{port}", tmp_path / "profile", deadline_s=90)
        Image.fromarray(img).save(tmp_path / "viewer.png")  # kept with the test's tmp_path, for a look
    finally:
        viewer.stop()
    assert img.std() > 10  # not a blank page
    assert ROBOT_COLOR == (200, 40, 200)
    figure = _figure_pixels(img)
    assert figure.mean() > 0.002, f"{figure.sum()} figure pixels in the scene"
    ys, _ = np.nonzero(figure)
    assert np.ptp(ys) > 0.15 * img.shape[0]  # a standing figure, not a stray pixel
