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

CHUNK_TOKENS = 4096  # label positions scored at once: 4096 x 49,152 fp32 logits = 0.8 GB
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


def _score(h, weight, bias, y, outputs: tuple[str, ...]):
    """Return (log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1) for hidden rows `h` and labels `y`;
    only log_probs carries gradient, fields not in `outputs` are None."""
    import torch

    logits = torch.nn.functional.linear(h, weight, bias).float()
    log_z = torch.logsumexp(logits, dim=-1)
    log_probs = logits.gather(-1, y[:, None]).squeeze(-1) - log_z
    entropy = log_sum_sq = mean = top1 = None
    with torch.no_grad():
        if "entropy" in outputs or "log_sum_sq_probs" in outputs:
            p = torch.softmax(logits, dim=-1)
            if "entropy" in outputs:
                entropy = log_z - (p * logits).sum(-1)
            if "log_sum_sq_probs" in outputs:
                log_sum_sq = torch.log((p * p).sum(-1))
        if "mean_logits" in outputs:
            mean = logits.mean(-1)
        if "is_top1" in outputs:
            top1 = logits.argmax(-1) == y
    return log_probs, entropy, log_sum_sq, mean, top1


def score_labels(h, weight, bias, y, outputs: tuple[str, ...], chunk_tokens: int = CHUNK_TOKENS):
    """`_score` over rows of `h` in chunks; beyond one chunk, each chunk's logits are recomputed in backward."""
    import torch
    from torch.utils.checkpoint import checkpoint

    if h.shape[0] <= chunk_tokens:
        return _score(h, weight, bias, y, outputs)
    parts = []
    for i in range(0, h.shape[0], chunk_tokens):
        hc, yc = h[i:i + chunk_tokens], y[i:i + chunk_tokens]
        log_probs = checkpoint(lambda a, b: _score(a, weight, bias, b, ())[0], hc, yc, use_reentrant=False)
        with torch.no_grad():
            stats = _score(hc.detach(), weight, bias, yc, tuple(o for o in outputs if o != "log_probs"))[1:]
        parts.append((log_probs, *stats))
    return tuple(None if col[0] is None else torch.cat(col) for col in zip(*parts))


def label_positions_head(model, outputs: tuple[str, ...], chunk_tokens: int = CHUNK_TOKENS) -> bool:
    """Re-patch the fused-head forward TRL gave `model` (call after building the trainer) so that
    `fused_lm_head=True` scores label positions only. Returns False, changing nothing, where
    `applies(model)` is False."""
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
        hidden = backbone(*args, **kwargs).last_hidden_state[:, :-1]
        mask = labels[:, 1:] != -100
        head = self.get_output_embeddings()
        fields = score_labels(hidden[mask], head.weight, head.bias, labels[:, 1:][mask], outputs, chunk_tokens)
        # Back to TRL's [B, T-1] layout, zero where the label is ignored.
        log_probs, entropy, log_sum_sq, mean, top1 = (
            None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in fields)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / count, log_probs=log_probs, entropy=entropy,
                                   log_sum_sq_probs=log_sum_sq, mean_logits=mean, is_top1=top1, label_mask=mask)

    base.forward = types.MethodType(forward, base)
    return True
