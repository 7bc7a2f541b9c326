"""Eager attention whose probabilities are recomputed in backward: CPU training's attention kernel.

On a CPU, eager attention's backward measured faster than SDPA's for the short padded rows of persona data
(benchmarks/README.md), but autograd keeps its batch x heads x length² probabilities for backward: in fp32 from
the softmax and again in bf16 for the value product, 1.1 GB for the CPU recipe's longest SFT batch (8 rows x
286 tokens; `python benchmarks/memory_profile.py`). Here the model's own eager attention runs under
`torch.utils.checkpoint` (non-reentrant): only query, key and value are kept, and the length² part is computed
again in backward, a few percent of a step. Same arithmetic as eager, forward and backward. Without gradients
(generation, the reference pass of DPO) it is plain eager. Rows of LONG_ROWS tokens or more go to SDPA instead
(with the same additive mask): at 1,024 tokens it trained 1.7x (135M) to 1.8x (1B) faster than eager on a 2-core
Xeon, while at 256 the two were within 7% either way (`stylealign bench --only scale`, benchmarks/README.md).
"""

from __future__ import annotations

import sys

NAME = "eager_recompute"
LONG_ROWS = 512  # query length from which training attention runs in SDPA


def _attention(module, query, key, value, attention_mask, **kwargs):
    import torch
    from torch.utils.checkpoint import checkpoint
    from transformers.integrations import sdpa_attention

    # a model without the usual eager function: transformers' own SDPA
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", sdpa_attention.sdpa_attention_forward)
    if not (torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad)):
        return eager(module, query, key, value, attention_mask, **kwargs)
    if query.shape[-2] >= LONG_ROWS:
        return sdpa_attention.sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    def core(q, k, v):
        return eager(module, q, k, v, attention_mask, **kwargs)[0]

    return checkpoint(core, query, key, value, use_reentrant=False), None


def register() -> str:
    """Register the kernel (and its mask, eager's) with transformers; return its attn_implementation name."""
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(NAME, _attention)
    AttentionMaskInterface.register(NAME, eager_mask)
    return NAME
