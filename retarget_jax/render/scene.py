"""Offscreen rendering of a retargeted clip with MuJoCo: the robot, the source skeleton
as the solver saw it, foot contacts and penetrations (host).

Stage: render (reads a :class:`~retarget_jax.result.RetargetingResult`, no solve, no jit).
The robot is drawn from its own MJCF (every geom group shown, opaque) plus a stick figure
between body origins, so kinematics-only models (the H1 and T1 ship without meshes) still
look like a body. What is drawn over it, per frame:

- the source skeleton (orange): the scaled human joints and bones the solver tracked
  (:func:`skeleton_from_source`), or, from the result alone, its position targets joined
  along the robot's tree (:func:`skeleton_from_result`); overlaid on the robot with grey
  lines from each target to the robot point that tracks it, or beside it;
- foot contacts (green): the contact links of the result's ContactPlan in stance, with a
  disc on the ground under each;
- penetrations (red): collision geoms whose lowest point is under the ground (z = 0) by
  more than a tolerance, and declared self-collision pairs that overlap, with a red
  segment between the deepest points (MuJoCo C's ``mj_geomDistance``).

The camera follows the root (moving average over ``follow_seconds``) from a fixed
azimuth. The floor is a plane with a 0.5 m grid. Frames come back as (H, W, 3) uint8.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np

from retarget_jax.errors import ConfigError, RenderError
from retarget_jax.formats import MotionFormat
from retarget_jax.metrics.batch import check_result
from retarget_jax.motion import read_motion
from retarget_jax.motion.canonical import canonicalize
from retarget_jax.pipeline import ProblemSettings, prepare_clip
from retarget_jax.problem import load_recipe
from retarget_jax.render.gl import make_context
from retarget_jax.result import RetargetingResult
from retarget_jax.robots.spec import RobotSpec, geom_lowest_z
from retarget_jax.solve.costs import scaled_human

LAYOUTS = ("overlay", "beside", "robot")

_ROBOT_RGBA = np.array([0.62, 0.66, 0.74, 1.0], np.float32)
_STICK_RGBA = np.array([0.30, 0.34, 0.42, 1.0], np.float32)
_SKELETON_RGBA = np.array([1.0, 0.55, 0.1, 1.0], np.float32)
_ERROR_RGBA = np.array([0.85, 0.85, 0.85, 1.0], np.float32)
_CONTACT_RGBA = np.array([0.15, 0.85, 0.25, 1.0], np.float32)
_PENETRATION_RGBA = np.array([0.95, 0.1, 0.1, 1.0], np.float32)
_FLOOR_RGBA = np.array([0.42, 0.44, 0.47, 1.0], np.float32)
_GRID_RGBA = np.array([0.25, 0.26, 0.28, 1.0], np.float32)
_EYE9 = np.eye(3).reshape(-1)


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    """How a clip is drawn.

    Attributes:
        width, height: image size in pixels (even, 16..4096; videos use yuv420p).
        layout: ``overlay`` (skeleton drawn inside the robot, with tracking-error lines),
            ``beside`` (skeleton 1 m to the side of the robot) or ``robot`` (no skeleton).
        distance: camera distance in metres (None: from the robot's standing height).
        azimuth, elevation: camera direction in degrees (MuJoCo's free camera).
        follow_seconds: the camera follows the root averaged over this window (0: exact).
        contacts: highlight stance feet (needs the result's ContactPlan).
        penetration: mark geoms under the ground and overlapping self-collision pairs.
        penetration_tolerance: depth in metres below which nothing is marked.
        label: print the clip name, frame and time, and a legend, on the image.
        shadows: one light casts shadows (a second depth pass: about a third of the time
            of a software-rendered frame); the model's own lights never do.
        fps: video frame rate; None keeps the result's. A lower rate keeps every k-th frame.
    """

    width: int = 640
    height: int = 480
    layout: str = "overlay"
    distance: float | None = None
    azimuth: float = 135.0
    elevation: float = -18.0
    follow_seconds: float = 0.5
    contacts: bool = True
    penetration: bool = True
    penetration_tolerance: float = 0.005
    label: bool = True
    shadows: bool = True
    fps: float | None = None

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or not 16 <= v <= 4096 or v % 2:
                raise ConfigError(f"render {name} must be an even integer in 16..4096, got {v!r}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"render layout {self.layout!r} is not one of: {', '.join(LAYOUTS)}")
        if self.distance is not None and not (math.isfinite(self.distance) and self.distance > 0):
            raise ConfigError(f"render distance must be > 0 metres, got {self.distance}")
        if not (math.isfinite(self.follow_seconds) and self.follow_seconds >= 0):
            raise ConfigError(f"render follow_seconds must be >= 0, got {self.follow_seconds}")
        if not (math.isfinite(self.penetration_tolerance) and self.penetration_tolerance >= 0):
            raise ConfigError(f"render penetration_tolerance must be >= 0, got {self.penetration_tolerance}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"render fps must be > 0, got {self.fps}")


@dataclasses.dataclass(frozen=True)
class SourceSkeleton:
    """A skeleton to draw beside the robot: (T, J, 3) world joints, parents, validity.

    Attributes:
        positions: (T, J, 3) metres, in the robot's world (scaled as the solver saw it).
        parents: (J,) parent joint index, -1 for a root.
        valid: (T, J) bool: joints to draw (NaN positions are never drawn).
        label: what the legend calls it.
    """

    positions: np.ndarray
    parents: tuple[int, ...]
    valid: np.ndarray
    label: str = "source (scaled)"

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])


def skeleton_from_result(result: RetargetingResult, robot: RobotSpec) -> SourceSkeleton | None:
    """The result's position targets as a skeleton: each target is joined to the target
    on its body's nearest ancestor along the robot's tree. None when the result carries
    no targets (a robot-space file loaded without a solve)."""
    if result.target_pos_w is None or not len(result.target_body_names):
        return None
    bodies = [robot.body_index(b, where="the result's target_body_names") for b in result.target_body_names]
    first_on = {}
    for k, b in enumerate(bodies):
        first_on.setdefault(b, k)
    parents_tree = robot.tree.parents
    parents = []
    for k, b in enumerate(bodies):
        p = parents_tree[b]
        while p >= 0 and p not in first_on:
            p = parents_tree[p]
        parents.append(first_on[p] if p >= 0 and first_on[p] != k else -1)
    pos = np.asarray(result.target_pos_w, np.float64)
    return SourceSkeleton(pos, tuple(parents), np.isfinite(pos).all(axis=-1), "targets (scaled source)")


def skeleton_from_source(
    result: RetargetingResult,
    robot: RobotSpec,
    source: str | Path,
    *,
    fmt: str | None = None,
    recipe: str | None = None,
    joint_map: str | None = None,
    body_model_dir: str | None = None,
) -> SourceSkeleton:
    """The whole source skeleton, scaled and placed as the solver saw it: the source file
    is read and prepared again with the result's recipe and frame rate, and its canonical
    joints go through the same bone, root and height scaling as the targets.

    ``fmt`` and ``recipe`` default to the result's provenance (``source_format``,
    ``recipe``). Raises the readers' typed errors for the file, ConfigError when the
    format or recipe is unknown, and RenderError when the prepared clip does not have the
    result's frame count (another file, or another frame rate).
    """
    prov = result.provenance or {}
    fmt_name = fmt or prov.get("source_format")
    if not fmt_name:
        raise ConfigError(f"{source}: the result does not record its source format; give --source-format")
    motion_format = MotionFormat.parse(str(fmt_name), where="--source-format")
    recipe_name = recipe or prov.get("recipe")
    if not recipe_name:
        raise ConfigError(f"{source}: the result does not record its recipe; give --recipe")
    motion = read_motion(source, motion_format, joint_map=joint_map, body_model_dir=body_model_dir)
    return skeleton_from_motion(result, robot, motion, load_recipe(str(recipe_name)))


def skeleton_from_motion(result: RetargetingResult, robot: RobotSpec, motion, recipe) -> SourceSkeleton:
    """:func:`skeleton_from_source` of a motion already read (a ``HumanMotion``, e.g. a
    slice of a file) and a ``Recipe``."""
    import jax

    where = motion.source_path or "<motion>"
    fps = None if abs(float(motion.fps) - float(result.fps)) < 1e-6 else float(result.fps)
    clip = prepare_clip(motion, recipe, robot, ProblemSettings(fps=fps))
    if clip.num_frames != result.num_frames:
        raise RenderError(
            f"{where}: the source prepared at {result.fps:g} fps has {clip.num_frames} frames, "
            f"the result {result.num_frames}: is it the motion this result was retargeted from?"
        )
    cp = jax.tree.map(np.asarray, clip.compiled)
    pos = np.asarray(scaled_human(cp), np.float64)
    _, _, valid = canonicalize(clip.problem.motion)
    valid = np.asarray(valid, bool) & np.isfinite(pos).all(axis=-1)
    return SourceSkeleton(pos, tuple(int(p) for p in cp.human_parents), valid, "source (scaled)")


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(x) < 2:
        return x
    half = window // 2
    padded = np.concatenate([np.repeat(x[:1], half, 0), x, np.repeat(x[-1:], half, 0)])
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(x.shape[1])], axis=1)


class ResultRenderer:
    """Renders frames of one result offscreen. Use as a context manager (it owns an
    OpenGL context), or call :meth:`close`.

    Args:
        result: the clip (our result, or a robot-space file read as one).
        robot: its robot.
        options: how to draw (:class:`RenderOptions`).
        skeleton: the source skeleton; None draws the result's targets
            (:func:`skeleton_from_result`), ``False`` draws none.
        name: the clip name printed on the frames (default: the source path's name).

    Raises ConfigError when the result is not of ``robot``, and RenderError when no
    OpenGL context can be made or a frame holds non-finite joint values.
    """

    def __init__(
        self,
        result: RetargetingResult,
        robot: RobotSpec,
        *,
        options: RenderOptions | None = None,
        skeleton: SourceSkeleton | None | bool = None,
        name: str | None = None,
    ) -> None:
        self.options = opts = options or RenderOptions()
        check_result(result, robot, f"render of {name or result.robot}")
        self.result, self.robot = result, robot
        self.name = name or Path(str((result.provenance or {}).get("source_path") or "clip")).name
        if skeleton is None:
            skeleton = skeleton_from_result(result, robot)
        self.skeleton = None if skeleton is False or opts.layout == "robot" else skeleton
        if self.skeleton is not None and self.skeleton.num_frames != result.num_frames:
            raise RenderError(
                f"render of {self.name}: the skeleton has {self.skeleton.num_frames} frames, "
                f"the result {result.num_frames}"
            )
        self._qpos = np.asarray(result.qpos, np.float64)

        m = copy.copy(robot.mj_model)  # own visual settings; geom and body ids stay the robot's
        m.vis.global_.offwidth = max(int(m.vis.global_.offwidth), opts.width)
        m.vis.global_.offheight = max(int(m.vis.global_.offheight), opts.height)
        m.vis.quality.shadowsize = 1024
        m.light_castshadow[:] = 0  # one shadow pass at most: ours (_add_light)
        m.vis.headlight.ambient[:] = 0.35
        m.vis.headlight.diffuse[:] = 0.45
        self.model, self.data = m, mujoco.MjData(m)
        J = 0 if self.skeleton is None else self.skeleton.positions.shape[1]
        K = 0 if result.target_pos_w is None else result.target_pos_w.shape[1]
        self.scene = mujoco.MjvScene(
            m,
            maxgeom=m.ngeom
            + 2 * m.nbody
            + 2 * J
            + K
            + 4 * len(robot.collision.geoms)
            + 2 * len(robot.collision.pairs)
            + 64,
        )
        self.option = mujoco.MjvOption()
        self.option.geomgroup[:] = 1
        self.option.sitegroup[:] = 0
        self.perturb = mujoco.MjvPerturb()
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.azimuth, self.camera.elevation = opts.azimuth, opts.elevation
        self.viewport = mujoco.MjrRect(0, 0, opts.width, opts.height)
        self._rgb = np.empty((opts.height, opts.width, 3), np.uint8)
        self._segmenting = False
        self._robot_scene_geoms: set[int] = set()
        self._setup_view()
        self._setup_overlays()
        self._gl = make_context(opts.width, opts.height)
        try:
            self._con = mujoco.MjrContext(m, mujoco.mjtFontScale.mjFONTSCALE_100)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        except Exception as e:
            self._gl.free()
            self._gl = None
            raise RenderError(f"render of {self.name}: cannot set up MuJoCo's renderer: {e}") from e

    # ----------------------------------------------------------------- setup

    def _setup_view(self) -> None:
        opts, r = self.options, self.result
        height = max(float(self.robot.standing_height), 0.3)
        az = math.radians(opts.azimuth)
        self._right = np.array([math.sin(az), -math.cos(az), 0.0])  # screen right at this azimuth
        self._skeleton_shift = np.zeros(3) if opts.layout != "beside" else 1.1 * height * self._right
        root = np.asarray(r.root_pos, np.float64).copy()
        root[~np.isfinite(root)] = 0.0
        window = int(round(opts.follow_seconds * r.fps)) | 1
        look = _moving_average(root, window)
        look[:, 2] = 0.75 * height
        self._lookat = look + 0.5 * self._skeleton_shift
        scale = 1.25 if opts.layout == "beside" else 1.0
        self.camera.distance = opts.distance or scale * (2.3 * height + 0.9)

    def _setup_overlays(self) -> None:
        r, robot, m = self.result, self.robot, self.model
        self._robot_geoms = np.zeros(m.ngeom, bool)
        root = m.body_rootid[m.jnt_bodyid[0]]
        self._robot_geoms[[g for g in range(m.ngeom) if m.body_rootid[m.geom_bodyid[g]] == root]] = True
        self._sticks = [
            (int(m.body_parentid[b]), b)
            for b in range(1, m.nbody)
            if m.body_parentid[b] > 0 and m.body_rootid[b] == root
        ]
        self._stance = None
        self._feet: list[tuple[int, list[int]]] = []  # (MuJoCo body id, its geoms and its subtree's)
        if self.options.contacts and r.contacts is not None and len(r.contact_body_names):
            self._stance = np.asarray(r.contacts, bool)
            for name in r.contact_body_names:
                b = robot.body_index(name, where="the result's contact_body_names")
                self._feet.append((b + 1, robot.subtree_geoms(b)))
        self._tracked = None
        if self.options.layout == "overlay" and r.target_pos_w is not None and len(r.target_body_names):
            bodies = [robot.body_index(b) + 1 for b in r.target_body_names]
            offset = (
                np.zeros((len(bodies), 3)) if r.target_offset_b is None else np.asarray(r.target_offset_b, np.float64)
            )
            self._tracked = (np.asarray(bodies), offset)

    # ----------------------------------------------------------------- drawing

    def _add_geom(self, gtype, size, pos, mat, rgba) -> mujoco.MjvGeom | None:
        scn = self.scene
        if scn.ngeom >= scn.maxgeom:
            return None
        g = scn.geoms[scn.ngeom]
        mujoco.mjv_initGeom(
            g,
            gtype,
            np.asarray(size, np.float64),
            np.asarray(pos, np.float64),
            np.asarray(mat, np.float64).reshape(-1),
            np.asarray(rgba, np.float32),
        )
        g.category = mujoco.mjtCatBit.mjCAT_DECOR
        g.segid = scn.ngeom  # what the segmentation pass encodes (mjv_initGeom leaves it unset)
        scn.ngeom += 1
        return g

    def _add_connector(self, gtype, width: float, p0, p1, rgba) -> None:
        if gtype == mujoco.mjtGeom.mjGEOM_LINE and self._segmenting:
            return  # lines have no depth and blend ids at their edges: not in the segmentation
        p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
        if not (np.isfinite(p0).all() and np.isfinite(p1).all()) or np.linalg.norm(p1 - p0) < 1e-9:
            return
        g = self._add_geom(gtype, np.zeros(3), np.zeros(3), _EYE9, rgba)
        if g is not None:
            mujoco.mjv_connector(g, gtype, width, p0, p1)

    def _add_light(self, pos, direction) -> None:
        scn = self.scene
        if scn.nlight >= len(scn.lights):
            return
        light = scn.lights[scn.nlight]
        light.pos[:], light.dir[:] = pos, direction
        if hasattr(light, "directional"):  # mujoco < 3.3
            light.directional = 1
        else:
            light.type = mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
        light.castshadow = int(self.options.shadows)
        light.ambient[:], light.diffuse[:], light.specular[:] = 0.15, 0.55, 0.2
        light.headlight = 0
        scn.nlight += 1

    def _floor(self, lookat: np.ndarray) -> None:
        half = 30.0
        g = self._add_geom(
            mujoco.mjtGeom.mjGEOM_PLANE, [half, half, 0.5], [lookat[0], lookat[1], 0.0], _EYE9, _FLOOR_RGBA
        )
        if g is not None:
            g.reflectance = 0.0
        step = 0.5
        x0, y0 = np.floor(lookat[:2] / step) * step
        for i in range(-10, 11):
            z = 0.002
            self._add_connector(
                mujoco.mjtGeom.mjGEOM_LINE, 1.0, [x0 + i * step, y0 - 5, z], [x0 + i * step, y0 + 5, z], _GRID_RGBA
            )
            self._add_connector(
                mujoco.mjtGeom.mjGEOM_LINE, 1.0, [x0 - 5, y0 + i * step, z], [x0 + 5, y0 + i * step, z], _GRID_RGBA
            )

    def _disc(self, xy, radius: float, rgba) -> None:
        self._add_geom(mujoco.mjtGeom.mjGEOM_CYLINDER, [radius, radius, 0.002], [xy[0], xy[1], 0.003], _EYE9, rgba)

    def frame_state(self, t: int) -> dict:
        """What frame ``t`` highlights, without drawing: ``stance`` (MuJoCo body ids of the
        feet in stance), ``below_ground`` (geom ids under the ground beyond the tolerance)
        and ``self_overlap`` (declared geom pairs that overlap beyond it). Sets the pose."""
        m, d = self.model, self.data
        T = self.result.num_frames
        if not 0 <= t < T:
            raise RenderError(f"render of {self.name}: frame {t} is outside the clip (0..{T - 1})")
        q = self._qpos[t]
        if not np.isfinite(q).all():
            raise RenderError(f"render of {self.name}: frame {t} holds non-finite joint values")
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_camlight(m, d)
        stance = [b for f, (b, _) in enumerate(self._feet) if self._stance[t, f]] if self._stance is not None else []
        below, overlap = [], []
        if self.options.penetration:
            tol = self.options.penetration_tolerance
            below = [g for g in self.robot.collision.geoms if geom_lowest_z(m, d, g) < -tol]
            for a, b in self.robot.collision.pairs:
                if mujoco.mj_geomDistance(m, d, a, b, 0.05, None) < -tol:
                    overlap.append((a, b))
        return {"stance": stance, "below_ground": below, "self_overlap": overlap}

    def render(self, t: int) -> np.ndarray:
        """Frame ``t`` as an (H, W, 3) uint8 image (a new array)."""
        return self._draw(t, segment=False)

    def robot_mask(self, t: int) -> np.ndarray:
        """(H, W) bool: the pixels of frame ``t`` where the robot is seen (its geoms and
        its stick figure), from MuJoCo's segmentation pass of the same scene."""
        ids = self._draw(t, segment=True)
        robot = np.zeros(self.scene.ngeom + 1, bool)
        robot[list(self._robot_scene_geoms)] = True
        return robot[np.where((ids >= 0) & (ids < self.scene.ngeom), ids, self.scene.ngeom)]

    def _draw(self, t: int, *, segment: bool) -> np.ndarray:
        m, d, scn, opts = self.model, self.data, self.scene, self.options
        state = self.frame_state(t)
        self._segmenting = segment
        self.camera.lookat[:] = self._lookat[t]
        mujoco.mjv_updateScene(m, d, self.option, self.perturb, self.camera, mujoco.mjtCatBit.mjCAT_ALL, scn)

        colour = {}
        for b, geoms in self._feet:
            if b in state["stance"]:
                colour.update(dict.fromkeys(geoms, _CONTACT_RGBA))
        flagged = set(state["below_ground"]) | {g for pair in state["self_overlap"] for g in pair}
        colour.update(dict.fromkeys(flagged, _PENETRATION_RGBA))
        robot_alpha = 0.55 if self.skeleton is not None and opts.layout == "overlay" else 1.0
        self._robot_scene_geoms = set()
        for i in range(scn.ngeom):
            g = scn.geoms[i]
            if g.objtype == mujoco.mjtObj.mjOBJ_GEOM and 0 <= g.objid < m.ngeom and self._robot_geoms[g.objid]:
                self._robot_scene_geoms.add(i)
                g.rgba[:] = colour.get(g.objid, _ROBOT_RGBA)
                if g.objid not in colour:
                    g.rgba[3] = robot_alpha
                g.transparent = int(g.rgba[3] < 1)  # set from the model's rgba (the G1's is 0.3)
        # mjv_updateScene filled the scene: everything below is appended after it
        self._floor(self._lookat[t])
        for p, b in self._sticks:
            rgba = _CONTACT_RGBA if b in state["stance"] else _STICK_RGBA
            before = scn.ngeom
            self._add_connector(mujoco.mjtGeom.mjGEOM_CAPSULE, 0.014, d.xpos[p], d.xpos[b], rgba)
            self._robot_scene_geoms.update(range(before, scn.ngeom))
        for b in state["stance"]:
            self._disc(d.xpos[b], 0.07, _CONTACT_RGBA)
        for g in state["below_ground"]:
            self._disc(d.geom_xpos[g], 0.05, _PENETRATION_RGBA)
        fromto = np.zeros(6)
        for a, b in state["self_overlap"]:
            mujoco.mj_geomDistance(m, d, a, b, 0.05, fromto)
            self._add_connector(mujoco.mjtGeom.mjGEOM_CAPSULE, 0.008, fromto[:3], fromto[3:], _PENETRATION_RGBA)
        self._draw_skeleton(t)
        look = self._lookat[t]
        self._add_light(look + np.array([1.0, -1.5, 4.0]), -np.array([1.0, -1.5, 4.0]) / np.linalg.norm([1, -1.5, 4]))

        scn.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = segment
        scn.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = segment
        mujoco.mjr_render(self.viewport, scn, self._con)
        if opts.label and not segment:
            self._label(t, state)
        mujoco.mjr_readPixels(self._rgb, None, self.viewport, self._con)
        img = np.flipud(self._rgb)
        if segment:  # IDCOLOR encodes 1 + the scene geom's index; 0 is the background
            rgb = img.astype(np.int64)
            return rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16) - 1
        return img.copy()

    def _draw_skeleton(self, t: int) -> None:
        sk = self.skeleton
        if sk is None:
            return
        pos = sk.positions[t] + self._skeleton_shift
        ok = sk.valid[t] & np.isfinite(pos).all(axis=-1)
        for j, p in enumerate(sk.parents):
            if ok[j]:
                self._add_geom(mujoco.mjtGeom.mjGEOM_SPHERE, [0.028, 0, 0], pos[j], _EYE9, _SKELETON_RGBA)
                if p >= 0 and ok[p]:
                    self._add_connector(mujoco.mjtGeom.mjGEOM_CAPSULE, 0.012, pos[p], pos[j], _SKELETON_RGBA)
        if self._tracked is not None and self.result.target_pos_w is not None:
            bodies, offset = self._tracked
            R = self.data.xmat[bodies].reshape(-1, 3, 3)
            tracked = self.data.xpos[bodies] + np.einsum("kij,kj->ki", R, offset)
            for k, target in enumerate(np.asarray(self.result.target_pos_w[t], np.float64)):
                self._add_connector(mujoco.mjtGeom.mjGEOM_LINE, 2.0, target, tracked[k], _ERROR_RGBA)

    def _label(self, t: int, state: dict) -> None:
        r = self.result
        mujoco.mjr_overlay(
            mujoco.mjtFont.mjFONT_NORMAL,
            mujoco.mjtGridPos.mjGRID_TOPLEFT,
            self.viewport,
            "clip\nframe",
            f"{self.name} [{r.robot}]\n{t} / {r.num_frames - 1}  ({t / r.fps:.2f} s)",
            self._con,
        )
        legend = []
        if self.skeleton is not None:
            legend.append(f"orange: {self.skeleton.label}")
        legend.append("green: stance" if self._stance is not None else "no contact plan")
        if self.options.penetration:
            n = len(state["below_ground"]) + len(state["self_overlap"])
            legend.append(f"red: penetration ({n})")
        mujoco.mjr_overlay(
            mujoco.mjtFont.mjFONT_NORMAL,
            mujoco.mjtGridPos.mjGRID_BOTTOMLEFT,
            self.viewport,
            "\n".join(legend),
            "",
            self._con,
        )

    # ----------------------------------------------------------------- lifetime

    def frames(self, indices: Sequence[int] | None = None):
        """Yield (t, image) for ``indices`` (default: every frame, or every k-th one at
        ``options.fps``)."""
        for t in self.frame_indices() if indices is None else indices:
            yield int(t), self.render(int(t))

    def frame_indices(self) -> list[int]:
        """The frames a video shows: all, or every k-th at ``options.fps`` below the clip's."""
        fps = self.options.fps
        step = 1 if fps is None or fps >= self.result.fps else max(1, int(round(self.result.fps / fps)))
        return list(range(0, self.result.num_frames, step))

    def video_fps(self) -> float:
        """The rate of :meth:`frame_indices` in frames per second."""
        idx = self.frame_indices()
        return self.result.fps / (idx[1] - idx[0]) if len(idx) > 1 else self.result.fps

    def close(self) -> None:
        if getattr(self, "_gl", None) is not None:
            self._con.free()
            self._gl.free()
            self._gl = None

    def __enter__(self) -> ResultRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a renderer dropped without close() still frees its context
        try:
            self.close()
        except Exception:
            pass
