"""What a run writes, durably: preference rows, SFT rows and the decision log, appended per batch.

Each batch's rows go out with one write + fsync, and every decision to a log beside the output
(`<out>.log`), so a rerun skips what is done and `kill -9` loses at most the batch in flight. A
partial last line (a kill mid-write) is cut off on restart (`repair_tail`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from stylealign.files import append_durable, check_writable, read_jsonl
from stylealign.synth.filters import FILTERS
from stylealign.synth.jobs import Job


@dataclass
class Summary:
    """Counts of every decision, including those logged by earlier runs."""

    counts: dict[str, int] = field(default_factory=lambda: {"kept": 0, **{f: 0 for f in FILTERS}})
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, status: str, key: str = "") -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        self.examples.setdefault(status, key)

    def format(self) -> str:
        total = sum(self.counts.values())
        lines = [f"synth: {total} prompts, {self.counts['kept']} pairs kept"]
        lines += [f"  {name:<22}{n:>6}" + (f"   e.g. {self.examples[name]}" if n and name in self.examples else "")
                  for name, n in self.counts.items()]
        return "\n".join(lines)


def repair_tail(path: Path) -> int:
    """Cut a partial last line (no newline: a write killed midway) off `path`; return the bytes removed."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return len(data) - keep


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append `rows` as JSONL with one write, then fsync: a batch lands whole or (after repair_tail) not at all."""
    if rows:
        append_durable(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def log_path(out: Path) -> Path:
    """Return the decision log beside the output file (named so that no `*.jsonl` data glob matches it)."""
    return out.with_name(out.name + ".log")


def prompts_path(out: Path) -> Path:
    """Return the cache of teacher-written prompts beside the output file."""
    return out.with_name(out.name + ".prompts")


def pair_row(job: Job, chosen: str, rejected: str, provenance: dict) -> dict:
    """Return the preference row for a job (rejected_kind "student": the base model's own answer)."""
    return {"id": job.key, "category": job.category, "language": job.language, "rejected_kind": "student",
            "prompt": job.prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "provenance": provenance}


def sft_row(job: Job, chosen: str, provenance: dict) -> dict:
    """Return the SFT row for a job: its conversation with the teacher's answer."""
    from stylealign.data import VERDICTS
    from stylealign.evaluate.verdict import parse_verdict

    verdict = parse_verdict(chosen, job.language)
    return {"id": job.sft_id, "category": job.category, "language": job.language,
            "verdict": verdict if verdict in VERDICTS else "none",
            "messages": [*job.prompt, {"role": "assistant", "content": chosen}], "provenance": provenance}


@dataclass
class Outputs:
    """The files a run appends to, and what earlier runs already decided."""

    pref: Path
    log: Path
    sft: Path | None
    done: set[str] = field(default_factory=set)
    summary: Summary = field(default_factory=Summary)
    sft_ids: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, pref: Path, sft: Path | None) -> "Outputs":
        """Repair partial last lines, then read what is done: logged decisions, and pairs written before
        their log line (a kill between the two appends), whose "kept" line is appended to the log now."""
        out = cls(pref, log_path(pref), sft)
        for folder in {p.parent for p in (pref, out.log, sft) if p is not None}:
            check_writable(folder)
        for path in (pref, out.log, sft):
            if path is not None:
                repair_tail(path)
        for entry in read_jsonl(out.log, missing_ok=True):
            out.done.add(entry["key"])
            out.summary.add(entry["status"], entry["key"])
        unlogged = [{"key": row["id"], "status": "kept"} for row in read_jsonl(pref, missing_ok=True) if row["id"] not in out.done]
        append_rows(out.log, unlogged)
        for entry in unlogged:
            out.done.add(entry["key"])
            out.summary.add("kept", entry["key"])
        out.sft_ids = {r["id"] for r in read_jsonl(sft, missing_ok=True)} if sft else set()
        return out

    def write(self, sft_rows: list[dict], pref_rows: list[dict], log_rows: list[dict]) -> None:
        """Append one batch: SFT rows, then pairs, then the decisions. A kill between them loses that batch's
        pairs, never repeats a row: an SFT row already written (its pair lost) is not written again when the
        rerun redoes its job."""
        if self.sft is not None:
            sft_rows = [r for r in sft_rows if r["id"] not in self.sft_ids]
            append_rows(self.sft, sft_rows)
            self.sft_ids.update(r["id"] for r in sft_rows)
        append_rows(self.pref, pref_rows)
        append_rows(self.log, log_rows)
        for entry in log_rows:
            self.done.add(entry["key"])
            self.summary.add(entry["status"], entry["key"])
