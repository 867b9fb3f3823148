"""XLA compiler options this package measured and chose (host, before JAX computes anything).

On the CPU backend, XLA's newer fusion emitters compile the solver about a third slower
(18.3 s against 12.4 s for the two-level solve of a 256-frame bucket on a 2-core x86
CPU, ``benchmarks/bench_compile.py``) and run it no faster, so the entry points
(``python -m retarget_jax.run``, ``retarget-jax``, the benchmarks, the tests) call
:func:`configure_xla` first. It only appends a flag the user has not set in ``XLA_FLAGS``
and is a no-op once a backend is running: XLA reads the variable when it starts.
A library user can call it before their first JAX computation, or set the flag themselves.
"""

from __future__ import annotations

import os

#: Flags appended to ``XLA_FLAGS`` unless the variable already names them.
CPU_FLAGS: tuple[str, ...] = ("--xla_cpu_use_fusion_emitters=false",)

#: Environment defaults (set unless already set). The solver's LAPACK calls (Cholesky and
#: triangular solves of 35 x 35 blocks, from OpenBLAS) are far too small to gain from
#: OpenBLAS threads, whose start-up and spinning cost about a third of the banded solve
#: on one process, and several times that when processes share the cores.
ENV_DEFAULTS: dict[str, str] = {"OPENBLAS_NUM_THREADS": "1"}


def configure_xla(extra: tuple[str, ...] = ()) -> str:
    """Append :data:`CPU_FLAGS` (and ``extra``) to ``XLA_FLAGS`` where not already set,
    and set :data:`ENV_DEFAULTS` where unset; returns ``XLA_FLAGS``. Call before the first
    JAX computation."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    named = {f.split("=")[0] for f in flags}
    for f in (*CPU_FLAGS, *extra):
        if f.split("=")[0] not in named:
            flags.append(f)
            named.add(f.split("=")[0])
    os.environ["XLA_FLAGS"] = " ".join(flags)
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return os.environ["XLA_FLAGS"]
