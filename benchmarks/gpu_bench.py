"""The GPU bench: QLoRA SFT and DPO on a randomly initialised Llama of 8B shape in 4-bit, at 2k tokens.

    python benchmarks/gpu_bench.py                  # on a CUDA GPU: llama-8b shape, NF4, rows stitched to 2,048 tokens
    python benchmarks/gpu_bench.py --tiny           # the same matrix on the tiny shape, on a CPU: a test of the script

Every arm runs in its own process (benchmarks/bench/worker.py), so `torch.cuda.max_memory_allocated`
(on a CPU: peak RSS) is its own. Plain TRL is measured once per stage as a user writes QLoRA
(BitsAndBytesConfig NF4 + bf16 compute, LoraConfig r16 all-linear, SFTConfig/DPOConfig defaults:
gradient checkpointing on, the model's default attention; DPO with a separate 4-bit reference copy),
and once more with Liger kernels; the kit runs its GPU recipe as shipped and with one feature switched
at a time: gradient checkpointing off, SDPA, FlashAttention 2, Liger. A feature whose package is not
installed (flash_attn, liger_kernel) or that needs CUDA is skipped with a note saying so: nothing is
downloaded. Output: report.json and report.md in --out; the ratios are kit / plain TRL (defaults)
of the same invocation. Targets (issue 16): SFT max allocated ≤ 10 GB, SFT tokens/s ≥ 1.9× plain TRL.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SFT_MEMORY_GB, SFT_SPEED = 10.0, 1.9


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def needs(package: str | None, cuda: bool = False) -> str | None:
    """Return why a feature cannot run here (None when it can)."""
    if cuda and not _cuda():
        return "skipped: needs a CUDA GPU"
    if package and importlib.util.find_spec(package) is None:
        return f"skipped: the {package} package is not installed (pip install {package.replace('_', '-')})"
    return None


# name, what the arm changes, why it may not run here
REFS = [
    ("plain TRL QLoRA (defaults)", {}, None),
    ("plain TRL QLoRA + Liger", {"use_liger_kernel": True}, lambda: needs("liger_kernel", cuda=True)),
]
KITS = [
    ("kit: GPU recipe as shipped", {}, None),
    ("kit: gradient checkpointing off", {"sft.gradient_checkpointing": False, "dpo.gradient_checkpointing": False}, None),
    ("kit: SDPA attention", {"attn_implementation": "sdpa"}, None),
    ("kit: FlashAttention 2", {"attn_implementation": "flash_attention_2"}, lambda: needs("flash_attn", cuda=True)),
    ("kit: Liger kernels", {"liger": True}, lambda: needs("liger_kernel", cuda=True)),
]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="Tiny random Llama, short rows, one timed step: runs on a CPU.")
    p.add_argument("--shape", default=None, help="Model shape (default llama-8b; tiny with --tiny).")
    p.add_argument("--seq-len", type=int, default=0, help="Tokens per stitched row (default 2048; 64 with --tiny).")
    p.add_argument("--steps", type=int, default=0, help="Timed steps per arm (default 3; 1 with --tiny).")
    p.add_argument("--sft-batch", type=int, default=0, help="SFT rows per step (default 4; 2 with --tiny).")
    p.add_argument("--dpo-batch", type=int, default=0, help="DPO pairs per step (default 2; 1 with --tiny).")
    p.add_argument("--only", default="sft,dpo", help="Stages: sft,dpo.")
    p.add_argument("--arms", default="", help="Comma-separated substrings: run only arms whose name contains one.")
    p.add_argument("--out", default=None, help="Output folder (default runs/gpu-bench-<time>/).")
    args = p.parse_args(argv)
    args.shape = args.shape or ("tiny" if args.tiny else "llama-8b")
    args.seq_len = args.seq_len or (64 if args.tiny else 2048)
    args.steps = args.steps or (1 if args.tiny else 3)
    args.sft_batch = args.sft_batch or (2 if args.tiny else 4)
    args.dpo_batch = args.dpo_batch or (1 if args.tiny else 2)
    args.out = Path(args.out or f"runs/gpu-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    return args


def run(argv=None) -> dict:
    from bench import arith
    from bench.host import load, machine
    from bench.rows import select
    from bench.run import Runner
    from bench.settings import GPU_RECIPE_LARGE, Settings
    from bench.shapes import shape_model
    from bench.spec import ArmSpec
    from bench.summary import train_summary

    from stylealign import models
    from stylealign.config import load_recipe
    from stylealign.files import write_atomic, write_json
    from stylealign.personas import load_persona

    args = parse(argv)
    gpu = _cuda()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    model_path = str(shape_model(args.shape))
    recipe = load_recipe(GPU_RECIPE_LARGE)
    stages = [s.strip() for s in args.only.split(",") if s.strip()]
    warmup = 1
    rows = select(load_persona("sharp-candid"), models.load_tokenizer(models.resolve_base(model_path)),
                  sft_rows=(args.steps + warmup) * args.sft_batch, pref_rows=(args.steps + warmup) * args.dpo_batch,
                  prompts=1, max_tokens=recipe.max_length, seq_len=args.seq_len)
    rows_path = out / "work" / "rows.json"
    write_atomic(rows_path, json.dumps(rows, ensure_ascii=False))
    dims = arith.Dims.from_config(json.loads((Path(model_path) / "config.json").read_text()))
    runner = Runner(out, Settings(out=str(out)))
    quant = "nf4"
    report = {"schema_version": 1, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
              "load_before": load(), "shape": args.shape, "seq_len": args.seq_len, "model_path": model_path,
              "recipe": GPU_RECIPE_LARGE, "quant": quant, "steps": args.steps, "arms": [], "skipped": []}
    wanted = [a.strip() for a in args.arms.split(",") if a.strip()]
    for kind, arms in (("ref", REFS), ("kit", KITS)):
        for name, change, why in arms:
            if wanted and not any(w in name for w in wanted):
                continue
            reason = why() if why else None
            if reason:
                report["skipped"].append({"arm": name, "why": reason})
                print(f"  {name}: {reason}", flush=True)
                continue
            for stage in stages:
                batch = args.sft_batch if stage == "sft" else args.dpo_batch
                spec = ArmSpec(area=stage, arm=kind, rep=0, model=model_path, recipe=GPU_RECIPE_LARGE, quant=quant,
                               batch_size=batch, warmup=warmup, total_steps=args.steps + warmup,
                               max_length=args.seq_len + 256, rows=str(rows_path),
                               kit_set=change if kind == "kit" else {}, ref_quant=quant,
                               ref_set=change if kind == "ref" else {})
                slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
                result = runner(f"{stage}-{slug}", spec)
                mode = "train" if stage == "sft" else "dpo"
                summary = train_summary([result], dims, recipe.lora.r, mode, gpu)
                report["arms"].append({"arm": name, "kind": kind, "stage": stage, "change": change,
                                       "error": result.get("error"), "log_tail": result.get("log_tail"),
                                       "summary": summary})
    report["load_after"] = load()
    report["wall_seconds"] = round(time.time() - started, 1)
    report["targets"] = targets(report)
    write_json(out / "report.json", report)
    write_atomic(out / "report.md", markdown(report))
    print(markdown(report))
    return report


def _ref(report: dict, stage: str) -> dict | None:
    return next((a["summary"] for a in report["arms"]
                 if a["kind"] == "ref" and a["stage"] == stage and not a["change"] and a["summary"]), None)


def targets(report: dict) -> list[dict]:
    """The issue's GPU targets for the kit as shipped: SFT memory ≤ 10 GB and tokens/s ≥ 1.9× plain TRL."""
    from bench import arith

    kit = next((a["summary"] for a in report["arms"] if a["kind"] == "kit" and a["stage"] == "sft"
                and not a["change"] and a["summary"]), None)
    ref = _ref(report, "sft")
    mem_gb = kit and kit["peak_memory_mb"] / 1024
    speed = arith.ratio(kit and kit["tokens_per_s"], ref and ref["tokens_per_s"])
    return [{"key": "gpu_sft_memory", "label": f"SFT peak memory ≤ {SFT_MEMORY_GB:g} GB", "value": mem_gb,
             "pass": None if mem_gb is None else mem_gb <= SFT_MEMORY_GB},
            {"key": "gpu_sft_speed", "label": f"SFT tokens/s ≥ {SFT_SPEED}× plain TRL", "value": speed,
             "pass": None if speed is None else speed >= SFT_SPEED}]


