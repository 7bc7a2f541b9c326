"""A PEFT LoRA adapter as a GGUF adapter in llama.cpp's format (what `llama-server --lora` and Ollama's
ADAPTER load), written with the `gguf` package.

The layout follows llama.cpp's convert_lora_to_gguf.py: `general.type = adapter`, `adapter.type = lora`,
`adapter.lora.alpha`, and per target weight `blk.N.attn_q.weight.lora_a` (PEFT's A, rank x in) and
`.lora_b` (PEFT's B, out x rank), in numpy order (GGUF stores dimensions reversed, which is the shape
llama.cpp checks). llama.cpp scales each pair by alpha / rank. Its LLaMA-family GGUFs store q/k rows
permuted for its RoPE layout; B's rows get the same permutation (A is untouched), as the converter does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from stylealign.errors import UserError

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
PERMUTED_ARCHS = {"llama"}  # llama.cpp's converter permutes q/k for these (LlamaModel and its kin)
HF_TO_GGUF_ARCH = {"mistral": "llama"}  # HF model types converted under another llama.cpp arch


class LoraExportError(UserError, ValueError):
    """The adapter uses something llama.cpp's LoRA format cannot express."""


def llama_permute(w, n_head: int):
    """Return `w` (out x ...) with rows in llama.cpp's RoPE order (convert_hf_to_gguf's LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_arch(model_type: str) -> str:
    """Return llama.cpp's architecture name for an HF model type, or raise LoraExportError."""
    from gguf.constants import MODEL_ARCH_NAMES

    name = HF_TO_GGUF_ARCH.get(model_type, model_type)
    if name not in MODEL_ARCH_NAMES.values():
        raise LoraExportError(f"model type {model_type!r} has no llama.cpp architecture; GGUF export needs one of "
                              f"theirs (e.g. llama, qwen2, gemma2); export --to merged instead")
    return name


def module_scaling(cfg: dict, module: str) -> float:
    """Return PEFT's scaling for a module: alpha / r (or alpha / sqrt(r) with rsLoRA), per-module patterns applied."""
    key = next((k for k in cfg.get("rank_pattern") or {} if module.endswith(k)), None)
    r = (cfg.get("rank_pattern") or {})[key] if key else cfg["r"]
    akey = next((k for k in cfg.get("alpha_pattern") or {} if module.endswith(k)), None)
    alpha = (cfg.get("alpha_pattern") or {})[akey] if akey else cfg["lora_alpha"]
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def lora_pairs(adapter: Path) -> tuple[dict, dict[str, tuple]]:
    """Return (adapter_config, {HF module name: (A, B)} as float32 numpy arrays) of a PEFT adapter folder."""
    from safetensors.torch import load_file  # torch, not numpy: a bf16-trained adapter is stored in bf16

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora"):
        raise LoraExportError(f"{adapter}: only plain LoRA exports to GGUF (not {cfg.get('peft_type')}"
                              f"{', DoRA' if cfg.get('use_dora') else ''}); export --to merged instead")
    tensors = {k: v.float().numpy() for k, v in load_file(str(adapter / "adapter_model.safetensors")).items()}
    pairs: dict[str, list] = {}
    for key, value in tensors.items():
        if ".lora_A." not in key and ".lora_B." not in key:
            raise LoraExportError(f"{adapter}: tensor {key} is not a LoRA A/B matrix (modules_to_save or "
                                  "embedding LoRA cannot go into a llama.cpp adapter); export --to merged instead")
        module = key.replace("base_model.model.", "", 1).split(".lora_")[0]
        pairs.setdefault(module, [None, None])[0 if ".lora_A." in key else 1] = value
    return cfg, {m: tuple(ab) for m, ab in pairs.items()}


