"""What every benchmark script does before JAX starts: pick its platform."""

from __future__ import annotations

import os

# XLA:CPU's intra-op thread pool buys this solver nothing (its ops are small: 209 vs 204
# frames/s for the quick comparison, 1 vs 2 threads) and costs a lot when any other
# process shares the cores (one solve took 29 s instead of 2.3 s next to a niced
# process). The CPU benchmarks therefore run XLA single-threaded and use one process
# per core for parallelism.
SINGLE_THREAD_CPU = ("--xla_cpu_multi_thread_eigen=false",)


def select_platform(device: str) -> None:
    """``cpu`` / ``gpu`` set ``JAX_PLATFORMS`` (``cpu`` / ``cuda``); ``auto`` leaves JAX's choice.
    XLA:CPU runs single-threaded in every case (the flags do not touch a GPU backend)."""
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    elif device == "gpu":
        os.environ["JAX_PLATFORMS"] = "cuda"
    from retarget_jax.xla_flags import configure_xla

    configure_xla(SINGLE_THREAD_CPU)
