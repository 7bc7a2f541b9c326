"""A CPU LM head for training: score only the label positions, with plain fp32 log-softmax.

TRL gives its trainers a fused LM head (`model(..., fused_lm_head=True)` returns per-token
log-probs instead of logits). Without Triton, as on a CPU, it scores every position (prompt
tokens, and padding in DPO) and its torch fallback folds each [tokens x vocab] tile in some
twenty elementwise passes. `label_positions_head` re-patches that forward: the backbone runs as
before, the head sees only the positions whose next-token label counts, and the log-probs come
from one matmul, one logsumexp and one gather. Label positions are scored in chunks of at most
`chunk_tokens`; when there are more, each chunk is recomputed in backward, so the full
[tokens x vocab] logits never exist at once. Measured by `stylealign bench` (benchmarks/README.md).
"""

from __future__ import annotations

import types

from stylealign.errors import ConfigError

CHUNK_TOKENS = 4096  # label positions scored at once: 4096 x 49,152 fp32 logits = 0.8 GB
STATS_ROWS = 512  # rows of the no-grad statistics (entropy, ...) computed at once
_SCALED = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def head_outputs(trainer) -> tuple[str, ...]:
    """Return the per-token fields `trainer` reads from the fused head (what TRL asked for)."""
    from trl import DPOTrainer

    if isinstance(trainer, DPOTrainer):
        extra = ("log_sum_sq_probs",) if getattr(trainer, "use_weighting", False) else ()
        return ("log_probs", "entropy", "mean_logits", "is_top1") + extra
    return ("log_probs", "entropy", "is_top1")


