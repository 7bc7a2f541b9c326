"""`stylealign serve`: llama-cpp-python's OpenAI-compatible server with a run's base GGUF and LoRA GGUF.

Two model names on one server: the base's (for the baseline) and the run folder's (base + LoRA), the
names `stylealign eval --backend openai:URL#BASE` expects. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


class ServeError(RuntimeError):
    """The server cannot start (missing package or files); the message says how to fix it."""


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

    out = folder / f"{lora.stem}.x{scale:g}.gguf"
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


def server_command(config_file: Path) -> list[str]:
    return [sys.executable, "-m", "stylealign.export.llama_server", "--config_file", str(config_file)]


def serve(run: str, export: str | None = None, host: str = "127.0.0.1", port: int = 8000, scale: float = 1.0,
          n_ctx: int = 2048) -> int:
    """Run the server in the foreground until interrupted; return its exit code."""
    import importlib.util

    from stylealign.export.run import run_info, vllm_command

    if importlib.util.find_spec("llama_cpp") is None:
        raise ServeError('llama-cpp-python is not installed: pip install "llama-cpp-python[server]" '
                         '(or pip install -e ".[export]")')
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
        try:
            return subprocess.call(server_command(Path(tmp) / "server.json"))
        except KeyboardInterrupt:
            return 130
