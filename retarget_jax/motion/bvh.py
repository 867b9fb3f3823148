"""BVH reader: motion file -> HumanMotion (stage 1, host code, numpy only).

Layers:

* :func:`parse_bvh` reads the text into a :class:`BvhClip` (joint names, parents,
  offsets, channel specs, the raw (T, C) channel matrix, the frame time and the End
  Sites) and checks its structure, naming the file and the line of anything malformed.
* :func:`read_bvh` runs forward kinematics, converts units and the up axis, and keeps
  the joints named in a joint map, giving a :class:`HumanMotion` (Z-up, metres, wxyz).
  A map may name an End Site as ``<joint name>/End`` (many rigs carry wrists, toes or
  the head top only as End Sites): it becomes a position-only joint.
* :func:`read_bvh_format` reads a named format (``bvh_lafan1``, ``bvh_nokov``,
  ``bvh_hc_mocap``, or ``bvh`` with any joint map, e.g. ``mixamo``): the format's joint
  map file (:mod:`retarget_jax.motion.joint_maps`) gives the names, units, up axis and
  the skeleton's reference-frame table.
* :func:`retarget_jax.io.bvh.write_bvh` writes a :class:`BvhClip` back out (tests,
  conversions).

BVH conventions used here: a joint's rotation channels compose left to right as listed
(intrinsic, R = R_ch0 R_ch1 R_ch2, degrees); its local translation is its position
channels where it has them, otherwise its OFFSET; world pose R_w = R_pw R_l,
p_w = p_pw + R_pw t_l.

A file that does not exist raises the ordinary :class:`FileNotFoundError` (it is not a
format problem); everything else that cannot be read raises
:class:`~retarget_jax.errors.MotionFormatError`. NaN values in frames are kept (as NaN)
and marked invalid in the motion's ``valid`` mask.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from retarget_jax.errors import ConfigError, MotionFormatError, UnknownNameError
from retarget_jax.motion.conventions import get_conventions
from retarget_jax.motion.human_motion import HumanMotion, fps_problem
from retarget_jax.motion.joint_maps import (
    END_SITE_SUFFIX,
    JointMap,
    is_end_site_name,
    load_joint_map,
    shipped_joint_maps,
)
from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP, HumanJoint
from retarget_jax.rotations import euler_to_quat, quat_mul, quat_normalize, quat_rotate

__all__ = [
    "AUTO",
    "BVH_FORMATS",
    "BvhClip",
    "parse_bvh",
    "read_bvh",
    "read_bvh_format",
    "motion_from_clip",
    "bvh_joint_poses",
    "end_site_positions",
    "END_SITE_SUFFIX",
    "Y_UP_TO_Z_UP",
    "Q_Y_UP_TO_Z_UP",
]

# Y-up -> Z-up: the proper rotation about +X by +90 degrees, (x, y, z) -> (x, -z, y).
# det = +1; an axis swap (x, z, y) would mirror the skeleton left <-> right.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
Q_Y_UP_TO_Z_UP = np.array([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])

_CHANNELS = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")
_CHANNEL_BY_LOWER = {c.lower(): c for c in _CHANNELS}
_TOKEN = re.compile(r"[{}]|[^\s{}]+")
_MAX_DEPTH = 200  # far beyond any skeleton; keeps a corrupt file off Python's recursion limit


@dataclasses.dataclass(frozen=True)
class BvhClip:
    """Raw content of a BVH file (file units and axes, no kinematics applied).

    Attributes:
        path: the file read.
        joint_names: (J,) joint names in file order (End Sites are not joints).
        parents: (J,) parent index, -1 for a root; parents come before their children.
        offsets: (J, 3) OFFSET of each joint, file units.
        channels: (J,) tuple of channel names per joint, e.g. ("Zrotation", "Yrotation",
            "Xrotation"), spelled canonically.
        channel_start: (J,) column of each joint's first channel in ``frames``.
        frames: (T, C) float64 channel values, C = total number of channels.
        frame_time: seconds per frame (> 0).
        end_site_parents: (E,) the joint each End Site is written in, in file order.
        end_site_offsets: (E, 3) OFFSET of each End Site from its joint, file units.

    End Sites have no channels: an End Site sits at its joint's pose plus its OFFSET.
    A joint map names one as ``<joint name>/End`` (:attr:`end_site_names`).
    """

    path: str
    joint_names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    channel_start: np.ndarray
    frames: np.ndarray
    frame_time: float
    end_site_parents: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    end_site_offsets: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 3)))

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def end_site_names(self) -> tuple[str, ...]:
        """(E,) ``<joint name>/End`` of each End Site; a joint's second and later End Sites
        (rare) are ``/End2``, ``/End3``, ..."""
        seen: dict[int, int] = {}
        out = []
        for p in self.end_site_parents:
            k = seen[int(p)] = seen.get(int(p), 0) + 1
            out.append(f"{self.joint_names[int(p)]}{END_SITE_SUFFIX}{k if k > 1 else ''}")
        return tuple(out)

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time


# ---------------------------------------------------------------------------------------
# Parsing


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise MotionFormatError(
            path,
            f"not a text BVH file: undecodable byte 0x{raw[e.start]:02x} at byte offset {e.start} ({e.reason})",
            line=line,
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise MotionFormatError(
            path,
            "not a text BVH file: contains NUL bytes (binary data)",
            line=text.count("\n", 0, nul) + 1,
        )
    return text


class _Tokens:
    """Tokens of the HIERARCHY section with their 1-based line numbers."""

    def __init__(self, path: str, lines: list[str]) -> None:
        self.path = path
        self.toks: list[tuple[str, int]] = []
        self.motion_line: int | None = None
        for i, ln in enumerate(lines):
            words = _TOKEN.findall(ln)
            if words and words[0].upper() == "MOTION":
                self.motion_line = i + 1
                break
            self.toks.extend((w, i + 1) for w in words)
        self.pos = 0
        self.last_line = _last_nonblank_line(lines)

    def peek(self) -> tuple[str, int] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def next(self, what: str) -> tuple[str, int]:
        tok = self.peek()
        if tok is None:
            end = self.motion_line or self.last_line
            raise MotionFormatError(
                self.path,
                f"unexpected end of HIERARCHY while reading {what}",
                line=end,
                field="HIERARCHY",
            )
        self.pos += 1
        return tok

    def rest_of_line(self, line: int) -> list[tuple[str, int]]:
        out = []
        while (tok := self.peek()) is not None and tok[1] == line:
            out.append(tok)
            self.pos += 1
        return out

    def error(self, message: str, line: int, field: str | None = None) -> MotionFormatError:
        return MotionFormatError(self.path, message, line=line, field=field)


def _parse_float(tk: _Tokens, tok: tuple[str, int], field: str) -> float:
    try:
        return float(tok[0])
    except ValueError:
        raise tk.error(f"expected a number, found '{tok[0]}'", tok[1], field) from None


def _parse_hierarchy(tk: _Tokens):
    names: list[str] = []
    parents: list[int] = []
    offsets: list[tuple[float, float, float]] = []
    channels: list[tuple[str, ...]] = []
    site_parents: list[int] = []
    site_offsets: list[tuple[float, float, float]] = []

    def parse_offset(line: int) -> tuple[float, float, float]:
        vals = tk.rest_of_line(line)
        if len(vals) != 3:
            raise tk.error(f"OFFSET needs 3 numbers, found {len(vals)}", line, "OFFSET")
        x, y, z = (_parse_float(tk, v, "OFFSET") for v in vals)
        return x, y, z

    def expect_open(after: str, line: int) -> None:
        tok = tk.next(f"'{{' after {after}")
        if tok[0] != "{":
            raise tk.error(f"expected '{{' after {after}, found '{tok[0]}'", tok[1])

    def parse_end_site(joint: int, line: int) -> None:
        expect_open("End Site", line)
        offset = (0.0, 0.0, 0.0)  # an End Site without OFFSET sits on its joint
        while True:
            tok, ln = tk.next("End Site body")
            if tok == "}":
                site_parents.append(joint)
                site_offsets.append(offset)
                return
            if tok.upper() == "OFFSET":
                offset = parse_offset(ln)
            else:
                raise tk.error(f"unexpected '{tok}' in End Site (opened at line {line})", ln)

    def parse_joint(parent: int, kind: str, kind_line: int, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            raise tk.error(f"joints nested deeper than {_MAX_DEPTH} levels", kind_line, kind)
        name_toks = tk.rest_of_line(kind_line)
        brace_on_line = bool(name_toks) and name_toks[-1][0] == "{"
        if brace_on_line:
            name_toks = name_toks[:-1]
        if not name_toks or any(t[0] in "{}" for t in name_toks):
            raise tk.error(f"{kind} without a joint name", kind_line, kind)
        name = " ".join(t[0] for t in name_toks)
        if name in names:
            raise tk.error(f"duplicate joint name '{name}'", kind_line, kind)
        if not brace_on_line:
            expect_open(f"{kind} {name}", kind_line)
        idx = len(names)
        names.append(name)
        parents.append(parent)
        offsets.append((0.0, 0.0, 0.0))
        channels.append(())
        have_offset = False
        while True:
            if tk.peek() is None:
                where = "MOTION" if tk.motion_line else "the end of the file"
                raise tk.error(
                    f"unbalanced braces: joint '{name}' opened at line {kind_line} is not closed before {where}",
                    tk.motion_line or tk.last_line,
                    "HIERARCHY",
                )
            tok, ln = tk.next(f"the body of joint '{name}'")
            key = tok.upper()
            if tok == "}":
                break
            if key == "OFFSET":
                offsets[idx] = parse_offset(ln)
                have_offset = True
            elif key == "CHANNELS":
                channels[idx] = parse_channels(ln, name)
            elif key == "JOINT":
                parse_joint(idx, "JOINT", ln, depth + 1)
            elif key == "END":
                site = tk.next("'Site' after 'End'")
                if site[0].upper() != "SITE":
                    raise tk.error(f"expected 'End Site', found 'End {site[0]}'", ln)
                parse_end_site(idx, ln)
            elif key == "ROOT":
                raise tk.error(
                    f"ROOT inside joint '{name}' (opened at line {kind_line}); did a '}}' go missing?",
                    ln,
                )
            elif key == "MOTION":  # pragma: no cover - the tokenizer stops at MOTION
                break
            else:
                raise tk.error(
                    f"unexpected '{tok}' in joint '{name}'; expected OFFSET, CHANNELS, JOINT, End Site or '}}'",
                    ln,
                )
        if not have_offset:
            raise tk.error(f"joint '{name}' has no OFFSET", kind_line, "OFFSET")

    def parse_channels(line: int, joint: str) -> tuple[str, ...]:
        toks = tk.rest_of_line(line)
        if not toks:
            raise tk.error(f"CHANNELS of joint '{joint}' has no count", line, "CHANNELS")
        count_tok, *names_toks = toks
        try:
            count = int(count_tok[0])
        except ValueError:
            raise tk.error(
                f"CHANNELS count of joint '{joint}' must be an integer, found '{count_tok[0]}'",
                line,
                "CHANNELS",
            ) from None
        if not 0 <= count <= 6:
            raise tk.error(f"CHANNELS count of joint '{joint}' must be 0..6, found {count}", line, "CHANNELS")
        if len(names_toks) != count:
            raise tk.error(
                f"CHANNELS of joint '{joint}' says {count} channels but lists {len(names_toks)}",
                line,
                "CHANNELS",
            )
        out = []
        for t, _ in names_toks:
            canon = _CHANNEL_BY_LOWER.get(t.lower())
            if canon is None:
                raise tk.error(
                    f"unknown channel '{t}' in joint '{joint}'; valid: {', '.join(_CHANNELS)}",
                    line,
                    "CHANNELS",
                )
            if canon in out:
                raise tk.error(f"channel '{canon}' listed twice in joint '{joint}'", line, "CHANNELS")
            out.append(canon)
        return tuple(out)

    first = tk.peek()
    if first is None or first[0].upper() != "HIERARCHY":
        line = first[1] if first else (tk.motion_line or 1)
        found = f"'{first[0]}'" if first else ("MOTION" if tk.motion_line else "nothing")
        raise tk.error(f"missing HIERARCHY: the file must start with it, found {found}", line, "HIERARCHY")
    tk.pos += 1
    while (tok := tk.peek()) is not None:
        tk.pos += 1
        if tok[0].upper() == "ROOT":
            parse_joint(-1, "ROOT", tok[1])
        elif tok[0] == "}":
            raise tk.error("unbalanced braces: '}' with no open joint", tok[1], "HIERARCHY")
        else:
            raise tk.error(f"expected ROOT, found '{tok[0]}'", tok[1], "HIERARCHY")
    if not names:
        raise tk.error("HIERARCHY has no ROOT joint", tk.motion_line or tk.last_line, "HIERARCHY")
    if tk.motion_line is None:
        raise tk.error("missing MOTION section after HIERARCHY", tk.last_line, "MOTION")
    return names, parents, offsets, channels, site_parents, site_offsets


_FRAMES_RE = re.compile(r"^\s*Frames\s*:\s*(.*?)\s*$", re.IGNORECASE)
_FRAME_TIME_RE = re.compile(r"^\s*Frame\s*Time\s*:\s*(.*?)\s*$", re.IGNORECASE)


def _last_nonblank_line(lines: list[str]) -> int:
    """1-based number of the last line with content (1 for an empty file)."""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            return i + 1
    return 1


def _next_nonblank(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _header_value(path: str, lines: list[str], i: int, regex, field: str, form: str, convert, kind: str):
    """Parse one MOTION header line (``Frames:`` or ``Frame Time:``) at 0-based index i."""
    m = regex.match(lines[i])
    if m is None:
        raise MotionFormatError(path, f"expected '{form}', found '{lines[i].strip()}'", line=i + 1, field=field)
    try:
        return convert(m.group(1))
    except ValueError:
        raise MotionFormatError(
            path, f"{field.lower()} must be {kind}, found '{m.group(1)}'", line=i + 1, field=field
        ) from None


def _parse_motion_header(path: str, lines: list[str], motion_line: int) -> tuple[int, float, int]:
    """Return (declared frame count, frame time, index of the first frame line)."""
    last = _last_nonblank_line(lines)
    i = _next_nonblank(lines, motion_line)  # motion_line is 1-based: lines[motion_line] follows
    if i >= len(lines):
        raise MotionFormatError(path, "MOTION section has no 'Frames:' line", line=last, field="Frames")
    n = _header_value(path, lines, i, _FRAMES_RE, "Frames", "Frames: <count>", int, "an integer")
    if n <= 0:
        raise MotionFormatError(path, f"the clip has zero frames (Frames: {n})", line=i + 1, field="Frames")
    j = _next_nonblank(lines, i + 1)
    if j >= len(lines):
        raise MotionFormatError(path, "MOTION section has no 'Frame Time:' line", line=last, field="Frame Time")
    dt = _header_value(path, lines, j, _FRAME_TIME_RE, "Frame Time", "Frame Time: <seconds>", float, "a number")
    if not math.isfinite(dt) or dt <= 0:
        raise MotionFormatError(
            path,
            f"frame time must be a positive finite number of seconds, found {lines[j].split(':', 1)[1].strip()}",
            line=j + 1,
            field="Frame Time",
        )
    bad_fps = fps_problem(1.0 / dt)
    if bad_fps:
        raise MotionFormatError(
            path,
            f"frame time {lines[j].split(':', 1)[1].strip()} s gives a frame rate that {bad_fps}",
            line=j + 1,
            field="Frame Time",
        )
    return n, dt, j + 1


def _parse_frames(path: str, lines: list[str], start: int, n: int, C: int) -> np.ndarray:
    idx = [i for i in range(start, len(lines)) if lines[i].strip()]
    if len(idx) < n:
        end_line = idx[-1] + 1 if idx else start
        msg = f"truncated file: expected {n} frames ('Frames: {n}'), found {len(idx)}; the data ends at line {end_line}"
        if idx:
            k = len(lines[idx[-1]].split())
            if k != C:
                msg += f" with a partial frame ({k} of {C} values)"
        raise MotionFormatError(path, msg, line=end_line, field="frames")
    if len(idx) > n:
        raise MotionFormatError(
            path,
            f"expected {n} frames ('Frames: {n}'), found {len(idx)} frame lines; the first extra one is here",
            line=idx[n] + 1,
            field="frames",
        )
    rows = [lines[i].split() for i in idx]
    counts = np.fromiter(map(len, rows), dtype=np.int64, count=n)
    bad = np.flatnonzero(counts != C)
    if bad.size:
        b = int(bad[0])
        raise MotionFormatError(
            path,
            f"frame index {b} has the wrong number of values: expected {C} (sum of CHANNELS), found {counts[b]}",
            line=idx[b] + 1,
            field="frames",
        )
    flat = [v for r in rows for v in r]
    try:
        data = np.array(flat, dtype=np.float64)
    except ValueError:
        # Slow path, only to name the offending line and value.
        for b, r in enumerate(rows):
            for v in r:
                try:
                    float(v)
                except ValueError:
                    raise MotionFormatError(
                        path,
                        f"frame index {b}: non-numeric value '{v}'",
                        line=idx[b] + 1,
                        field="frames",
                    ) from None
        raise  # pragma: no cover - numpy and float() disagree
    return data.reshape(n, C)


def parse_bvh(path: str | os.PathLike) -> BvhClip:
    """Read a BVH file into a :class:`BvhClip` without any kinematics.

    Raises:
        FileNotFoundError: the file does not exist.
        MotionFormatError: anything malformed, with the file name and 1-based line number.
    """
    path = os.fspath(path)
    text = _read_text(path)
    if not text.strip():
        raise MotionFormatError(path, "empty file", line=1)
    lines = text.split("\n")  # not splitlines(): form feeds etc. must not shift line numbers
    tk = _Tokens(path, lines)
    names, parents, offsets, channels, site_parents, site_offsets = _parse_hierarchy(tk)
    assert tk.motion_line is not None
    motion_rest = _TOKEN.findall(lines[tk.motion_line - 1])[1:]
    if motion_rest:
        raise MotionFormatError(
            path,
            f"unexpected '{' '.join(motion_rest)}' after MOTION",
            line=tk.motion_line,
            field="MOTION",
        )
    n, dt, start = _parse_motion_header(path, lines, tk.motion_line)
    counts = [len(c) for c in channels]
    C = sum(counts)
    frames = _parse_frames(path, lines, start, n, C)
    return BvhClip(
        path=path,
        joint_names=tuple(names),
        parents=np.asarray(parents, dtype=np.int64),
        offsets=np.asarray(offsets, dtype=np.float64).reshape(-1, 3),
        channels=tuple(channels),
        channel_start=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        frames=frames,
        frame_time=dt,
        end_site_parents=np.asarray(site_parents, dtype=np.int64),
        end_site_offsets=np.asarray(site_offsets, dtype=np.float64).reshape(-1, 3),
    )


# ---------------------------------------------------------------------------------------
# Kinematics


def bvh_joint_poses(clip: BvhClip) -> tuple[np.ndarray, np.ndarray]:
    """World positions (T, J, 3) in file units and orientations (T, J, 4) wxyz, file axes."""
    T, J = clip.num_frames, len(clip.joint_names)
    pos = np.empty((T, J, 3))
    quat = np.empty((T, J, 4))
    for j in range(J):
        chans = clip.channels[j]
        cols = clip.frames[:, clip.channel_start[j] : clip.channel_start[j] + len(chans)]
        t_local = np.broadcast_to(clip.offsets[j], (T, 3)).copy()
        rot_order, rot_cols = "", []
        for k, ch in enumerate(chans):
            axis = "XYZ".index(ch[0])
            if ch.endswith("position"):
                t_local[:, axis] = cols[:, k]
            else:
                rot_order += ch[0]
                rot_cols.append(k)
        if rot_order:
            q_local = euler_to_quat(np.deg2rad(cols[:, rot_cols]), rot_order)
        else:
            q_local = np.broadcast_to(np.array([1.0, 0.0, 0.0, 0.0]), (T, 4))
        p = clip.parents[j]
        if p < 0:
            pos[:, j] = t_local
            quat[:, j] = q_local
        else:
            pos[:, j] = pos[:, p] + quat_rotate(quat[:, p], t_local)
            quat[:, j] = quat_mul(quat[:, p], q_local)
    return pos, quat_normalize(quat)


def end_site_positions(clip: BvhClip, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
    """(T, E, 3) world positions of the End Sites, file units and axes, from the joints'
    world poses ``pos`` (T, J, 3) and ``quat`` (T, J, 4) of :func:`bvh_joint_poses`:
    p_site = p_joint + R_joint offset (an End Site has no channels of its own)."""
    sp = np.asarray(clip.end_site_parents, dtype=np.int64)
    return pos[:, sp] + quat_rotate(quat[:, sp], np.asarray(clip.end_site_offsets, np.float64).reshape(-1, 3))


def _check_end_site_names(clip: BvhClip, joint_map: Mapping[str, HumanJoint | str], where: str = "") -> None:
    """Every ``<joint>/End`` name of the map is an End Site or a joint of the file."""
    known = set(clip.joint_names) | set(clip.end_site_names)
    for name in joint_map:
        if is_end_site_name(name) and name not in known:
            raise UnknownNameError(
                "BVH End Site",
                name,
                [*clip.joint_names, *clip.end_site_names],
                where=f"{clip.path}, {where or 'joint map'}, field 'joints.{name}'",
            )


class _Auto:
    """Marker for ``read_bvh(conventions=...)``'s default; see there."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO = _Auto()


