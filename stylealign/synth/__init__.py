"""`stylealign synth`: grow a persona's preference (and SFT) data with a teacher and a student.

The teacher answers in character (its answers become `chosen`, and SFT rows with `--sft-out`); the
student — the base model to be trained, without the persona prompt — answers the same conversations,
and its answers become `rejected` (on-policy, `rejected_kind: student`). Teachers: a local HF chat
model through the generation layer (`hf:PATH` or a base alias), an OpenAI-compatible endpoint
(`openai:URL#MODEL`, through stylealign.backend), or a file of in-character conversations
(`file:PATH[,PATH...]`, globs allowed: every assistant turn answers the turns before it).

Every prompt passes the filters, and the decision is counted in the summary. Work is done in
batches; each batch's rows are appended to the output with one write + fsync, and every decision to a
log beside it (`<out>.log`), so a rerun skips what is done and `kill -9` loses at most the batch
in flight. A partial last line (a kill mid-write) is cut off on restart.

The modules, bottom up: `config` (SynthConfig, SynthError), `jobs` (the conversations to answer and
their keys), `teachers` (who answers), `filters` (every decision), `outputs` (durable appends, the
summary), `topics` (prompts the teacher writes), `run` (the loop). Callers import from
`stylealign.synth`, which re-exports them.
"""

from stylealign.synth.config import TEACHER_HELP, SynthConfig, SynthError
from stylealign.synth.filters import (
    FILTERS,
    SAME_ANSWER,
    alike_pairs,
    answer_problem,
    existing_prompts,
    near_duplicates,
    pair_problem,
)
from stylealign.synth.jobs import Job, conversation_jobs, digest, hash_share, pair_id, prompt_jobs, read_rows
from stylealign.synth.outputs import (
    Outputs,
    Summary,
    append_rows,
    log_path,
    pair_row,
    prompts_path,
    repair_tail,
    sft_row,
)
from stylealign.synth.run import build_jobs, process_batch, provenance, run_synth
from stylealign.synth.teachers import (
    FileTeacher,
    ModelTeacher,
    Student,
    generate_ended,
    generation,
    open_backend_for,
    open_teacher,
)
from stylealign.synth.topics import ASK, FOLLOW, add_follow_ups, topic_specs, write_prompts

__all__ = [
    "ASK", "FILTERS", "FOLLOW", "SAME_ANSWER", "TEACHER_HELP", "FileTeacher", "Job", "ModelTeacher", "Outputs",
    "Student", "Summary", "SynthConfig", "SynthError", "add_follow_ups", "alike_pairs", "answer_problem",
    "append_rows", "build_jobs", "conversation_jobs", "digest", "existing_prompts", "generate_ended", "generation",
    "hash_share", "log_path", "near_duplicates", "open_backend_for", "open_teacher", "pair_id", "pair_problem",
    "pair_row", "process_batch", "prompt_jobs", "prompts_path", "provenance", "read_rows", "repair_tail",
    "run_synth", "sft_row", "topic_specs", "write_prompts",
]
