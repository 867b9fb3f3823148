"""Built-in neutral SMPL / SMPL-X skeletons from the vendored MJCF figures (host, numpy).

The figures (``assets/smpl_humanoid.xml`` for SMPL and SMPL-H, ``assets/smplx_humanoid.xml``
for SMPL-X; ProtoMotions, Apache-2.0) hold the beta = 0 body: body names, the tree and
each body's ``pos`` relative to its parent, in metres. Those offsets are written in a
Z-up, X-forward, Y-left figure frame; the pose rotations of SMPL files act in the SMPL
canonical frame (Y-up, Z-forward, X-left), so each offset is turned into it:

    x_smpl = y_xml (left),  y_smpl = z_xml (up),  z_smpl = x_xml (forward)

a proper rotation (det +1), so left stays left. The root body's ``pos`` is not an offset
but the canonical pelvis ``J_0`` itself (for SMPL it is the neutral model's regressed
pelvis, Y-up: y = -0.22 m below the template origin) and is kept as is.

Use these when no licensed model file is at hand; betas are then ignored (with a
warning from the reader), as ProtoMotions does.
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET

import numpy as np

from retarget_jax.body_models.topology import (
    FAMILIES,
    SMPL_BODY_JOINT_NAMES,
    SMPL_BODY_PARENTS,
    BodySkeleton,
)
from retarget_jax.errors import UnknownNameError
from retarget_jax.files.resources import BODY_MODEL_ASSETS

__all__ = ["FIGURE_FILES", "XML_BODY_TO_SMPL", "XML_TO_CANONICAL", "figure_path", "parse_figure", "neutral_skeleton"]

#: Family -> vendored figure file.
FIGURE_FILES = {"smpl": "smpl_humanoid.xml", "smplh": "smpl_humanoid.xml", "smplx": "smplx_humanoid.xml"}

#: Figure body name -> SMPL joint name (the 22 body joints; hands and fingers are dropped).
XML_BODY_TO_SMPL = {
    "Pelvis": "pelvis",
    "L_Hip": "left_hip",
    "R_Hip": "right_hip",
    "Torso": "spine1",
    "L_Knee": "left_knee",
    "R_Knee": "right_knee",
    "Spine": "spine2",
    "L_Ankle": "left_ankle",
    "R_Ankle": "right_ankle",
    "Chest": "spine3",
    "L_Toe": "left_foot",
    "R_Toe": "right_foot",
    "Neck": "neck",
    "L_Thorax": "left_collar",
    "R_Thorax": "right_collar",
    "Head": "head",
    "L_Shoulder": "left_shoulder",
    "R_Shoulder": "right_shoulder",
    "L_Elbow": "left_elbow",
    "R_Elbow": "right_elbow",
    "L_Wrist": "left_wrist",
    "R_Wrist": "right_wrist",
}

#: v_smpl = XML_TO_CANONICAL @ v_xml (figure x-forward/y-left/z-up -> SMPL canonical).
XML_TO_CANONICAL = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def figure_path(family: str) -> str:
    """Path of the vendored figure of a family."""
    if family not in FIGURE_FILES:
        raise UnknownNameError("SMPL family", family, FAMILIES)
    return str(BODY_MODEL_ASSETS / FIGURE_FILES[family])


def parse_figure(path: str | os.PathLike) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Bodies of an MJCF figure in document order: names, parents (-1 root), ``pos`` (N, 3)."""
    root = ET.parse(os.fspath(path)).getroot()
    world = root.find("worldbody")
    if world is None:
        raise ValueError(f"{path}: no <worldbody>")
    names: list[str] = []
    parents: list[int] = []
    pos: list[list[float]] = []

    def walk(elem: ET.Element, parent: int) -> None:
        for body in elem.findall("body"):
            names.append(body.get("name", ""))
            parents.append(parent)
            pos.append([float(v) for v in body.get("pos", "0 0 0").split()])
            walk(body, len(names) - 1)

    walk(world, -1)
    return tuple(names), np.asarray(parents, dtype=np.int64), np.asarray(pos, dtype=np.float64)


@functools.cache
def neutral_skeleton(family: str) -> BodySkeleton:
    """The built-in beta = 0 skeleton of a family (rest joints in the SMPL canonical frame)."""
    path = figure_path(family)
    names, parents, pos = parse_figure(path)
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in XML_BODY_TO_SMPL if n not in index]
    if missing:
        raise ValueError(f"{path}: bodies {missing} not found")
    order = {smpl: xml for xml, smpl in XML_BODY_TO_SMPL.items()}
    J = np.zeros((len(SMPL_BODY_JOINT_NAMES), 3))
    for j, smpl_name in enumerate(SMPL_BODY_JOINT_NAMES):
        i = index[order[smpl_name]]
        p = SMPL_BODY_PARENTS[j]
        if p < 0:
            if parents[i] != -1:
                raise ValueError(f"{path}: {order[smpl_name]} is not the root body")
            J[j] = pos[i]
            continue
        if names[parents[i]] != order[SMPL_BODY_JOINT_NAMES[p]]:
            raise ValueError(
                f"{path}: parent of {names[i]} is {names[parents[i]]}, expected {order[SMPL_BODY_JOINT_NAMES[p]]}"
            )
        J[j] = J[p] + XML_TO_CANONICAL @ pos[i]
    J.setflags(write=False)
    return BodySkeleton(family=family, rest_joints=J, source=f"built-in neutral figure {path}", gender="neutral")
