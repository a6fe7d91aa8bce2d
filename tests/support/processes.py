"""Child processes of the tests on shared machines: pinned thread counts and safety-net timeouts.

CI shares its 2 cores with other work. A child that sizes its thread pools from the core count oversubscribes
them under a parallel job (a tiny InverFill run went from 0.6 to 7–10 s/step), so every child gets explicit
thread counts. Runs are sized in steps; timeouts only catch a hung process, far above the normal time.
"""
from __future__ import annotations

import os

CHILD_THREADS = 2
SAFETY_TIMEOUT_S = 3600  # a trainer run in the suite takes 10–90 s alone; the limit catches hangs only
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def pinned_env(threads: int = CHILD_THREADS, base: dict | None = None, **extra: str) -> dict:
    """``base`` (default: this process's environment) with every thread pool of a child set to ``threads``."""
    env = dict(os.environ if base is None else base)
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    env.update(extra)
    return env
