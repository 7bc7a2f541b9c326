"""Randomly initialised Llamas of a named shape (`--shape`): measure memory and speed at a size that is not
downloaded or not cached here. Their answers are noise, so they serve timings only.
"""

from __future__ import annotations

import os
from pathlib import Path

from stylealign.errors import ConfigError

from . import arith


def shape_folder(shape: str, root: Path | None = None) -> Path:
    """Return where the random Llama of `shape` lives (under the cache unless `root`), built or not."""
    from stylealign.models import home

    if shape not in arith.SHAPES:
        raise ConfigError(f"unknown shape {shape!r}; known: {sorted(arith.SHAPES)}")
    return (root or home() / "bench-shapes") / shape


def is_built(shape: str, root: Path | None = None) -> bool:
    return (shape_folder(shape, root) / "config.json").exists()


def shape_model(shape: str, root: Path | None = None) -> Path:
    """Return a local HF folder with a randomly initialised Llama of `shape` and the embedded tokenizer
    (built once under the cache). For memory and speed only: its answers are noise."""
    folder = shape_folder(shape, root)
    if is_built(shape, root):
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from stylealign.models import resolve_base

    tok = AutoTokenizer.from_pretrained(resolve_base("smollm2-135m").path)
    config = LlamaConfig(**arith.SHAPES[shape], max_position_embeddings=8192, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=None)
    dtype = torch.bfloat16 if not shape.startswith("tiny") else torch.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    del model
    os.replace(tmp, folder)
    return folder


def build_arm(spec) -> dict:
    """The worker's "shape" arm: build the random Llama named `spec.model` (bench.scale builds in a process of its
    own, so the bench's process never starts torch's threads); return its folder."""
    return {"path": str(shape_model(spec.model))}
