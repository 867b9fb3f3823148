"""Tests for retarget_jax.motion.bvh: parsing, forward kinematics, axes, units, errors."""

from __future__ import annotations

import itertools
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest

from retarget_jax.errors import MotionFormatError, UnknownNameError
from retarget_jax.motion.bvh import Y_UP_TO_Z_UP, parse_bvh, read_bvh
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
    frames = [
        " ".join(f"{v:.6f}" for v in [*root[t], *ang[t, 0], *ang[t, 1], *ang[t, 2]])
        for t in range(4)
    ]
    text = _chain(tuple(order), frames)
    # Every joint gets the same order in this test (root and C too).
    rot = " ".join(f"{a}rotation" for a in order)
    text = text.replace("Zrotation Yrotation Xrotation", rot)
    m = _read_raw(_write(tmp_path, text))
    for t in range(4):
        Rs = [
            np.linalg.multi_dot([_R[a](ang[t, j, i]) for i, a in enumerate(order)])
            for j in range(3)
        ]
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
    text = _chain().replace(
        "CHANNELS 3 Zrotation Yrotation Xrotation", "CHANNELS 3 Zrotation Wrotation Xrotation", 1
    )
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
    _raises_at(
        _write(tmp_path, text), _line_of(text, "x1.5"), "frame index 1", "non-numeric", "'x1.5'"
    )


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
