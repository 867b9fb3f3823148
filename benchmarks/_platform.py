"""What every benchmark script does before JAX starts: pick its platform."""

from __future__ import annotations

import os


def select_platform(device: str) -> None:
    """``cpu`` / ``gpu`` set ``JAX_PLATFORMS`` (``cpu`` / ``cuda``); ``auto`` leaves JAX's choice."""
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    elif device == "gpu":
        os.environ["JAX_PLATFORMS"] = "cuda"
