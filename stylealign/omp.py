"""How idle OpenMP threads wait, chosen once per process before torch loads libgomp.

Between two parallel regions a libgomp thread either spins (the default, ~300k iterations) or sleeps
(`OMP_WAIT_POLICY=PASSIVE`). Neither wins everywhere; on a 2-core machine (benchmarks/README.md):

* idle machine: sleeping costs a wake-up per operator, and a decode step is ~750 small operators. On a
  2-core Intel Xeon VM a batch-8 decode step took 220 ms sleeping vs 95 ms spinning; a training step ~10%.
* one other busy process: a spinning thread holds the core the other process needs, and the barrier
  waits on a descheduled peer: the same step took 294 ms spinning vs 140 ms sleeping.

So: spin when the machine has a free core for every thread, sleep when something else is using them.
A variable the user set (`OMP_WAIT_POLICY`, `GOMP_SPINCOUNT`) always wins. The choice is made at start
and recorded; work started later on the machine does not change it.
"""

from __future__ import annotations

import os
import time

SPIN = "300000"  # iterations a thread spins before it sleeps: libgomp's default; ACTIVE would spin forever
CHOSEN = "STYLEALIGN_OMP_CHOICE"  # why the policy is what it is, for main_job.json and the bench


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where there is no /proc."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cpus(window_s: float = 0.3) -> float | None:
    """How many CPUs other processes kept busy over `window_s` seconds (this one sleeps), or None."""
    a = _cpu_times()
    if a is None:
        return None
    time.sleep(window_s)
    b = _cpu_times()
    if b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)


def choose(environ=os.environ, busy: float | None = -1.0) -> str:
    """Set libgomp's wait policy in `environ` for this machine's load; return the reason, also stored there.

    `busy`: CPUs in use by others (None: unknown; -1: measure now). Spinning needs a free core for each of
    torch's threads, with half a core of slack for the odd daemon.
    """
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        why = f"set by user: OMP_WAIT_POLICY={environ.get('OMP_WAIT_POLICY', '')} " \
              f"GOMP_SPINCOUNT={environ.get('GOMP_SPINCOUNT', '')}".strip()
    else:
        if busy is not None and busy < 0:
            busy = busy_cpus()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = int(environ.get("OMP_NUM_THREADS") or cores)
        if busy is None:
            environ["OMP_WAIT_POLICY"] = "PASSIVE"
            why = "PASSIVE (machine load unknown)"
        elif cores - busy >= threads - 0.5:
            environ["GOMP_SPINCOUNT"] = SPIN  # libgomp's own default, made explicit so child processes inherit it
            why = f"spin {SPIN} ({busy:.1f} of {cores} CPUs busy at start)"
        else:
            environ["OMP_WAIT_POLICY"] = "PASSIVE"
            why = f"PASSIVE ({busy:.1f} of {cores} CPUs busy at start)"
    environ[CHOSEN] = why
    return why
