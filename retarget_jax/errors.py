"""Typed errors raised on the host side (never inside jit).

Every error names what it is about (file, field, line) and, where a name was not
recognised, the valid choices. Inside jitted code nothing raises: solves return a
per-clip status code instead (see :class:`retarget_jax.result.SolveStatus`).
"""

from __future__ import annotations

from collections.abc import Iterable


class RetargetError(Exception):
    """Base class of every error this package raises on purpose."""

    error_type: str = "retarget_error"


class MotionFormatError(RetargetError, ValueError):
    """A motion file is malformed: corrupt, truncated, missing a field, wrong shape."""

    error_type = "motion_format"

    def __init__(self, path: object, message: str, *, line: int | None = None, field: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        where = self.path
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class InvalidMotionError(RetargetError, ValueError):
    """A motion is well-formed on disk but its values cannot be used (NaN, fps <= 0, ...)."""

    error_type = "invalid_motion"


class UnknownNameError(RetargetError, KeyError):
    """A name (joint, body, robot, recipe, format) is not in its vocabulary."""

    error_type = "unknown_name"

    def __init__(
        self, kind: str, name: str, valid: Iterable[str], *, where: str | None = None, source: str | None = None
    ):
        self.kind = kind
        self.name = name
        self.valid = sorted(set(valid))
        prefix = f"{where}: " if where else ""
        msg = f"{prefix}{kind} '{name}' not found; valid: {', '.join(self.valid)}"
        if source:  # the file the vocabulary came from (an MJCF, a joint map)
            msg += f"; names from {source}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class RobotModelError(RetargetError, ValueError):
    """An MJCF cannot be used as a retargeting robot (no free joint, unsupported joint type...)."""

    error_type = "robot_model"


class ConfigError(RetargetError, ValueError):
    """A recipe or run configuration is invalid."""

    error_type = "config"


class SolveError(RetargetError, RuntimeError):
    """A solve could not be set up (shapes, buckets) on the host."""

    error_type = "solve"


class RenderError(RetargetError, RuntimeError):
    """A result cannot be rendered: no offscreen OpenGL backend, no video encoder, or a
    frame outside the clip."""

    error_type = "render"


class _FileFieldError(ConfigError):
    """A config file whose ``field`` (``_noun``: how its own docs call one) is invalid:
    keeps ``path`` and ``field`` and names both in the message."""

    _noun = "field"

    def __init__(self, path: object, field: str | None, message: str) -> None:
        self.path = str(path)
        self.field = field
        where = self.path + (f", {self._noun} '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class MotionConfigError(_FileFieldError):
    """A motion-library config (``motions: [{file, fps, weight, sub_motions}]``) is invalid;
    the message names the YAML file and the field (``motions[3].sub_motions[0].timings.end``)."""

    error_type = "motion_config"


class SliceError(RetargetError, ValueError):
    """A sub-motion slice lies outside its clip, or leaves fewer frames than a state needs."""

    error_type = "slice"


class MotionLibFormatError(MotionFormatError):
    """A packaged motion library (or a per-motion state file) cannot be used: not an npz,
    a missing or malformed field, inconsistent lengths."""

    error_type = "motionlib_format"


class DatasetSpecError(_FileFieldError):
    """A dataset spec (``retarget-jax dataset build --spec``) is invalid: an unknown key, a
    value of the wrong type or range, a missing input. Names the file and the key."""

    error_type = "dataset_spec"
    _noun = "key"


class FkCheckError(RetargetError, ValueError):
    """A clip's stored body poses disagree with MuJoCo forward kinematics of its joint
    positions beyond the check-fk thresholds."""

    error_type = "fk_check"
