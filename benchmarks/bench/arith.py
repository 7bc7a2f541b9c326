"""The bench's arithmetic: model shapes, FLOPs per token, utilisation, medians, ratios, targets.

Pure Python (no torch), so it is cheap to import and easy to test.

FLOPs per token, for a decoder-only transformer with `L` layers, hidden `d`, `h` query heads and
`kv` key/value heads of size `hd`, MLP width `ff`, vocabulary `V`, LoRA rank `r` on every linear:

    N      = L * (d*h*hd + 2*d*kv*hd + h*hd*d + 3*d*ff)        frozen linear weights (no embedding)
    N_lora = L * r * sum(in + out over the 7 linears)           LoRA weights
    A(c)   = 4 * L * h * hd * c                                 attention scores + values, forward,
                                                                c = mean attended context per token
    forward            = 2N + 2N_lora + 2Vd + A(c)
    train (LoRA SFT)   = 4N + 6N_lora + 4Vd + 3A(c)             frozen base: forward + backward to the
                                                                activations only (2N + 2N); LoRA also
                                                                gets weight gradients (+2N_lora);
                                                                attention backward = 2x its forward
    DPO (per token)    = train + forward                        policy step + one reference forward

These are model FLOPs: recomputation from gradient checkpointing, padding and wasted attention on
masked positions are overheads, not useful work, so they are not counted.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

# Shapes of well-known Llama-family models, for randomly initialised stand-ins (--shape).
SHAPES: dict[str, dict] = {
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
    "llama-3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    "smollm2-360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                         num_key_value_heads=5, vocab_size=49152, tie_word_embeddings=True),
    # TinyLlama-1.1B's body with SmolLM2's vocabulary, tied: the embedded tokenizer at about 1B parameters.
    "smol-1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                    num_key_value_heads=4, vocab_size=49152, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=49152, tie_word_embeddings=True),
    "tiny-2x": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=49152, tie_word_embeddings=True),  # ~2x tiny's parameters
}


@dataclass(frozen=True)
class Dims:
    """The numbers the FLOP formula needs, read from an HF config (or a dict of its fields)."""

    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, config) -> "Dims":
        get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
        heads = get("num_attention_heads")
        head_dim = get("head_dim") or get("hidden_size") // heads
        return cls(layers=get("num_hidden_layers"), hidden=get("hidden_size"), ffn=get("intermediate_size"),
                   heads=heads, kv_heads=get("num_key_value_heads") or heads, head_dim=head_dim,
                   vocab=get("vocab_size"))

    def linears(self) -> list[tuple[int, int]]:
        """Return (in, out) of the 7 linear layers of one decoder layer."""
        d, q, kv, ff = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.ffn
        return [(d, q), (d, kv), (d, kv), (q, d), (d, ff), (d, ff), (ff, d)]

    def to_dict(self) -> dict:
        return asdict(self)


def linear_params(dims: Dims) -> int:
    """Return N: the frozen linear weights of all decoder layers (embedding and LM head excluded)."""
    return dims.layers * sum(i * o for i, o in dims.linears())


def param_count(config: dict) -> int:
    """Return all parameters of a Llama with this HF config (or SHAPES entry): embedding, LM head unless tied,
    the decoder layers' linears and RMSNorms (two per layer, one final); no biases."""
    dims = Dims.from_config(config)
    embeddings = head_params(dims) * (1 if config.get("tie_word_embeddings") else 2)
    return embeddings + linear_params(dims) + (2 * dims.layers + 1) * dims.hidden


def lora_params(dims: Dims, r: int) -> int:
    """Return the LoRA weights of rank `r` on every linear layer (all-linear, LM head excluded)."""
    return dims.layers * sum(r * (i + o) for i, o in dims.linears())


def head_params(dims: Dims) -> int:
    """Return the LM head's weights (V x d)."""
    return dims.vocab * dims.hidden


def attention_flops(dims: Dims, context: float) -> float:
    """Return forward attention FLOPs per token (QK^T and PV) at a mean attended context `context`."""
    return 4.0 * dims.layers * dims.heads * dims.head_dim * context


