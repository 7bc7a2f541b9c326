"""Long steps (synth, train, eval, export) as jobs: subprocesses of the CLI, one at a time, recorded in SQLite.

The studio submits a job as the `stylealign` arguments it would type; a runner thread starts the oldest queued
job as `python -m stylealign ...` in its own process group, its output in a log file, so a crash in a job never
takes the server down. The job table lives beside the arena's votes and survives the server: a job whose
server stopped (a restart, a `kill -9`) is found on the next start and marked failed, with its log, and
`resume` queues it again with `--resume` (train, eval and synth continue from their own records).

A job is killed when its server dies (Linux: the parent-death signal), so no job trains on without a server
that knows of it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from stylealign.errors import NotFound, UserError
from stylealign.runlock import pid_alive

DEFAULT_JOBS = ".stylealign/studio/jobs.sqlite"
KINDS = ("synth", "train", "eval", "export", "arena")  # the first word of the command line
STATES = ("queued", "running", "done", "failed", "cancelled")
RESUMABLE = ("train", "eval", "synth")  # commands that continue their own records: train and eval with --resume,
RERUN_CONTINUES = ("synth",)  # synth by running again (its append logs)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    argv TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    pid INTEGER,
    server INTEGER,
    rc INTEGER,
    note TEXT NOT NULL DEFAULT '',
    resumes INTEGER
)
"""


@dataclass
class Job:
    """One job: its command line (after `stylealign`), state, times, exit code and log file."""

    id: int
    argv: list[str]
    state: str
    created: float
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    server: int | None = None
    rc: int | None = None
    note: str = ""
    resumes: int | None = None

    @property
    def kind(self) -> str:
        return self.argv[0]

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def resumable(self) -> bool:
        return self.state in ("failed", "cancelled") and self.kind in RESUMABLE


def _on_parent_death() -> None:
    """In the child, before exec: get SIGTERM when the server dies (Linux prctl PR_SET_PDEATHSIG), and lead a
    process group of its own so a cancel stops the job's own children too."""
    os.setsid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class JobQueue:
    """Jobs in a SQLite file, run one at a time by a runner thread (`start`), their logs in `logs/` beside it."""

    def __init__(self, path: str | Path = DEFAULT_JOBS, cwd: str | Path = ".", python: str = sys.executable):
        self.path, self.cwd, self.python = Path(path), Path(cwd), python
        self.logs = self.path.parent / "logs"
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db, db:
                db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise UserError(f"{self.path}: cannot keep the job list there ({e}); pass a writable --jobs file") from None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.recovered = self.recover()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _update(self, job_id: int, **fields) -> None:
        with closing(self._connect()) as db, db:
            db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", (*fields.values(), job_id))

    # -- what the studio calls -------------------------------------------------------------------------------
    def submit(self, argv: list[str], resumes: int | None = None) -> Job:
        """Queue `stylealign <argv>`; return the job."""
        if not argv or argv[0] not in KINDS:
            raise UserError(f"job {argv[:1]}: not a job the studio runs; one of {', '.join(KINDS)}")
        with closing(self._connect()) as db, db:
            cur = db.execute("INSERT INTO jobs (argv, state, created, resumes) VALUES (?, 'queued', ?, ?)",
                             (json.dumps(argv), time.time(), resumes))
        self._wake.set()
        return self.get(cur.lastrowid)

    def get(self, job_id: int) -> Job:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id}: no such job in {self.path}")
        return _job(row)

    def list(self) -> list[Job]:
        """Every job, newest first."""
        with closing(self._connect()) as db:
            return [_job(r) for r in db.execute("SELECT * FROM jobs ORDER BY id DESC")]

    def log_path(self, job_id: int) -> Path:
        return self.logs / f"{job_id}.log"

    def log(self, job_id: int, tail: int = 20_000) -> str:
        """The last `tail` characters of the job's output."""
        try:
            data = self.log_path(job_id).read_bytes()
        except FileNotFoundError:
            return ""
        return data[-tail:].decode("utf-8", "replace")

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued job, or stop a running one (its whole process group)."""
        with self._lock:
            job = self.get(job_id)
            if job.state == "queued":
                self._update(job_id, state="cancelled", ended=time.time(), note="cancelled before it started")
            elif job.state == "running" and self._proc is not None and self._proc.pid == job.pid:
                self._update(job_id, state="cancelled", note="cancelled while running")
                _stop_group(self._proc)
        return self.get(job_id)

    def resume(self, job_id: int) -> Job:
        """Queue a failed or cancelled train/eval job again with `--resume` (synth: again as it was)."""
        job = self.get(job_id)
        if not job.resumable:
            raise UserError(f"job {job_id} ({job.kind}, {job.state}): only a failed or cancelled "
                            f"{'/'.join(RESUMABLE)} job resumes")
        again = [a for a in job.argv if a != "--resume"]
        return self.submit(again if job.kind in RERUN_CONTINUES else again + ["--resume"], resumes=job_id)

    # -- the runner ---------------------------------------------------------------------------------------------
    def recover(self) -> list[int]:
        """Mark failed every job left running by a server that is gone; return their ids."""
        lost = []
        for job in self.list():
            if job.state == "running" and not (job.server and pid_alive(job.server) and job.server != os.getpid()):
                if job.pid and pid_alive(job.pid):  # a job outlived its server (no parent-death signal here): stop it
                    _kill_group(job.pid)
                self._update(job.id, state="failed", ended=time.time(),
                             note="the server stopped while this job ran; resume continues it")
                lost.append(job.id)
        return lost

    def start(self) -> None:
        """Start the runner thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stylealign-jobs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Stop the runner: the running job is stopped and marked failed (resumable), the queue kept."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            if self._proc is not None:
                _stop_group(self._proc)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def running(self) -> Job | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE state = 'running' ORDER BY id LIMIT 1").fetchone()
        return _job(row) if row else None

    def _next(self) -> Job | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1").fetchone()
        return _job(row) if row else None

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self._next()
            if job is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._run_one(job)

    def _run_one(self, job: Job) -> None:
        with self._lock:
            if self._stop.is_set() or self.get(job.id).state != "queued":
                return
            log = open(self.log_path(job.id), "ab")
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            try:
                self._proc = subprocess.Popen([self.python, "-m", "stylealign", *job.argv], cwd=self.cwd, env=env,
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                              preexec_fn=_on_parent_death)
            except OSError as e:
                log.write(f"cannot start the job: {e}\n".encode())
                log.close()
                self._update(job.id, state="failed", ended=time.time(), note=str(e))
                return
            self._update(job.id, state="running", started=time.time(), pid=self._proc.pid, server=os.getpid())
        rc = self._proc.wait()
        log.close()
        with self._lock:
            self._proc = None
            state = self.get(job.id).state
            if state == "cancelled":
                self._update(job.id, ended=time.time(), rc=rc)
            elif self._stop.is_set():
                self._update(job.id, state="failed", ended=time.time(), rc=rc,
                             note="the server stopped while this job ran; resume continues it")
            else:
                self._update(job.id, state="done" if rc == 0 else "failed", ended=time.time(), rc=rc,
                             note="" if rc == 0 else f"exit code {rc}; see its log")


def _job(row) -> Job:
    job = Job(*row)
    job.argv = json.loads(job.argv)
    return job


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the job's process group (the CLI saves what it can), SIGKILL it after `grace` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
