"""The typed spec of one measured arm, handed to its worker process as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ArmSpec:
    """What one worker process measures (`python -m bench.worker SPEC.json`) and where it writes."""

    area: str                          # sft, dpo, gen, peak or shape (builds the shape named by `model`)
    arm: str | None = None             # training areas: "kit" or "ref"
    rep: int | None = None             # which alternated repetition
    model: str | None = None           # base folder
    recipe: str | None = None          # recipe of the kit arms
    quant: str | None = None           # kit (or generation) base weights; None: the recipe's
    batch_size: int = 0
    warmup: int = 0                    # steps not timed
    total_steps: int = 0               # warm-up + timed (+ 1 profiled)
    max_length: int | None = None
    rows: str | None = None            # rows.json written by run_bench
    ref: str = "trl"                   # "kit": the reference arm is the kit as shipped (A/B of kit_set)
    kit_set: dict = field(default_factory=dict)
    ref_quant: str = "none"            # plain-TRL arm's base: "none" (from_pretrained defaults) or "nf4" (QLoRA)
    ref_set: dict = field(default_factory=dict)  # plain-TRL arm: extra SFTConfig/DPOConfig fields, and
                                                 # "attn_implementation" for from_pretrained
    profile: str | None = None         # file for the profiled step's table
    reps: int = 0                      # generation: repetitions inside the one process
    max_new_tokens: int = 0
    trials: int = 5                    # peak: matmul trials per dtype
    threads: int = 0                   # torch threads (0: torch's default)
    work: str = ""                     # scratch folder of the arm
    result: str = ""                   # JSON result file

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ArmSpec:
        return cls(**json.loads(Path(path).read_text()))
