"""Batch stage: many motion files through the solver, resumably (host code).

    jobs (glob, relative ids) -> BatchRunner (resume, prefetch, buckets, manifest)
      -> RetargetWorker (read, prepare | solve, stitch windows, write) -> batch_manifest.json

See :mod:`retarget_jax.batch.runner` for the guarantees (resume, atomic manifest after
every chunk, bounded memory, multi-process parts) and :mod:`retarget_jax.solve.windows`
for long clips.
"""

from retarget_jax.batch.jobs import (
    BatchJob,
    discover_jobs,
    find_inputs,
    make_jobs,
    output_path,
    share,
)
from retarget_jax.batch.runner import BatchRunner, BatchWorker, CallableWorker, part_path
from retarget_jax.manifest import BatchManifest, BatchRunRecord

__all__ = [
    "BatchJob",
    "BatchManifest",
    "BatchRunRecord",
    "BatchRunner",
    "BatchWorker",
    "CallableWorker",
    "discover_jobs",
    "find_inputs",
    "make_jobs",
    "output_path",
    "part_path",
    "share",
]
