"""Browser viewer of motion libraries and retargeting results (stage: motion libraries,
host code; needs viser, the ``viewer`` extra).

    retarget-jax view out/amass_train.npz        # a library (or a folder of libraries)
    retarget-jax view results/                   # a folder of result npz files (batch output)

It serves a page (viser, http://127.0.0.1:8080 by default) with the robot or body model
drawn from its MJCF geoms (each body placed at the motion's body poses), and a panel:
previous / next motion, play / pause, playback speed, a time slider, a jerk threshold
(rad/s^3) above which frames are highlighted (the figure turns red on such a frame; the
panel lists them and "next flagged frame" jumps to them), and the motion's metrics
(frames, length, weight, source and slice, solve status and tracking figures for robots,
peak jerk). Jerk per frame: the largest third difference of the DoF positions, times
fps^3, over the four frames around it.

:class:`MotionViewer` is the same without blocking (``serve(..., block=False)``), for
notebooks and tests; :meth:`MotionViewer.stop` shuts the server down.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from retarget_jax.body_models.neutral import figure_path
from retarget_jax.errors import ConfigError, RetargetError
from retarget_jax.files.atomic import is_temp_file
from retarget_jax.io import load_result
from retarget_jax.motionlib.library import load_library
from retarget_jax.robots import load_robot

__all__ = ["ROBOT_COLOR", "ViewerMotion", "MotionViewer", "frame_jerk", "geom_mesh", "load_motions", "serve"]

#: Colour of the figure (a magenta no part of viser's own page uses, so a screenshot test can
#: find the figure), and of a frame over the jerk threshold.
ROBOT_COLOR = (200, 40, 200)
FLAG_COLOR = (230, 30, 30)


@dataclasses.dataclass
class ViewerMotion:
    """What the viewer shows of one motion."""

    name: str
    fps: float
    body_names: tuple[str, ...]
    body_pos_w: np.ndarray  # (T, B, 3)
    body_quat_w: np.ndarray  # (T, B, 4) wxyz
    dof_pos: np.ndarray  # (T, n)
    metrics: dict[str, Any]

    @property
    def num_frames(self) -> int:
        return int(self.body_pos_w.shape[0])


def frame_jerk(dof_pos: np.ndarray, fps: float) -> np.ndarray:
    """(T,) largest |third difference| of the DoF positions around each frame, times fps^3
    (frame t uses t-1 .. t+2; 0 where a clip is too short or at its ends)."""
    q = np.asarray(dof_pos, np.float64)
    out = np.zeros(q.shape[0])
    if q.shape[0] >= 4 and q.shape[1]:
        j = np.abs(np.diff(q, n=3, axis=0)).max(axis=1) * fps**3
        out[1 : 1 + j.shape[0]] = j
    return out


# --------------------------------------------------------------------------- loading


def _model_of(metadata: dict) -> mujoco.MjModel:
    model = metadata.get("model", {})
    if model.get("kind") == "body_model":
        return mujoco.MjModel.from_xml_path(figure_path(model["family"]))
    return load_robot(model.get("mjcf") or model.get("name") or metadata.get("target")).mj_model


def _library_motions(path: Path) -> tuple[list[ViewerMotion], mujoco.MjModel]:
    lib = load_library(path)
    motions = []
    for i in range(lib.num_motions):
        m = lib.motion(i)
        metrics = {
            "library": path.name,
            "frames": m.num_frames,
            "length_s": round(m.duration_s, 3),
            "fps": m.fps,
            "weight": float(lib.motion_weight[i]),
            "source": lib.motion_file[i],
            "slice_s": [round(float(lib.motion_slice_start_s[i]), 3), round(float(lib.motion_slice_end_s[i]), 3)],
            "contact_fraction": [round(float(x), 3) for x in m.contacts.mean(axis=0)],
        }
        metrics.update({k: v for k, v in m.info.items() if k not in ("build_key",)})
        motions.append(
            ViewerMotion(lib.motion_name[i], m.fps, lib.body_names, m.body_pos_w, m.body_quat_w, m.dof_pos, metrics)
        )
    return motions, _model_of(lib.metadata)


def _result_motions(paths: list[Path]) -> tuple[list[ViewerMotion], mujoco.MjModel]:
    motions, robot = [], None
    for p in paths:
        r = load_result(p)
        if robot is None:
            robot = load_robot(r.robot)
        elif r.robot != robot.name:
            continue  # one figure per page: results of the first robot found
        metrics = {
            "result": p.name,
            "frames": r.num_frames,
            "fps": r.fps,
            "robot": r.robot,
            "status": r.provenance.get("status_name"),
            "final_cost": r.final_cost,
            "iterations": r.iterations,
            "source": r.provenance.get("source_path"),
        }
        motions.append(ViewerMotion(p.stem, r.fps, r.body_names, r.body_pos_w, r.body_quat_w, r.dof_pos, metrics))
    return motions, robot.mj_model


def load_motions(path: str | os.PathLike) -> tuple[list[ViewerMotion], mujoco.MjModel]:
    """The motions behind ``path`` (a library, a folder of libraries, or a folder of result
    npz files) and the MjModel to draw them with."""
    path = Path(path)
    if path.is_file() or "slurmrank" in path.name:
        return _library_motions(path)
    if not path.is_dir():
        raise FileNotFoundError(f"nothing to view at {path}")
    npz = sorted(p for p in path.rglob("*.npz") if not is_temp_file(p) and "motions" not in p.relative_to(path).parts)
    libs, results = [], []
    for p in npz:
        with np.load(p, allow_pickle=False) as z:
            (libs if "motion_start" in z.files else results if "root_quat_wxyz" in z.files else []).append(p)
    if libs:
        motions, model = [], None
        for p in libs:
            ms, model = _library_motions(p)
            motions += ms
        return motions, model
    if results:
        return _result_motions(results)
    raise ConfigError(f"{path}: no motion library and no result npz found")


# --------------------------------------------------------------------------- geometry


def _revolve(profile: list[tuple[float, float]], n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A surface of revolution about z from (radius, z) points top to bottom (radius 0 at
    a pole gives one vertex): vertices (V, 3) and outward triangles (F, 3)."""
    verts, rings = [], []
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    for r, z in profile:
        start = len(verts)
        if r == 0:
            verts.append((0.0, 0.0, z))
            rings.append([start] * n)
        else:
            verts += [(r * np.cos(a), r * np.sin(a), z) for a in ang]
            rings.append(list(range(start, start + n)))
    faces = []
    for a, b in zip(rings[:-1], rings[1:], strict=True):
        for k in range(n):
            k1 = (k + 1) % n
            if a[k] != a[k1]:
                faces.append((a[k], b[k], a[k1]))
            if b[k] != b[k1]:
                faces.append((a[k1], b[k], b[k1]))
    return np.asarray(verts, np.float32), np.asarray(faces, np.uint32)


