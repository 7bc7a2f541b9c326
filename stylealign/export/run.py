"""`export_run`: a run's adapter out as merged weights, GGUF files and an Ollama Modelfile, checked.

Everything is written into `<out>.partial/` and renamed to `<out>` when complete, so a folder with the
export's name is always a finished export. Layout:

    merged/            base + LoRA merged, safetensors, tokenizer, chat template (plain AutoModelForCausalLM)
    gguf/base.gguf     the base as GGUF (the file the base was converted from, copied as shipped)
    gguf/<run>.<type>.gguf   the LoRA adapter in llama.cpp's format
    ollama/Modelfile   FROM + ADAPTER + TEMPLATE + SYSTEM + stop tokens + parameters
    COMMANDS.md        ollama create / llama-server --lora-scaled / vLLM
    report.json, report.md   the check (stylealign.export.check)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path

from stylealign.errors import UserError, os_message

TARGETS = ("merged", "gguf", "ollama")
SUGGESTED = {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.1, "num_ctx": 2048}


# Only a write fails with these, so they are about the file being written whatever path the OSError names
# (shutil.copyfile's names the file it copies from; a failed write() names none).
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class ExportError(UserError, ValueError):
    """The run cannot be exported as asked (the message says what and how to fix it)."""


@contextlib.contextmanager
def writing(dest: Path):
    """Name `dest` when the disk fills up while the block writes it."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise ExportError(os_message(OSError(e.errno, e.strerror, str(dest)))) from e


def check_adapter(folder: Path) -> None:
    """Raise a UserError naming the file when the adapter's config or weights are unreadable (what chat says),
    before PEFT, safetensors or the GGUF writer fail with a parse error of their own."""
    from stylealign.adapters import read_config, read_shapes

    read_config(folder)
    read_shapes(folder)


def targets(to: str) -> tuple[str, ...]:
    """Return the export targets for --to (merged|gguf|ollama|all; ollama implies gguf)."""
    if to == "all":
        return TARGETS
    if to not in TARGETS:
        raise ExportError(f"--to must be one of {', '.join(TARGETS)}, all; got {to!r}")
    return ("gguf", "ollama") if to == "ollama" else (to,)


def base_gguf(base_name: str) -> Path | None:
    """Return the GGUF file a base came from: the embedded alias's shipped file or a `--base FILE.gguf`."""
    from stylealign import models

    if base_name in models.EMBEDDED:
        return models.embedded_gguf(base_name)
    path = Path(base_name).expanduser()
    return path if path.suffix == ".gguf" and path.is_file() else None


def run_info(run: str | Path, base: str | None) -> dict:
    """Return what the export needs from the run: name, adapter folder, base name, persona system prompt."""
    from stylealign.generate import adapter_dir
    from stylealign.manifest import read_manifest

    manifest = read_manifest(run)
    base_name = base or manifest.base_name or "smollm2-135m"
    try:
        adapter = adapter_dir(run)
    except FileNotFoundError as e:
        raise ExportError(f"{e}; pass a run folder that holds a trained adapter") from None
    return {"name": Path(run).resolve().name, "adapter": adapter, "base": base_name,
            "system_prompt": manifest.system_prompt, "persona": manifest.persona}


def write_gguf(info: dict, work: Path, adapter_type: str) -> dict:
    """Copy the base GGUF and write the LoRA GGUF under work/gguf; return their paths."""
    from stylealign import models
    from stylealign.export.lora_gguf import read_gguf_fields, write_lora_gguf

    source = base_gguf(info["base"])
    if source is None:
        raise ExportError(f"base {info['base']!r} has no GGUF file: pass --base FILE.gguf (the file the run's base "
                          "was converted from), or export --to merged and convert with llama.cpp's convert_hf_to_gguf.py")
    folder = work / "gguf"
    folder.mkdir(parents=True, exist_ok=True)
    with writing(folder / "base.gguf"):
        shutil.copyfile(source, folder / "base.gguf")
    hf_config = json.loads((Path(models.resolve_base(info["base"]).path) / "config.json").read_text())
    arch = read_gguf_fields(source).get("general.architecture")
    lora = folder / f"{info['name']}.{adapter_type}.gguf"
    with writing(lora):
        write_lora_gguf(info["adapter"], hf_config, lora, adapter_type, arch)
    return {"base_gguf": folder / "base.gguf", "lora_gguf": lora, "source_gguf": source}


