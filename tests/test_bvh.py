"""Tests for retarget_jax.motion.bvh: parsing, forward kinematics, axes, units, errors."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest

from retarget_jax.errors import ConfigError, MotionFormatError, UnknownNameError
from retarget_jax.io.bvh import write_bvh
from retarget_jax.motion.bvh import (
    Y_UP_TO_Z_UP,
    BvhClip,
    bvh_joint_poses,
    parse_bvh,
    read_bvh,
    read_bvh_format,
)
from retarget_jax.motion.conventions import get_conventions
from retarget_jax.motion.joint_maps import JointMap, load_joint_map
from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP, HumanJoint
from retarget_jax.rotations import quat_to_mat

LAFAN1_CLIP = "lafan1_skeleton_clip_a.bvh"
CHAIN_MAP = {"A": HumanJoint.PELVIS, "B": HumanJoint.SPINE_LOWER, "C": HumanJoint.SPINE_MID}


def _write(tmp_path: Path, text: str, name: str = "clip.bvh") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _chain(
    order: tuple[str, str, str] = ("Z", "Y", "X"),
    frames: list[str] | None = None,
    *,
    n_frames: int | None = None,
    frame_time: str = "0.033333",
) -> str:
    """Root A (6 channels) -> B (offset +X) -> C (offset +2Y) -> End Site."""
    rot = " ".join(f"{a}rotation" for a in order)
    frames = frames if frames is not None else ["10 20 30 90 0 0 0 0 0 0 0 0"]
    n = len(frames) if n_frames is None else n_frames
    return (
        "\n".join(
            [
                "HIERARCHY",
                "ROOT A",
                "{",
                "  OFFSET 0 0 0",
                "  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation",
                "  JOINT B",
                "  {",
                "    OFFSET 1 0 0",
                f"    CHANNELS 3 {rot}",
                "    JOINT C",
                "    {",
                "      OFFSET 0 2 0",
                "      CHANNELS 3 Zrotation Yrotation Xrotation",
                "      End Site",
                "      {",
                "        OFFSET 0 1 0",
                "      }",
                "    }",
                "  }",
                "}",
                "MOTION",
                f"Frames: {n}",
                f"Frame Time: {frame_time}",
                *frames,
            ]
        )
        + "\n"
    )


def _Rx(deg):
    a = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _Ry(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _Rz(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


_R = {"X": _Rx, "Y": _Ry, "Z": _Rz}


def _read_raw(path: Path, joint_map=CHAIN_MAP):
    """File axes and units: no up-axis change, no scaling."""
    return read_bvh(path, joint_map=joint_map, length_scale=1.0, up_axis="z")


# --------------------------------------------------------------------------------------
# Forward kinematics


def test_chain_fk_zyx_hand_computed(tmp_path):
    # Root at (10, 20, 30) yawed 90 deg about Z; B: Z=90 then X=90 (intrinsic).
    p = _write(tmp_path, _chain(("Z", "Y", "X"), ["10 20 30 90 0 0 90 0 90 0 0 0"]))
    m = _read_raw(p)
    np.testing.assert_allclose(m.positions[0, 0], [10, 20, 30], atol=1e-12)
    # B = A + Rz(90) (1, 0, 0) = A + (0, 1, 0)
    np.testing.assert_allclose(m.positions[0, 1], [10, 21, 30], atol=1e-12)
    # R_B = Rz(90) Rz(90) Rx(90) = Rz(180) Rx(90); C = B + R_B (0, 2, 0) = B + (0, 0, 2)
    np.testing.assert_allclose(m.positions[0, 2], [10, 21, 32], atol=1e-12)
    R = quat_to_mat(m.orientations[0])
    np.testing.assert_allclose(R[0], _Rz(90), atol=1e-12)
    np.testing.assert_allclose(R[1], _Rz(180) @ _Rx(90), atol=1e-12)
    np.testing.assert_allclose(R[2], _Rz(180) @ _Rx(90), atol=1e-12)


def test_chain_fk_xzy_differs_and_is_hand_computed(tmp_path):
    # Same angles (X=90, Z=90) in the order X, Z, Y: R_B_local = Rx(90) Rz(90).
    p = _write(tmp_path, _chain(("X", "Z", "Y"), ["10 20 30 90 0 0 90 90 0 0 0 0"]))
    m = _read_raw(p)
    # R_B = Rz(90) Rx(90) Rz(90); C = B + R_B (0, 2, 0) = B + (0, -2, 0)
    np.testing.assert_allclose(m.positions[0, 1], [10, 21, 30], atol=1e-12)
    np.testing.assert_allclose(m.positions[0, 2], [10, 19, 30], atol=1e-12)
    R = quat_to_mat(m.orientations[0])
    np.testing.assert_allclose(R[1], _Rz(90) @ _Rx(90) @ _Rz(90), atol=1e-12)


@pytest.mark.parametrize("order", ["".join(o) for o in itertools.permutations("XYZ")])
def test_fk_matches_matrix_composition_for_every_channel_order(tmp_path, order):
    rng = np.random.default_rng(sum(ord(c) * 31**i for i, c in enumerate(order)))
    # Values as the file holds them (6 decimals), so the reference sees the same numbers.
    ang = np.round(rng.uniform(-180, 180, size=(4, 3, 3)), 6)  # frames, joints, channels
    root = np.round(rng.uniform(-50, 50, size=(4, 3)), 6)
    frames = [" ".join(f"{v:.6f}" for v in [*root[t], *ang[t, 0], *ang[t, 1], *ang[t, 2]]) for t in range(4)]
    text = _chain(tuple(order), frames)
    # Every joint gets the same order in this test (root and C too).
    rot = " ".join(f"{a}rotation" for a in order)
    text = text.replace("Zrotation Yrotation Xrotation", rot)
    m = _read_raw(_write(tmp_path, text))
    for t in range(4):
        Rs = [np.linalg.multi_dot([_R[a](ang[t, j, i]) for i, a in enumerate(order)]) for j in range(3)]
        R_A, R_B, R_C = Rs[0], Rs[0] @ Rs[1], Rs[0] @ Rs[1] @ Rs[2]
        p_B = root[t] + R_A @ [1, 0, 0]
        p_C = p_B + R_B @ [0, 2, 0]
        np.testing.assert_allclose(m.positions[t], [root[t], p_B, p_C], atol=1e-9)
        np.testing.assert_allclose(quat_to_mat(m.orientations[t]), [R_A, R_B, R_C], atol=1e-9)


def test_position_channels_of_a_joint_override_its_offset(tmp_path):
    text = _chain(frames=["0 0 0 0 0 0 5 0 0 0 0 0"])
    text = text.replace("OFFSET 1 0 0", "OFFSET 1 3 0").replace(
        "CHANNELS 3 Zrotation Yrotation Xrotation\n    JOINT C",
        "CHANNELS 4 Xposition Zrotation Yrotation Xrotation\n    JOINT C",
        1,
    )
    text = text.replace("0 0 0 0 0 0 5 0 0 0 0 0", "0 0 0 0 0 0 5 0 0 0 0 0 0")
    m = _read_raw(_write(tmp_path, text))
    # Xposition = 5 replaces OFFSET x; y = 3 and z = 0 still come from OFFSET.
    np.testing.assert_allclose(m.positions[0, 1], [5, 3, 0], atol=1e-12)


def test_root_offset_is_used_when_root_has_no_position_channels(tmp_path):
    text = _chain(frames=["0 0 0 0 0 0"]).replace(
        "OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation",
        "OFFSET 7 8 9\n  CHANNELS 3 Zrotation Yrotation Xrotation",
    )
    text = text.replace("0 0 0 0 0 0\n", "0 0 0 0 0 0 0 0 0\n")
    m = _read_raw(_write(tmp_path, text))
    np.testing.assert_allclose(m.positions[0, 0], [7, 8, 9])
    np.testing.assert_allclose(m.positions[0, 2], [8, 10, 9])


def test_parse_bvh_raw_fields(tmp_path):
    clip = parse_bvh(_write(tmp_path, _chain(frames=["1 2 3 4 5 6 7 8 9 10 11 12"] * 2)))
    assert clip.joint_names == ("A", "B", "C")
    assert clip.parents.tolist() == [-1, 0, 1]
    np.testing.assert_array_equal(clip.offsets, [[0, 0, 0], [1, 0, 0], [0, 2, 0]])
    assert clip.channels[0] == (
        "Xposition",
        "Yposition",
        "Zposition",
        "Zrotation",
        "Yrotation",
        "Xrotation",
    )
    assert clip.channel_start.tolist() == [0, 6, 9]
    assert clip.frames.shape == (2, 12) and clip.frames.dtype == np.float64
    np.testing.assert_array_equal(clip.frames[1], np.arange(1, 13))
    assert clip.frame_time == pytest.approx(0.033333)


# --------------------------------------------------------------------------------------
# Axes, units, timing, joint selection


def _axes_file(tmp_path: Path, root_rot: str = "0 0 0") -> Path:
    """Root with children along +X, +Y, +Z (10 units each)."""
    text = (
        "\n".join(
            [
                "HIERARCHY",
                "ROOT R",
                "{",
                "OFFSET 0 0 0",
                "CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation",
                "JOINT PX",
                "{",
                "OFFSET 10 0 0",
                "CHANNELS 3 Zrotation Yrotation Xrotation",
                "End Site",
                "{",
                "OFFSET 0 0 0",
                "}",
                "}",
                "JOINT PY",
                "{",
                "OFFSET 0 10 0",
                "CHANNELS 3 Zrotation Yrotation Xrotation",
                "End Site",
                "{",
                "OFFSET 0 0 0",
                "}",
                "}",
                "JOINT PZ",
                "{",
                "OFFSET 0 0 10",
                "CHANNELS 3 Zrotation Yrotation Xrotation",
                "End Site",
                "{",
                "OFFSET 0 0 0",
                "}",
                "}",
                "}",
                "MOTION",
                "Frames: 1",
                "Frame Time: 0.04",
                f"0 0 0 {root_rot} 0 0 0 0 0 0 0 0 0",
            ]
        )
        + "\n"
    )
    return _write(tmp_path, text)


AXES_MAP = {
    "R": HumanJoint.PELVIS,
    "PX": HumanJoint.LEFT_HIP,
    "PY": HumanJoint.SPINE_LOWER,
    "PZ": HumanJoint.RIGHT_HIP,
}


def test_y_up_becomes_z_up_by_a_proper_rotation(tmp_path):
    m = read_bvh(_axes_file(tmp_path), joint_map=AXES_MAP)  # y-up, cm -> m
    p = m.positions[0]
    np.testing.assert_allclose(p[1], [0.1, 0, 0], atol=1e-12)  # +X stays +X
    np.testing.assert_allclose(p[2], [0, 0, 0.1], atol=1e-12)  # +Y (up) -> +Z
    np.testing.assert_allclose(p[3], [0, -0.1, 0], atol=1e-12)  # +Z -> -Y
    # Handedness is kept: the triad (x, y, z) stays right-handed (no mirroring).
    tri = np.stack([p[1] - p[0], p[2] - p[0], p[3] - p[0]])
    assert np.linalg.det(tri) > 0
    assert np.dot(np.cross(p[1] - p[0], p[2] - p[0]), p[3] - p[0]) > 0
    assert np.linalg.det(Y_UP_TO_Z_UP) == pytest.approx(1.0)


def test_y_up_orientation_conversion_turns_yaw_about_y_into_yaw_about_z(tmp_path):
    # Root yawed +90 deg about the file's up axis (Y): channels Z Y X = 0 90 0.
    m = read_bvh(_axes_file(tmp_path, root_rot="0 90 0"), joint_map=AXES_MAP)
    R = quat_to_mat(m.orientations[0, 0])
    # R_world = C Ry(90) = (C Ry(90) C^T) C = Rz(90) C: a yaw about the new up axis.
    np.testing.assert_allclose(R, _Rz(90) @ Y_UP_TO_Z_UP, atol=1e-12)
    np.testing.assert_allclose(R[:, 0], [0, 1, 0], atol=1e-12)  # heading turned +X -> +Y
    # Positions stay consistent with the converted orientations: child = parent + R t.
    np.testing.assert_allclose(m.positions[0, 1] - m.positions[0, 0], R @ [0.1, 0, 0], atol=1e-12)


def test_up_axis_z_is_left_alone_and_unknown_axis_is_rejected(tmp_path):
    m = read_bvh(_axes_file(tmp_path), joint_map=AXES_MAP, up_axis="z", length_scale=1.0)
    np.testing.assert_allclose(m.positions[0, 2], [0, 10, 0])
    with pytest.raises(UnknownNameError, match="up axis 'x' not found; valid: y, z"):
        read_bvh(_axes_file(tmp_path), joint_map=AXES_MAP, up_axis="x")


def test_centimetres_to_metres_and_fps_from_frame_time(tmp_path):
    p = _write(tmp_path, _chain(frames=["100 200 300 0 0 0 0 0 0 0 0 0"]))
    m = read_bvh(p, joint_map=CHAIN_MAP, up_axis="z")
    np.testing.assert_allclose(m.positions[0, 0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(m.positions[0, 2] - m.positions[0, 1], [0, 0.02, 0])
    assert m.fps == 1.0 / 0.033333  # exact, not rounded to 30
    assert m.fps == pytest.approx(30.0003, abs=1e-4)
    assert m.positions.dtype == np.float64 and m.orientations.dtype == np.float64
    assert m.source_format == "bvh_lafan1" and m.source_path == str(p)
    assert m.source_joint_names == ("A", "B", "C")


def test_joints_outside_the_map_are_dropped_and_parents_reindexed(tmp_path):
    p = _write(tmp_path, _chain(frames=["10 20 30 90 0 0 90 0 90 0 0 0"]))
    m = read_bvh(p, joint_map={"A": "pelvis", "C": "head"}, length_scale=1.0, up_axis="z")
    assert m.joint_names == (HumanJoint.PELVIS, HumanJoint.HEAD)
    assert m.parents.tolist() == [-1, 0]  # C's nearest kept ancestor is A
    np.testing.assert_allclose(m.positions[0, 1], [10, 21, 32], atol=1e-12)


def test_no_mapped_joint_lists_the_file_joints(tmp_path):
    p = _write(tmp_path, _chain())
    with pytest.raises(MotionFormatError, match=r"clip\.bvh.*no joint .* joint map.*A, B, C"):
        read_bvh(p)  # LAFAN1 names


def test_crlf_tabs_and_extra_whitespace_parse_the_same(tmp_path):
    text = _chain(frames=["10 20 30 90 0 0 90 0 90 0 0 0"] * 3)
    messy = "\r\n".join("\t " + ln.replace(" ", " \t  ") + "  \t" for ln in text.split("\n"))
    a = _read_raw(_write(tmp_path, text, "a.bvh"))
    b = _read_raw(_write(tmp_path, messy, "b.bvh"))
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.orientations, b.orientations)
    assert a.fps == b.fps


def test_brace_on_the_joint_line_and_blank_lines_are_accepted(tmp_path):
    text = _chain(frames=["10 20 30 90 0 0 90 0 90 0 0 0"])
    text = text.replace("JOINT B\n  {", "JOINT B {").replace("MOTION\n", "\nMOTION\n\n")
    m = _read_raw(_write(tmp_path, text))
    np.testing.assert_allclose(m.positions[0, 2], [10, 21, 32], atol=1e-12)


def test_nan_values_are_kept_not_rejected(tmp_path):
    frames = ["0 0 0 0 0 0 0 0 0 0 0 0", "0 nan 0 0 0 0 0 0 0 0 0 0", "0 0 0 0 0 0 0 0 0 0 0 0"]
    m = _read_raw(_write(tmp_path, _chain(frames=frames)))
    assert np.isnan(m.positions[1]).any()
    assert np.isfinite(m.positions[[0, 2]]).all() and np.isfinite(m.orientations).all()


# --------------------------------------------------------------------------------------
# Malformed files: every error names the file and the 1-based line.


def _raises_at(path: Path, line: int, *patterns: str) -> MotionFormatError:
    with pytest.raises(MotionFormatError, match=rf"{re.escape(path.name)}, line {line}\b") as ei:
        read_bvh(path, joint_map=CHAIN_MAP)
    assert ei.value.line == line and ei.value.path == str(path)
    for pat in patterns:
        assert re.search(pat, str(ei.value)), (pat, str(ei.value))
    return ei.value


def _line_of(text: str, needle: str, nth: int = 0) -> int:
    hits = [i + 1 for i, ln in enumerate(text.split("\n")) if needle in ln]
    return hits[nth]


def test_missing_hierarchy(tmp_path):
    text = _chain().replace("HIERARCHY\n", "")
    _raises_at(_write(tmp_path, text), 1, "missing HIERARCHY")


def test_missing_motion(tmp_path):
    text = _chain().split("MOTION")[0]  # ends with "}\n"
    _raises_at(_write(tmp_path, text), _line_of(text, "}", -1), "missing MOTION")


def test_unclosed_brace(tmp_path):
    text = _chain()
    lines = text.split("\n")
    del lines[_line_of(text, "}", 3) - 1]  # the '}' closing B
    text = "\n".join(lines)
    _raises_at(
        _write(tmp_path, text),
        _line_of(text, "MOTION"),
        "unbalanced braces",
        "joint 'A' opened at line 2",
    )


def test_extra_closing_brace(tmp_path):
    text = _chain().replace("}\nMOTION", "}\n}\nMOTION")
    _raises_at(_write(tmp_path, text), _line_of(text, "MOTION") - 1, "unbalanced braces")


def test_unknown_channel(tmp_path):
    text = _chain().replace("CHANNELS 3 Zrotation Yrotation Xrotation", "CHANNELS 3 Zrotation Wrotation Xrotation", 1)
    _raises_at(
        _write(tmp_path, text),
        _line_of(text, "Wrotation"),
        "unknown channel 'Wrotation'",
        "valid: Xposition",
    )


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ("CHANNELS 4 Zrotation Yrotation Xrotation", "says 4 channels but lists 3"),
        ("CHANNELS three Zrotation Yrotation Xrotation", "must be an integer, found 'three'"),
        ("CHANNELS 7 Zrotation Yrotation Xrotation", "must be 0..6, found 7"),
        ("CHANNELS 3 Zrotation Zrotation Xrotation", "listed twice"),
    ],
)
def test_bad_channels_count(tmp_path, bad, pattern):
    text = _chain().replace("CHANNELS 3 Zrotation Yrotation Xrotation", bad, 1)
    _raises_at(_write(tmp_path, text), _line_of(text, bad), pattern)


def test_non_numeric_offset(tmp_path):
    text = _chain().replace("OFFSET 0 2 0", "OFFSET 0 two 0")
    _raises_at(_write(tmp_path, text), _line_of(text, "two"), "expected a number, found 'two'")


def test_non_numeric_frame_value(tmp_path):
    frames = ["0 0 0 0 0 0 0 0 0 0 0 0"] * 3
    frames[1] = "0 0 0 0 0 x1.5 0 0 0 0 0 0"
    text = _chain(frames=frames)
    _raises_at(_write(tmp_path, text), _line_of(text, "x1.5"), "frame index 1", "non-numeric", "'x1.5'")


def test_frame_line_with_wrong_number_of_values(tmp_path):
    frames = ["0 0 0 0 0 0 0 0 0 0 0 0"] * 3
    frames[2] = "0 0 0 0 0 0 0 0 0 0 0"
    text = _chain(frames=frames)
    _raises_at(_write(tmp_path, text), _line_of(text, "Frame Time") + 3, "expected 12", "found 11")


def test_truncated_file_names_expected_and_found_frames(tmp_path):
    frames = ["0 0 0 0 0 0 0 0 0 0 0 0"] * 3 + ["0 0 0 0 0"]  # cut mid-line
    text = _chain(frames=frames, n_frames=10).rstrip("\n")
    last = len(text.split("\n"))
    err = _raises_at(
        _write(tmp_path, text),
        last,
        "truncated",
        "expected 10 frames",
        "found 4",
        f"data ends at line {last}",
        r"partial frame \(5 of 12 values\)",
    )
    assert err.field == "frames"


def test_more_frame_lines_than_declared(tmp_path):
    text = _chain(frames=["0 0 0 0 0 0 0 0 0 0 0 0"] * 3, n_frames=2)
    _raises_at(
        _write(tmp_path, text),
        _line_of(text, "Frame Time") + 3,
        "expected 2 frames",
        "found 3 frame lines",
    )


@pytest.mark.parametrize("value", ["0", "-0.1", "nan", "inf", "abc"])
def test_bad_frame_time(tmp_path, value):
    text = _chain(frame_time=value)
    err = _raises_at(_write(tmp_path, text), _line_of(text, "Frame Time"), "frame time")
    assert err.field == "Frame Time"


def test_zero_frames(tmp_path):
    text = _chain(frames=[], n_frames=0)
    _raises_at(_write(tmp_path, text), _line_of(text, "Frames:"), "zero frames")


def test_bad_frames_header(tmp_path):
    text = _chain().replace("Frames: 1", "Frames: one")
    _raises_at(_write(tmp_path, text), _line_of(text, "Frames:"), "must be an integer")
    text = _chain().replace("Frames: 1", "Frame count 1")
    _raises_at(_write(tmp_path, text), _line_of(text, "Frame count"), "expected 'Frames:")


@pytest.mark.parametrize("content", ["", "\n\n  \t\n"])
def test_empty_file(tmp_path, content):
    _raises_at(_write(tmp_path, content), 1, "empty file")


def test_binary_garbage(tmp_path):
    p = tmp_path / "garbage.bvh"
    p.write_bytes(b"HIERARCHY\nROOT A\n{\n" + bytes(range(128, 256)) * 4)
    _raises_at(p, 4, "not a text BVH file", "undecodable byte 0x80")


def test_nul_bytes(tmp_path):
    p = tmp_path / "nul.bvh"
    p.write_bytes(b"HIERARCHY\n\x00\x01\x02\x03")
    _raises_at(p, 2, "NUL")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.bvh"):
        read_bvh(tmp_path / "missing.bvh")
    with pytest.raises(FileNotFoundError):
        parse_bvh(tmp_path / "missing.bvh")


def test_absurdly_deep_nesting_is_a_format_error(tmp_path):
    depth = 400
    body = "".join(f"JOINT J{i}\n{{\nOFFSET 0 1 0\nCHANNELS 0\n" for i in range(depth))
    text = "HIERARCHY\nROOT R\n{\nOFFSET 0 0 0\nCHANNELS 0\n" + body + "}\n" * (depth + 1)
    text += "MOTION\nFrames: 1\nFrame Time: 0.1\n\n"
    with pytest.raises(MotionFormatError, match="nested deeper than"):
        parse_bvh(_write(tmp_path, text))


def test_joint_without_offset(tmp_path):
    text = _chain().replace("    OFFSET 1 0 0\n", "")
    _raises_at(_write(tmp_path, text), _line_of(text, "JOINT B"), "joint 'B' has no OFFSET")


def test_errors_are_value_errors_with_typed_fields(tmp_path):
    text = _chain(frame_time="0")
    p = _write(tmp_path, text)
    with pytest.raises(ValueError) as ei:
        parse_bvh(p)
    assert isinstance(ei.value, MotionFormatError) and ei.value.error_type == "motion_format"


# --------------------------------------------------------------------------------------
# The real LAFAN1 clip (shared data; skipped where absent)


@pytest.fixture(scope="module")
def lafan1_clip(shared_data_dir):
    path = shared_data_dir / LAFAN1_CLIP
    if not path.is_file():
        pytest.skip(f"{LAFAN1_CLIP} not found in {shared_data_dir}")
    t0 = time.perf_counter()
    motion = read_bvh(path)
    return motion, time.perf_counter() - t0


def test_lafan1_clip_shape_timing_and_names(lafan1_clip):
    m, seconds = lafan1_clip
    assert seconds < 3.0, f"reading the clip took {seconds:.2f} s"
    assert m.num_frames == 7184
    assert m.fps == pytest.approx(30.0, abs=1e-3)
    assert len(m.joint_names) == 22
    assert set(m.source_joint_names) == set(LAFAN1_JOINT_MAP)
    assert m.joint_names == tuple(LAFAN1_JOINT_MAP[n] for n in m.source_joint_names)
    assert m.is_finite()
    np.testing.assert_allclose(np.linalg.norm(m.orientations, axis=-1), 1.0, atol=1e-9)


def test_lafan1_clip_is_upright_and_on_the_floor(lafan1_clip):
    m, _ = lafan1_clip
    med = np.median(m.positions, axis=0)
    z = {j: med[m.index(j), 2] for j in ("head", "pelvis", "left_ankle", "right_ankle")}
    assert z["head"] > z["pelvis"] > max(z["left_ankle"], z["right_ankle"])
    for toe in ("left_toe", "right_toe"):
        p5 = np.percentile(m.positions[:, m.index(toe), 2], 5)
        assert -0.05 <= p5 <= 0.10, (toe, p5)


def test_lafan1_clip_is_not_mirrored(lafan1_clip):
    m, _ = lafan1_clip
    P = m.positions
    fwd = (
        P[:, m.index("left_toe")]
        - P[:, m.index("left_ankle")]
        + P[:, m.index("right_toe")]
        - P[:, m.index("right_ankle")]
    )
    fwd[:, 2] = 0.0
    fwd /= np.linalg.norm(fwd, axis=-1, keepdims=True)
    left = np.cross([0.0, 0.0, 1.0], fwd)
    side = np.sum((P[:, m.index("left_hip")] - P[:, m.index("right_hip")]) * left, axis=-1)
    assert np.mean(side > 0) > 0.95


def test_lafan1_positions_follow_orientations_and_file_offsets(shared_data_dir, lafan1_clip):
    # p_child - p_parent = R_world_parent @ (OFFSET * scale): the frames the recipe's
    # orientation offsets are measured in are the ones that carry the skeleton.
    m, _ = lafan1_clip
    clip = parse_bvh(shared_data_dir / LAFAN1_CLIP)
    R = quat_to_mat(m.orientations[::500])
    P = m.positions[::500]
    for j in range(1, len(m.joint_names)):
        p = int(m.parents[j])
        off = clip.offsets[clip.joint_names.index(m.source_joint_names[j])] * 0.01
        np.testing.assert_allclose(P[:, j] - P[:, p], R[:, p] @ off, atol=1e-9)


def test_mocapbank_clip_with_zxy_channels(shared_data_dir):
    path = shared_data_dir / "mocapbank_19joint_clip.bvh"
    if not path.is_file():
        pytest.skip(f"mocapbank_19joint_clip.bvh not found in {shared_data_dir}")
    clip = parse_bvh(path)
    assert clip.num_frames == 455 and len(clip.joint_names) == 19
    assert clip.channels[1] == ("Zrotation", "Xrotation", "Yrotation")
    roles = {
        "Hips": "pelvis",
        "Head": "head",
        "LeftAnkle": "left_ankle",
        "RightAnkle": "right_ankle",
    }
    m = read_bvh(path, joint_map=roles, source_format="bvh_mocapbank")
    assert m.parents.tolist() == [-1, 0, 0, 0]
    med = np.median(m.positions, axis=0)[:, 2]
    assert med[1] > med[0] > max(med[2], med[3])


# --------------------------------------------------------------------------------------
# Writing, named formats and their joint maps (test-written files in each naming/units)

LAFAN1_NAMES = tuple(LAFAN1_JOINT_MAP)
LAFAN1_PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 12, 11, 14, 15, 16, 11, 18, 19, 20)
# LAFAN1's own OFFSETs (cm), rounded: bones run along each joint's x axis.
LAFAN1_OFFSETS = (
    (0, 0, 0),
    (0.10, 1.86, 10.55),
    (43.5, 0, 0),
    (42.37, 0, 0),
    (17.3, 0, 0),
    (0.10, 1.86, -10.55),
    (43.5, 0, 0),
    (42.37, 0, 0),
    (17.3, 0, 0),
    (6.90, -2.60, 0),
    (12.59, 0, 0),
    (12.34, 0, 0),
    (25.83, 0, 0),
    (11.77, 0, 0),
    (19.75, -1.48, 6.0),
    (11.28, 0, 0),
    (33.0, 0, 0),
    (25.2, 0, 0),
    (19.75, -1.48, -6.0),
    (11.28, 0, 0),
    (33.0, 0, 0),
    (25.2, 0, 0),
)
_POS = ("Xposition", "Yposition", "Zposition")
_ZYX = ("Zrotation", "Yrotation", "Xrotation")


def lafan1_like_clip(T: int = 5, seed: int = 0) -> BvhClip:
    """A LAFAN1-named, LAFAN1-shaped clip (cm, Y-up) with random joint rotations."""
    rng = np.random.default_rng(seed)
    channels = tuple((*_POS, *_ZYX) if p < 0 else _ZYX for p in LAFAN1_PARENTS)
    counts = [len(c) for c in channels]
    frames = np.round(rng.uniform(-40.0, 40.0, size=(T, sum(counts))), 4)
    frames[:, :3] = np.round([30.0, 90.0, -20.0] + rng.normal(0.0, 5.0, size=(T, 3)), 4)
    return BvhClip(
        path="",
        joint_names=LAFAN1_NAMES,
        parents=np.asarray(LAFAN1_PARENTS),
        offsets=np.asarray(LAFAN1_OFFSETS, dtype=np.float64),
        channels=channels,
        channel_start=np.concatenate([[0], np.cumsum(counts)[:-1]]),
        frames=frames,
        frame_time=1.0 / 30.0,
    )


def renamed_clip(clip: BvhClip, jm: JointMap, extra_leaf: tuple[str, str] | None = None) -> BvhClip:
    """``clip`` (LAFAN1 names, cm) in the naming and length unit of joint map ``jm``.

    ``extra_leaf`` = (name, parent name in ``jm``) adds a joint outside the map (a finger,
    an end joint) with its own rotation channels.
    """
    src_of = {role: src for src, role in jm.joints.items()}
    names = [src_of[LAFAN1_JOINT_MAP[n]] for n in clip.joint_names]
    s = 0.01 / jm.length_scale
    frames = clip.frames.copy()
    for j, chans in enumerate(clip.channels):
        for k, ch in enumerate(chans):
            if ch.endswith("position"):
                frames[:, clip.channel_start[j] + k] *= s
    parents, offsets, channels = list(clip.parents), clip.offsets * s, list(clip.channels)
    starts = list(clip.channel_start)
    if extra_leaf is not None:
        names.append(extra_leaf[0])
        parents.append(names.index(extra_leaf[1]))
        offsets = np.vstack([offsets, [3.0 * s, 0.0, 0.0]])
        channels.append(_ZYX)
        starts.append(frames.shape[1])
        frames = np.hstack([frames, np.full((frames.shape[0], 3), 25.0)])
    return dataclasses.replace(
        clip,
        joint_names=tuple(names),
        parents=np.asarray(parents),
        offsets=offsets,
        channels=tuple(channels),
        channel_start=np.asarray(starts),
        frames=frames,
    )


def test_write_bvh_round_trips_exactly(tmp_path):
    clip = lafan1_like_clip(T=4, seed=3)
    clip = dataclasses.replace(clip, frames=clip.frames + 1e-7 / 3)  # not round decimals
    p = tmp_path / "rt.bvh"
    write_bvh(p, clip)
    back = parse_bvh(p)
    assert back.joint_names == clip.joint_names and back.channels == clip.channels
    np.testing.assert_array_equal(back.parents, clip.parents)
    np.testing.assert_array_equal(back.offsets, clip.offsets)
    np.testing.assert_array_equal(back.frames, clip.frames)
    assert back.frame_time == clip.frame_time


def test_write_bvh_writes_children_inside_their_parents(tmp_path):
    # A joint appended after the whole tree (child of LeftHand) is written, and read
    # back, depth first; its columns move with it.
    clip = renamed_clip(lafan1_like_clip(T=2), load_joint_map("lafan1"), ("LeftHandIndex1", "LeftHand"))
    write_bvh(tmp_path / "x.bvh", clip)
    back = parse_bvh(tmp_path / "x.bvh")
    k = back.joint_names.index("LeftHandIndex1")
    assert k == back.joint_names.index("LeftHand") + 1
    assert back.joint_names[back.parents[k]] == "LeftHand"
    np.testing.assert_array_equal(back.frames[:, back.channel_start[k] : back.channel_start[k] + 3], 25.0)
    pa, _ = bvh_joint_poses(clip)
    pb, _ = bvh_joint_poses(back)
    order = [clip.joint_names.index(n) for n in back.joint_names]
    np.testing.assert_allclose(pb, pa[:, order], atol=1e-12)


@pytest.fixture
def lafan1_file(tmp_path) -> Path:
    p = tmp_path / "lafan1_named.bvh"
    write_bvh(p, lafan1_like_clip())
    return p


@pytest.mark.parametrize(
    "fmt, map_name, extra",
    [
        ("bvh_nokov", "nokov", ("LeftToe_End", "LeftToeBase")),
        ("bvh_hc_mocap", "hc_mocap", ("hc_Index1_L", "hc_Hand_L")),
        ("bvh", "mixamo", ("mixamorig:HeadTop_End", "mixamorig:Head")),
        ("bvh", "mocapbank_19", None),  # no toes, no Spine1: those roles are absent
    ],
)
def test_each_variant_reads_to_the_lafan1_world_positions(tmp_path, lafan1_file, fmt, map_name, extra):
    jm = load_joint_map(map_name)
    ref = read_bvh_format(lafan1_file, "bvh_lafan1")
    clip = lafan1_like_clip()
    if map_name == "mocapbank_19":  # joints it lacks stay in the file, unmapped
        src_of = {role: src for src, role in jm.joints.items()}
        names = tuple(src_of.get(LAFAN1_JOINT_MAP[n], f"Extra{n}") for n in clip.joint_names)
        variant = dataclasses.replace(clip, joint_names=names)
    else:
        variant = renamed_clip(clip, jm, extra)
    p = tmp_path / f"{map_name}.bvh"
    write_bvh(p, variant)
    m = read_bvh_format(p, fmt, joint_map=map_name if fmt == "bvh" else None)

    assert m.source_format == fmt
    assert set(m.source_joint_names) <= set(jm.joints)
    assert len(m.joint_names) == len(set(jm.roles) & set(ref.joint_names))
    for role in m.joint_names:
        np.testing.assert_allclose(
            m.positions[:, m.index(role)], ref.positions[:, ref.index(role)], atol=1e-9, err_msg=str(role)
        )
        np.testing.assert_allclose(
            np.abs(np.sum(m.orientations[:, m.index(role)] * ref.orientations[:, ref.index(role)], axis=-1)),
            1.0,
            atol=1e-9,
        )
    np.testing.assert_allclose(m.timestamps, np.arange(5) / 30.0, atol=1e-15)
    assert m.valid is None
    want = None if jm.conventions is None else get_conventions(jm.conventions)
    if want is None:
        assert m.conventions is None
    else:
        assert set(m.conventions) == set(want)
        for r in want:
            np.testing.assert_array_equal(m.conventions[r], want[r])


def test_hc_mocap_lengths_are_metres(tmp_path, lafan1_file):
    clip = renamed_clip(lafan1_like_clip(), load_joint_map("hc_mocap"))
    assert clip.offsets[clip.joint_names.index("hc_Knee_L"), 0] == pytest.approx(0.435)
    p = tmp_path / "hc.bvh"
    write_bvh(p, clip)
    m = read_bvh_format(p, "bvh_hc_mocap")
    thigh = np.linalg.norm(m.positions[:, m.index("left_knee")] - m.positions[:, m.index("left_hip")], axis=-1)
    np.testing.assert_allclose(thigh, 0.435, atol=1e-12)


def test_bvh_lafan1_format_sets_the_lafan1_conventions_and_timestamps(lafan1_file):
    m = read_bvh_format(lafan1_file, "bvh_lafan1")
    lafan = get_conventions("lafan1")
    assert set(m.conventions) == set(lafan)
    for r in lafan:
        np.testing.assert_array_equal(m.conventions[r], lafan[r])
    np.testing.assert_allclose(m.timestamps, np.arange(5) * (1.0 / 30.0))
    # The default read_bvh (the pipeline's call) agrees, conventions included.
    d = read_bvh(lafan1_file)
    np.testing.assert_array_equal(d.positions, m.positions)
    assert d.conventions is not None and set(d.conventions) == set(lafan)
    # Another map, or another format name, gives no LAFAN1 frames.
    assert read_bvh(lafan1_file, joint_map={"Hips": "pelvis", "Head": "neck"}).conventions is None
    assert read_bvh(lafan1_file, source_format="bvh_other").conventions is None
    assert read_bvh(lafan1_file, source_format="x", conventions="lafan1").conventions is not None


def test_mixamo_zero_pose_frames_are_world_tpose_z_forward(tmp_path):
    # A Mixamo-style skeleton: zero pose is a T-pose, Y-up, facing +Z, left on +X, bones
    # along the world axes. Turned to face +X in Z-up, each joint's zero-pose frame must
    # be the conventions table the mixamo map names.
    names = [
        "Hips",
        "LeftUpLeg",
        "LeftLeg",
        "LeftFoot",
        "LeftToeBase",
        "RightUpLeg",
        "RightLeg",
        "RightFoot",
        "RightToeBase",
        "Spine",
        "Spine1",
        "Spine2",
        "Neck",
        "Head",
        "LeftShoulder",
        "LeftArm",
        "LeftForeArm",
        "LeftHand",
        "RightShoulder",
        "RightArm",
        "RightForeArm",
        "RightHand",
    ]
    offsets = [
        (0, 0, 0),
        (9, -6, 0),
        (0, -42, 0),
        (0, -40, 0),
        (0, -8, 13),
        (-9, -6, 0),
        (0, -42, 0),
        (0, -40, 0),
        (0, -8, 13),
        (0, 10, 0),
        (0, 12, 0),
        (0, 12, 0),
        (0, 16, 0),
        (0, 10, 0),
        (5, 12, 0),
        (12, 0, 0),
        (28, 0, 0),
        (25, 0, 0),
        (-5, 12, 0),
        (-12, 0, 0),
        (-28, 0, 0),
        (-25, 0, 0),
    ]
    clip = BvhClip(
        path="",
        joint_names=tuple("mixamorig:" + n for n in names),
        parents=np.asarray(LAFAN1_PARENTS),
        offsets=np.asarray(offsets, dtype=np.float64),
        channels=tuple((*_POS, *_ZYX) if p < 0 else _ZYX for p in LAFAN1_PARENTS),
        channel_start=np.asarray([0] + [6 + 3 * i for i in range(21)]),
        frames=np.hstack([[[0.0, 100.0, 0.0]], np.zeros((1, 66))]),
        frame_time=1 / 30,
    )
    p = tmp_path / "mixamo_tpose.bvh"
    write_bvh(p, clip)
    m = read_bvh_format(p, "bvh", joint_map="mixamo")
    turn = _Rz(90.0)  # the reader leaves the figure facing -Y; face +X
    P = m.positions[0] @ turn.T
    assert P[m.index("head"), 2] > P[m.index("pelvis"), 2] > P[m.index("left_ankle"), 2]
    assert P[m.index("left_wrist"), 1] > 0.6 > -0.6 > P[m.index("right_wrist"), 1]  # arms along +-Y
    assert abs(P[m.index("left_wrist"), 2] - P[m.index("left_shoulder"), 2]) < 1e-9  # horizontal
    assert P[m.index("left_toe"), 0] > P[m.index("left_ankle"), 0]  # toes ahead (+X)
    R = turn @ quat_to_mat(m.orientations[0])
    for role, C in m.conventions.items():
        if role in m.joint_names:
            np.testing.assert_allclose(R[m.index(role)], C, atol=1e-12, err_msg=str(role))
    assert len(m.conventions) == 22


def test_nan_frames_are_kept_and_marked_invalid(tmp_path):
    clip = lafan1_like_clip(T=4)
    frames = clip.frames.copy()
    k = clip.joint_names.index("LeftForeArm")
    frames[2, clip.channel_start[k]] = np.nan  # its rotation: the hand moves to NaN
    p = tmp_path / "nan.bvh"
    write_bvh(p, dataclasses.replace(clip, frames=frames))
    m = read_bvh_format(p, "bvh_lafan1")
    bad = {m.index("left_elbow"), m.index("left_wrist")}
    assert np.isnan(m.positions[2, m.index("left_wrist")]).all()  # kept as NaN
    assert np.isfinite(m.positions[2, m.index("left_elbow")]).all()  # own position fine...
    expect = np.ones((4, 22), dtype=bool)
    expect[2, sorted(bad)] = False  # ...its orientation is not
    np.testing.assert_array_equal(m.valid, expect)


def test_bvh_format_needs_a_joint_map(lafan1_file):
    with pytest.raises(ConfigError, match=r"lafan1_named\.bvh: format 'bvh' needs a joint map.*mixamo"):
        read_bvh_format(lafan1_file, "bvh")


def test_named_format_refuses_a_second_joint_map(lafan1_file):
    with pytest.raises(ConfigError, match="brings its own joint map 'nokov'"):
        read_bvh_format(lafan1_file, "bvh_nokov", joint_map="lafan1")


def test_unknown_format_and_unknown_map_name_list_the_choices(lafan1_file):
    with pytest.raises(UnknownNameError, match=r"BVH format 'bvh_xsens' not found; valid: bvh, bvh_hc_mocap"):
        read_bvh_format(lafan1_file, "bvh_xsens")
    with pytest.raises(UnknownNameError, match=r"joint map 'lafan2' not found; valid: hc_mocap, lafan1"):
        read_bvh_format(lafan1_file, "bvh", joint_map="lafan2")


def test_bvh_format_with_a_joint_map_file(tmp_path, lafan1_file):
    # A user's map in millimetres (a number: metres per file unit) and Z-up.
    clip = lafan1_like_clip()
    mm = renamed_clip(clip, JointMap("mm", {f"j_{n}": r for n, r in LAFAN1_JOINT_MAP.items()}, 0.001, "y"))
    write_bvh(tmp_path / "mm.bvh", mm)
    (tmp_path / "mine.yaml").write_text(
        "length_unit: 0.001\nup_axis: y\nconventions: null\njoints:\n"
        + "".join(f"  j_{n}: {r.value}\n" for n, r in LAFAN1_JOINT_MAP.items())
    )
    m = read_bvh_format(tmp_path / "mm.bvh", "bvh", joint_map=tmp_path / "mine.yaml")
    ref = read_bvh_format(lafan1_file, "bvh_lafan1")
    np.testing.assert_allclose(m.positions, ref.positions, atol=1e-9)
    assert m.conventions is None and m.source_format == "bvh"


def test_a_variant_read_with_the_wrong_format(tmp_path):
    # hc_ names read as LAFAN1: only Spine and LeftShoulder are spelled alike, the root is
    # not found -> the error names the map and lists the file's joints.
    p = tmp_path / "hc.bvh"
    write_bvh(p, renamed_clip(lafan1_like_clip(), load_joint_map("hc_mocap")))
    with pytest.raises(
        MotionFormatError,
        match=r"hc\.bvh, field 'joint_map': no joint of the file maps to "
        r"the pelvis .*'lafan1'.*file joints: hc_Abdomen, hc_Hip_L",
    ):
        read_bvh_format(p, "bvh_lafan1")
    # NOKOV names read as LAFAN1: everything but the toes matches; they are absent.
    q = tmp_path / "nokov.bvh"
    write_bvh(q, renamed_clip(lafan1_like_clip(), load_joint_map("nokov")))
    m = read_bvh_format(q, "bvh_lafan1")
    assert HumanJoint.LEFT_TOE not in m.joint_names and len(m.joint_names) == 20


def test_malformed_variant_names_file_and_line(tmp_path):
    p = tmp_path / "mixamo_cut.bvh"
    write_bvh(p, renamed_clip(lafan1_like_clip(T=3), load_joint_map("mixamo")))
    lines = p.read_text().split("\n")
    p.write_text("\n".join(lines[:-2]) + "\n")  # drop the last frame line
    with pytest.raises(MotionFormatError, match=r"mixamo_cut\.bvh, line \d+, field 'frames': truncated"):
        read_bvh_format(p, "bvh", joint_map="mixamo")


def test_lafan1_clip_through_the_named_format(shared_data_dir, lafan1_clip):
    m = read_bvh_format(shared_data_dir / LAFAN1_CLIP, "bvh_lafan1")
    ref, _ = lafan1_clip
    np.testing.assert_array_equal(m.positions, ref.positions)
    assert m.conventions is not None and m.valid is None
    assert m.timestamps[-1] == pytest.approx(7183 * 0.033333)


def test_mocapbank_clip_through_its_joint_map(shared_data_dir):
    path = shared_data_dir / "mocapbank_19joint_clip.bvh"
    if not path.is_file():
        pytest.skip(f"mocapbank_19joint_clip.bvh not found in {shared_data_dir}")
    m = read_bvh_format(path, "bvh", joint_map="mocapbank_19")
    assert len(m.joint_names) == 19 and m.conventions is None and m.source_format == "bvh"
    assert HumanJoint.SPINE_MID not in m.joint_names and HumanJoint.LEFT_TOE not in m.joint_names
    med = np.median(m.positions, axis=0)[:, 2]
    assert (
        med[m.index("head")]
        > med[m.index("neck")]
        > med[m.index("pelvis")]
        > med[m.index("left_knee")]
        > med[m.index("left_ankle")]
    )
    # The collars sit on the upper spine (Chest2), as in the canonical tree.
    assert m.joint_names[m.parents[m.index("left_collar")]] == HumanJoint.SPINE_UPPER