def _hemisphere(r: float, z0: float, sign: float, k: int = 6) -> list[tuple[float, float]]:
    phis = np.linspace(0, np.pi / 2, k + 1)
    pts = [(r * np.sin(p), z0 + sign * r * np.cos(p)) for p in phis]
    return pts if sign > 0 else pts[::-1]


def geom_mesh(m: mujoco.MjModel, g: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Triangle mesh of geom ``g`` in its own frame, or None (planes, height fields)."""
    t, s = int(m.geom_type[g]), m.geom_size[g]  # int: a numpy int is not ``in`` a tuple of mjtGeom
    G = mujoco.mjtGeom
    if t == G.mjGEOM_BOX:
        v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float32) * s
        f = np.array(
            [
                [0, 1, 3],
                [0, 3, 2],
                [4, 6, 7],
                [4, 7, 5],
                [0, 4, 5],
                [0, 5, 1],
                [2, 3, 7],
                [2, 7, 6],
                [0, 2, 6],
                [0, 6, 4],
                [1, 5, 7],
                [1, 7, 3],
            ],
            np.uint32,
        )
        return v, f
    if t in (G.mjGEOM_SPHERE, G.mjGEOM_ELLIPSOID):
        v, f = _revolve(_hemisphere(1.0, 0.0, 1.0) + _hemisphere(1.0, 0.0, -1.0)[1:])
        scale = s if t == G.mjGEOM_ELLIPSOID else np.full(3, s[0])
        return (v * scale).astype(np.float32), f
    if t == G.mjGEOM_CAPSULE:
        return _revolve(_hemisphere(s[0], s[1], 1.0) + _hemisphere(s[0], -s[1], -1.0))
    if t == G.mjGEOM_CYLINDER:
        return _revolve([(0.0, s[1]), (s[0], s[1]), (s[0], -s[1]), (0.0, -s[1])])
    if t == G.mjGEOM_MESH:
        mid = m.geom_dataid[g]
        v = m.mesh_vert[m.mesh_vertadr[mid] : m.mesh_vertadr[mid] + m.mesh_vertnum[mid]]
        f = m.mesh_face[m.mesh_faceadr[mid] : m.mesh_faceadr[mid] + m.mesh_facenum[mid]]
        return np.asarray(v, np.float32), np.asarray(f, np.uint32)
    return None


# --------------------------------------------------------------------------- the viewer


class MotionViewer:
    """A viser server showing ``motions`` drawn with ``model`` (see the module docstring)."""

    def __init__(
        self,
        motions: list[ViewerMotion],
        model: mujoco.MjModel,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        jerk_threshold: float = 1000.0,
    ) -> None:
        try:
            import viser
        except ImportError:
            raise ConfigError("the viewer needs viser: pip install 'retarget-jax[viewer]'") from None
        if not motions:
            raise ConfigError("the viewer got no motion to show")
        self.motions, self.model = motions, model
        names = tuple(model.body(b).name for b in range(1, model.nbody))
        missing = [n for n in motions[0].body_names if n not in names]
        if missing:
            raise RetargetError(
                f"the motions' bodies {missing[:5]} are not in the model's ({', '.join(names[:8])}, ...)"
            )
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        root = np.asarray(motions[0].body_pos_w[0, 0], float)  # look at the first motion's start
        self.server.initial_camera.look_at = (float(root[0]), float(root[1]), 0.8 * float(root[2]))
        self.server.initial_camera.position = (float(root[0]) + 2.2, float(root[1]) - 2.2, 1.3 * float(root[2]) + 0.4)
        self.index, self.frame, self.time_s, self.playing, self.speed = 0, 0, 0.0, True, 1.0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._flagged = False
        self._build_scene()
        self._build_gui(jerk_threshold)
        self._select(0)
        self._thread = threading.Thread(target=self._loop, name="motion-viewer", daemon=True)
        self._thread.start()

    # scene: one frame per body, its geoms as child meshes
    def _build_scene(self) -> None:
        m, scene = self.model, self.server.scene
        scene.add_grid("/ground", width=20.0, height=20.0, cell_size=0.5, plane="xy")
        self.body_frames, self.meshes = {}, []
        for b in range(1, m.nbody):
            name = m.body(b).name
            self.body_frames[name] = scene.add_frame(f"/figure/{name}", show_axes=False)
        for g in range(m.ngeom):
            mesh = geom_mesh(m, g)
            b = m.geom_bodyid[g]
            if mesh is None or b == 0:
                continue
            self.meshes.append(
                scene.add_mesh_simple(
                    f"/figure/{m.body(b).name}/geom{g}",
                    mesh[0],
                    mesh[1],
                    color=ROBOT_COLOR,
                    position=tuple(m.geom_pos[g]),
                    wxyz=tuple(m.geom_quat[g]),
                )
            )

    def _build_gui(self, jerk_threshold: float) -> None:
        gui = self.server.gui
        self.g_motion = gui.add_dropdown("Motion", tuple(f"{i}: {mo.name}" for i, mo in enumerate(self.motions)))
        prev, nxt = gui.add_button("Previous motion"), gui.add_button("Next motion")
        self.g_play = gui.add_checkbox("Play", True)
        self.g_speed = gui.add_slider("Speed", 0.1, 4.0, 0.1, 1.0)
        self.g_time = gui.add_slider("Time (s)", 0.0, 1.0, 0.001, 0.0)
        self.g_jerk = gui.add_number("Jerk threshold (rad/s^3)", float(jerk_threshold), min=0.0, step=10.0)
        next_flag = gui.add_button("Next flagged frame")
        self.g_flags = gui.add_markdown("")
        self.g_metrics = gui.add_markdown("")

        self.g_motion.on_update(lambda _: self._select(int(self.g_motion.value.split(":")[0])))
        prev.on_click(lambda _: self._select((self.index - 1) % len(self.motions)))
        nxt.on_click(lambda _: self._select((self.index + 1) % len(self.motions)))
        self.g_play.on_update(lambda _: setattr(self, "playing", bool(self.g_play.value)))
        self.g_speed.on_update(lambda _: setattr(self, "speed", float(self.g_speed.value)))
        self.g_time.on_update(lambda _: self._scrub(float(self.g_time.value)))
        self.g_jerk.on_update(lambda _: self._update_flags())
        next_flag.on_click(lambda _: self._next_flag())

    @property
    def motion(self) -> ViewerMotion:
        return self.motions[self.index]

    def _select(self, i: int) -> None:
        with self._lock:
            self.index, self.frame, self.time_s = i, 0, 0.0
            mo = self.motion
            self.jerk = frame_jerk(mo.dof_pos, mo.fps)
            label = f"{i}: {mo.name}"
            if self.g_motion.value != label:
                self.g_motion.value = label
            self.g_time.max = max((mo.num_frames - 1) / mo.fps, 1e-3)
            self.g_metrics.content = "**Metrics**\n\n" + "\n".join(
                f"- {k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in mo.metrics.items()
            )
            self._update_flags()
            self._show(0)

    def _update_flags(self) -> None:
        thr = float(self.g_jerk.value)
        flagged = np.flatnonzero(self.jerk > thr)
        runs, start = [], None
        for k, f in enumerate(flagged):
            if start is None:
                start = f
            if k + 1 == len(flagged) or flagged[k + 1] != f + 1:
                runs.append(f"{start}" if start == f else f"{start}-{f}")
                start = None
        self.g_flags.content = (
            f"**Jerk** peak {self.jerk.max():.0f} rad/s^3; {len(flagged)} of "
            f"{self.motion.num_frames} frames over {thr:g}"
            + (f": {', '.join(runs[:20])}{' ...' if len(runs) > 20 else ''}" if runs else "")
        )
        self._show(self.frame)

    def _next_flag(self) -> None:
        flagged = np.flatnonzero(self.jerk > float(self.g_jerk.value))
        later = flagged[flagged > self.frame]
        if flagged.size:
            self.playing = self.g_play.value = False
            self._show(int(later[0] if later.size else flagged[0]))

    def _scrub(self, t: float) -> None:
        with self._lock:
            if abs(t - self.time_s) > 0.5 / self.motion.fps:  # a user's move, not our own update
                self.time_s = t
                self._show(int(round(t * self.motion.fps)), from_slider=True)

    def _show(self, frame: int, *, from_slider: bool = False) -> None:
        mo = self.motion
        frame = int(np.clip(frame, 0, mo.num_frames - 1))
        self.frame = frame
        if not from_slider and int(self.time_s * mo.fps) != frame:
            self.time_s = frame / mo.fps
        with self._lock, self.server.atomic():
            for b, name in enumerate(mo.body_names):
                h = self.body_frames[name]
                h.position = mo.body_pos_w[frame, b]
                h.wxyz = mo.body_quat_w[frame, b]
            flagged = bool(self.jerk[frame] > float(self.g_jerk.value))
            if flagged != self._flagged:
                for mesh in self.meshes:
                    mesh.color = FLAG_COLOR if flagged else ROBOT_COLOR
                self._flagged = flagged
            if not from_slider:
                self.g_time.value = round(self.time_s, 3)

    def _loop(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(1.0 / 30.0)
            now = time.perf_counter()
            if self.playing:
                with self._lock:
                    mo = self.motion
                    t = self.time_s + (now - last) * self.speed
                    self.time_s = 0.0 if t > (mo.num_frames - 1) / mo.fps else t
                    self._show(int(self.time_s * mo.fps))
            last = now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.server.stop()


def serve(
    path: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    jerk_threshold: float = 1000.0,
    block: bool = True,
) -> MotionViewer:
    """Serve the viewer of ``path`` (see :func:`load_motions`); blocks until Ctrl-C unless
    ``block=False`` (then call :meth:`MotionViewer.stop`)."""
    motions, model = load_motions(path)
    viewer = MotionViewer(motions, model, host=host, port=port, jerk_threshold=jerk_threshold)
    print(f"[retarget-jax] viewer of {len(motions)} motion(s) at http://{host}:{port} (Ctrl-C to stop)", flush=True)
    if block:
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            viewer.stop()
    return viewer