def markdown(report: dict) -> str:
    from bench import arith

    from stylealign.text import table

    m = report["machine"]
    rows = []
    for a in report["arms"]:
        s, ref = a["summary"], _ref(report, a["stage"])
        if not s:
            rows.append([a["stage"].upper(), a["arm"], "—", "—", "—", f"error: {a['error']}"])
            continue
        rows.append([a["stage"].upper(), a["arm"], f"{s['tokens_per_s']:,.0f}",
                     f"{arith.ratio(s['tokens_per_s'], ref and ref['tokens_per_s']) or 0:.2f}×",
                     f"{s['peak_memory_mb'] / 1024:.2f}", s["memory_kind"]])
    lines = [f"### gpu_bench ({report['shape']}, {report['seq_len']} tokens per row, {report['quant']}) — {report['date']}",
             "", f"Machine: {m['cpu']}, {m['cores']} cores" + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
             + f"; torch {m['torch']}, transformers {m['transformers']}, trl {m['trl']}, peft {m['peft']}, "
             f"bitsandbytes {m.get('bitsandbytes')}; load {report['load_before']} → {report['load_after']}; "
             f"wall {report['wall_seconds']:.0f} s.", "",
             table(["stage", "arm", "non-padding tokens/s", "vs plain TRL", "peak memory, GB", "memory"], rows), ""]
    for t in report["targets"]:
        verdict = "—" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        lines.append(f"- {t['label']}: {verdict}" + ("" if t["value"] is None else f" ({t['value']:.2f})"))
    for s in report["skipped"]:
        lines.append(f"- {s['arm']}: {s['why']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    rep = run()
    sys.exit(1 if any(a["error"] for a in rep["arms"]) else 0)