def gguf_tensors(cfg: dict, pairs: dict, arch: str, n_blocks: int, n_head: int, n_kv_head: int) -> dict:
    """Return {gguf tensor name: array}: A and B under llama.cpp's names, q/k rows of B permuted where the
    arch needs it, and B rescaled when a module's PEFT scaling differs from the file's alpha / its rank."""
    from gguf.constants import MODEL_ARCH, MODEL_ARCH_NAMES
    from gguf.tensor_mapping import get_tensor_name_map

    arch_enum = next(a for a, n in MODEL_ARCH_NAMES.items() if n == arch)
    names = get_tensor_name_map(arch_enum if isinstance(arch_enum, MODEL_ARCH) else MODEL_ARCH(arch_enum), n_blocks)
    out = {}
    for module, (a, b) in sorted(pairs.items()):
        name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if name is None:
            raise LoraExportError(f"LoRA target {module} has no llama.cpp tensor name for arch {arch}")
        rank = a.shape[0]
        factor = module_scaling(cfg, module) * rank / float(cfg["lora_alpha"])
        b = b * factor if not math.isclose(factor, 1.0, rel_tol=1e-7) else b
        if arch in PERMUTED_ARCHS and module.endswith(("q_proj", "k_proj")):
            b = llama_permute(b, n_head if module.endswith("q_proj") else n_kv_head)
        out[name + ".lora_a"], out[name + ".lora_b"] = a, b
    return out


def _encode(array, outtype: str):
    """Return (data, raw_dtype) for the writer: f32/f16 as numpy, bf16/q8_0 packed (q8_0 falls back to f16
    for rows that are not a multiple of its 32-value block, as llama.cpp's converter does)."""
    import numpy as np
    from gguf import GGMLQuantizationType, quants

    if outtype == "f32":
        return array.astype(np.float32), None
    if outtype == "f16":
        return array.astype(np.float16), None
    qtype = GGMLQuantizationType.BF16 if outtype == "bf16" else GGMLQuantizationType.Q8_0
    try:
        return quants.quantize(array, qtype), qtype
    except quants.QuantError:
        return array.astype(np.float16), None


def write_lora_gguf(adapter: str | Path, hf_config: dict, out: str | Path, outtype: str = "f16",
                    arch: str | None = None) -> Path:
    """Write the PEFT adapter in `adapter` as a llama.cpp LoRA GGUF at `out` and return the path.
    `hf_config` is the base's config.json; `arch` the base GGUF's general.architecture if known."""
    import gguf

    if outtype not in OUTTYPES:
        raise LoraExportError(f"adapter type must be one of {', '.join(OUTTYPES)}; got {outtype!r}")
    cfg, pairs = lora_pairs(Path(adapter))
    arch = arch or gguf_arch(hf_config.get("model_type", ""))
    n_head = hf_config["num_attention_heads"]
    tensors = gguf_tensors(cfg, pairs, arch, hf_config["num_hidden_layers"], n_head,
                           hf_config.get("num_key_value_heads") or n_head)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(cfg["lora_alpha"]))
    writer.add_string("general.name", Path(adapter).resolve().parent.name if Path(adapter).name == "adapter"
                      else Path(adapter).name)
    for name, array in tensors.items():
        data, raw = _encode(array, outtype)
        writer.add_tensor(name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)


def read_gguf_tensors(path: str | Path) -> dict:
    """Return {name: float32 numpy array in numpy order} of every tensor in a GGUF file (dequantized)."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, quants

    out = {}
    for t in GGUFReader(str(path)).tensors:
        if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            data = np.asarray(t.data, dtype=np.float32)
        else:
            data = quants.dequantize(t.data, t.tensor_type)
        out[t.name] = data.reshape(tuple(int(d) for d in reversed(t.shape)))
    return out


def read_gguf_fields(path: str | Path) -> dict:
    """Return the scalar and string metadata of a GGUF file as {key: value} (arrays left out)."""
    from gguf import GGUFReader, GGUFValueType

    out = {}
    for key, field in GGUFReader(str(path)).fields.items():
        if not field.types or field.types[0] == GGUFValueType.ARRAY:
            continue
        part = field.parts[field.data[0]]
        out[key] = bytes(part).decode("utf-8") if field.types[0] == GGUFValueType.STRING else part.tolist()[0]
    return out