def applies(model) -> bool:
    """True for a model on a CPU whose logits are the plain LM-head projection (no soft-capping or scaling)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config.get_text_config()
    return next(base.parameters()).device.type == "cpu" and not any(getattr(cfg, k, None) for k in _SCALED)


# Labels that stand for "a verdict token" at an answer's opening Yes/No (verdict_labels): scored against the whole
# yes set and no set (VerdictSets), not the one token the data wrote. Negative, so no vocabulary id collides.
VERDICT_YES, VERDICT_NO = -2, -3
# The same at the opening of a known fact (an SFT row with "expected"): its side is the known answer, so it is
# always trained toward the side the data wrote, whatever the split of opinions.
FACT_YES, FACT_NO = -4, -5


class VerdictSets:
    """The yes and no token ids, and how the split between them is trained (config: sft.verdict_split).

    The log-prob that stands in for a verdict label is log P(yes set or no set) — the answer opens with a
    verdict — plus, for "data", log P(the side the data wrote | a verdict) (plain cross-entropy, pooled over
    the spellings of each side), for "even", the cross-entropy of the yes/no split against 50/50: the adapter learns to answer
    first without a standing lean to either side, so the question's own evidence picks the verdict. "free" trains
    no split at all (it stays the model's own). A known fact's opening (FACT_YES / FACT_NO) is scored as "data"
    whatever the split: the split is for verdicts of opinion, where the data's side is a taste; a fact's side is
    the truth, and the balanced facts centre the base model's standing lean on short factual questions.
    `weight` scales the split's term against one ordinary token (`fact_weight` a fact's, default the same): one opening token among a hundred in its answer,
    unweighted, moves the split too little to undo a base model's standing lean, while the "a verdict" term alone
    raises the favoured side faster than the other (its gradient on each token's logit is proportional to that
    token's probability)."""

    def __init__(self, yes_ids, no_ids, split: str, weight: float = 1.0, fact_weight: float | None = None):
        if split not in ("data", "even", "free"):
            raise ConfigError(f"verdict split {split!r}: expected 'data', 'even' or 'free'")
        self.yes, self.no, self.split, self.weight = list(yes_ids), list(no_ids), split, weight
        self.fact_weight = weight if fact_weight is None else fact_weight

    def log_probs(self, logits, log_z, labels=None):
        """Return the stand-in log-prob for rows of `logits` ([n, vocab], fp32) with log-partition `log_z`;
        `labels` (VERDICT_YES / VERDICT_NO per row) say which side the data wrote, for split "data"."""
        import torch

        ly = torch.logsumexp(logits[:, self.yes], dim=-1)
        ln = torch.logsumexp(logits[:, self.no], dim=-1)
        both = torch.logaddexp(ly, ln)
        split, weight = torch.zeros_like(both), torch.full_like(both, self.weight)
        if self.split == "even":
            split = 0.5 * ((ly - both) + (ln - both))
        if labels is not None:
            data = torch.where((labels == VERDICT_YES) | (labels == FACT_YES), ly, ln) - both
            fact = (labels == FACT_YES) | (labels == FACT_NO)
            split = torch.where(fact | (self.split == "data"), data, split)
            weight = torch.where(fact, self.fact_weight, weight)
        elif self.split == "data":
            raise ValueError("verdict split 'data' needs the labels")
        return both - log_z + weight * split


def verdict_labels(labels, yes_ids, no_ids, facts=None):
    """Return `labels` with each completion's first label replaced by VERDICT_YES / VERDICT_NO when it is a yes /
    no token (a completion starts where a run of -100 ends), FACT_YES / FACT_NO for the completions that `facts`
    marks (one bool per completion, in row-major order: a batch's examples, packed or padded). The input is not
    changed."""
    import torch

    out = labels.clone()
    prev = torch.nn.functional.pad(labels[:, :-1], (1, 0), value=-100)
    first = (labels != -100) & (prev == -100)
    is_fact = torch.zeros_like(first)
    if facts is not None:
        starts = first.nonzero()  # row-major: the completions in the order the examples were collated
        if len(starts) != len(facts):
            raise ValueError(f"{len(facts)} fact flags for {len(starts)} completions in the batch")
        marked = starts[torch.as_tensor(facts, dtype=torch.bool)]
        is_fact[marked[:, 0], marked[:, 1]] = True
    yes = first & torch.isin(labels, torch.tensor(yes_ids, device=labels.device))
    no = first & torch.isin(labels, torch.tensor(no_ids, device=labels.device))
    out[yes], out[no] = VERDICT_YES, VERDICT_NO
    out[yes & is_fact], out[no & is_fact] = FACT_YES, FACT_NO
    return out


def _score(h, weight, bias, y, outputs: tuple[str, ...], verdict: VerdictSets | None = None):
    """Return (log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1) for hidden rows `h` and labels `y`;
    only log_probs carries gradient, fields not in `outputs` are None. Verdict labels (negative) are scored by
    `verdict`."""
    import torch

    logits = torch.nn.functional.linear(h, weight, bias).float()
    log_z = torch.logsumexp(logits, dim=-1)
    special = y < 0
    log_probs = logits.gather(-1, y.clamp(min=0)[:, None]).squeeze(-1) - log_z
    if verdict is not None and bool(special.any()):
        idx = special.nonzero().squeeze(-1)
        log_probs = log_probs.index_put((idx,), verdict.log_probs(logits[idx], log_z[idx], y[idx]))
    elif bool(special.any()):
        raise ValueError("verdict labels in a batch, but no verdict sets given to the LM head")
    entropy = log_sum_sq = mean = top1 = None
    with torch.no_grad():  # the statistics, STATS_ROWS rows at a time: no second and third [rows x vocab] at once
        lz = log_z.detach()
        if "entropy" in outputs or "log_sum_sq_probs" in outputs:
            ent, sq = [], []
            for i in range(0, logits.shape[0], STATS_ROWS):
                lc = logits[i:i + STATS_ROWS].detach()
                p = torch.softmax(lc, dim=-1)
                if "entropy" in outputs:
                    ent.append(lz[i:i + STATS_ROWS] - (p * lc).sum(-1))
                if "log_sum_sq_probs" in outputs:
                    sq.append(torch.log((p * p).sum(-1)))
                del p
            entropy = torch.cat(ent) if ent else None
            log_sum_sq = torch.cat(sq) if sq else None
        if "mean_logits" in outputs:
            mean = logits.detach().mean(-1)
        if "is_top1" in outputs:
            top1 = logits.detach().argmax(-1) == y
    return log_probs, entropy, log_sum_sq, mean, top1


def score_labels(h, weight, bias, y, outputs: tuple[str, ...], chunk_tokens: int = CHUNK_TOKENS,
                 verdict: VerdictSets | None = None):
    """`_score` over rows of `h` in chunks; beyond one chunk, each chunk's logits are recomputed in backward."""
    import torch
    from torch.utils.checkpoint import checkpoint

    if h.shape[0] <= chunk_tokens:
        return _score(h, weight, bias, y, outputs, verdict)
    parts = []
    for i in range(0, h.shape[0], chunk_tokens):
        hc, yc = h[i:i + chunk_tokens], y[i:i + chunk_tokens]
        log_probs = checkpoint(lambda a, b: _score(a, weight, bias, b, (), verdict)[0], hc, yc, use_reentrant=False)
        with torch.no_grad():
            stats = _score(hc.detach(), weight, bias, yc, tuple(o for o in outputs if o != "log_probs"), verdict)[1:]
        parts.append((log_probs, *stats))
    return tuple(None if col[0] is None else torch.cat(col) for col in zip(*parts))


def shared_prompts(input_ids, attention_mask, labels):
    """Return each pair's prompt length when the batch is DPO's [chosen; rejected] layout: rows i and B + i start
    with the same prompt, every row is right-padded and labelled from its prompt's end to its last token. Else None."""
    import torch

    n, t = input_ids.shape
    if n % 2 or attention_mask is None or labels is None or attention_mask.dim() != 2:
        return None
    b, idx = n // 2, torch.arange(t, device=input_ids.device)[None]
    labelled, length = labels != -100, attention_mask.sum(-1)
    if not bool(labelled.any(-1).all()) or not torch.equal(attention_mask.bool(), idx < length[:, None]):
        return None
    first = labelled.int().argmax(-1)
    if not torch.equal(first[:b], first[b:]) or not bool((first > 0).all()):
        return None
    if not torch.equal(labelled, (idx >= first[:, None]) & (idx < length[:, None])):
        return None
    prompt = idx < first[:b, None]
    if not torch.equal(input_ids[:b][prompt], input_ids[b:][prompt]):
        return None
    return first[:b]


def shared_prompt_hidden(backbone, input_ids, attention_mask, prompt_len, pad_id: int, **kwargs):
    """Return the hidden states at the label positions of a DPO batch (rows in order, positions in order: what
    `last_hidden_state[:, :-1][labels[:, 1:] != -100]` gives) with each pair's prompt run once: the prompts
    left-padded in one pass, their KV cache shared by the chosen and the rejected continuation in a second pass.
    Gradients flow through the cache into the prompt, so the result and its gradients are the full pass's."""
    import torch
    from transformers import DynamicCache

    n, b = input_ids.shape[0], input_ids.shape[0] // 2
    dev = input_ids.device
    p_max, length = int(prompt_len.max()), attention_mask.sum(-1)
    p_rows = torch.cat([prompt_len, prompt_len])
    cont_len = length - p_rows
    c_max = int(cont_len.max())
    ar_p, ar_c = torch.arange(p_max, device=dev)[None], torch.arange(c_max, device=dev)[None]
    # prompts right-aligned (left padding): token j of prompt i sits at p_max - p_i + j
    p_mask = ar_p >= (p_max - prompt_len)[:, None]
    src = (ar_p - (p_max - prompt_len)[:, None]).clamp(min=0)
    p_ids = torch.where(p_mask, input_ids[:b].gather(1, src), pad_id)
    p_pos = (p_mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=backbone.config)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("use_cache", "cache", "past_key_values", "position_ids")}
    p_out = backbone(input_ids=p_ids, attention_mask=p_mask.long(), position_ids=p_pos, cache=cache, use_cache=True,
                     **kwargs).last_hidden_state
    cache.batch_select_indices(torch.cat([torch.arange(b, device=dev)] * 2))  # chosen rows, then rejected rows
    c_mask = ar_c < cont_len[:, None]
    c_src = (p_rows[:, None] + ar_c).clamp(max=input_ids.shape[1] - 1)
    c_ids = torch.where(c_mask, input_ids.gather(1, c_src), pad_id)
    full_mask = torch.cat([p_mask.long().repeat(2, 1), c_mask.long()], dim=-1)
    c_out = backbone(input_ids=c_ids, attention_mask=full_mask, position_ids=p_rows[:, None] + ar_c, cache=cache,
                     use_cache=True, **kwargs).last_hidden_state
    # row r's label positions: its prompt's last token, then its continuation's tokens but the last
    last = p_out[:, -1].repeat(2, 1)
    keep = ar_c < (cont_len - 1)[:, None]
    rows = torch.cat([last[:, None], c_out], dim=1)  # [n, 1 + c_max, d]
    sel = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=dev), keep], dim=1)
    return rows[sel]


