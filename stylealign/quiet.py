"""Known third-party notices that say nothing a stylealign user can act on, filtered with the reason for each.

Anything not listed here still shows: a new warning is news. The kit's own calls use the current APIs
(e.g. `activation_checkpointing`, not the deprecated `gradient_checkpointing` alias).
"""

from __future__ import annotations

import logging
import os
import warnings

FILTERS = (
    # peft's PeftModel and trl's model utils read `PreTrainedModel.is_gradient_checkpointing`, deprecated in
    # transformers 5; their own code, fixed upstream later, not ours to change.
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning),
    # bitsandbytes on a machine without CUDA: 4-bit runs on its CPU kernels, which is what the CPU recipe wants.
    (r".*bitsandbytes.*(GPU|CUDA|cuda|compiled without).*", UserWarning),
    # torch.jit deprecation raised while importing third-party modules that still decorate with it.
    (r"`torch\.jit\.script_method` is deprecated", DeprecationWarning),
)


LOG_FILTERS = (
    # bitsandbytes on a CPU with AVX-512 BF16 tries to fetch a faster 4-bit kernel from the Hugging Face Hub
    # (the `kernels` package) when it is imported; offline or without that package it keeps its own CPU
    # kernels, which is what the CPU recipe measured with. Nothing a user can act on.
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"),
)


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quiet() -> None:
    """Install the filters and turn off per-file weight-loading bars (the kit shows its own progress)."""
    for message, category in FILTERS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, prefix in LOG_FILTERS:
        logger = logging.getLogger(name)  # exists before the library is imported, so its import-time notice is caught
        if not any(isinstance(f, _DropPrefix) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropPrefix(prefix))
    # transformers reads this when it is first imported: its "Loading weights" bar for every model load.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
