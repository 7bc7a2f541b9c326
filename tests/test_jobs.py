"""The studio's job queue (stylealign.jobs): one job at a time in submission order, cancel, logs, and a job list
that survives its server (`kill -9` included): the lost job shows as failed and resumes to a finished run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stylealign.errors import NotFound, UserError
from stylealign.jobs import JobQueue
from stylealign.runlock import pid_alive
from stylealign.train.records import checkpoint_complete

REPO = Path(__file__).resolve().parents[1]


def wait_for(predicate, timeout: float = 120, poll: float = 0.05):
    """Poll until `predicate()` is true; fail the test after `timeout` seconds (a hang, not a speed check)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(poll)


@pytest.fixture
def fake_cli(tmp_path) -> Path:
    """A stand-in for `python`: records `-m stylealign ARGS` in order.txt, sleeps when ARGS holds `slow`,
    fails when it holds `fail`."""
    script = tmp_path / "fake-python"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys, time
        args = sys.argv[3:]
        with open({str(tmp_path / 'order.txt')!r}, "a") as f:
            f.write(" ".join(args) + "\\n")
        print("started", " ".join(args), flush=True)
        if "slow" in args:
            time.sleep(60)
        sys.exit(3 if "fail" in args else 0)
    """))
    script.chmod(0o755)
    return script


def test_jobs_run_one_at_a_time_in_submission_order(tmp_path, fake_cli):
    queue = JobQueue(tmp_path / "jobs.sqlite", cwd=tmp_path, python=str(fake_cli))
    jobs = [queue.submit(["eval", "--adapter", f"r{i}"]) for i in range(3)] + [queue.submit(["export", "fail"])]
    assert [j.state for j in jobs] == ["queued"] * 4
    queue.start()
    try:
        wait_for(lambda: all(queue.get(j.id).finished for j in jobs))
    finally:
        queue.stop()
    order = (tmp_path / "order.txt").read_text().splitlines()
    assert order == ["eval --adapter r0", "eval --adapter r1", "eval --adapter r2", "export fail"]
    done = [queue.get(j.id) for j in jobs]
    assert [j.state for j in done] == ["done", "done", "done", "failed"] and done[-1].rc == 3
    assert all(a.ended <= b.started for a, b in zip(done, done[1:]))  # never two at once
    assert queue.log(jobs[0].id).strip() == "started eval --adapter r0"
    assert [j.id for j in queue.list()] == [j.id for j in reversed(jobs)]


def test_cancel_a_queued_and_a_running_job(tmp_path, fake_cli):
    queue = JobQueue(tmp_path / "jobs.sqlite", cwd=tmp_path, python=str(fake_cli))
    slow, queued, after = queue.submit(["train", "sft", "slow"]), queue.submit(["eval", "x"]), queue.submit(["eval", "y"])
    queue.start()
    try:
        wait_for(lambda: queue.get(slow.id).state == "running")
        assert queue.cancel(queued.id).state == "cancelled"
        assert queue.cancel(slow.id).state == "cancelled"
        wait_for(lambda: queue.get(after.id).finished)
    finally:
        queue.stop()
    assert (tmp_path / "order.txt").read_text().splitlines() == ["train sft slow", "eval y"]
    assert queue.get(slow.id).rc == -signal.SIGTERM and queue.get(after.id).state == "done"
    again = queue.resume(slow.id)
    assert again.argv == ["train", "sft", "slow", "--resume"] and again.resumes == slow.id


def test_bad_requests_are_one_line_errors(tmp_path, fake_cli):
    queue = JobQueue(tmp_path / "jobs.sqlite", python=str(fake_cli))
    with pytest.raises(UserError, match="not a job the studio runs"):
        queue.submit(["personas", "list"])
    with pytest.raises(NotFound, match="job 99: no such job"):
        queue.get(99)
    done = queue.submit(["export", "r"])
    with pytest.raises(UserError, match="only a failed or cancelled"):
        queue.resume(done.id)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "jobs.sqlite").mkdir()  # a folder where the file should be
    with pytest.raises(UserError, match="cannot keep the job list there"):
        JobQueue(tmp_path / "ro" / "jobs.sqlite")


SERVER = """
import sys, time
from stylealign.jobs import JobQueue
queue = JobQueue(sys.argv[1], cwd=sys.argv[2])
queue.submit(sys.argv[3:])
queue.start()
time.sleep(600)
"""


@pytest.mark.slow
def test_a_server_killed_mid_training_leaves_a_failed_job_that_resumes_to_a_finished_run(
        tmp_path, small_persona, tiny_model_dir):
    """`kill -9` of the server while its job trains: the job dies with it, the list still holds it, the next
    server shows it failed with its log, and resume (`--resume`) finishes the run."""
    db, run = tmp_path / "jobs.sqlite", tmp_path / "runs" / "r"
    argv = ["train", "sft", "--persona", str(small_persona), "--base", str(tiny_model_dir), "--quant", "none",
            "--dtype", "fp32", "--run", str(run), "--sft.max-steps", "40", "--sft.save-steps", "2",
            "--select.enabled", "false"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(db), str(tmp_path), *argv], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _state(db) == "running" and any(map(checkpoint_complete, Path(f"{run}.partial").rglob(
            "checkpoint-*"))), timeout=300, poll=0.2)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    queue = JobQueue(db, cwd=tmp_path)
    [job] = queue.list()
    assert queue.recovered == [job.id] and job.state == "failed" and "server stopped" in job.note
    wait_for(lambda: not pid_alive(job.pid), timeout=30)  # the job died with its server
    assert not (run / "manifest.json").exists() and queue.log(job.id)
    again = queue.resume(job.id)
    queue.start()
    try:
        wait_for(lambda: queue.get(again.id).finished, timeout=600, poll=0.5)
    finally:
        queue.stop()
    assert queue.get(again.id).state == "done", queue.log(again.id)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["sft"]["steps"] == 40
    assert "sft: resuming from checkpoint-" in queue.log_path(again.id).read_text()  # not from the start


def _state(db: Path) -> str | None:
    """The first job's state, read without opening a JobQueue (which would recover the server's jobs)."""
    import sqlite3
    from contextlib import closing

    if not db.exists():
        return None
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        try:
            row = conn.execute("SELECT state FROM jobs ORDER BY id LIMIT 1").fetchone()
        except sqlite3.OperationalError:  # the table is not there yet
            return None
    return row and row[0]
