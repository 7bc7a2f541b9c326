"""`stylealign synth NAME`: grow a persona's preference (and SFT) data with a teacher and a student."""

from __future__ import annotations

import sys
import time

DESCRIPTION = """The teacher answers in character (chosen; SFT rows with --sft-out), the student (the base model
to be trained, no persona prompt) answers the same conversations (rejected, on-policy). Filters, each counted
in the summary: near-duplicates (of each other, the persona's data, the eval suites), empty / truncated /
unfinished answers, wrong language, repetition, chosen ≈ rejected, pairs that miss the persona's declared
targets. Rows are appended per batch with fsync; a rerun continues where the last one stopped."""

TEACHER_HELP = ("hf:PATH or a base alias (local HF chat model), openai:http://HOST:PORT/v1#MODEL (any OpenAI-compatible "
                "server; key from $STYLEALIGN_API_KEY or $OPENAI_API_KEY; ?concurrency=N&retries=N&timeout=S), or "
                "file:PATH[,PATH] (JSONL conversations whose assistant turns are the in-character answers; globs allowed)")


def register(sub) -> None:
    p = sub.add_parser("synth", help="Build preference pairs (teacher in character vs the base model) for a persona.",
                       description=DESCRIPTION)
    p.add_argument("persona", help="persona name or folder")
    p.add_argument("--teacher", required=True, metavar="SPEC", help=TEACHER_HELP)
    p.add_argument("--student", default="smollm2-135m", help="the base model to be trained (default: the embedded one)")
    p.add_argument("--prompts", default=None, metavar="persona|FILE",
                   help="prompts: 'persona' (its SFT prompts), a JSONL file (messages ending with a user turn, or "
                        "prompt strings); default: the file teacher's own conversations")
    p.add_argument("--topic", action="append", default=[], metavar="CATEGORY:TOPIC",
                   help="the teacher writes prompts about this topic, in each of the persona's languages (repeatable)")
    p.add_argument("--per-topic", type=int, default=2, help="teacher-written prompts per topic and language")
    p.add_argument("--follow-ups", type=float, default=0.25, help="share of teacher-written prompts with a follow-up turn")
    p.add_argument("--out", default=None, help="preference JSONL to append to (default: <persona>/data/pref_synth.jsonl)")
    p.add_argument("--sft-out", default=None, help="also append the teacher's conversations as SFT rows here")
    p.add_argument("--category", default="life", help="category for prompts that carry none")
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per batch (one fsync'd append each)")
    p.add_argument("--few-shot", type=int, default=2, help="persona SFT examples shown to a model teacher")
    p.add_argument("--teacher-tokens", type=int, default=256, help="token budget of a model teacher's answers")
    p.add_argument("--student-tokens", type=int, default=160, help="token budget of the student's answers")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args):
    """Return the SynthConfig the flags describe."""
    from stylealign.synth import SynthConfig

    return SynthConfig(teacher=args.teacher, student=args.student, prompts=args.prompts, topics=tuple(args.topic),
                       per_topic=args.per_topic, follow_ups=args.follow_ups, out=args.out, sft_out=args.sft_out,
                       category=args.category, limit=args.limit, batch_size=args.batch_size, few_shot=args.few_shot,
                       teacher_tokens=args.teacher_tokens, student_tokens=args.student_tokens,
                       temperature=args.temperature, seed=args.seed, progress=not args.quiet)


def run(args) -> int:
    from stylealign.personas import PersonaError, load_persona
    from stylealign.synth import SynthError, run_synth

    started = time.monotonic()
    try:
        persona = load_persona(args.persona)
        summary = run_synth(persona, config_from_args(args))
    except (PersonaError, SynthError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # the backend's one-line failures (server down after every retry)
        if type(e).__name__ != "BackendError":
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.format())
    print(f"wall time {time.monotonic() - started:.0f} s; check the data with `stylealign personas validate {persona.name}`")
    return 0
