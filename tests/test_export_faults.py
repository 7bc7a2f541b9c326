"""`stylealign export` and `serve` when things go wrong: a damaged adapter, a full disk, a busy port and a bad
folder are one `stylealign: error:` line naming the file (nothing half-written left behind), and `serve` stops
its llama.cpp server however it is stopped itself (SIGTERM, SIGINT, kill -9): no orphan keeps the port or the
temporary folder.

The run is the embedded base with a small hand-made LoRA: no training, no model loaded in-process."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import fails_with

from stylealign.runlock import pid_alive


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Return a run folder on the embedded base whose adapter is a rank-2 LoRA on one q_proj."""
    import torch
    from safetensors.torch import save_file

    from stylealign.models import resolve_base

    folder = tmp_path_factory.mktemp("runs") / "faults-run"
    (folder / "adapter").mkdir(parents=True)
    hidden = json.loads((Path(resolve_base("smollm2-135m").path) / "config.json").read_text())["hidden_size"]
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}))
    torch.manual_seed(0)
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{prefix}.lora_A.weight": torch.randn(2, hidden) * 0.01, f"{prefix}.lora_B.weight": torch.randn(hidden, 2)
               * 0.01}, folder / "adapter" / "adapter_model.safetensors")
    (folder / "manifest.json").write_text(json.dumps({"base_model": {"name": "smollm2-135m"}}))
    return folder


@pytest.fixture(scope="module")
def exported(run) -> Path:
    """Return the run's GGUF export (base GGUF + LoRA GGUF), unchecked."""
    from stylealign.export.run import export_run

    export_run(run, run / "export", to="gguf", check=False)
    return run / "export"


def _copy_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export"))
    return copy


def _no_export_left(out: Path) -> bool:
    return not out.exists() and not out.with_name(out.name + ".partial").exists()


# ---- export ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated weights", "garbage weights", "config not JSON"])
def test_a_damaged_adapter_is_named_in_one_line(capsys, run, tmp_path, damage):
    run = _copy_run(run, tmp_path)
    weights, config = run / "adapter" / "adapter_model.safetensors", run / "adapter" / "adapter_config.json"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "garbage weights":
        weights.write_bytes(os.urandom(4096))
    else:
        config.write_text('{"peft_type": "LORA", "r": 2,')
    damaged = config if damage == "config not JSON" else weights
    out = tmp_path / "exp"
    fails_with(capsys, ["export", str(run), "--to", "gguf", "--no-check", "--out", str(out)],
               f"stylealign: error: {damaged}: not a readable", "retrain or restore the run")
    assert _no_export_left(out)


def _full_disk_copying_base(monkeypatch, run_name):
    """Make shutil.copyfile fill the disk half-way through writing base.gguf; the OSError names the source file
    (filename) and the destination (filename2), as shutil's sendfile copy raises it."""
    real = shutil.copyfile

    def copyfile(src, dst, *args, **kwargs):
        if Path(dst).name != "base.gguf":
            return real(src, dst, *args, **kwargs)
        with open(src, "rb") as f:
            Path(dst).write_bytes(f.read(4096))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))

    monkeypatch.setattr(shutil, "copyfile", copyfile)
    return "gguf/base.gguf"


def _full_disk_writing_lora(monkeypatch, run_name):
    """Make the GGUF writer fill the disk after the LoRA GGUF's header (a failed write() names no file)."""
    import gguf

    def write_tensors_to_file(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", write_tensors_to_file)
    return f"gguf/{run_name}.f16.gguf"


@pytest.mark.parametrize("fault", [_full_disk_copying_base, _full_disk_writing_lora], ids=["base.gguf", "lora"])
def test_a_full_disk_names_the_file_being_written_and_leaves_nothing(capsys, monkeypatch, run, tmp_path, fault):
    from stylealign.models import embedded_gguf

    run = _copy_run(run, tmp_path)
    out = tmp_path / "exp"
    written = out.with_name("exp.partial") / fault(monkeypatch, run.name)
    line = fails_with(capsys, ["export", str(run), "--to", "gguf", "--no-check", "--out", str(out)],
                      f"stylealign: error: {written}: no space left on the device")
    assert str(embedded_gguf("smollm2-135m")) not in line
    assert _no_export_left(out)


def test_export_errors_are_one_line_with_the_fix(capsys, run, tmp_path):
    fails_with(capsys, ["export", str(tmp_path / "no-such-run")], "no-such-run: no such run folder")
    fails_with(capsys, ["export", str(tmp_path)], f"{tmp_path}: no adapter_config.json",
               "pass a run folder that holds a trained adapter")
    (tmp_path / "taken").mkdir()
    fails_with(capsys, ["export", str(run), "--to", "gguf", "--no-check", "--out", str(tmp_path / "taken")],
               "already exists; pass --overwrite")
    fails_with(capsys, ["export", str(run), "--horizon", "0"], "need --horizon >= 1")


# ---- serve -------------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.llama_cpp
def test_serve_errors_are_one_line_with_the_fix(capsys, run, exported, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        fails_with(capsys, ["serve", str(run), "--export", str(exported), "--port", str(port)],
                   f"127.0.0.1:{port}: the port is in use", "pass --port")
    (tmp_path / "empty").mkdir()
    fails_with(capsys, ["serve", str(run), "--export", str(tmp_path / "empty"), "--port", str(_free_port())],
               "no gguf/base.gguf", "stylealign export")


def _server_of(serve: subprocess.Popen, port: int) -> tuple[int, Path]:
    """Wait until `serve` answers on `port`; return its llama.cpp server child's pid and temporary folder."""
    deadline = time.monotonic() + 180
    while True:
        assert serve.poll() is None, "stylealign serve exited"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline, "no server after 180 s"
            time.sleep(0.5)
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and pid_alive(int(p.name))
                and int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == serve.pid]
    assert len(children) == 1, children
    argv = Path(f"/proc/{children[0]}/cmdline").read_bytes().decode().split("\0")
    assert "stylealign.export.llama_server" in argv
    return children[0], Path(argv[argv.index("--config_file") + 1]).parent


def _start_serve(run: Path, exported: Path, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen([sys.executable, "-m", "stylealign", "serve", str(run), "--export", str(exported),
                              "--port", str(port), "--n-ctx", "512"], stdout=log, stderr=subprocess.STDOUT)
    return serve, port


@pytest.mark.llama_cpp
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_its_server_when_stopped(run, exported, tmp_path, signum):
    serve, port = _start_serve(run, exported, tmp_path)
    try:
        server, tmp = _server_of(serve, port)
        assert tmp.is_dir() and os.getpgid(server) == server  # the server leads a process group of its own
        serve.send_signal(signum)
        assert serve.wait(timeout=120) == 128 + signum, (tmp_path / "serve.log").read_text()[-2000:]
        with pytest.raises(ProcessLookupError):
            os.killpg(server, 0)  # the whole group is gone
        assert not tmp.exists()
        with socket.socket() as s:  # and the port is free again (to a server: in TIME_WAIT at most)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        serve.kill()
        serve.wait()


@pytest.mark.llama_cpp
def test_the_server_exits_when_serve_is_killed(run, exported, tmp_path):
    serve, port = _start_serve(run, exported, tmp_path)
    try:
        server, tmp = _server_of(serve, port)
    finally:
        serve.kill()  # SIGKILL: serve can do nothing; the server must notice on its own
        serve.wait()
    deadline = time.monotonic() + 60
    while (pid_alive(server) or tmp.exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pid_alive(server), "the server outlived serve"
    assert not tmp.exists()
