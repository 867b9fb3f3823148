"""RobotSpec: a robot loaded from an MJCF (host side), and its kinematic tree as a pytree.

Host side: names, ranges, the ``mujoco.MjModel`` and one ``mjx.Model`` per robot.
The :class:`KinematicTree` is what jitted code sees: arrays, with the topology static.

Supported trees: one floating base (free joint) on the root body and hinge joints
below it, at most one joint per body. That covers the G1, H1 and T1.

Tangent (velocity) layout used everywhere in the solver, as MuJoCo's qvel:
``[v_root_world (3), omega_root_local (3), hinge rates (n)]``, nv = 6 + n.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import equinox as eqx
import mujoco
import numpy as np

from retarget_jax.arrays import AnyArray, Float
from retarget_jax.errors import RobotModelError, UnknownNameError
from retarget_jax.files.resources import ROBOT_ASSETS
from retarget_jax.robots.collision import collision_spec

#: Built-in robots shipped inside the package: name -> MJCF path relative to ``ROBOT_ASSETS``.
BUILTIN_ROBOTS: dict[str, str] = {
    "unitree_g1": "unitree_g1/g1.xml",
    "unitree_h1": "unitree_h1/h1.xml",
    "booster_t1": "booster_t1/t1_23dof.xml",
}


class KinematicTree(eqx.Module):
    """Arrays for forward kinematics and Jacobians (Nb bodies without world, n hinge DoF).

    Static: ``parents`` and ``body_dof`` (they drive Python loops), ``root``.
    Traced: offsets and axes, so a later calibration can differentiate through them.
    """

    body_pos: Float[AnyArray, "Nb 3"]  # body frame origin in the parent frame
    body_quat: Float[AnyArray, "Nb 4"]  # body frame orientation in the parent frame
    jnt_pos: Float[AnyArray, "Nb 3"]  # hinge anchor in the body frame (zero without hinge)
    jnt_axis: Float[AnyArray, "Nb 3"]  # hinge axis in the body frame (zero without hinge)
    dof_ancestor: Float[AnyArray, "Nb n"]  # 1 where hinge i moves body b
    parents: tuple[int, ...] = eqx.field(static=True)  # (B,) -1 for the root
    body_dof: tuple[int, ...] = eqx.field(static=True)  # (B,) hinge index or -1
    root: int = eqx.field(static=True)

    @property
    def num_bodies(self) -> int:
        return len(self.parents)

    @property
    def num_dof(self) -> int:
        return int(self.dof_ancestor.shape[1])


@dataclasses.dataclass(frozen=True)
class RobotSpec:
    """A retargeting robot, loaded once on the host.

    Attributes:
        name: robot name (e.g. ``unitree_g1``).
        mjcf_path: the MJCF it came from.
        mj_model: MuJoCo C model.
        dof_names: (n,) hinge joint names in MJCF order.
        dof_ranges: (n, 2) joint ranges, radians.
        body_names: (B,) body names in MJCF order, world excluded.
        tree: the kinematic tree pytree for jitted FK.
    """

    name: str
    mjcf_path: Path
    mj_model: mujoco.MjModel = dataclasses.field(repr=False)
    dof_names: tuple[str, ...]
    dof_ranges: np.ndarray = dataclasses.field(repr=False)
    body_names: tuple[str, ...]
    tree: KinematicTree = dataclasses.field(repr=False)

    @property
    def num_dof(self) -> int:
        return len(self.dof_names)

    @property
    def nq(self) -> int:
        return 7 + self.num_dof

    @property
    def nv(self) -> int:
        return 6 + self.num_dof

    @functools.cached_property
    def mjx_model(self):
        """The ``mjx.Model`` of this robot (built on first use, then cached)."""
        from mujoco import mjx

        return mjx.put_model(self.mj_model)

    @functools.cached_property
    def standing_height(self) -> float:
        """Root height above the lowest collision geom at the default pose (qpos0)."""
        m = self.mj_model
        d = mujoco.MjData(m)
        d.qpos[:] = m.qpos0
        d.qpos[:3] = 0.0
        mujoco.mj_forward(m, d)
        lowest = min(geom_lowest_z(m, d, g) for g in range(m.ngeom))
        return float(-lowest)

    @functools.cached_property
    def collision(self):
        """Collision geoms and declared self-collision pairs
        (:func:`retarget_jax.robots.collision.collision_spec`)."""
        return collision_spec(self)

    def body_index(self, name: str, *, where: str | None = None) -> int:
        try:
            return self.body_names.index(name)
        except ValueError:
            raise UnknownNameError(
                f"body of robot {self.name}", name, self.body_names, where=where, source=str(self.mjcf_path)
            ) from None

    def subtree_geoms(self, body: int) -> list[int]:
        """MuJoCo geom ids on robot body ``body`` (index in ``body_names``) and every body
        below it (a foot and, say, the T1's massless contact-sphere children)."""
        m = self.mj_model
        below = {body + 1}
        for k in range(body + 2, m.nbody):  # MuJoCo numbers children after their parents
            if m.body_parentid[k] in below:
                below.add(k)
        return [g for g in range(m.ngeom) if m.geom_bodyid[g] in below]

    def dof_index(self, name: str, *, where: str | None = None) -> int:
        try:
            return self.dof_names.index(name)
        except ValueError:
            raise UnknownNameError(
                f"joint of robot {self.name}", name, self.dof_names, where=where, source=str(self.mjcf_path)
            ) from None

    def chain_length(self, body: str, ancestor: str) -> float:
        """Sum of |body_pos| on the path from ``ancestor`` down to ``body`` (metres)."""
        b, a = self.body_index(body), self.body_index(ancestor)
        total = 0.0
        while b != a:
            if b < 0:
                raise RobotModelError(f"{self.name}: {ancestor} is not an ancestor of {body}")
            total += float(np.linalg.norm(np.asarray(self.tree.body_pos[b])))
            b = self.tree.parents[b]
        return total


def geom_lowest_z(m: mujoco.MjModel, d: mujoco.MjData, g: int) -> float:
    """Lowest world z of geom ``g``; +inf for a geom that is not on the robot (a floor
    plane on the world body, scenery), so that ``min`` over all geoms finds the sole."""
    if m.njnt == 0 or m.body_rootid[m.geom_bodyid[g]] != m.body_rootid[m.jnt_bodyid[0]]:
        return float("inf")
    pos = d.geom_xpos[g]
    R = d.geom_xmat[g].reshape(3, 3)
    size = m.geom_size[g]
    t = m.geom_type[g]
    if t == mujoco.mjtGeom.mjGEOM_SPHERE:
        return pos[2] - size[0]
    if t == mujoco.mjtGeom.mjGEOM_CAPSULE:
        return pos[2] - abs(R[2, 2]) * size[1] - size[0]
    if t == mujoco.mjtGeom.mjGEOM_BOX:
        return pos[2] - float(np.abs(R[2, :]) @ size)
    return pos[2] - float(m.geom_rbound[g])


def load_robot(name_or_path: str | Path, *, name: str | None = None) -> RobotSpec:
    """Load a built-in robot by name, or any MJCF by path."""
    key = str(name_or_path)
    if key in BUILTIN_ROBOTS:
        path = ROBOT_ASSETS / BUILTIN_ROBOTS[key]
        name = name or key
    else:
        path = Path(key)
        if path.suffix.lower() != ".xml" or not path.exists():
            raise UnknownNameError("robot", key, list(BUILTIN_ROBOTS) + ["<path to an MJCF .xml>"])
        name = name or path.stem
    return _load_robot_cached(str(path.resolve()), name)


@functools.lru_cache(maxsize=16)
def _load_robot_cached(path: str, name: str) -> RobotSpec:
    try:
        m = mujoco.MjModel.from_xml_path(path)
    except Exception as e:  # mujoco raises ValueError with the XML error
        raise RobotModelError(f"{path}: cannot load MJCF: {e}") from e
    return _spec_from_model(m, Path(path), name)


def _spec_from_model(m: mujoco.MjModel, path: Path, name: str) -> RobotSpec:
    free = [j for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
    if len(free) != 1:
        raise RobotModelError(f"{path}: expected exactly one free joint (floating base), found {len(free)}")
    root_body = int(m.jnt_bodyid[free[0]])
    if m.body_parentid[root_body] != 0:
        raise RobotModelError(f"{path}: the free joint must sit on a child of the world body")
    if free[0] != 0 or m.jnt_qposadr[free[0]] != 0:
        raise RobotModelError(f"{path}: the free joint must be the first joint")
    B = m.nbody - 1
    hinge_joints = []
    body_dof = [-1] * B
    for b in range(1, m.nbody):
        jn = int(m.body_jntnum[b])
        if b == root_body:
            if jn != 1:
                raise RobotModelError(f"{path}: root body '{m.body(b).name}' must carry only the free joint")
            continue
        if jn > 1:
            raise RobotModelError(f"{path}: body '{m.body(b).name}' has {jn} joints; at most one is supported")
        if jn == 1:
            j = int(m.body_jntadr[b])
            if m.body_rootid[b] != root_body:
                raise RobotModelError(
                    f"{path}: joint '{m.joint(j).name}' on body '{m.body(b).name}' is not below the floating "
                    f"base '{m.body(root_body).name}'; remove that body (e.g. a dummy motor placeholder)"
                )
            if m.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE:
                raise RobotModelError(
                    f"{path}: joint '{m.joint(j).name}' has type {mujoco.mjtJoint(m.jnt_type[j]).name}; "
                    "only hinge joints are supported below the floating base"
                )
            body_dof[b - 1] = len(hinge_joints)
            hinge_joints.append(j)
    n = len(hinge_joints)
    # MJCF order of hinge joints must match qpos order for qpos = [root7, hinges]
    for i, j in enumerate(hinge_joints):
        if m.jnt_qposadr[j] != 7 + i:
            raise RobotModelError(f"{path}: hinge joints are not in qpos order")
    parents = tuple(int(m.body_parentid[b]) - 1 for b in range(1, m.nbody))
    jnt_pos = np.zeros((B, 3))
    jnt_axis = np.zeros((B, 3))
    for b in range(B):
        i = body_dof[b]
        if i >= 0:
            jnt_pos[b] = m.jnt_pos[hinge_joints[i]]
            jnt_axis[b] = m.jnt_axis[hinge_joints[i]]
    anc = np.zeros((B, n))
    for b in range(B):
        c = b
        while c >= 0:
            if body_dof[c] >= 0:
                anc[b, body_dof[c]] = 1.0
            c = parents[c]
    ranges = np.array(
        [m.jnt_range[j] if m.jnt_limited[j] else (-np.pi, np.pi) for j in hinge_joints], dtype=np.float64
    ).reshape(n, 2)
    tree = KinematicTree(
        body_pos=np.asarray(m.body_pos[1:], np.float64),
        body_quat=np.asarray(m.body_quat[1:], np.float64),
        jnt_pos=jnt_pos,
        jnt_axis=jnt_axis,
        dof_ancestor=anc,
        parents=parents,
        body_dof=tuple(body_dof),
        root=root_body - 1,
    )
    return RobotSpec(
        name=name,
        mjcf_path=path,
        mj_model=m,
        dof_names=tuple(m.joint(j).name for j in hinge_joints),
        dof_ranges=ranges,
        body_names=tuple(m.body(b).name for b in range(1, m.nbody)),
        tree=tree,
    )
