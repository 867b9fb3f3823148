"""Collision geometry of a robot: ground clearance and declared self-collision pairs.

Host side (:func:`collision_spec`, :func:`collision_arrays`): the robot's MJCF collision
geoms become two tables of arrays, the same for the solver's cost terms and the metrics.

- **Ground points**: every collision geom (contype or conaffinity set) as points on its
  body with a radius; the geom's lowest world point is ``min_k z_k - r_k``. Exact for
  spheres (centre, r), capsules (the two segment ends, r) and boxes (the 8 corners, 0);
  cylinders are sampled at 8 points on each end rim (radius 0; the lowest point is
  missed by at most r(1 - cos 22.5 deg), 4.6 mm on the H1's 6 cm hip cylinders); any
  other type (mesh, ellipsoid) is its bounding sphere, which is conservative.
- **Self-collision pairs** are declared, never guessed: the MJCF's own ``<contact><pair>``
  entries plus a YAML file beside the robot (``collision.yaml`` in a built-in robot's
  asset folder, ``<mjcf stem>.collision.yaml`` beside a user MJCF, or a path given to
  :func:`collision_spec`)::

      margin: 0.01                      # metres; the solver keeps pairs this far apart
      pairs:
        - [left_hand_collision, torso_collision]      # two geom names
        - {bodies: [left_ankle_link, right_ankle_link]}  # every collision geom of one
                                                        # body against every one of the other

  Each geom of a pair is a capsule (a segment and a radius): spheres have a zero-length
  segment, cylinders are their capsule hull, boxes the capsule along their longest axis
  enclosing them, other types their bounding sphere. Distances between capsules are
  closed-form segment distances (:func:`segment_closest_points`).

Jit side: :class:`CollisionArrays` (a pytree; body indices static) and the functions
below, used by ``retarget_jax.solve.costs`` and ``retarget_jax.metrics``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import mujoco
import numpy as np
import yaml

from retarget_jax.arrays import AnyArray, Float
from retarget_jax.errors import ConfigError, MotionFormatError, UnknownNameError

_RIM_SAMPLES = 8


@dataclasses.dataclass(frozen=True)
class CollisionSpec:
    """Host table: MuJoCo geom ids of the collision geoms and of the declared pairs."""

    geoms: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]
    margin: float
    source: str  # where the pairs were declared ("" = nowhere)


def _is_collision_geom(m: mujoco.MjModel, g: int) -> bool:
    return bool(m.geom_contype[g] or m.geom_conaffinity[g])


def robot_geoms(m: mujoco.MjModel) -> list[int]:
    """Collision geoms on the robot (the floating base's tree), in MuJoCo order."""
    root = m.body_rootid[m.jnt_bodyid[0]] if m.njnt else -1
    return [g for g in range(m.ngeom) if _is_collision_geom(m, g) and m.body_rootid[m.geom_bodyid[g]] == root]


def default_pairs_file(mjcf_path: Path) -> Path:
    """Where the self-collision declaration of an MJCF is looked for."""
    beside = mjcf_path.parent / "collision.yaml"
    own = mjcf_path.with_name(mjcf_path.stem + ".collision.yaml")
    return own if own.exists() or not beside.exists() else beside


def collision_spec(robot, pairs_file: str | Path | None = None) -> CollisionSpec:
    """Collision geoms and declared self-collision pairs of a :class:`RobotSpec`.

    Raises ConfigError / UnknownNameError naming the file and entry for a malformed file
    or a geom or body that the robot does not have (listing the valid names).
    """
    m = robot.mj_model
    geoms = robot_geoms(m)
    gset = set(geoms)
    pairs: list[tuple[int, int]] = []
    for p in range(m.npair):  # the MJCF's explicit <contact><pair>
        a, b = int(m.pair_geom1[p]), int(m.pair_geom2[p])
        if a in gset and b in gset:
            pairs.append((a, b))
    path = Path(pairs_file) if pairs_file is not None else default_pairs_file(Path(robot.mjcf_path))
    margin, source = 0.01, ""
    if path.exists():
        source = str(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read self-collision pairs: {e}") from e
        if not isinstance(data, dict) or set(data) - {"margin", "pairs"}:
            raise ConfigError(f"{path}: expected a mapping with keys 'margin' and 'pairs'")
        margin = float(data.get("margin", margin))
        if not margin >= 0:
            raise ConfigError(f"{path}: margin must be >= 0, got {margin}")
        names = [m.geom(g).name for g in geoms]
        bodies = list(robot.body_names)
        for i, entry in enumerate(data.get("pairs") or []):
            where = f"{path}: pairs[{i}]"
            if isinstance(entry, dict) and set(entry) == {"bodies"} and len(entry["bodies"]) == 2:
                ga, gb = (
                    [g for g in geoms if m.geom_bodyid[g] == 1 + _index(bodies, b, "body", where)]
                    for b in entry["bodies"]
                )
                pairs.extend((a, b) for a in ga for b in gb)
            elif isinstance(entry, list | tuple) and len(entry) == 2:
                a, b = (geoms[_index(names, str(n), "collision geom", where)] for n in entry)
                pairs.append((a, b))
            else:
                raise ConfigError(f"{where}: expected [geom, geom] or {{bodies: [body, body]}}, got {entry!r}")
    seen, unique = set(), []
    for a, b in pairs:
        key = (min(a, b), max(a, b))
        if a == b:
            raise ConfigError(f"{source or robot.mjcf_path}: geom {m.geom(a).name or a} is paired with itself")
        if key not in seen:
            seen.add(key)
            unique.append(key)
    return CollisionSpec(tuple(geoms), tuple(unique), margin, source)


def _index(names: list[str], name: str, kind: str, where: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise UnknownNameError(kind, name, [n for n in names if n], where=where) from None


class CollisionArrays(eqx.Module):
    """Collision tables for jitted code (shared by every clip of a robot).

    ``point_*``: ground points (body, point in the body frame, radius). ``pair_*``: one
    capsule per side of each declared pair (body, segment ends in the body frame, radius).
    Body indices count robot bodies without the world body, as the kinematic tree does.
    """

    point_pos: Float[AnyArray, "P 3"]
    point_radius: Float[AnyArray, " P"]
    cap_a: Float[AnyArray, "C 2 3"]  # segment ends of side a, in its body frame
    cap_b: Float[AnyArray, "C 2 3"]
    radius_a: Float[AnyArray, " C"]
    radius_b: Float[AnyArray, " C"]
    margin: Float[AnyArray, ""]
    point_body: tuple[int, ...] = eqx.field(static=True)
    point_geom: tuple[int, ...] = eqx.field(static=True)  # MuJoCo geom id of each point
    body_a: tuple[int, ...] = eqx.field(static=True)
    body_b: tuple[int, ...] = eqx.field(static=True)

    @property
    def num_pairs(self) -> int:
        return len(self.body_a)


def _geom_local(m: mujoco.MjModel, g: int):
    """Geom pose in its body frame: (pos (3,), rotation (3, 3))."""
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, m.geom_quat[g])
    return np.asarray(m.geom_pos[g], np.float64), R.reshape(3, 3)


def geom_ground_points(m: mujoco.MjModel, g: int) -> tuple[np.ndarray, np.ndarray]:
    """(points (k, 3) in the geom's body frame, radii (k,)): see the module docstring."""
    c, R = _geom_local(m, g)
    size, t = m.geom_size[g], m.geom_type[g]
    if t == mujoco.mjtGeom.mjGEOM_SPHERE:
        return c[None], np.array([size[0]])
    if t == mujoco.mjtGeom.mjGEOM_CAPSULE:
        ends = np.stack([c - size[1] * R[:, 2], c + size[1] * R[:, 2]])
        return ends, np.full(2, size[0])
    if t == mujoco.mjtGeom.mjGEOM_BOX:
        corners = [c + R @ (size * np.array([sx, sy, sz])) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
        return np.stack(corners), np.zeros(8)
    if t == mujoco.mjtGeom.mjGEOM_CYLINDER:
        ang = 2 * np.pi * np.arange(_RIM_SAMPLES) / _RIM_SAMPLES
        rim = size[0] * (np.cos(ang)[:, None] * R[:, 0] + np.sin(ang)[:, None] * R[:, 1])
        pts = np.concatenate([c + s * size[1] * R[:, 2] + rim for s in (-1.0, 1.0)])
        return pts, np.zeros(len(pts))
    return c[None], np.array([m.geom_rbound[g]])


def geom_capsule(m: mujoco.MjModel, g: int) -> tuple[np.ndarray, float]:
    """(segment ends (2, 3) in the body frame, radius) of the capsule standing for geom g."""
    c, R = _geom_local(m, g)
    size, t = m.geom_size[g], m.geom_type[g]
    if t == mujoco.mjtGeom.mjGEOM_CAPSULE or t == mujoco.mjtGeom.mjGEOM_CYLINDER:
        return np.stack([c - size[1] * R[:, 2], c + size[1] * R[:, 2]]), float(size[0])
    if t == mujoco.mjtGeom.mjGEOM_BOX:
        k = int(np.argmax(size))
        others = [i for i in range(3) if i != k]
        r = float(np.hypot(size[others[0]], size[others[1]]))
        half = max(float(size[k]) - r, 0.0)
        return np.stack([c - half * R[:, k], c + half * R[:, k]]), r
    r = float(size[0]) if t == mujoco.mjtGeom.mjGEOM_SPHERE else float(m.geom_rbound[g])
    return np.stack([c, c]), r


def collision_arrays(robot, spec: CollisionSpec | None = None, *, dtype=jnp.float32) -> CollisionArrays:
    """:class:`CollisionArrays` of a robot (its declared pairs unless ``spec`` is given)."""
    m = robot.mj_model
    spec = spec or robot.collision
    pts, rad, pbody, pgeom = [], [], [], []
    for g in spec.geoms:
        p, r = geom_ground_points(m, g)
        pts.append(p)
        rad.append(r)
        pbody += [int(m.geom_bodyid[g]) - 1] * len(p)
        pgeom += [g] * len(p)
    caps = [(geom_capsule(m, a), geom_capsule(m, b)) for a, b in spec.pairs]
    f = lambda x, shape: jnp.asarray(np.reshape(np.asarray(x, np.float64), shape), dtype)  # noqa: E731
    return CollisionArrays(
        point_pos=f(np.concatenate(pts) if pts else [], (-1, 3)),
        point_radius=f(np.concatenate(rad) if rad else [], (-1,)),
        cap_a=f([ca[0] for ca, _ in caps], (-1, 2, 3)),
        cap_b=f([cb[0] for _, cb in caps], (-1, 2, 3)),
        radius_a=f([ca[1] for ca, _ in caps], (-1,)),
        radius_b=f([cb[1] for _, cb in caps], (-1,)),
        margin=f(spec.margin, ()),
        point_body=tuple(pbody),
        point_geom=tuple(pgeom),
        body_a=tuple(int(m.geom_bodyid[a]) - 1 for a, _ in spec.pairs),
        body_b=tuple(int(m.geom_bodyid[b]) - 1 for _, b in spec.pairs),
    )


# --------------------------------------------------------------------------- terrain


class HeightField(eqx.Module):
    """Ground height h(x, y) on a regular grid, bilinear between nodes and held constant
    beyond the grid's edge. ``heights[i, j]`` is the height at ``origin + (i, j) * cell``.
    The default (:func:`flat_ground`) is the plane z = 0. Traced: a clip may bring its own."""

    heights: Float[AnyArray, "*batch Nx Ny"]  # metres
    origin: Float[AnyArray, "*batch 2"]  # world xy of node (0, 0)
    cell: Float[AnyArray, "*batch"]  # grid spacing, metres


def flat_ground(dtype=jnp.float32) -> HeightField:
    return HeightField(heights=jnp.zeros((2, 2), dtype), origin=jnp.zeros(2, dtype), cell=jnp.ones((), dtype))


def ground_height(hf: HeightField, xy: jnp.ndarray):
    """Height (...,) and its gradient (..., 2) at world points ``xy`` (..., 2)."""
    nx, ny = hf.heights.shape
    u = (xy - hf.origin) / hf.cell
    hi = jnp.asarray([nx - 1, ny - 1], u.dtype)
    uc = jnp.clip(u, 0.0, hi)
    i0 = jnp.clip(jnp.floor(uc), 0, jnp.maximum(hi - 1, 0)).astype(jnp.int32)
    fr = uc - i0
    inside = ((u >= 0) & (u <= hi)).astype(u.dtype)  # no slope beyond the edge
    i, j = i0[..., 0], i0[..., 1]
    i1, j1 = jnp.minimum(i + 1, nx - 1), jnp.minimum(j + 1, ny - 1)
    h00, h10 = hf.heights[i, j], hf.heights[i1, j]
    h01, h11 = hf.heights[i, j1], hf.heights[i1, j1]
    a, b = fr[..., 0], fr[..., 1]
    h = (1 - a) * (1 - b) * h00 + a * (1 - b) * h10 + (1 - a) * b * h01 + a * b * h11
    dha = ((1 - b) * (h10 - h00) + b * (h11 - h01)) * inside[..., 0] / hf.cell
    dhb = ((1 - a) * (h01 - h00) + a * (h11 - h10)) * inside[..., 1] / hf.cell
    return h, jnp.stack([dha, dhb], axis=-1)


# --------------------------------------------------------------------------- jit functions


def ground_points_world(col: CollisionArrays, xpos, xmat):
    """World centres (P, 3) of the ground points for body poses xpos (B, 3), xmat (B, 3, 3)."""
    b = np.asarray(col.point_body, np.int32)
    return xpos[b] + jnp.einsum("pij,pj->pi", xmat[b], col.point_pos)


def ground_clearance(col: CollisionArrays, xpos, xmat, terrain: HeightField):
    """Signed clearance (P,) of each ground point above the terrain (negative = below),
    the world centres (P, 3) and the terrain gradient (P, 2) there (body rotations
    ``xmat`` (B, 3, 3), see :func:`retarget_jax.robots.kinematics.body_frames`)."""
    c = ground_points_world(col, xpos, xmat)
    h, dh = ground_height(terrain, c[:, :2])
    return c[:, 2] - col.point_radius - h, c, dh


def segment_closest_points(p0, p1, q0, q1, eps: float = 1e-12):
    """Closest points of segments [p0, p1] and [q0, q1] (..., 3): (s, t) in [0, 1] with
    c_p = p0 + s (p1 - p0), c_q = q0 + t (q1 - q0). Zero-length segments are points.

    Minimises |c_p - c_q|^2 over the square [0, 1]^2: the unconstrained optimum of s
    clamped, t from s and clamped, then s recomputed from the clamped t.
    """
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a = jnp.sum(d1 * d1, -1)
    e = jnp.sum(d2 * d2, -1)
    f = jnp.sum(d2 * r, -1)
    c = jnp.sum(d1 * r, -1)
    b = jnp.sum(d1 * d2, -1)
    denom = a * e - b * b

    def div(n, d):
        ok = d > eps
        return jnp.where(ok, n / jnp.where(ok, d, 1.0), 0.0)

    s = jnp.clip(div(b * f - c * e, denom), 0.0, 1.0)  # parallel segments: s = 0
    t = div(b * s + f, e)
    s = jnp.where(t < 0, jnp.clip(div(-c, a), 0.0, 1.0), jnp.where(t > 1, jnp.clip(div(b - c, a), 0.0, 1.0), s))
    t = jnp.clip(t, 0.0, 1.0)
    return s, t


def self_collision(col: CollisionArrays, xpos, xmat):
    """Per declared pair: surface distance (C,) (negative = penetration depth), the closest
    points on the two segments (C, 3) each, and the unit normal from b to a (C, 3)."""
    ba, bb = np.asarray(col.body_a, np.int32), np.asarray(col.body_b, np.int32)
    ea = xpos[ba][:, None] + jnp.einsum("cij,ckj->cki", xmat[ba], col.cap_a)
    eb = xpos[bb][:, None] + jnp.einsum("cij,ckj->cki", xmat[bb], col.cap_b)
    s, t = segment_closest_points(ea[:, 0], ea[:, 1], eb[:, 0], eb[:, 1])
    ca = ea[:, 0] + s[:, None] * (ea[:, 1] - ea[:, 0])
    cb = eb[:, 0] + t[:, None] * (eb[:, 1] - eb[:, 0])
    d = ca - cb
    dist = jnp.sqrt(jnp.sum(d * d, -1) + 1e-18)
    return dist - col.radius_a - col.radius_b, ca, cb, d / dist[:, None]


def load_height_field(path: str | Path, dtype=jnp.float32) -> HeightField:
    """A :class:`HeightField` from an ``.npz`` with ``heights`` (Nx, Ny) metres, ``origin``
    (2,) world xy of node (0, 0) and ``cell`` () spacing; typed errors name the field."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: np.asarray(z[k], np.float64) for k in z.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise MotionFormatError(p, f"cannot read a height field: {e}") from None
    for key, shape in (("heights", None), ("origin", (2,)), ("cell", ())):
        if key not in data:
            raise MotionFormatError(p, "missing key", field=key)
        a = data[key]
        if (shape is not None and a.shape != shape) or (shape is None and (a.ndim != 2 or min(a.shape) < 2)):
            raise MotionFormatError(p, f"expected shape {shape or '(Nx >= 2, Ny >= 2)'}, found {a.shape}", field=key)
        if not np.isfinite(a).all():
            raise MotionFormatError(p, "non-finite values", field=key)
    if not data["cell"] > 0:
        raise MotionFormatError(p, f"expected a spacing > 0, found {float(data['cell'])}", field="cell")
    return HeightField(
        heights=jnp.asarray(data["heights"], dtype),
        origin=jnp.asarray(data["origin"], dtype),
        cell=jnp.asarray(data["cell"], dtype),
    )
