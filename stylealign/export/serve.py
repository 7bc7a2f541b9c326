"""`stylealign serve`: llama-cpp-python's OpenAI-compatible server with a run's base GGUF and LoRA GGUF.

Two model names on one server: the base's (for the baseline) and the run folder's (base + LoRA), the
names `stylealign eval --backend openai:URL#BASE` expects. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from stylealign.errors import RunFailed, UserError

STOP_GRACE_S = 10.0  # how long the server gets to shut down on SIGTERM before its group is killed


class ServeError(UserError):
    """The server cannot start (missing package or files, a busy port); the message says how to fix it."""


def exported_gguf(run: str, export: str | None) -> tuple[Path, Path]:
    """Return (base GGUF, LoRA GGUF) from the export folder (default RUN/export), writing a GGUF export
    there first when the folder does not exist yet."""
    from stylealign.export.run import export_run

    folder = Path(export or Path(run) / "export")
    if not folder.exists():
        print(f"serve: no export in {folder}; exporting the run's GGUF files there first", file=sys.stderr)
        export_run(run, folder, to="gguf", check=False)
    loras = [p for p in sorted((folder / "gguf").glob("*.gguf")) if p.name != "base.gguf"]
    if not (folder / "gguf" / "base.gguf").exists() or not loras:
        raise ServeError(f"{folder}: no gguf/base.gguf and LoRA GGUF; run stylealign export {run} --to gguf "
                         f"--out {folder} --overwrite")
    return folder / "gguf" / "base.gguf", loras[0]


def scaled_lora(lora: Path, scale: float, folder: Path) -> Path:
    """Return a copy of the LoRA GGUF in `folder` whose `adapter.lora.alpha` is multiplied by `scale`.

    llama.cpp scales a LoRA by alpha / rank x the user's scale; llama-cpp-python's server has no scale
    setting, so a strength other than 1 is carried in the file's alpha (what `--lora-scaled` does)."""
    import shutil

    from gguf import GGUFReader

    from stylealign.export.run import writing

    out = folder / f"{lora.stem}.x{scale:g}.gguf"
    with writing(out):
        shutil.copyfile(lora, out)
    reader = GGUFReader(str(out), "r+")
    field = reader.fields.get("adapter.lora.alpha")
    if field is None:
        raise ServeError(f"{lora}: no adapter.lora.alpha; not a LoRA GGUF written by stylealign export")
    field.parts[field.data[0]][0] *= scale
    reader.data.flush()
    del reader
    return out


def server_config(base: Path, lora: Path, base_name: str, run_name: str, host: str, port: int, n_ctx: int) -> dict:
    """Return llama-cpp-python's server config file: the base and base + LoRA as two model names
    (the server keeps one loaded and swaps on a request for the other)."""
    common = {"model": str(base), "n_ctx": n_ctx, "verbose": False}
    return {"host": host, "port": port,
            "models": [{**common, "model_alias": base_name},
                       {**common, "model_alias": run_name, "lora_path": str(lora)}]}


def server_command(config_file: Path, parent_fd: int | None = None, tmp: Path | None = None) -> list[str]:
    """Return the command running llama-cpp-python's server on `config_file`; with `parent_fd` (the read end of a
    pipe the caller keeps the write end of) it exits when the caller dies, removing `tmp` (llama_server)."""
    command = [sys.executable, "-m", "stylealign.export.llama_server"]
    if parent_fd is not None:
        command += ["--parent-fd", str(parent_fd)] + (["--tmp", str(tmp)] if tmp else [])
    return command + ["--config_file", str(config_file)]


def check_port(host: str, port: int) -> None:
    """Raise ServeError unless `host:port` can be listened on now (the server would load the models first and
    then stop with uvicorn's log and exit code 3)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ServeError(f"--host {host}: not an address of this machine ({e.strerror}); "
                         "pass e.g. --host 127.0.0.1") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a port in TIME_WAIT is free
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ServeError(f"{host}:{port}: the port is in use (another server?); pass --port with a free "
                                 f"port, e.g. --port {port + 1 if port < 65535 else 8000}") from None
            raise ServeError(f"{host}:{port}: cannot listen there ({e.strerror}); pass another --host or --port "
                             "(ports below 1024 need root)") from None


def run_server(config_file: Path, tmp: Path) -> int:
    """Run the server on `config_file` until it exits; return its exit code, 128 + the signal when SIGINT or
    SIGTERM stopped it, or raise RunFailed when it stopped on its own with an error.

    The server runs in its own process group (start_new_session), so a terminal's Ctrl-C reaches only us: we
    forward SIGINT and SIGTERM to the group and, however we leave (an exception included), stop the group. If
    we die with no chance to (kill -9), the server sees the pipe from us close and exits (llama_server)."""
    read_end, write_end = os.pipe()  # not inheritable: only the read end passes to the server (pass_fds)
    try:
        proc = subprocess.Popen(server_command(config_file, read_end, tmp), pass_fds=(read_end,),
                                start_new_session=True)
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    stopped_by: list[int] = []

    def forward(signum, frame):
        stopped_by.append(signum)
        _signal_group(proc.pid, signum)

    main_thread = threading.current_thread() is threading.main_thread()  # where Python allows signal handlers
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        code = proc.wait()
    finally:
        try:
            stop_group(proc)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            os.close(write_end)
    if stopped_by:
        return 128 + stopped_by[0]
    if code != 0:
        raise RunFailed(f"the llama.cpp server stopped with exit code {code}; its messages above say why")
    return 0


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:  # the group is gone already
        pass


def stop_group(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """Stop `proc`'s process group: SIGTERM (the server shuts down cleanly), SIGKILL after `grace` seconds, and
    SIGKILL for anything of the group left once `proc` itself is gone; reap `proc`."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def serve(run: str, export: str | None = None, host: str = "127.0.0.1", port: int = 8000, scale: float = 1.0,
          n_ctx: int = 2048) -> int:
    """Run the server in the foreground until it is stopped (Ctrl-C, SIGTERM); return the exit code."""
    import importlib.util

    from stylealign.export.run import run_info, vllm_command

    if importlib.util.find_spec("llama_cpp") is None:
        raise ServeError('llama-cpp-python is not installed: pip install "llama-cpp-python[server]" '
                         '(or pip install -e ".[export]")')
    check_port(host, port)
    info = run_info(run, None)
    base, lora = exported_gguf(run, export)
    with tempfile.TemporaryDirectory(prefix="stylealign-serve-") as tmp:
        if scale != 1.0:
            lora = scaled_lora(lora, scale, Path(tmp))
        config = server_config(base, lora, info["base"], info["name"], host, port, n_ctx)
        (Path(tmp) / "server.json").write_text(json.dumps(config), encoding="utf-8")
        print(f"serving on http://{host}:{port}/v1: model {info['base']!r} (base) and {info['name']!r} "
              f"(base + LoRA x{scale:g})", flush=True)
        print(f"  stylealign eval --adapter {run} --backend openai:http://{host}:{port}/v1#{info['base']}")
        print(f"on GPUs: {vllm_command(info)}", flush=True)
        return run_server(Path(tmp) / "server.json", Path(tmp))
