"""The CLI picks libgomp's wait policy from the machine's load at start; a user's own setting wins."""

from __future__ import annotations

import os
import subprocess
import sys

from stylealign import omp

CORES = len(os.sched_getaffinity(0))


def test_free_machine_spins_and_says_so():
    env = {}
    why = omp.choose(env, busy=0.0)
    assert env["GOMP_SPINCOUNT"] == omp.SPIN and "OMP_WAIT_POLICY" not in env
    assert env[omp.CHOSEN] == why and why.startswith("spin")


def test_busy_machine_sleeps():
    env = {}
    why = omp.choose(env, busy=float(CORES))
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in env
    assert why.startswith("PASSIVE") and f"{CORES:.1f} of {CORES}" in why


def test_fewer_threads_than_cores_spin_beside_a_busy_core():
    env = {"OMP_NUM_THREADS": "1"}
    omp.choose(env, busy=CORES - 1.0)
    assert env["GOMP_SPINCOUNT"] == omp.SPIN


def test_unknown_load_sleeps():
    env = {}
    assert omp.choose(env, busy=None) == "PASSIVE (machine load unknown)"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_users_setting_is_kept():
    for var, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "1000")):
        env = {var: value}
        why = omp.choose(env, busy=0.0)
        assert env == {var: value, omp.CHOSEN: why} and why.startswith("set by user") and value in why


def test_busy_cpus_measures_this_machine():
    busy = omp.busy_cpus(0.05)
    assert busy is not None and 0.0 <= busy <= os.cpu_count()


def test_the_cli_chooses_before_torch_loads():
    """`stylealign` run as a process makes its choice before anything has loaded torch (and libgomp)."""
    code = ("import os, sys; from stylealign import cli; sys.argv = ['stylealign']; cli.main(); "
            "print('torch' in sys.modules, os.environ['STYLEALIGN_OMP_CHOICE'])")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    loaded, why = out.strip().splitlines()[-1].split(" ", 1)
    assert loaded == "False" and not why.startswith("set by user")
