"""Candidate fast paths for the kit, measurable with `stylealign bench --kit-variant NAME`.

The bench owns none of train.py / generate.py; these are the proposed changes written as patches
applied to the kit arms only, so their effect is measured against the same reference in the same
invocation. Each is small enough to move into train.py / generate.py as is.

  compact-head  TRL's fused LM head scores only label positions on Triton devices; on a CPU it
                scores every position (prompt tokens, and padding in DPO). Same TRL kernel, fed only
                the label positions: per-token results identical, fewer tokens through the head.
  plain-head    On a CPU, replace TRL's tiled log-prob kernel (a torch fallback making ~20 passes
                over each [tokens x vocab] tile) with lm_head on the label positions + fp32
                logsumexp/gather; entropy, top-1, mean logit and log sum p^2 under no_grad.
  padded        SFT with padded batches instead of padding-free packing (CPU SDPA has no varlen
                kernel: a packed row's attention runs over the whole pack with a block mask).
  eager-attn    Train with attn_implementation="eager" on a CPU: for short padded rows the CPU
                flash-attention backward of SDPA costs more than explicit matmul + softmax.
  fast-decode   Generator: PEFT's mixed-batch hooks registered once per generation instead of per
                decode step, and batched sampling that searches the nucleus in the top-k first.
  gen-bf16      Generate from bf16 weights instead of NF4 (no per-step 4-bit dequantisation).
"""

from __future__ import annotations

import contextlib
import types

TRAIN_VARIANTS = ("compact-head", "plain-head", "padded", "eager-attn")
GEN_VARIANTS = ("fast-decode", "gen-bf16")
VARIANTS = TRAIN_VARIANTS + GEN_VARIANTS


def check(names) -> list[str]:
    names = list(names or [])
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown kit variant(s) {unknown}; known: {list(VARIANTS)}")
    if "compact-head" in names and "plain-head" in names:
        raise ValueError("choose one of compact-head and plain-head")
    return names


def recipe_overrides(names, stage: str) -> dict:
    return {"sft.padding_free": False} if "padded" in names and stage == "sft" else {}


# ---------------------------------------------------------------- training: the LM head


def _scatter(mask, values):
    """Return a [B, T] tensor that is `values` at mask positions and 0 elsewhere (differentiable)."""
    return values.new_zeros(mask.shape).masked_scatter(mask, values)


def head_outputs(trainer) -> tuple[str, ...]:
    """Return the per-token fields the trainer reads (what TRL asked its fused head for)."""
    from trl import DPOTrainer

    if isinstance(trainer, DPOTrainer):
        extra = ("log_sum_sq_probs",) if getattr(trainer, "use_weighting", False) else ()
        return ("log_probs", "entropy", "mean_logits", "is_top1") + extra
    return ("log_probs", "entropy", "is_top1")


def label_positions_head(model, plain: bool, outputs: tuple[str, ...]) -> bool:
    """Re-patch a model that TRL gave a fused LM head so that, with `fused_lm_head=True`, only the
    label positions are scored (compact), either with TRL's own kernel or with plain log-softmax.
    Returns False (and changes nothing) where it does not apply: a GPU, logit soft-capping or scaling."""
    import torch
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import FusedCausalLMOutput

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config.get_text_config()
    if any(getattr(cfg, k, None) for k in ("final_logit_softcapping", "logit_scale", "output_multiplier",
                                            "lm_head_multiplier", "logits_scaling")):
        return False
    if next(base.parameters()).device.type != "cpu":
        return False
    trl_forward = base.forward  # TRL's wrapper: passes through when fused_lm_head is False
    backbone = getattr(base, base.base_model_prefix)

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or shift_labels is not None or kwargs.get("output_router_logits"):
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = backbone(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        mask = targets != -100
        head = self.get_output_embeddings()
        h, y = hidden[mask], targets[mask]
        if plain:
            logits = torch.nn.functional.linear(h, head.weight, head.bias).float()
            log_z = torch.logsumexp(logits, dim=-1)
            log_probs = logits.gather(-1, y[:, None]).squeeze(-1) - log_z
            entropy = log_sum_sq = mean_logits = is_top1 = None
            with torch.no_grad():
                if "entropy" in outputs or "log_sum_sq_probs" in outputs:
                    p = torch.softmax(logits, dim=-1)
                    entropy = log_z - (p * logits).sum(-1) if "entropy" in outputs else None
                    log_sum_sq = torch.log((p * p).sum(-1)) if "log_sum_sq_probs" in outputs else None
                mean_logits = logits.mean(-1) if "mean_logits" in outputs else None
                is_top1 = logits.argmax(-1) == y if "is_top1" in outputs else None
            fields = (log_probs, entropy, log_sum_sq, mean_logits, is_top1)
        else:
            from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

            fields = ChunkedLogProbFunction.apply(h, head.weight, head.bias, y, 1.0, _CHUNKED_LOGPROB_CHUNK_SIZE,
                                                  None, 1.0, outputs)
        log_probs, entropy, log_sum_sq, mean_logits, is_top1 = (
            None if x is None else _scatter(mask, x) for x in fields)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=log_sum_sq,
                                   mean_logits=mean_logits, is_top1=is_top1, label_mask=mask)

    base.forward = types.MethodType(forward, base)
    return True


