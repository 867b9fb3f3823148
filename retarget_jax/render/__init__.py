"""Seeing the motion: offscreen MuJoCo renders of results (host, no display needed).

- :class:`ResultRenderer`: frames of one result as images (robot, scaled source skeleton,
  stance feet in green, penetrations in red, a camera that follows the root).
- :func:`render_video` (MP4), :func:`render_stills` (PNG per frame),
  :func:`render_contact_sheet` (several frames in one PNG).
- :func:`skeleton_from_source`: the source file's whole skeleton, scaled as the solver saw
  it; without it the result's own targets are drawn (:func:`skeleton_from_result`).

The OpenGL backend follows ``MUJOCO_GL`` (``egl``, the default on Linux, or ``osmesa``);
see :mod:`retarget_jax.render.gl`. The CLI is ``retarget-jax render``.
"""

from retarget_jax.render.gl import BACKENDS, gl_backend
from retarget_jax.render.output import (
    contact_sheet_frames,
    parse_frames,
    png_bytes,
    render_contact_sheet,
    render_stills,
    render_video,
    write_png,
)
from retarget_jax.render.scene import (
    LAYOUTS,
    RenderOptions,
    ResultRenderer,
    SourceSkeleton,
    skeleton_from_motion,
    skeleton_from_result,
    skeleton_from_source,
)

__all__ = [
    "BACKENDS",
    "LAYOUTS",
    "RenderOptions",
    "ResultRenderer",
    "SourceSkeleton",
    "contact_sheet_frames",
    "gl_backend",
    "parse_frames",
    "png_bytes",
    "render_contact_sheet",
    "render_stills",
    "render_video",
    "skeleton_from_motion",
    "skeleton_from_result",
    "skeleton_from_source",
    "write_png",
]
