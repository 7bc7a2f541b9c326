"""Run the export check on a finished export and write report.json / report.md (see check.py)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from stylealign.export.check import (
    CheckConfig,
    Greedy,
    LlamaCpp,
    compare,
    hf_greedy,
    hf_logits,
    style_means,
    style_retained,
)
from stylealign.text import plain_turns

DEFAULT_SUITE = "eval/suites/smoke.jsonl"


def default_config(system_prompt: str | None = None) -> CheckConfig:
    """Return the check on the smoke suite's held-out prompts (or the shipped persona's first ones)."""
    from stylealign.evaluate.io import load_suites

    suite = Path(DEFAULT_SUITE)
    if not suite.exists():
        suite = Path(__file__).resolve().parents[2] / DEFAULT_SUITE
    return CheckConfig(prompts=load_suites([str(suite)], None), system_prompt=system_prompt)


def _prompt_ids(tokenizer, rows: list[dict], system: str | None) -> list[list[int]]:
    out = []
    for r in rows:
        turns = plain_turns(r["messages"])
        if system and turns[0]["role"] != "system":
            turns = [{"role": "system", "content": system}, *turns]
        text = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def _stops(tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    if "<|im_end|>" in tokenizer.get_vocab():
        ids.add(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return {i for i in ids if i is not None}


def _reference(info: dict):
    """Return (tokenizer, PEFT model on the fp32 unquantized base)."""
    from peft import PeftModel

    from stylealign import models

    base = models.resolve_base(info["base"])
    model = models.load_model(base, quant="none", dtype="fp32", device_map="cpu")
    return models.load_tokenizer(base), PeftModel.from_pretrained(model, info["adapter"], is_trainable=False).eval()


def run_check(info: dict, files: dict, config: CheckConfig | None = None) -> dict:
    """Return the check report for the exported files against the run's PEFT adapter."""
    config = config or default_config(info.get("system_prompt"))
    tokenizer, peft = _reference(info)
    prompts = _prompt_ids(tokenizer, config.prompts, config.system_prompt)
    stops, h = _stops(tokenizer), config.horizon
    adapter = hf_greedy(peft, tokenizer, prompts, h, stops)
    with peft.disable_adapter():
        base = hf_greedy(peft, tokenizer, prompts, h, stops)
    langs = [r.get("language", "en") for r in config.prompts]
    answers = {"adapter": adapter.texts, "base": base.texts}
    peft_logits = lambda p, c: hf_logits(peft, p, c)  # noqa: E731
    results: dict = {}
    if "merged" in files:
        results["merged"] = _check_merged(files["merged"], tokenizer, prompts, adapter, peft_logits, h, stops, answers)
    if "lora_gguf" in files:
        results.update(_check_gguf(files, peft, tokenizer, prompts, adapter, base, peft_logits, config, stops, answers))
    for name in ("merged", "gguf_lora"):
        if name in results:
            results[name]["style_retained"] = style_retained(answers[name], answers["adapter"], answers["base"], langs)
    report = {"config": _config_dict(config), "comparisons": results,
              "style": {k: style_means(v, langs) for k, v in answers.items()},
              "examples": [{"prompt": r["messages"][-1]["content"], **{k: v[i] for k, v in answers.items()}}
                           for i, r in enumerate(config.prompts[:3])]}
    report["gates"] = gates(results, config)
    report["passed"] = all(g["passed"] for g in report["gates"])
    return report


def _check_merged(folder, tokenizer, prompts, adapter: Greedy, peft_logits, h, stops, answers) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True).eval()
    own = hf_greedy(merged, tokenizer, prompts, h, stops)
    answers["merged"] = own.texts
    return compare(prompts, adapter, peft_logits, lambda p, c: hf_logits(merged, p, c), own.tokens)


def _check_gguf(files, peft, tokenizer, prompts, adapter: Greedy, base: Greedy, peft_logits, config, stops, answers) -> dict:
    """Return the llama.cpp comparisons: base+LoRA vs adapter, base GGUF vs HF base (ceiling), base+LoRA vs HF base."""
    n_ctx = max(len(p) for p in prompts) + config.horizon + 8
    with_lora = LlamaCpp(files["base_gguf"], files["lora_gguf"], n_ctx=n_ctx, threads=config.threads)
    plain = LlamaCpp(files["base_gguf"], n_ctx=n_ctx, threads=config.threads)
    lora_own = [with_lora.greedy(p, config.horizon, stops) for p in prompts]
    base_own = [plain.greedy(p, config.horizon, stops) for p in prompts]
    answers["gguf_lora"] = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in lora_own]
    answers["gguf_base"] = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in base_own]

    def hf_base_logits(p, c):
        with peft.disable_adapter():
            return hf_logits(peft, p, c)

    return {"gguf_lora": compare(prompts, adapter, peft_logits, with_lora.logits, lora_own),
            "gguf_base_ceiling": compare(prompts, base, hf_base_logits, plain.logits, base_own),
            "gguf_lora_vs_hf_base": compare(prompts, base, hf_base_logits, with_lora.logits, lora_own)}