def apply_model(model, names) -> list[str]:
    """Apply the variants that act on the loaded model (before the trainer wraps it)."""
    if "eager-attn" in names and next(model.parameters()).device.type == "cpu":
        model.set_attn_implementation("eager")
        return ["eager-attn"]
    return []


def apply_train(trainer, names) -> list[str]:
    """Apply the training variants in `names` to a built TRL trainer; return those applied."""
    from trl import SFTTrainer

    applied = ["padded"] if "padded" in names and isinstance(trainer, SFTTrainer) else []
    for name in ("compact-head", "plain-head"):
        if name in names and label_positions_head(trainer.model, name == "plain-head", head_outputs(trainer)):
            applied.append(name)
    return applied


# ---------------------------------------------------------------- generation


def fast_generator(gen):
    """Return `gen` with the fast-decode loop bound in place of Generator._decode."""
    gen._decode = types.MethodType(_fast_decode, gen)
    return gen


def _sample(logits, seen, rngs, config, k: int = 256) -> list[int]:
    """Batched version of Generator._pick: repetition penalty per row, then greedy or top-p sampling with
    the nucleus looked for in the top k (a full sort only when it does not fit). Same distribution as
    _pick; ties between equal probabilities may be ordered differently, so a seed's text can change."""
    import torch

    if config.repetition_penalty != 1.0:
        for r, toks in enumerate(seen):
            if toks:
                idx = torch.tensor(sorted(toks), device=logits.device)
                vals = logits[r, idx]
                logits[r, idx] = torch.where(vals > 0, vals / config.repetition_penalty, vals * config.repetition_penalty)
    if not config.do_sample:
        return logits.argmax(-1).tolist()
    probs = torch.softmax(logits / config.temperature, dim=-1)
    top_p, top_i = probs.topk(min(k, probs.shape[-1]), dim=-1)
    out = []
    for r in range(probs.shape[0]):
        sp, si = top_p[r], top_i[r]
        keep = sp.cumsum(0) - sp < config.top_p
        if bool(keep[-1]) and sp.shape[0] < probs.shape[-1]:
            sp, si = probs[r].sort(descending=True)
            keep = sp.cumsum(0) - sp < config.top_p
        sp = sp * keep
        out.append(int(si[torch.multinomial(sp / sp.sum(), 1, generator=rngs[r])]))
    return out


def _fast_decode(self, conversations, adapters, config):
    """Generator._decode with PEFT's per-row adapter hooks registered once, and batched sampling."""
    import torch
    from transformers import DynamicCache

    enc = self.encode(conversations)
    kwargs = self._adapter_kwargs(list(adapters))
    hooks = contextlib.nullcontext()
    names = kwargs.pop("adapter_names", None)
    if names is not None:
        if len(set(names)) == 1 and names[0] != "__base__":
            self.model.set_adapter(names[0])  # one adapter for every row: PEFT's plain path
        elif len(set(names)) == 1:
            hooks = self.model.disable_adapter()
        else:
            hooks = self.model.base_model._enable_peft_forward_hooks(adapter_names=names)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    rngs = [torch.Generator(device=self.device).manual_seed(config.seed) for _ in conversations]
    seen = [set(row[m.bool()].tolist()) for row, m in zip(ids, mask)]
    stops = self._stop_ids()
    done = torch.zeros(len(conversations), dtype=torch.bool)
    cache = DynamicCache()
    position = (mask.long().cumsum(-1) - 1).clamp(min=0)
    step_ids = ids
    cache_kw = self._cache_kwarg()
    with torch.no_grad(), hooks:
        for _ in range(config.max_new_tokens):
            out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=position, use_cache=True,
                             logits_to_keep=1, **{cache_kw: cache})
            nxt = torch.tensor(_sample(out.logits[:, -1, :].float(), seen, rngs, config))
            emitted = {}
            for r, tok in enumerate(nxt.tolist()):
                if done[r]:
                    continue
                if tok in stops:
                    done[r] = True
                else:
                    emitted[r] = tok
                    seen[r].add(tok)
            if emitted:
                yield emitted
            if bool(done.all()):
                return
            nxt[done] = self.tokenizer.pad_token_id
            step_ids = nxt[:, None].to(self.device)
            mask = torch.cat([mask, (~done).long()[:, None].to(mask.device)], dim=1)
            position = position[:, -1:] + 1
