"""Shared test fixtures.

Data that cannot ship with the project (real motion capture under restrictive licences)
lives in a shared folder outside the repository; tests that need it skip with a reason
when it is absent, so a fresh clone still passes its own test command.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA_ENV = "RETARGET_JAX_SHARED_DATA"


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
