"""Multi-process runs with ``jax.distributed`` (host).

Every process of a run (one per node or per GPU) calls :func:`initialize`; JAX finds the
coordinator from SLURM or Open MPI variables, or from the explicit fields. Each process
then solves its own share of the jobs on its own local devices (no arrays span
processes: clips are independent), writes its own manifest part, and waits at a barrier
so that process 0 merges the parts (:class:`~retarget_jax.batch.runner.BatchRunner`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    index: int = 0
    count: int = 1
    barrier: Callable[[str], None] | None = None


def initialize(
    enabled: bool,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    barrier_timeout_s: float = 24 * 3600.0,
) -> ProcessInfo:
    """Start (or join) the multi-process runtime when ``enabled``; a single process otherwise."""
    if not enabled:
        return ProcessInfo()
    import jax
    from jax._src import distributed as _dist

    if _dist.global_state.client is None:
        kwargs = {
            k: v
            for k, v in {
                "coordinator_address": coordinator_address,
                "num_processes": num_processes,
                "process_id": process_id,
            }.items()
            if v is not None
        }
        jax.distributed.initialize(**kwargs)
    client = _dist.global_state.client
    timeout_ms = int(barrier_timeout_s * 1000)

    def barrier(name: str) -> None:
        # the coordination service's barrier: no device collectives, so it also works on CPU
        client.wait_at_barrier(name, timeout_ms)

    return ProcessInfo(jax.process_index(), jax.process_count(), barrier)