def _is_lafan1_map(joint_map: Mapping[str, HumanJoint | str]) -> bool:
    return all(LAFAN1_JOINT_MAP.get(k) == v for k, v in joint_map.items())  # str-valued enum


def read_bvh(path: str | os.PathLike, **options: Any) -> HumanMotion:
    """Read a BVH file into a :class:`HumanMotion` (world Z-up, metres, wxyz).

    Args:
        path: the BVH file.
        options: the keyword arguments of :func:`motion_from_clip` (``joint_map``,
            ``length_scale``, ``up_axis``, ``source_format``, ``conventions``), which
            does the work on the parsed file.

    The motion's ``timestamps`` are ``arange(T) * frame_time``. NaN in the frames is kept
    (as NaN) and marked in ``valid`` (False where a joint's position or orientation is
    not finite); ``valid`` is None when every value is finite.

    Raises:
        FileNotFoundError: the file does not exist.
        MotionFormatError: malformed file, or no joint of the file is in ``joint_map``.
        UnknownNameError: ``joint_map`` names an End Site (``.../End``) the file does not
            have; lists the file's joint and End Site names.
    """
    return motion_from_clip(parse_bvh(path), **options)


def motion_from_clip(
    clip: BvhClip,
    *,
    joint_map: Mapping[str, HumanJoint | str] = LAFAN1_JOINT_MAP,
    length_scale: float = 0.01,
    up_axis: str = "y",
    source_format: str = "bvh_lafan1",
    conventions: str | Mapping[HumanJoint, np.ndarray] | None | _Auto = AUTO,
) -> HumanMotion:
    """:func:`read_bvh` on an already parsed :class:`BvhClip`.

    Args:
        clip: the parsed file.
        joint_map: BVH joint name -> role. Joints not in it are dropped silently; the
            kept joints stay in file order and their parents are re-indexed to the nearest
            kept ancestor. An End Site is named ``<joint name>/End``
            (:attr:`BvhClip.end_site_names`): a named one becomes a position-only joint
            after the file's joints, at its joint's pose plus its OFFSET, with its joint's
            orientation (it has no rotation of its own) and no entry in the motion's
            ``conventions`` (no orientation target is built from it). Unnamed End Sites
            are ignored.
        length_scale: multiplies every length (0.01: centimetres -> metres).
        up_axis: "y" (rotate +90 degrees about +X, (x, y, z) -> (x, -z, y)) or "z" (as is).
        source_format: recorded on the motion.
        conventions: the skeleton's reference-frame table, by name
            (:data:`retarget_jax.motion.conventions.NAMES`) or as a table, or None
            (positions only). By default, the LAFAN1 table when ``source_format`` is
            "bvh_lafan1" and ``joint_map`` agrees with LAFAN1's, else None.
    """
    axis = up_axis.lower()
    if axis not in ("y", "z"):
        raise UnknownNameError("up axis", up_axis, ["y", "z"], where=clip.path)
    _check_end_site_names(clip, joint_map)
    J = len(clip.joint_names)
    file_joints = set(clip.joint_names)
    # a joint of the file that happens to be spelled like an End Site wins
    sites = [e for e, name in enumerate(clip.end_site_names) if name in joint_map and name not in file_joints]
    keep = [j for j, name in enumerate(clip.joint_names) if name in joint_map] + [J + k for k in range(len(sites))]
    if not keep:
        ends = f"; End Sites: {', '.join(clip.end_site_names)}" if clip.end_site_names else ""
        raise MotionFormatError(
            clip.path,
            "no joint of the file is in the joint map; file joints: "
            f"{', '.join(clip.joint_names)}{ends}; map expects: {', '.join(sorted(joint_map))}",
            field="joint_map",
        )
    pos, quat = bvh_joint_poses(clip)
    # the named End Sites ride after the joints (index J + k), with their joint's orientation
    site_clip = dataclasses.replace(
        clip,
        end_site_parents=np.asarray(clip.end_site_parents, dtype=np.int64).reshape(-1)[sites],
        end_site_offsets=np.asarray(clip.end_site_offsets, dtype=np.float64).reshape(-1, 3)[sites],
    )
    site_parents = np.asarray(site_clip.end_site_parents, dtype=np.int64)
    all_parents = np.concatenate([clip.parents, site_parents])
    pos = np.concatenate([pos, end_site_positions(site_clip, pos, quat)], axis=1)
    quat = np.concatenate([quat, quat[:, site_parents]], axis=1)
    all_names = (*clip.joint_names, *(clip.end_site_names[e] for e in sites))
    pos = pos[:, keep] * float(length_scale)
    quat = quat[:, keep]
    if axis == "y":
        pos = pos @ Y_UP_TO_Z_UP.T
        quat = quat_mul(np.broadcast_to(Q_Y_UP_TO_Z_UP, quat.shape), quat)

    new_index = {j: i for i, j in enumerate(keep)}
    parents = []
    for j in keep:
        p = int(all_parents[j])
        while p >= 0 and p not in new_index:
            p = int(all_parents[p])
        parents.append(new_index[p] if p >= 0 else -1)

    if isinstance(conventions, _Auto):
        lafan1 = source_format == "bvh_lafan1" and _is_lafan1_map(joint_map)
        conventions = "lafan1" if lafan1 else None
    if isinstance(conventions, str):
        conventions = get_conventions(conventions)
    if conventions is not None and sites:
        # an End Site's frame is its joint's, not the frame the table gives its role
        site_roles = {HumanJoint.parse(joint_map[all_names[J + e]]) for e in range(len(sites))}
        conventions = {r: c for r, c in conventions.items() if r not in site_roles}

    finite = np.isfinite(pos).all(axis=-1) & np.isfinite(quat).all(axis=-1)
    names = tuple(all_names[j] for j in keep)
    return HumanMotion(
        joint_names=tuple(HumanJoint.parse(joint_map[n], where=clip.path) for n in names),
        parents=np.asarray(parents, dtype=np.int64),
        positions=np.ascontiguousarray(pos, dtype=np.float64),
        orientations=np.ascontiguousarray(quat, dtype=np.float64),
        fps=1.0 / clip.frame_time,
        source_path=clip.path,
        source_format=source_format,
        source_joint_names=names,
        timestamps=np.arange(clip.num_frames, dtype=np.float64) * clip.frame_time,
        valid=None if finite.all() else finite,
        conventions=conventions,
    )


