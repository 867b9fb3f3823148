"""Shared test fixtures.

Data that cannot ship with the project (real motion capture under restrictive licences)
lives in a shared folder outside the repository; tests that need it skip with a reason
when it is absent, so a fresh clone still passes its own test command.

XLA compiles of the whole-trajectory solver take tens of seconds on a small CPU, so the
tests turn on JAX's persistent compilation cache (``$RETARGET_JAX_CACHE_DIR``, else
``.jax_cache/`` in the repository, which git ignores) and share problem shapes through
session- and module-scoped fixtures. Every compile is cached, however short: the
implicit-differentiation test runs the solver's backward pass eagerly, thousands of small
op compiles that cost about a minute when they are not on disk. Tests that need float64 enter
``jax.enable_x64(True)`` themselves (see the ``x64`` fixture); the default stays float32.
"""

from __future__ import annotations

import os
from pathlib import Path

from retarget_jax.xla_flags import configure_xla

configure_xla()  # the compiler options the package's entry points use (before JAX computes)

import jax  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA_ENV = "RETARGET_JAX_SHARED_DATA"
CACHE_DIR_ENV = "RETARGET_JAX_CACHE_DIR"
REPO_ROOT = Path(__file__).resolve().parents[1]

jax.config.update("jax_compilation_cache_dir", os.environ.get(CACHE_DIR_ENV) or str(REPO_ROOT / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def shared_data_path() -> Path:
    """``$RETARGET_JAX_SHARED_DATA``, else ``shared/data`` beside the repository root."""
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """Folder of shared test data; skips the test where it does not exist."""
    path = shared_data_path()
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path} (set {SHARED_DATA_ENV})")
    return path


@pytest.fixture(scope="session")
def g1():
    """The built-in Unitree G1 (RobotSpec, loaded once)."""
    from retarget_jax.robots import load_robot

    return load_robot("unitree_g1")


@pytest.fixture(scope="session")
def lafan1_g1_recipe():
    """The shipped LAFAN1 -> G1 recipe."""
    from retarget_jax.problem import load_recipe

    return load_recipe("lafan1_g1")


@pytest.fixture
def x64():
    """Run the test with 64-bit floats enabled (restored afterwards)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def g1_trajectory(g1):
    """A 12-frame G1 trajectory with in-range joints and MuJoCo FK body poses, 50 fps."""
    from inputs import synthetic_trajectory

    return synthetic_trajectory(g1, 12, seed=0, yaw_end=0.4)