def mean_context(lengths) -> float:
    """Return the mean number of positions a token attends to under a causal mask, over sequences of
    the given (unpadded) lengths: sum(S(S+1)/2) / sum(S)."""
    lengths = [int(n) for n in lengths if n > 0]
    if not lengths:
        return 0.0
    return sum(n * (n + 1) / 2 for n in lengths) / sum(lengths)


def flops_per_token(dims: Dims, mode: str, r: int = 16, context: float = 0.0) -> float:
    """Return model FLOPs per token for `mode`: 'forward', 'train' (LoRA over a frozen base) or 'dpo'."""
    n, nl, head, att = linear_params(dims), lora_params(dims, r), head_params(dims), attention_flops(dims, context)
    forward = 2 * n + 2 * nl + 2 * head + att
    train = 4 * n + 6 * nl + 4 * head + 3 * att
    if mode == "forward":
        return float(forward)
    if mode == "train":
        return float(train)
    if mode == "dpo":
        return float(train + forward)
    raise ValueError(f"mode must be forward, train or dpo; got {mode!r}")


def utilisation(tokens_per_s: float | None, flops_per_tok: float, peak_flops_per_s: float | None) -> float | None:
    """Return achieved FLOP/s over peak FLOP/s (0..1, can exceed 1 only if the peak was mismeasured)."""
    if not tokens_per_s or not peak_flops_per_s:
        return None
    return tokens_per_s * flops_per_tok / peak_flops_per_s


def median(values) -> float | None:
    """Return the median of the finite values, or None when there are none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    """Return a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def growth(rows: list[dict], keys, size: str = "params", group: str = "seq_len") -> list[dict]:
    """Return per row {key: row[key] / the same key of the row with the smallest `size` in its `group`}
    (None where either is missing): e.g. tokens/s at 360M as a multiple of tokens/s at 135M, per seq len."""
    base = {}
    for row in sorted(rows, key=lambda r: r[size]):
        base.setdefault(row[group], row)
    return [{k: ratio(row.get(k), base[row[group]].get(k)) for k in keys} for row in rows]


def rate(amounts, seconds) -> float | None:
    """Return the median per-step rate amount/second over paired lists (steps with zero time skipped)."""
    return median([a / s for a, s in zip(amounts, seconds) if s and s > 0])


# ---------------------------------------------------------------- targets

@dataclass(frozen=True)
class Target:
    key: str
    label: str
    op: str  # ">=" | "<=" | "==" | "report"
    threshold: float | None


TARGETS = (
    Target("sft_speed", "SFT tokens/s vs plain TRL", ">=", 2.5),
    Target("sft_memory", "SFT peak memory vs plain TRL", "<=", 0.8),
    Target("dpo_speed", "DPO tokens/s vs plain TRL", ">=", 2.5),
    Target("dpo_copies", "DPO model copies in memory (kit)", "==", 1),
    Target("eval_speed", "evaluation answers/s vs one-by-one generate", ">=", 4.0),
    Target("eval_decoding", "evaluation answers/s vs 16-row batches with PEFT's per-row routing", ">=", 1.5),
    Target("arena_two_panes", "two arena panes: time vs one pane", "<=", 1.6),
    Target("utilisation", "SFT kit utilisation of the bf16 matmul peak", "report", None),
    Target("main_wall", "main job wall time, s (2 cores)", "<=", 600),
    Target("main_memory", "main job peak RSS, MiB", "<=", 3072),
)


def check(op: str, value: float | None, threshold: float | None) -> bool | None:
    """Return whether `value op threshold` holds; None when the value is missing or nothing is checked."""
    if value is None or op == "report":
        return None
    if op == ">=":
        return value >= threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    raise ValueError(f"unknown comparison {op!r}")


def evaluate_targets(values: dict[str, float | None]) -> list[dict]:
    """Return one record per target: key, label, value, op, threshold, and pass (True/False/None).
    `values` maps target keys to measured values; missing keys (an area not run) give pass None."""
    out = []
    for t in TARGETS:
        value = values.get(t.key)
        out.append({"key": t.key, "label": t.label, "value": value, "op": t.op, "threshold": t.threshold,
                    "pass": check(t.op, value, t.threshold)})
    return out
