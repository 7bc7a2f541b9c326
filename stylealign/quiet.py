"""Known third-party notices that say nothing a stylealign user can act on, filtered with the reason for each.

Anything not listed here still shows: a new warning is news. The kit's own calls use the current APIs
(e.g. `activation_checkpointing`, not the deprecated `gradient_checkpointing` alias).
"""

from __future__ import annotations

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


def quiet() -> None:
    """Install the filters and turn off per-file weight-loading bars (the kit shows its own progress)."""
    for message, category in FILTERS:
        warnings.filterwarnings("ignore", message=message, category=category)
    # transformers reads this when it is first imported: its "Loading weights" bar for every model load.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
