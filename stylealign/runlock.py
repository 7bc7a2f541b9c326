"""One writer per run folder, and publishing that never loses a finished run.

`run_lock(run)` holds `<run>.lock` (owner PID, host, start time) while a trainer works on `<run>` or
`<run>.partial`; a second trainer, `--resume` included, is refused while the owner lives. A lock whose
owner died (kill -9, a crash) on this host is stale and taken over. `publish(work, final)` swaps the
finished work folder in: a run it replaces stays on disk until the new one is in place, and a publish cut
short anywhere is finished or rolled back by the next trainer on the run (`finish_interrupted_publish`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import socket
import time
from pathlib import Path

from stylealign.errors import UserError
from stylealign.files import write_atomic


def lock_path(run: Path) -> Path:
    return run.with_name(run.name + ".lock")


# In a new run while it replaces a finished one; gone once the replaced run is.
PUBLISHING = ".publishing"


def replaced_path(run: Path) -> Path:
    """Where a finished run waits while its replacement is swapped in (restored if the swap was cut short)."""
    return run.with_name(run.name + ".replaced")


@contextlib.contextmanager
def run_lock(run: str | Path, active: bool = True):
    """Hold the run's lock inside the block (a no-op when not `active`, e.g. on non-main ranks)."""
    if not active:
        yield
        return
    path = lock_path(Path(run))
    path.parent.mkdir(parents=True, exist_ok=True)
    _acquire(path, Path(run))
    try:
        yield
    finally:
        if _owner(path).get("pid") == os.getpid():
            path.unlink(missing_ok=True)


def _acquire(path: Path, run: Path) -> None:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if _alive(owner):
                raise UserError(f"{run}: another trainer is writing this run (pid {owner.get('pid')} on "
                                f"{owner.get('host')}, since {owner.get('started')}); wait for it or stop it, "
                                f"or pass another --run") from None
            path.unlink(missing_ok=True)  # stale: its owner is gone; take it over
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise UserError(f"{path}: could not take the run lock (another trainer keeps taking it); try again")


def _owner(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _alive(owner: dict) -> bool:
    """Return True unless the lock's owner is provably gone (a dead PID on this host, or an unreadable lock)."""
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False  # half-written or foreign file: nobody can be holding it
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: we cannot tell, so refuse
    return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Return True if process `pid` runs on this host (one of another user counts; a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def finish_interrupted_publish(final: Path, work: Path) -> bool:
    """Finish or roll back a publish that a kill cut short (`publish` leaves every state it passes through
    recognisable): return True when it finished one, the new run now being `final`."""
    old = replaced_path(final)
    if (final / PUBLISHING).exists():  # the new run is in place: the replaced one goes
        if work.exists() and not (work / PUBLISHING).exists():
            os.replace(work, old)  # cut short between the exchange and moving the old run aside
        shutil.rmtree(old, ignore_errors=True)
        (final / PUBLISHING).unlink()
        return True
    if old.exists():
        if final.exists():  # both renames done (a run published before the marker existed)
            shutil.rmtree(old)
        else:  # cut short between the two renames: the replaced run comes back; `work` publishes again
            os.replace(old, final)
    return False


def publish(work: Path, final: Path) -> None:
    """Move the finished `work` folder to `final`. A finished run already there is replaced only now, atomically
    where the filesystem can exchange two names (renameat2), else by two renames; until the old run is gone the
    new one carries a PUBLISHING marker, so a kill at any point is finished or rolled back by the next trainer
    on this run (`finish_interrupted_publish`)."""
    if not final.exists():
        (work / PUBLISHING).unlink(missing_ok=True)  # left by a publish rolled back earlier
        os.replace(work, final)
        return
    write_atomic(work / PUBLISHING, "")
    if _exchange(work, final):
        os.replace(work, replaced_path(final))  # after the exchange `work` holds the old run
    else:
        os.replace(final, replaced_path(final))
        os.replace(work, final)
    finish_interrupted_publish(final, work)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rename = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, exchange = -100, 2
    return rename(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), exchange) == 0