#: BVH format name -> its shipped joint map ("bvh": the caller names one).
BVH_FORMATS: Mapping[str, str | None] = {
    "bvh_lafan1": "lafan1",
    "bvh_nokov": "nokov",
    "bvh_hc_mocap": "hc_mocap",
    "bvh": None,
}


def read_bvh_format(
    path: str | os.PathLike,
    fmt: str = "bvh",
    joint_map: str | os.PathLike | JointMap | None = None,
) -> HumanMotion:
    """Read a BVH file of a named format into a :class:`HumanMotion`.

    Each named format (:data:`BVH_FORMATS`) is its shipped joint map, which brings the
    joint names, length unit, up axis and reference-frame table; the generic ``"bvh"``
    takes them from ``joint_map``: a shipped map's name, a YAML file, or a
    :class:`~retarget_jax.motion.joint_maps.JointMap`. The motion records ``fmt`` as its
    ``source_format``.

    Raises:
        UnknownNameError: unknown format or shipped joint map name.
        ConfigError: ``"bvh"`` without a joint map, a joint map given with a named format,
            or an invalid joint map file.
        FileNotFoundError, MotionFormatError: as :func:`read_bvh`; also a file none of
            whose joints maps to the pelvis (the root every solve needs).
    """
    if fmt not in BVH_FORMATS:
        raise UnknownNameError("BVH format", fmt, BVH_FORMATS, where=os.fspath(path))
    shipped = BVH_FORMATS[fmt]
    if shipped is None:
        if joint_map is None:
            raise ConfigError(
                f"{os.fspath(path)}: format 'bvh' needs a joint map (a shipped name: "
                f"{', '.join(shipped_joint_maps())}; or a YAML file); "
                f"or use a named format: {', '.join(k for k in BVH_FORMATS if k != 'bvh')}"
            )
        jm = load_joint_map(joint_map)
    else:
        if joint_map is not None:
            raise ConfigError(
                f"{os.fspath(path)}: format '{fmt}' brings its own joint map '{shipped}'; "
                "to read with another map use format 'bvh' with joint_map=..."
            )
        jm = load_joint_map(shipped)
    clip = parse_bvh(path)
    pelvis = [k for k, r in jm.joints.items() if r is HumanJoint.PELVIS]
    if not any(n in pelvis for n in clip.joint_names):
        expects = f"expects '{pelvis[0]}'" if pelvis else "maps no joint to it"
        raise MotionFormatError(
            clip.path,
            f"no joint of the file maps to the pelvis (the root): joint map '{jm.name}' {expects}; "
            f"file joints: {', '.join(clip.joint_names)}",
            field="joint_map",
        )
    _check_end_site_names(clip, jm.joints, f"joint map {jm.path or jm.name}")
    return motion_from_clip(
        clip,
        joint_map=jm.joints,
        length_scale=jm.length_scale,
        up_axis=jm.up_axis,
        source_format=fmt,
        conventions=jm.conventions,
    )
