"""Train / validation split by a salted hash of the clip id (host).

Stage: dataset. The split of a clip depends on its id, the salt and ``val_percent`` only:
never on the order of the clips, on which other clips or sources are in the build, or on
the machine. Adding or removing a source therefore never moves another clip between
train and val, and a clip keeps its split across rebuilds.

The hash is the first 8 bytes of ``sha256(salt + "\\0" + clip_id)`` (UTF-8) read as an
unsigned big-endian integer; the clip goes to ``val`` when that integer, scaled to
[0, 100), is below ``val_percent``.
"""

from __future__ import annotations

import hashlib

__all__ = ["hash_fraction", "split_of"]


def hash_fraction(clip_id: str, salt: str = "") -> float:
    """A number in [0, 1), uniform over clip ids, fixed by ``clip_id`` and ``salt``."""
    digest = hashlib.sha256(f"{salt}\0{clip_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(clip_id: str, val_percent: float, salt: str = "") -> str:
    """``"val"`` or ``"train"`` for ``clip_id`` (see the module docstring)."""
    return "val" if 100.0 * hash_fraction(clip_id, salt) < float(val_percent) else "train"
