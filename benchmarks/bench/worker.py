"""One measured arm per process: `python -m bench.worker SPEC.json` writes spec.result.

Each arm runs in its own process so its peak memory (RSS on CPU, max allocated on a GPU) is its own.
Arms (training: bench.training, gen: bench.generation, peak: bench.measure):
  sft  kit  stylealign.train.sft_trainer with the recipe (its quant/dtype, padding-free, completion-only)
  sft  ref  plain TRL as a user writes it: fp32 from_pretrained, SFTConfig defaults, LoRA via peft_config
  dpo  kit  stylealign.train.dpo_trainer on a PeftModel (TRL's frozen "ref" adapter is the reference)
  dpo  ref  plain DPOTrainer with a separate reference model copy (fp32 from_pretrained)
  gen  -    Generator.generate (mixed [None, adapter] batches) vs one-by-one model.generate; arena panes
  peak -    the matmul peak (fp32, bf16) on this machine, now
  shape -   builds a random Llama of a named shape (bench.shapes) for the scale area
"""

from __future__ import annotations

import sys

from stylealign.files import write_json

from .generation import gen_arm
from .measure import peak_arm
from .shapes import build_arm
from .spec import ArmSpec
from .training import train_arm

ARMS = {"sft": train_arm, "dpo": train_arm, "gen": gen_arm, "peak": peak_arm, "shape": build_arm}


def main(argv: list[str]) -> int:
    spec = ArmSpec.load(argv[0])
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    result = ARMS[spec.area](spec)
    result.update(area=spec.area, arm=spec.arm, rep=spec.rep)
    write_json(spec.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
