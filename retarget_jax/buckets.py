"""Length buckets: the few frame counts clips are padded to (stage: base, host code).

A jitted function compiles once per shape, so clips are padded to the smallest bucket
that holds them (a frame mask marks the padding) and clips of one bucket share a program.
The solver (:mod:`retarget_jax.solve.batch`), the batch driver and the metrics all pad
this way; the buckets live here so the metrics need not import the solver to pad alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from retarget_jax.errors import SolveError

__all__ = ["DEFAULT_BUCKETS", "bucket_length"]

DEFAULT_BUCKETS: tuple[int, ...] = (64, 128, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)


def bucket_length(T: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> int:
    """The smallest bucket of at least ``T`` frames (SolveError when none is long enough)."""
    for b in sorted(buckets):
        if T <= b:
            return int(b)
    raise SolveError(
        f"clip of {T} frames is longer than the largest bucket {max(buckets)}; split it into windows or add a bucket"
    )
