"""Several kit processes on one machine: OpenMP threads that sleep instead of spinning.

Torch on CPU runs its operators in OpenMP parallel regions (GNU ``libgomp`` in
the pip wheels). At the end of each region the idle threads *spin*, by default
for about 300,000 iterations, before they sleep, which pays off when the process
has the cores to itself. The cpu profile's tiny towers run thousands of small
regions per step, so when two processes share two cores (two ``tireid train``
runs, a notebook beside the tests), each one's spinning threads hold the cores
the other one's threads are waiting for: every region then lasts a scheduler
time slice instead of microseconds. Measured on 2 cores: 60 pretraining steps
took 5 s alone and 38 s each with two processes (the whole warm start of
150 steps: 16 s against 290 s).

:func:`share_cores_politely` sets ``GOMP_SPINCOUNT`` to :data:`SPIN_COUNT` (spin
briefly, then sleep) unless ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is already
set; it must run before torch is first imported, since libgomp reads the variable
once, and ``import tireid_lite`` does it (the ``tireid`` command imports torch only
afterwards, and child processes such as notebook kernels inherit it). In a session
that imported torch before the kit, set the variable in the shell instead::

    GOMP_SPINCOUNT=1000 jupyter lab

A lone run loses little (the threads still spin through the short gaps between
operators); two runs together take about twice one run's time, as two runs'
work should (``benchmarks/bench_concurrent_runs.py``).
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = "1000"  # libgomp's own choice when a process has more threads than cores
ENV_KEYS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def share_cores_politely() -> bool:
    """Set ``GOMP_SPINCOUNT`` (see the module docstring); True when set here, False when left as the user set it."""
    if any(os.environ.get(key) for key in ENV_KEYS):
        return False
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True


def spin_setting() -> str:
    """The OpenMP wait setting in force, for ``tireid env``; says so when torch was imported before the kit set it."""
    shown = ", ".join(f"{key}={os.environ[key]}" for key in ENV_KEYS if os.environ.get(key)) or "libgomp default"
    return shown + (" (set after torch was imported: not in force)" if _torch_first else "")


_torch_first = "torch" in sys.modules and not any(os.environ.get(key) for key in ENV_KEYS)
