"""Training: LoRA SFT, then DPO from the SFT adapter, on one base model in memory.

A run (`train_run`, `job.TrainingJob`): validate all data (nothing loads before the data is clean) -> load the
base once -> SFT -> DPO (the SFT adapter continues training; TRL keeps a frozen copy of it as the DPO
reference, so there is no second model) -> choose the checkpoint (`stylealign.selection`) -> write adapter,
manifest, logs, plot -> publish the run folder by an atomic rename. `health` stops a diverging stage.

Modules: `data` (a stage's rows), `trainers` (TRL's SFT and DPO trainers with the kit's CPU paths),
`records` (checkpoints and a stage's records on disk), `job` (the run).
"""

from stylealign.train.data import (
    StageData,
    as_dataset,
    count_tokens_fn,
    dpo_rows,
    length_grouped,
    load_stage_data,
    sft_rows,
)
from stylealign.train.job import RETRY, STAGES, TrainingJob, run_paths, train_run
from stylealign.train.records import DONE, checkpoint_complete, latest_checkpoint, run_trainer
from stylealign.train.trainers import (
    cpu_lora_autocast,
    dpo_config,
    dpo_trainer,
    lora_config,
    sft_trainer,
    training_attention,
)

__all__ = ["DONE", "RETRY", "STAGES", "StageData", "TrainingJob", "as_dataset", "checkpoint_complete",
           "count_tokens_fn", "cpu_lora_autocast", "dpo_config", "dpo_rows", "dpo_trainer", "latest_checkpoint",
           "length_grouped", "load_stage_data", "lora_config", "run_paths", "run_trainer", "sft_rows", "sft_trainer",
           "train_run", "training_attention"]
