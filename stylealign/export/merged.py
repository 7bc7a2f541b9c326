"""The adapter merged into an unquantized copy of its base: a plain HF folder any tool loads.

The base is loaded unquantized (bf16 or fp32; never merged into 4-bit weights, which would round the
LoRA update away), the LoRA added into each weight, and the result saved as safetensors with the
tokenizer and its chat template.
"""

from __future__ import annotations

from pathlib import Path


def merge_adapter(base: str, adapter: str | Path, out: str | Path, dtype: str = "fp32"):
    """Write base + adapter merged into `out` (safetensors, tokenizer, chat template); return the merged model."""
    from peft import PeftModel

    from stylealign import models
    from stylealign.generate import adapter_dir

    if dtype not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"merged dtype must be fp32, bf16 or fp16; got {dtype!r}")
    resolved = models.resolve_base(base)
    model = models.load_model(resolved, quant="none", dtype=dtype, device_map="cpu")
    model = PeftModel.from_pretrained(model, adapter_dir(adapter), is_trainable=False)
    merged = model.merge_and_unload().eval()
    merged.save_pretrained(out, safe_serialization=True)
    models.load_tokenizer(resolved).save_pretrained(out)
    return merged
