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

import json
import os
import shutil
from pathlib import Path

TARGETS = ("merged", "gguf", "ollama")
SUGGESTED = {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.1, "num_ctx": 2048}


class ExportError(ValueError):
    """The run cannot be exported as asked (the message says what and how to fix it)."""


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
    return {"name": Path(run).resolve().name, "adapter": adapter_dir(run), "base": base_name,
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
    shutil.copyfile(source, folder / "base.gguf")
    hf_config = json.loads((Path(models.resolve_base(info["base"]).path) / "config.json").read_text())
    arch = read_gguf_fields(source).get("general.architecture")
    lora = write_lora_gguf(info["adapter"], hf_config, folder / f"{info['name']}.{adapter_type}.gguf", adapter_type, arch)
    return {"base_gguf": folder / "base.gguf", "lora_gguf": lora, "source_gguf": source}


def write_ollama(info: dict, work: Path, files: dict) -> Path:
    """Write work/ollama/Modelfile (paths relative to it) and return its path."""
    from stylealign import models
    from stylealign.export.modelfile import chat_format, go_template, modelfile, stop_tokens

    tokenizer = models.load_tokenizer(info["base"])
    fmt = chat_format(tokenizer)
    folder = work / "ollama"
    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(work / Path(p).relative_to(work), folder)  # noqa: E731
    text = modelfile(rel(files["base_gguf"]), rel(files["lora_gguf"]), go_template(fmt), info["system_prompt"],
                     stop_tokens(tokenizer, fmt), SUGGESTED)
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
    from stylealign.export.check_run import run_check, write_report

    info, wanted = run_info(run, base), targets(to)
    out = Path(out)
    work = out.with_name(out.name + ".partial")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; pass --overwrite or another --out")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    files: dict = {}
    if "merged" in wanted:
        from stylealign.export.merged import merge_adapter

        merge_adapter(info["base"], info["adapter"], work / "merged", merged_dtype)
        files["merged"] = work / "merged"
    if "gguf" in wanted:
        files.update(write_gguf(info, work, adapter_type))
    if "ollama" in wanted:
        files["modelfile"] = write_ollama(info, work, files)
    (work / "COMMANDS.md").write_text(commands(info, out.resolve(), files), encoding="utf-8")
    report = run_check(info, files, check_config) if check else {"passed": True, "check": "skipped (--no-check)"}
    report.update(run=str(run), targets=list(wanted), adapter_type=adapter_type,
                  files={k: str(out / Path(v).relative_to(work)) for k, v in files.items() if str(v).startswith(str(work))})
    write_report(report, work)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return report
