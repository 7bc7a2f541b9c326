"""Where training memory goes: the tensors autograd keeps for backward in one training forward.

    python benchmarks/memory_profile.py                 # SmolLM2-135M NF4, 8 rows x 286 tokens (the CPU recipe's
                                                        # longest SFT batch), every configuration below
    python benchmarks/memory_profile.py --rows 4 --tokens 64 --model PATH

One forward of the kit's SFT model (LoRA r16 on every linear, the recipe's NF4 base in bf16) per configuration,
under `torch.autograd.graph.saved_tensors_hooks`: every saved tensor's storage is counted once, grouped by
dtype and trailing shape, so the categories name what they are (fp32 x hidden size: LoRA inputs cast to fp32
and RMSNorm's fp32 copies; T x T: eager attention's probabilities; ...). The forward's own peak RSS window is
printed too. Configurations: attention eager / sdpa x LoRA arithmetic fp32 (PEFT's default on a CPU) / bf16
autocast (the kit's `lora_compute: auto`), eager with its probabilities recomputed in backward (`eager_recompute`,
the kit's CPU default), and full gradient checkpointing.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def profile(model_path: str, rows: int, tokens: int, attn: str, lora: str, checkpointing: bool) -> dict:
    import torch
    from peft import get_peft_model

    from stylealign import models, train
    from stylealign.config import load_recipe
    from stylealign.train import trainers

    recipe = load_recipe("smollm2-135m_qlora_cpu", {"base": model_path, "lora_compute": lora, "attn_implementation": attn})
    attn = train.training_attention(recipe)  # registers eager_recompute
    model = models.load_model(models.resolve_base(model_path), quant=recipe.quant, dtype=recipe.dtype, attn=attn)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, train.lora_config(recipe))
    autocast = train.cpu_lora_autocast(recipe)
    if autocast:
        trainers._no_input_casts(peft_model)
    peft_model.train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 40000, (rows, tokens), generator=g)
    mask = torch.ones(rows, tokens, dtype=torch.long)
    seen: dict[int, int] = {}
    groups: collections.Counter = collections.Counter()

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen[key] = t.untyped_storage().nbytes()
            tail = tuple(t.shape[2:]) if t.dim() > 3 else tuple(t.shape[-1:])
            groups[(str(t.dtype).replace("torch.", ""), tail)] += seen[key]
        return t

    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    Path("/proc/self/clear_refs").write_text("5")
    before = hwm_mb()
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), ctx:
        out = peft_model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1)
    fwd = time.perf_counter() - start
    start = time.perf_counter()
    out.logits.float().sum().backward()
    bwd = time.perf_counter() - start
    return {"attn": attn, "lora": "bf16 autocast" if autocast else "fp32", "checkpointing": checkpointing,
            "saved_mb": sum(seen.values()) / 2**20, "peak_window_mb": hwm_mb() - before + 0.0, "forward_s": fwd,
            "backward_s": bwd, "top": [(k, v / 2**20) for k, v in groups.most_common(6)]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--tokens", type=int, default=286)
    p.add_argument("--only", default="", help="comma-separated attn:lora[:ckpt] configurations, e.g. eager:fp32,sdpa:auto")
    args = p.parse_args(argv)
    configs = ([(a, lo, False) for a in ("eager", "sdpa") for lo in ("fp32", "auto")]
               + [("eager_recompute", "auto", False), ("sdpa", "auto", True)])
    if args.only:
        configs = [(c.split(":")[0], c.split(":")[1], c.endswith(":ckpt")) for c in args.only.split(",")]
    print(f"one training forward, {args.rows} rows x {args.tokens} tokens, {args.model}: tensors saved for backward")
    print(f"{'attention':<15} {'LoRA':<14} {'ckpt':<5} {'saved MiB':>9} {'fwd s':>6} {'bwd s':>6}  largest groups "
          "(dtype, trailing shape: MiB)")
    for attn, lora, ckpt in configs:
        r = profile(args.model, args.rows, args.tokens, attn, lora, ckpt)
        top = "; ".join(f"{d} {s}: {mb:,.0f}" for (d, s), mb in r["top"][:4])
        print(f"{attn:<15} {r['lora']:<14} {str(ckpt):<5} {r['saved_mb']:>9,.0f} {r['forward_s']:>6.2f} "
              f"{r['backward_s']:>6.2f}  {top}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
