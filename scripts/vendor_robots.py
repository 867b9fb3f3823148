"""Copy robot MJCFs from ../shared/robots into the package, kinematics and collision only.

The package must run without ../shared, so it carries its robots. Visual meshes (about
19 MB of STL for the G1) are dropped: retargeting needs the kinematic tree, joint ranges
and collision geoms, not the visual shell. Run once when a robot is added or updated:

    python scripts/vendor_robots.py --shared ../shared
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

ROBOTS = {"unitree_g1": "unitree_g1/g1.xml"}
PKG_ASSETS = Path(__file__).resolve().parents[1] / "retarget_jax" / "robots" / "assets"


def strip_meshes(src: Path, dst: Path) -> None:
    tree = ET.parse(src)
    root = tree.getroot()
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
    dst.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(tree)
    tree.write(dst, encoding="unicode")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = ap.parse_args()
    for name, rel in ROBOTS.items():
        dst = PKG_ASSETS / name / Path(rel).name
        strip_meshes(args.shared / "robots" / rel, dst)
        print(f"wrote {dst}")


if __name__ == "__main__":
    main()