def gates(results: dict, config: CheckConfig) -> list[dict]:
    """Return the stated pass/fail checks over the comparisons."""
    out = []
    if "merged" in results:
        out.append(_gate("merged agreement with the adapter", results["merged"]["agreement"], ">=", config.min_merged_agreement))
    if "gguf_lora" in results:
        ceiling = results["gguf_base_ceiling"]["agreement"]
        need = min(config.min_agreement, ceiling - config.max_ceiling_gap)
        out.append(_gate("llama.cpp + LoRA agreement with the adapter", results["gguf_lora"]["agreement"], ">=", need))
        out.append(_gate("llama.cpp + LoRA agrees more with the adapter than with the base",
                         results["gguf_lora"]["agreement"] - results["gguf_lora_vs_hf_base"]["agreement"], ">", 0.0))
    for name in ("merged", "gguf_lora"):
        kept = results.get(name, {}).get("style_retained")
        if name in results and kept is not None:
            out.append(_gate(f"{name}: share of the adapter's style shift kept", kept, ">=", config.min_style_retained))
    return out


def _gate(what: str, value: float, op: str, threshold: float) -> dict:
    ok = value >= threshold if op == ">=" else value > threshold
    return {"check": what, "value": value, "op": op, "threshold": threshold, "passed": bool(ok)}


def _config_dict(config: CheckConfig) -> dict:
    d = {k: v for k, v in vars(config).items() if k != "prompts"}
    d["prompts"] = len(config.prompts)
    return d


def write_report(report: dict, folder: Path) -> None:
    """Write report.json and report.md into `folder` (each through a temp file and a rename)."""
    for name, text in (("report.json", json.dumps(report, indent=2, ensure_ascii=False, default=str)),
                       ("report.md", report_md(report))):
        tmp = folder / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)


def _f(x, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def report_md(report: dict) -> str:
    """Return the Markdown export report: comparisons, gates, style markers, examples."""
    lines = [f"# Export check: {report.get('run', '')}", ""]
    comps = report.get("comparisons") or {}
    if comps:
        lines += ["| export vs reference | tokens | top-1 agreement | KL mean | KL max | max logit Δ | "
                  "answer prefix kept | identical answers | style kept |", "|---|---|---|---|---|---|---|---|---|"]
        for name, c in comps.items():
            lines.append(f"| {name} | {c['tokens']} | {_f(c['agreement'])} | {_f(c['kl_mean'], 4)} | {_f(c['kl_max'], 3)} | "
                         f"{_f(c['max_logit_diff'], 4)} | {_f(c['prefix_share'])} | {c['exact_answers']}/{c['answers']} | "
                         f"{_f(c.get('style_retained'), 2)} |")
        lines += ["", "References: merged and gguf_lora vs the PEFT adapter (fp32, unquantized base); gguf_base_ceiling: "
                  "the base GGUF alone vs the HF base (what quantized arithmetic allows); gguf_lora_vs_hf_base: the "
                  "export vs the base (should be lower than its agreement with the adapter). Greedy, no repetition "
                  "penalty, teacher-forced on the reference's tokens.", ""]
    for g in report.get("gates", []):
        lines.append(f"- {'PASS' if g['passed'] else 'FAIL'}: {g['check']}: {_f(g['value'])} {g['op']} {_f(g['threshold'])}")
    style = report.get("style") or {}
    if style:
        keys = list(next(iter(style.values())))
        lines += ["", "| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        lines += [f"| {m} | " + " | ".join(_f(v.get(k), 2) for k in keys) + " |" for m, v in style.items()]
    for ex in report.get("examples", []):
        lines += ["", f"**{ex['prompt']}**", ""] + [f"- {k}: {v}" for k, v in ex.items() if k != "prompt"]
    return "\n".join(lines) + "\n"
