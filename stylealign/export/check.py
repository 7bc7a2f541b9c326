"""The export check: does the exported model still answer like the adapter?

On held-out prompts, greedy, with no repetition penalty (what llama.cpp, Ollama and vLLM serve at
temperature 0), against the PEFT adapter on the unquantized base in fp32:

- merged weights: the merged model's greedy tokens and logits (identical up to float rounding);
- base GGUF + LoRA GGUF in llama.cpp (llama-cpp-python): top-1 token agreement when fed the adapter's
  own greedy tokens (teacher-forced, over the horizon), per-token KL(adapter || llama.cpp), and how much
  of the adapter's greedy answer llama.cpp reproduces free-running;
- beside them, the base GGUF alone against the HF base: the ceiling that the GGUF's quantization allows
  (the embedded HF base is the dequantized GGUF, so the only gap is llama.cpp's quantized arithmetic);
- style: the L0 markers of each model's answers, and how much of the adapter's style shift (vs the base)
  the export keeps, as a projection on the adapter's shift over standardized markers (1 = all, 0 = none).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

STYLE_KEYS = ("hedge_rate", "boilerplate_rate", "booster_rate", "assertiveness", "verdict_first", "length",
              "sent_len_mean", "list_items", "asks_back", "distinct2")


@dataclass
class CheckConfig:
    """What the check runs on and the thresholds it gates on (stated in every report)."""

    prompts: list[dict] = field(default_factory=list)  # suite rows ({"messages": [...], "language": ...})
    horizon: int = 48  # greedy tokens compared per prompt
    min_agreement: float = 0.90  # llama.cpp + LoRA teacher-forced top-1 agreement with the adapter
    max_ceiling_gap: float = 0.05  # ... and at most this far below the base GGUF's own agreement (its ceiling)
    min_merged_agreement: float = 0.99
    min_style_retained: float = 0.5  # share of the adapter's style shift the export must keep
    system_prompt: str | None = None
    threads: int = 0


@dataclass
class Greedy:
    """One model's greedy continuation of each prompt: token ids, and logits at each predicted position."""

    tokens: list[list[int]]
    texts: list[str]


def hf_greedy(model, tokenizer, prompts: list[list[int]], horizon: int, stops: set[int]) -> Greedy:
    """Return the HF model's greedy tokens (up to and including a stop token) and texts."""
    import torch

    out_tokens = []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            gen = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=horizon,
                                 do_sample=False, eos_token_id=sorted(stops), pad_token_id=tokenizer.pad_token_id)
            out_tokens.append(_cut(gen[0, len(ids):].tolist(), stops))
    return Greedy(out_tokens, [tokenizer.decode(t, skip_special_tokens=True).strip() for t in out_tokens])


def hf_logits(model, prompt: list[int], continuation: list[int]) -> np.ndarray:
    """Return the [len(continuation), V] float64 logits predicting each continuation token."""
    import torch

    with torch.no_grad():
        x = torch.tensor([prompt + continuation])
        logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0].double().numpy()
    return logits[len(prompt) - 1:len(prompt) - 1 + len(continuation)]


