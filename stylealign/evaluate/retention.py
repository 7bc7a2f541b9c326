"""Retention: did the adapter keep the base model's general language ability?

- Perplexity of each model (base, adapter) on a neutral expository corpus (eval/corpus/neutral.jsonl):
  a style adapter should barely move it; a big rise means it damaged the model.
- Per-token KL(adapter || base) on the suite prompts, teacher-forced on the *baseline* answer (the same
  continuation for every adapter, so numbers are comparable across adapters and strengths), averaged
  over the answer tokens: how far the adapter's next-token distribution moved from the base model's.
Both go through `Generator.logits(input_ids, attention_mask, adapter)` and `Generator.tokenizer`.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np


def _strength(generator, adapter: str | None, strength: float | None):
    """Return a context that scales `adapter` to `strength` when the generator supports it."""
    if adapter is None or strength in (None, 1.0) or not hasattr(generator, "strengths"):
        return contextlib.nullcontext()
    return generator.strengths({adapter: strength})


def _batch(tokenizer, texts: list[str], max_length: int):
    """Return right-padded (input_ids, attention_mask) tensors for `texts`."""
    enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length,
                    padding_side="right", add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def _device_of(generator):
    """Return the generator's device, or None for fakes without one."""
    return getattr(generator, "device", None)


def token_nll(generator, texts: list[str], adapter: str | None = None, strength: float | None = None,
              batch_size: int = 2, max_length: int = 256) -> list[tuple[float, int]]:
    """Return (summed next-token NLL, number of predicted tokens) per text under `adapter` (None = base)."""
    import torch

    out = []
    for i in range(0, len(texts), batch_size):
        ids, mask = _batch(generator.tokenizer, texts[i:i + batch_size], max_length)
        dev = _device_of(generator)
        if dev is not None:
            ids, mask = ids.to(dev), mask.to(dev)
        with _strength(generator, adapter, strength):
            logits = generator.logits(ids, mask, adapter)
        for r in range(ids.shape[0]):  # one row's [T, V] log-softmax at a time, not the batch's
            logp = torch.log_softmax(logits[r, :-1].float(), dim=-1)
            nll = -logp.gather(-1, ids[r, 1:, None]).squeeze(-1)
            m = mask[r, 1:].to(nll.dtype)
            out.append((float((nll * m).sum()), int(m.sum())))
            del logp
        del logits
    return out


def perplexity(pairs: list[tuple[float, int]]) -> float | None:
    """Return exp(total NLL / total tokens) for (nll, count) pairs; None when there are no tokens."""
    tokens = sum(c for _, c in pairs)
    return math.exp(sum(n for n, _ in pairs) / tokens) if tokens else None


def _prompt_texts(tokenizer, conversations: list[list[dict]]) -> list[str]:
    """Return the chat-templated prompt strings (generation prompt appended)."""
    return [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]


def kl_per_token(generator, conversations: list[list[dict]], continuations: list[str],
                 variants: list[tuple[str, float | None]], batch_size: int = 2,
                 max_length: int = 512) -> dict[tuple[str, float | None], list[float]]:
    """Return, per (adapter, strength) variant, the mean per-token KL(adapter || base) of each row.

    Each row is its templated prompt followed by `continuations[i]`; the KL is averaged over the
    positions that predict continuation tokens (over the prompt when the continuation is empty).
    The base logits of a batch are computed once and shared by every variant.
    """
    import torch

    tok = generator.tokenizer
    prompts = _prompt_texts(tok, conversations)
    result: dict = {v: [] for v in variants}
    for i in range(0, len(prompts), batch_size):
        p_batch, c_batch = prompts[i:i + batch_size], continuations[i:i + batch_size]
        ids, mask = _batch(tok, [p + c for p, c in zip(p_batch, c_batch)], max_length)
        starts = [len(tok(p, add_special_tokens=False)["input_ids"]) if c.strip() else 1 for p, c in zip(p_batch, c_batch)]
        dev = _device_of(generator)
        if dev is not None:
            ids, mask = ids.to(dev), mask.to(dev)
        keep = mask[:, 1:].clone().bool()
        for r, s in enumerate(starts):
            keep[r, : max(s - 1, 0)] = False  # position t predicts token t+1: answer tokens start at s
        # Only the scored positions' [n, V] log-softmax is kept, row by row (never the batch's [B, T, V]).
        logits = generator.logits(ids, mask, None)
        base = [torch.log_softmax(logits[r, :-1][keep[r]].float(), dim=-1) for r in range(ids.shape[0])]
        del logits
        for adapter, strength in variants:
            with _strength(generator, adapter, strength):
                logits = generator.logits(ids, mask, adapter)
            for r in range(ids.shape[0]):
                if not bool(keep[r].any()):  # a row truncated before its answer has nothing to score: nan, not 0
                    result[(adapter, strength)].append(math.nan)
                    continue
                logq = torch.log_softmax(logits[r, :-1][keep[r]].float(), dim=-1)
                result[(adapter, strength)].append(float((logq.exp() * (logq - base[r])).sum(-1).mean()))
            del logits
    return result


def retention_section(generator, corpus: list[dict], variants: list[tuple[str, float | None]],
                      conversations: list[list[dict]], continuations: list[str], languages: list[str],
                      labels: dict, batch_size: int = 2) -> dict:
    """Return report["retention"]: perplexities (base vs each variant, per language) and KL per variant.

    `labels` maps (adapter, strength) to the variant label used in the report. Two rows per forward: each holds
    a [B, T, 49,152] logits tensor in bf16 and fp32 while the base rows' log-softmaxes wait for the adapter's, and
    at four rows that made retention the main job's memory peak (3,095 MiB).
    """
    texts = [r["text"] for r in corpus]
    corpus_lang = np.asarray([r.get("language", "en") for r in corpus])
    base_nll = token_nll(generator, texts, None, None, batch_size) if texts else []
    kls = kl_per_token(generator, conversations, continuations, variants, batch_size) if conversations else {}
    lang_arr = np.asarray(languages)
    out = {"corpus_texts": len(texts), "kl_prompts": len(conversations), "variants": {}}
    for v in variants:
        nll = token_nll(generator, texts, v[0], v[1], batch_size) if texts else []
        out["variants"][labels[v]] = _retention_block(base_nll, nll, corpus_lang, kls.get(v, []), lang_arr)
    return out


def _retention_block(base_nll, nll, corpus_lang, kl, kl_lang) -> dict:
    """Return ppl (base, adapter, ratio) and mean KL overall and per language for one variant."""
    def ppl_pair(sel) -> dict:
        b = perplexity([x for x, s in zip(base_nll, sel) if s])
        a = perplexity([x for x, s in zip(nll, sel) if s])
        return {"ppl_base": b, "ppl_adapter": a, "ppl_ratio": (a / b) if a and b else None}

    kl = np.asarray(kl, dtype=float)
    mean = lambda x: float(np.nanmean(x)) if np.isfinite(x).any() else None
    block = {**ppl_pair([True] * len(base_nll)), "kl_per_token": mean(kl), "by_language": {}}
    for lang in sorted(set(corpus_lang.tolist()) | set(kl_lang.tolist() if kl.size else [])):
        sel_kl = kl[kl_lang == lang] if kl.size else kl
        block["by_language"][lang] = {**ppl_pair(list(corpus_lang == lang)), "kl_per_token": mean(sel_kl)}
    return block
