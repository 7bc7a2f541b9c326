"""Helpers several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from stylealign.cli import main
from stylealign.files import read_jsonl
from stylealign.synth import log_path

PROGRESS = re.compile(r"\d+%\||\[A$|^\s*\[A")  # tqdm bars (weights, tokenizing, training steps)


def fails_with(capsys, argv: list[str], *phrases: str, code: int = 2) -> str:
    """Run the CLI in-process; assert exit `code` and, besides progress bars, exactly one `stylealign: error:`
    line holding `phrases` (so no traceback)."""
    rc = main(argv)
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if line.strip() and not PROGRESS.search(line)]
    assert rc == code, err
    assert len(err) == 1 and err[0].startswith("stylealign: error: "), err
    for phrase in phrases:
        assert phrase in err[0], err[0]
    return err[0]


def kill_after_two_decisions(cmd: list[str], out: Path, timeout: float, poll: float = 0.2) -> subprocess.Popen:
    """Run `stylealign synth` (cmd) and `kill -9` it once its log holds two decisions (or it ends, or `timeout`)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while len(read_jsonl(log_path(out))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc
