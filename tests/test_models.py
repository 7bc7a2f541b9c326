"""Base models: the embedded GGUF becomes a normal HF folder; any local folder works; 4-bit loads."""

from __future__ import annotations

import json

import pytest
import torch

from stylealign import models
from stylealign.errors import UserError


def test_embedded_model_is_a_plain_hf_folder(embedded_dir):
    config = json.loads((embedded_dir / "config.json").read_text())
    assert "quantization_config" not in config, "the GGUF quantizer marker was cleared before saving"
    assert (embedded_dir / "model.safetensors").exists() and not list(embedded_dir.glob("*.bin"))
    tok = models.load_tokenizer(models.resolve_base("smollm2-135m"))
    assert tok.chat_template and "<|im_start|>" in tok.chat_template


def test_conversion_reproduces_the_gguf_logits(tmp_path):
    from transformers import AutoModelForCausalLM

    gguf = models.embedded_gguf("smollm2-135m")
    models.convert_gguf(gguf, tmp_path / "converted")  # raises if the reload's logits differ
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "converted", dtype=torch.float32)
    assert reloaded.config.num_hidden_layers == 30 and reloaded.config.vocab_size == 49152


def test_local_folder_resolves_and_a_plain_file_is_refused(tiny_model_dir):
    assert models.resolve_base(str(tiny_model_dir)).path == str(tiny_model_dir.resolve())
    # an uncached hub id without a network fails at once: tests/test_errors.py (hub id with no network)
    with pytest.raises(UserError, match="not an HF model folder or a .gguf file"):  # GGUF files convert (slow tests)
        models.resolve_base(str(tiny_model_dir / "config.json"))


def test_pad_token_is_distinct_from_eos(tiny_model_dir):
    tok = models.load_tokenizer(str(tiny_model_dir))
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id


def test_nf4_load_quantizes_linear_layers_with_the_device_compute_dtype(tiny_model_dir):
    import bitsandbytes as bnb

    model = models.load_model(str(tiny_model_dir), quant="nf4", dtype="auto")
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and quantized[0].weight.quant_type == "nf4"
    assert quantized[0].compute_dtype == models.compute_dtype("cpu")
    assert model.get_memory_footprint() < models.load_model(str(tiny_model_dir), quant="none",
                                                            dtype="fp32").get_memory_footprint()


def test_bad_quant_and_dtype_are_rejected(tiny_model_dir):
    with pytest.raises(ValueError, match="quant must be"):
        models.load_model(str(tiny_model_dir), quant="int3")
    with pytest.raises(ValueError, match="dtype must be"):
        models.parse_dtype("fp8")