def _cut(tokens: list[int], stops: set[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in stops:
            return tokens[:i + 1]
    return tokens


class LlamaCpp:
    """A llama.cpp model (llama-cpp-python), optionally with a LoRA GGUF, fed token ids directly."""

    def __init__(self, base_gguf: str, lora_gguf: str | None = None, scale: float = 1.0, n_ctx: int = 1024,
                 threads: int = 0):
        from llama_cpp import Llama

        from stylealign.export.llamacpp import plain_buffers_on_amx

        plain_buffers_on_amx()
        kwargs = dict(lora_path=str(lora_gguf), lora_scale=scale) if lora_gguf else {}
        self.llm = Llama(model_path=str(base_gguf), n_ctx=n_ctx, logits_all=True, verbose=False, seed=0,
                         n_threads=threads or None, **kwargs)

    def logits(self, prompt: list[int], continuation: list[int]) -> np.ndarray:
        """Return the [len(continuation), V] logits predicting each continuation token."""
        self.llm.reset()
        self.llm.eval(prompt + continuation)
        return np.array(self.llm.scores[len(prompt) - 1:len(prompt) - 1 + len(continuation)], dtype=np.float64)

    def greedy(self, prompt: list[int], horizon: int, stops: set[int]) -> list[int]:
        """Return llama.cpp's own greedy continuation (argmax of its logits, no sampler in between)."""
        self.llm.reset()
        self.llm.eval(prompt)
        out: list[int] = []
        for _ in range(horizon):
            tok = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            out.append(tok)
            if tok in stops:
                break
            self.llm.eval([tok])
        return out


def kl_rows(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Return per-row KL(softmax(ref) || softmax(cand)) in nats."""
    lp = ref - _logsumexp(ref)
    lq = cand - _logsumexp(cand)
    return (np.exp(lp) * (lp - lq)).sum(-1)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(-1, keepdims=True))


def compare(prompts: list[list[int]], ref: Greedy, ref_logits, cand_logits, cand_tokens: list[list[int]]) -> dict:
    """Return agreement of a candidate with a reference model's greedy answers: teacher-forced top-1
    agreement and KL(ref || candidate) over the reference's tokens, the largest logit difference, exact
    free-running matches and the mean share of the reference answer the candidate reproduces before diverging.
    `ref_logits` / `cand_logits`: (prompt, continuation) -> [len(continuation), V] logits."""
    hits, kls, max_diff, prefix, exact = [], [], 0.0, [], 0
    for p, ref_toks, own in zip(prompts, ref.tokens, cand_tokens):
        r, c = ref_logits(p, ref_toks), cand_logits(p, ref_toks)
        hits += (c.argmax(-1) == np.array(ref_toks)).tolist()
        kls += kl_rows(r, c).tolist()
        max_diff = max(max_diff, float(np.abs(r - c).max()))
        common = next((i for i, (a, b) in enumerate(zip(ref_toks, own)) if a != b), min(len(ref_toks), len(own)))
        prefix.append(common / max(len(ref_toks), 1))
        exact += own == ref_toks
    return {"tokens": len(hits), "agreement": float(np.mean(hits)), "kl_mean": float(np.mean(kls)),
            "kl_max": float(np.max(kls)), "max_logit_diff": max_diff, "prefix_share": float(np.mean(prefix)),
            "exact_answers": exact, "answers": len(prompts)}


def style_means(texts: list[str], languages: list[str]) -> dict[str, float]:
    """Return the mean of each L0 style marker over the answers (nan-aware)."""
    from stylealign.evaluate.markers import style_markers

    rows = [style_markers(t, lg) for t, lg in zip(texts, languages)]
    with warnings.catch_warnings():  # a marker undefined on every answer is nan, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: float(np.nanmean([r.get(k, math.nan) for r in rows])) if rows else math.nan for k in STYLE_KEYS}


def style_retained(model: list[str], adapter: list[str], base: list[str], languages: list[str]) -> float | None:
    """Return how much of the adapter's style shift (vs base) `model` keeps: the projection of its mean
    marker shift on the adapter's, markers standardized by their spread over all answers; None when
    the adapter shows no shift."""
    from stylealign.evaluate.markers import style_markers

    def matrix(texts):
        return np.array([[style_markers(t, lg).get(k, math.nan) for k in STYLE_KEYS] for t, lg in zip(texts, languages)])

    m, a, b = matrix(model), matrix(adapter), matrix(base)
    with warnings.catch_warnings():  # markers undefined on every answer drop out below
        warnings.simplefilter("ignore", RuntimeWarning)
        return _projection(m, a, b)


def _projection(m: np.ndarray, a: np.ndarray, b: np.ndarray) -> float | None:
    scale = np.nanstd(np.vstack([m, a, b]), axis=0)
    keep = np.isfinite(scale) & (scale > 0)
    if not keep.any():
        return None
    shift = lambda x: (np.nanmean(x, 0) - np.nanmean(b, 0))[keep] / scale[keep]  # noqa: E731
    sa = np.nan_to_num(shift(a))
    denom = float(sa @ sa)
    return None if denom < 1e-9 else float(np.nan_to_num(shift(m)) @ sa / denom)