def write_ollama(info: dict, work: Path, files: dict) -> Path:
    """Write work/ollama/Modelfile (paths relative to it) and return its path."""
    from stylealign import models
    from stylealign.export.modelfile import TemplateError, chat_format, go_template, modelfile, stop_tokens

    tokenizer = models.load_tokenizer(info["base"])
    try:
        fmt = chat_format(tokenizer)
    except TemplateError as e:
        raise ExportError(f"base {info['base']!r}: {e}; no Ollama Modelfile can be derived: export --to gguf "
                          "and write its TEMPLATE by hand") from None
    folder = work / "ollama"
    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(work / Path(p).relative_to(work), folder)  # noqa: E731
    text = modelfile(rel(files["base_gguf"]), rel(files["lora_gguf"]), go_template(fmt), info["system_prompt"],
                     stop_tokens(tokenizer, fmt), SUGGESTED)
    with writing(folder / "Modelfile"):
        (folder / "Modelfile").write_text(text, encoding="utf-8")
    return folder / "Modelfile"


def commands(info: dict, out: Path, files: dict, strength: float = 1.0) -> str:
    """Return COMMANDS.md: how to run the export with Ollama, llama.cpp's server and vLLM."""
    name, lines = info["name"], [f"# Running `{info['name']}` outside stylealign", ""]
    if "lora_gguf" in files:
        lora, base = out / "gguf" / Path(files["lora_gguf"]).name, out / "gguf" / "base.gguf"
        lines += ["Ollama:", "", "```bash", f"ollama create {name} -f {out / 'ollama' / 'Modelfile'}",
                  f"ollama run {name}", "```", "",
                  "llama.cpp (the LoRA strength carries over as the scale; 0 = base, 1 = as trained):", "",
                  "```bash", f"llama-server -m {base} --lora-scaled {lora}:{strength:g} --host 127.0.0.1 --port 8080",
                  f"llama-cli -m {base} --lora-scaled {lora}:{strength:g} -cnv", "```", ""]
    lines += ["vLLM (GPU; the adapter is the run's PEFT folder):", "", "```bash", vllm_command(info), "```", "",
              f"Then `stylealign eval --adapter RUN --backend openai:http://127.0.0.1:8000/v1#{info['base']}`.", ""]
    if "merged" in files:
        lines += ["Merged weights (any HF tool): `AutoModelForCausalLM.from_pretrained(\"" + str(out / "merged") + "\")`", ""]
    return "\n".join(lines)


def vllm_command(info: dict) -> str:
    """Return the vLLM command serving the base (under its stylealign name) and the run's PEFT adapter."""
    from stylealign import models

    path = models.resolve_base(info["base"]).path
    return (f"vllm serve {path} --served-model-name {info['base']} --enable-lora "
            f"--lora-modules {info['name']}={info['adapter']}")


def export_run(run: str | Path, out: str | Path, to: str = "all", base: str | None = None, adapter_type: str = "f16",
               merged_dtype: str = "fp32", check: bool = True, check_config=None, overwrite: bool = False) -> dict:
    """Export the run's adapter into `out` (atomically) and return the report (report["passed"] gates)."""
    info, wanted = run_info(run, base), targets(to)
    out = Path(out)
    work = out.with_name(out.name + ".partial")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; pass --overwrite or another --out")
    check_adapter(info["adapter"])
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        report = _write_export(run, info, wanted, out, work, adapter_type, merged_dtype, check, check_config)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # nothing half-written stays behind
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return report


def _write_export(run, info: dict, wanted: tuple, out: Path, work: Path, adapter_type: str, merged_dtype: str,
                  check: bool, check_config) -> dict:
    """Write the export's files and report into `work` (to be renamed `out`); return the report."""
    from stylealign.export.check_run import run_check, write_report

    files: dict = {}
    if "merged" in wanted:
        from stylealign.export.merged import merge_adapter

        with writing(work / "merged"):
            merge_adapter(info["base"], info["adapter"], work / "merged", merged_dtype)
        files["merged"] = work / "merged"
    if "gguf" in wanted:
        files.update(write_gguf(info, work, adapter_type))
    if "ollama" in wanted:
        files["modelfile"] = write_ollama(info, work, files)
    with writing(work / "COMMANDS.md"):
        (work / "COMMANDS.md").write_text(commands(info, out.resolve(), files), encoding="utf-8")
    report = run_check(info, files, check_config) if check else {"passed": True, "check": "skipped (--no-check)"}
    report.update(run=str(run), targets=list(wanted), adapter_type=adapter_type,
                  files={k: str(out / Path(v).relative_to(work)) for k, v in files.items() if str(v).startswith(str(work))})
    with writing(work / "report.json"):
        write_report(report, work)
    return report
