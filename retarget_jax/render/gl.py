"""Offscreen OpenGL contexts for MuJoCo rendering, with no display (host).

Stage: render (after writers). MuJoCo's own ``mujoco.Renderer`` picks its OpenGL backend
once, from ``MUJOCO_GL``, when ``mujoco`` is first imported; this package imports mujoco
long before anything is rendered, so an unset variable would leave GLFW, which needs a
display. Here the backend is chosen when a context is made:

- ``MUJOCO_GL=egl``: EGL. On a GPU node the NVIDIA driver renders; on a CPU-only machine
  Mesa's software rasteriser (llvmpipe) does (Debian/Ubuntu: ``libegl1 libgl1-mesa-dri``).
- ``MUJOCO_GL=osmesa``: OSMesa (``libosmesa6``), software only.
- ``MUJOCO_GL=glfw``: a window system (needs ``DISPLAY``).
- unset: EGL on Linux, GLFW elsewhere.
"""

from __future__ import annotations

import os
import platform

from retarget_jax.errors import ConfigError, RenderError

BACKENDS = ("egl", "osmesa", "glfw")

_INSTALL_HINT = {
    "egl": "install an EGL driver (Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri; on GPU nodes the "
    "NVIDIA driver's libEGL_nvidia), or set MUJOCO_GL=osmesa",
    "osmesa": "install OSMesa (Debian/Ubuntu: apt-get install libosmesa6), or set MUJOCO_GL=egl",
    "glfw": "GLFW needs a display (DISPLAY); on a headless machine set MUJOCO_GL=egl or MUJOCO_GL=osmesa",
}


def gl_backend() -> str:
    """The OpenGL backend named by ``MUJOCO_GL`` (``egl``, ``osmesa``, ``glfw``), or the
    default for this platform when it is unset (EGL on Linux, GLFW elsewhere)."""
    value = os.environ.get("MUJOCO_GL", "").strip().lower()
    if not value:
        return "egl" if platform.system() == "Linux" else "glfw"
    if value not in BACKENDS:
        raise ConfigError(
            f"MUJOCO_GL={value!r} is not an offscreen backend this package can use; valid: {', '.join(BACKENDS)}"
        )
    return value


def make_context(width: int, height: int):
    """A current OpenGL context of at least ``width`` x ``height`` for the chosen backend.

    Raises RenderError naming the backend and what to install when it cannot be made.
    """
    backend = gl_backend()
    try:
        if backend == "egl":
            from mujoco.egl import GLContext
        elif backend == "osmesa":
            from mujoco.osmesa import GLContext
        else:
            from mujoco.glfw import GLContext
        ctx = GLContext(width, height)
        ctx.make_current()
    except Exception as e:  # ImportError, OSError from ctypes, GLError, RuntimeError...
        raise RenderError(
            f"cannot create an offscreen OpenGL context with MUJOCO_GL={backend}: "
            f"{type(e).__name__}: {e}; {_INSTALL_HINT[backend]}"
        ) from e
    return ctx