def label_positions_head(model, outputs: tuple[str, ...], chunk_tokens: int = CHUNK_TOKENS,
                         shared_prompt: bool = False, verdict: VerdictSets | None = None) -> bool:
    """Re-patch the fused-head forward TRL gave `model` (call after building the trainer) so that
    `fused_lm_head=True` scores label positions only (with `shared_prompt`, a DPO batch's prompts run once:
    `shared_prompt_hidden`). Returns False, changing nothing, where `applies(model)` is False."""
    from trl.trainer.utils import FusedCausalLMOutput

    if not applies(model):
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    trl_forward = base.forward  # TRL's wrapper; it passes through when fused_lm_head is False
    backbone = getattr(base, base.base_model_prefix)

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or shift_labels is not None or kwargs.get("output_router_logits"):
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        mask = labels[:, 1:] != -100
        ids, attn = kwargs.get("input_ids"), kwargs.get("attention_mask")
        prompts = (shared_prompts(ids, attn, labels) if shared_prompt and not args and ids is not None
                   and kwargs.get("position_ids") is None and kwargs.get("inputs_embeds") is None else None)
        if prompts is not None:
            rest = {k: v for k, v in kwargs.items() if k not in ("input_ids", "attention_mask")}
            pad = self.config.pad_token_id if self.config.pad_token_id is not None else 0
            hidden = shared_prompt_hidden(backbone, ids, attn, prompts, pad, **rest)
        else:
            hidden = backbone(*args, **kwargs).last_hidden_state[:, :-1][mask]
        head = self.get_output_embeddings()
        fields = score_labels(hidden, head.weight, head.bias, labels[:, 1:][mask], outputs, chunk_tokens, verdict)
        # Back to TRL's [B, T-1] layout, zero where the label is ignored.
        log_probs, entropy, log_sum_sq, mean, top1 = (
            None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in fields)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / count, log_probs=log_probs, entropy=entropy,
                                   log_sum_sq_probs=log_sum_sq, mean_logits=mean, is_top1=top1, label_mask=mask)

    base.forward = types.MethodType(forward, base)
    return True
