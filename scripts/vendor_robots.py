"""Copy robot MJCFs from ../shared/robots into the package, kinematics and collision only.

The package must run without ../shared, so it carries its robots. Visual meshes (about
19 MB of STL for the G1) are dropped: retargeting needs the kinematic tree, joint ranges
and collision geoms, not the visual shell. Scene furniture on the world body (a ground
plane, lights) is dropped too: it is not part of the robot, and a floor geom would count
as the robot's lowest point. Run once when a robot is added or updated:

    python scripts/vendor_robots.py --shared ../shared

Per-robot edits (each listed in the robot's NOTICE.md):

- ``unitree_h1``: the source (Unitree ``unitree_mujoco``) carries a dummy ``not_use_body``
  with a hinge ``not_use_joint`` on the world body, 20 m up, that only pads the SDK's
  motor numbering; it is removed with its actuator, sensors and keyframe entries, which
  leaves the 19 DoF of the H1. The source has no collision geoms below the hips, so the
  feet get the three sole capsules of MuJoCo Menagerie's ``unitree_h1/h1.xml`` (the same
  Unitree model, BSD-3-Clause; identical body frames): the sole is 0.070 m below the
  ankle joint, which also agrees with the source's own ``home`` keyframe (pelvis at
  0.98 m with hip -0.4, knee 0.8, ankle -0.4 puts the sole 0.069 m below the ankle).
- ``booster_t1``: only the ground plane and light are dropped; its feet already carry
  five small contact spheres each (sole 0.035 m below ``left_foot_link``).
"""

from __future__ import annotations

import argparse
import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco

PKG_ASSETS = Path(__file__).resolve().parents[1] / "retarget_jax" / "robots" / "assets"

# MuJoCo Menagerie unitree_h1/h1.xml, classes foot1..foot3 (capsules of radius 0.014).
_H1_SOLE = [
    {"type": "capsule", "size": "0.014", "fromto": "-0.035 0 -0.056 0.02 0 -0.045"},
    {"type": "capsule", "size": "0.014", "fromto": "0.02 0 -0.045 0.115 0 -0.056"},
    {"type": "capsule", "size": "0.014", "fromto": "0.14 -0.03 -0.056 0.14 0.03 -0.056"},
]


@dataclasses.dataclass(frozen=True)
class Vendored:
    """One robot: its MJCF under ``shared/robots`` and the edits made on the way in."""

    source: str
    remove_bodies: tuple[str, ...] = ()
    add_geoms: dict[str, list[dict[str, str]]] = dataclasses.field(default_factory=dict)
    geom_class: str | None = None  # default class for added geoms


ROBOTS: dict[str, Vendored] = {
    "unitree_g1": Vendored("unitree_g1/g1.xml"),
    "unitree_h1": Vendored(
        "unitree_h1/h1.xml",
        remove_bodies=("not_use_body",),
        add_geoms={"left_ankle_link": _H1_SOLE, "right_ankle_link": _H1_SOLE},
        geom_class="collision",
    ),
    "booster_t1": Vendored("booster_t1/t1_23dof.xml"),
}


def strip_meshes(root: ET.Element) -> None:
    for asset in root.iter("asset"):
        for mesh in list(asset.findall("mesh")):
            asset.remove(mesh)
    for parent in root.iter():
        for geom in list(parent.findall("geom")):
            if geom.get("type") == "mesh" or geom.get("mesh") is not None or geom.get("class") == "visual":
                parent.remove(geom)
    compiler = root.find("compiler")
    if compiler is not None and "meshdir" in compiler.attrib:
        del compiler.attrib["meshdir"]


def strip_scene(root: ET.Element) -> None:
    """Drop geoms and lights attached directly to the world body (floor, sky light)."""
    for world in root.iter("worldbody"):
        for child in list(world):
            if child.tag in ("geom", "light"):
                world.remove(child)


def remove_bodies(root: ET.Element, names: tuple[str, ...], src_model: mujoco.MjModel) -> None:
    """Remove bodies with their joints, and whatever refers to those joints (actuators,
    sensors, keyframe entries)."""
    if not names:
        return
    parent_of = {c: p for p in root.iter() for c in p}
    joints: set[str] = set()
    for body in [b for b in root.iter("body") if b.get("name") in names]:
        joints |= {j.get("name") for j in body.iter("joint") if j.get("name")}
        parent_of[body].remove(body)
    missing = set(names) - {src_model.body(b).name for b in range(src_model.nbody)}
    if missing:
        raise SystemExit(f"bodies to remove not in the source: {sorted(missing)}")
    for section in ("actuator", "sensor"):
        for sec in root.iter(section):
            for el in list(sec):
                if el.get("joint") in joints:
                    sec.remove(el)
    jids = [src_model.joint(n).id for n in joints]
    drop_q = {int(src_model.jnt_qposadr[j]) + k for j in jids for k in range(_nq(src_model, j))}
    drop_v = {int(src_model.jnt_dofadr[j]) + k for j in jids for k in range(_nv(src_model, j))}
    drop_u = {
        a
        for a in range(src_model.nu)
        if src_model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT and int(src_model.actuator_trnid[a, 0]) in jids
    }
    for key in root.iter("key"):
        for attr, drop in (("qpos", drop_q), ("qvel", drop_v), ("ctrl", drop_u)):
            if key.get(attr) is not None:
                vals = key.get(attr).split()
                key.set(attr, " ".join(v for i, v in enumerate(vals) if i not in drop))


def _nq(m: mujoco.MjModel, j: int) -> int:
    return {0: 7, 1: 4}.get(int(m.jnt_type[j]), 1)


def _nv(m: mujoco.MjModel, j: int) -> int:
    return {0: 6, 1: 3}.get(int(m.jnt_type[j]), 1)


def add_geoms(root: ET.Element, geoms: dict[str, list[dict[str, str]]], geom_class: str | None) -> None:
    bodies = {b.get("name"): b for b in root.iter("body")}
    for name, specs in geoms.items():
        body = bodies[name]
        # after the body's inertial, joints and geoms, before its child bodies and sites
        idx = max((i + 1 for i, c in enumerate(body) if c.tag in ("inertial", "joint", "geom")), default=0)
        for k, spec in enumerate(specs):
            attrs = {"class": geom_class} if geom_class else {}
            attrs.update(spec)
            body.insert(idx + k, ET.Element("geom", attrs))


def vendor(src: Path, dst: Path, spec: Vendored) -> None:
    tree = ET.parse(src)
    root = tree.getroot()
    strip_meshes(root)
    strip_scene(root)
    if spec.remove_bodies:
        remove_bodies(root, spec.remove_bodies, mujoco.MjModel.from_xml_path(str(src)))
    add_geoms(root, spec.add_geoms, spec.geom_class)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(tree)
    tree.write(dst, encoding="unicode")
    mujoco.MjModel.from_xml_path(str(dst))  # the result must load on its own


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("robots", nargs="*", default=list(ROBOTS), help=f"subset of {list(ROBOTS)}")
    args = ap.parse_args()
    for name in args.robots:
        spec = ROBOTS[name]
        dst = PKG_ASSETS / name / Path(spec.source).name
        vendor(args.shared / "robots" / spec.source, dst, spec)
        print(f"wrote {dst}")


if __name__ == "__main__":
    main()
