"""The studio's service: the persona loop (write, train, evaluate, improve, export) as calls the browser app
makes, each returning plain data. Long steps become jobs (stylealign.jobs) that run the CLI, so the studio
does exactly what the commands do and a crash in a job never takes the server down.

Everything the studio reads or writes lies in its workspace (personas/, runs/, .stylealign/): names are checked
against one pattern and paths resolved inside it, so nothing outside can be read or written through the UI.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

from stylealign.errors import NotFound, UserError
from stylealign.jobs import DEFAULT_JOBS, Job, JobQueue

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
EXPORT_TARGETS = ("merged", "gguf", "ollama")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # one uploaded data file
MAX_TEXT = 200_000  # characters of any text the browser sends (a persona.yaml, a form field, a teacher, an override)
MAX_OVERRIDES = 64  # recipe fields set from the Train tab at once


def check_size(kind: str, text: str, limit: int = MAX_TEXT) -> str:
    """Return `text` if it is at most `limit` characters (the browser's limits are only a convenience)."""
    if len(text or "") > limit:
        raise UserError(f"{kind}: {len(text):,} characters is over the studio's limit of {limit:,}; shorten it")
    return text


def check_name(kind: str, name: str) -> str:
    """Return `name` if it is a safe folder name (no path, no dots), else raise a UserError saying so."""
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        raise UserError(f"{kind} {name!r}: use lower-case letters, digits, '-' or '_' (at most 64), e.g. warm-tutor")
    return name


@dataclass
class Studio:
    """One workspace: its personas, runs and job queue."""

    root: Path
    queue: JobQueue

    @classmethod
    def open(cls, root: str | Path = ".", jobs: str | None = None) -> Studio:
        root = Path(root).resolve()
        return cls(root, JobQueue(root / (jobs or DEFAULT_JOBS), cwd=root))

    # -- places -------------------------------------------------------------------------------------------------
    @property
    def personas_dir(self) -> Path:
        return self.root / "personas"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def inside(self, path: str | Path) -> Path:
        """Return `path` resolved, if it lies in the workspace; else a UserError."""
        resolved = (self.root / path).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise UserError(f"{path}: outside the studio's workspace {self.root}; pick a file inside it")
        return resolved

    def persona_dir(self, name: str) -> Path:
        folder = self.personas_dir / check_name("persona", name)
        if not (folder / "persona.yaml").is_file():
            raise NotFound(f"persona {name}: no {folder / 'persona.yaml'}; create it in the Persona tab")
        return folder

    def run_dir(self, name: str, finished: bool = True) -> Path:
        folder = self.runs_dir / check_name("run", name)
        if finished and not (folder / "manifest.json").is_file():
            raise NotFound(f"run {name}: no finished run in {folder}; train one in the Train tab")
        return folder

    # -- personas -----------------------------------------------------------------------------------------------
    def personas(self) -> list[str]:
        return sorted(p.parent.name for p in self.personas_dir.glob("*/persona.yaml"))

    def create_persona(self, draft) -> Path:
        """Write a new persona from a `scaffold.PersonaDraft`; every problem with it in one UserError."""
        from stylealign.scaffold import check_draft, write_persona

        for key, value in vars(draft).items():
            check_size(key, value if isinstance(value, str) else "".join(map(str, value)))
        problems = check_draft(draft, self.personas_dir)
        if problems:
            raise UserError("; ".join(problems))
        return write_persona(draft, self.personas_dir)

    def spec(self, name: str) -> str:
        return (self.persona_dir(name) / "persona.yaml").read_text(encoding="utf-8")

    def save_spec(self, name: str, text: str) -> tuple[bool, list[str]]:
        """Save an edited persona.yaml if it loads; return (saved, problems). Problems that stop the save (YAML,
        unknown or mistyped fields) come as `file:line: what`; once saved, the data checks follow (`validate`).
        The file on disk is replaced whole or not at all."""
        from stylealign.files import write_atomic

        folder = self.persona_dir(name)
        errors = self.spec_errors(folder, check_size("persona.yaml", text))
        if errors:
            return False, errors
        write_atomic(folder / "persona.yaml", text)
        return True, self.validate(name)

    def spec_errors(self, folder: Path, text: str) -> list[str]:
        """Return why a persona.yaml text for `folder` does not load, as `file:line: what` (empty when it loads)."""
        import tempfile

        import yaml

        from stylealign.errors import describe
        from stylealign.personas import load_persona

        shown = self.shown(folder / "persona.yaml")
        try:
            yaml.safe_load(text)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            return [f"{shown}:{mark.line + 1}:{mark.column + 1}: {e.problem or e.context}"]
        with tempfile.TemporaryDirectory() as tmp:  # the edit beside links to the persona's own files
            draft = Path(tmp) / folder.name
            draft.mkdir()
            for entry in folder.iterdir():
                if entry.name != "persona.yaml":
                    (draft / entry.name).symlink_to(entry)
            (draft / "persona.yaml").write_text(text, encoding="utf-8")
            try:
                load_persona(str(draft))
            except Exception as e:
                known = describe(e)
                if known is None:
                    raise
                what = known[0].replace(str(draft / "persona.yaml") + ": ", "").replace(str(draft), str(folder))
                return [f"{shown}:{_line_of(text, what)}: {what}"]
        return []

    def shown(self, path: Path) -> str:
        """`path` as the studio shows it: relative to the workspace."""
        return str(Path(path).resolve().relative_to(self.root))

    def data_card(self, name: str) -> str:
        """The persona's data card tables (`personas stats NAME --markdown`)."""
        import contextlib

        from stylealign.datacard import format_stats, persona_stats
        from stylealign.personas import load_persona

        with contextlib.chdir(self.root):  # paths in the tables relative to the workspace
            return format_stats(persona_stats(load_persona(str(self.persona_dir(name)))), markdown=True)

    def validate(self, name: str) -> list[str]:
        """`personas validate NAME`: every problem, as file:line: what."""
        from stylealign.checker import check_persona
        from stylealign.personas import load_persona

        folder = self.persona_dir(name)
        spec, text = self.shown(folder / "persona.yaml"), (folder / "persona.yaml").read_text(encoding="utf-8")
        found = [p.replace(str(folder), self.shown(folder)) for p in check_persona(load_persona(str(folder))).problems]
        return [f"{spec}:{_line_of(text, p[len(spec) + 2:])}: {p[len(spec) + 2:]}" if p.startswith(f"{spec}: ") else p
                for p in found]

    # -- data -----------------------------------------------------------------------------------------------------
    def add_rows(self, persona: str, kind: str, upload: str | Path, name: str = "", category: str = "life",
                 rejected_kind: str = "hedge") -> tuple[int, Path]:
        """Validate an uploaded JSONL / JSON / CSV / Parquet file of SFT or preference rows (TRL's formats) and,
        only if every row is good, write it into the persona's data folder as JSONL (atomically). Metadata a row
        lacks is filled as synth fills it: id, language (detected), `category`, an SFT row's verdict (parsed from
        its answer), a pair's `rejected_kind`; the persona's own checks then hold. Return (rows, file written)."""
        from stylealign.data.readers import read_file
        from stylealign.data.validate import check_records
        from stylealign.files import write_jsonl
        from stylealign.personas import load_persona

        if kind not in ("sft", "preference"):
            raise UserError(f"rows of kind {kind!r}: upload sft or preference rows")
        upload = Path(upload)
        if upload.stat().st_size > MAX_UPLOAD_BYTES:
            raise UserError(f"{upload.name}: {upload.stat().st_size / 2**20:.1f} MiB is over the studio's "
                            f"{MAX_UPLOAD_BYTES // 2**20} MiB upload limit; split the file")
        records, problems = read_file(upload)
        stem = check_name("file name", name or re.sub(r"[^a-z0-9_-]+", "-", upload.stem.lower()).strip("-_") or "rows")
        if not problems:
            problems = check_records(records, kind)  # the TRL format first, then the metadata it lacked
            for i, record in enumerate(records if not problems else []):
                record.row = _with_metadata(record.row, kind, f"{stem}-{i + 1}", category, rejected_kind)
            problems += check_records(records, kind, schema=True) if not problems else []
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise UserError(f"{upload.name}: nothing written; " + "; ".join(map(str, problems[:3])) + more)
        if not records:
            raise UserError(f"{upload.name}: no rows; upload a file with at least one row")
        folder = self.persona_dir(persona)
        out = folder / "data" / f"{'sft' if kind == 'sft' else 'pref'}_upload_{stem}.jsonl"
        if out.exists():
            raise UserError(f"{self.shown(out)}: already exists; pick another name or delete it first")
        globs = getattr(load_persona(str(folder)).data, kind)
        if not any(fnmatch.fnmatch(f"data/{out.name}", os.path.normpath(g)) for g in globs):
            raise UserError(f"{self.shown(out)}: persona.yaml's data.{kind} globs ({', '.join(globs)}) would not take this file; "
                            f"add data/{'sft' if kind == 'sft' else 'pref'}_*.jsonl to data.{kind}")
        return write_jsonl(out, (r.row for r in records)), out

    def synth(self, persona: str, teacher: str, out_name: str = "synth", sft: bool = True, limit: int = 0) -> Job:
        """Queue `stylealign synth` for the persona (preference pairs, and SFT rows with `sft`) into its data
        folder; a rerun of the same job continues where it stopped."""
        folder = self.persona_dir(persona)
        check_size("teacher", teacher or "", 2000)
        if not (teacher or "").strip():
            raise UserError("teacher: give one (file:PATH, hf:PATH or openai:URL#MODEL); see `stylealign synth --help`")
        stem = check_name("file name", out_name)
        argv = ["synth", str(folder), "--teacher", teacher.strip(), "--out", str(folder / "data" / f"pref_{stem}.jsonl")]
        argv += ["--sft-out", str(folder / "data" / f"sft_{stem}.jsonl")] if sft else []
        argv += ["--limit", str(int(limit))] if limit else []
        return self.queue.submit(argv)

    # -- jobs ---------------------------------------------------------------------------------------------------
    def train(self, persona: str, run: str, recipe: str = "smollm2-135m_qlora_cpu", overrides: dict | None = None,
              stage: str = "all") -> Job:
        """Queue `stylealign train STAGE` for a persona into runs/RUN; `overrides` are recipe fields."""
        from stylealign.config import flag_name, load_recipe

        overrides = {check_size("recipe field", k, 200): check_size(k, str(v), 10_000)
                     for k, v in (overrides or {}).items() if str(v).strip()}
        if len(overrides) > MAX_OVERRIDES:
            raise UserError(f"{len(overrides)} recipe fields: at most {MAX_OVERRIDES} at once; use a recipe YAML")
        load_recipe(recipe, dict(overrides))  # a bad field or value fails now, in one line, not in the job
        argv = ["train", stage, "--persona", str(self.persona_dir(persona)), "--recipe", recipe,
                "--run", str(self.run_dir(run, finished=False))]
        for key, value in overrides.items():
            argv += [flag_name(key), value]
        return self.queue.submit(argv)

    def evaluate(self, run: str, limit: int = 8) -> Job:
        """Queue `stylealign eval` of a finished run (its report in runs/RUN/eval)."""
        if not 1 <= limit <= 100_000:
            raise UserError(f"limit {limit}: evaluate between 1 and 100,000 prompts per suite")
        return self.queue.submit(["eval", "--adapter", str(self.run_dir(run)), "--limit", str(int(limit))])

    def export(self, run: str, to: str = "gguf") -> Job:
        """Queue `stylealign export` of a finished run into runs/RUN/export."""
        if to not in EXPORT_TARGETS:
            raise UserError(f"export to {to!r}: one of {', '.join(EXPORT_TARGETS)}")
        folder = self.run_dir(run)
        return self.queue.submit(["export", str(folder), "--to", to, "--out", str(folder / "export")])

    def improve(self, run: str, votes: str | Path, next_run: str) -> tuple[int, Job]:
        """Turn the arena's decisive votes into DPO pairs and queue the next round: DPO from `run`'s adapter on
        them into runs/NEXT_RUN. Return (pairs written, job)."""
        from stylealign.arena.export import export_preferences
        from stylealign.files import write_atomic

        folder, target = self.run_dir(run), self.run_dir(next_run, finished=False)
        pairs = self.root / ".stylealign" / "studio" / f"votes-{check_name('run', next_run)}.jsonl"
        n = export_preferences(str(self.inside(votes)), str(pairs))
        if n == 0:
            raise UserError(f"{votes}: no decisive votes yet; vote in the Arena tab's blind battles first")
        import yaml

        from stylealign.manifest import read_manifest

        manifest = read_manifest(folder)  # the next round: the same persona, the same recipe (base, LoRA, ...)
        argv = ["train", "dpo", "--init", str(folder), "--data", str(pairs), "--run", str(target)]
        if manifest.persona_name:
            argv += ["--persona", str(self.persona_dir(manifest.persona_name))]
        if manifest.recipe:
            recipe = pairs.with_name(f"recipe-{next_run}.yaml")
            write_atomic(recipe, yaml.safe_dump(manifest.recipe, sort_keys=False, allow_unicode=True))
            argv += ["--recipe", str(recipe)]
        return n, self.queue.submit(argv)

    def progress(self, run: str) -> dict:
        """What a run has done so far, read from its records while it trains (`runs/RUN.partial`) or after:
        {"stages": {stage: {"step", "max_steps", "eta_s", "losses": [(step, loss)]}}, "candidates": [...]}."""
        from stylealign.candidates import stage_candidates
        from stylealign.train.records import PROGRESS

        name = check_name("run", run)
        folder = next((f for f in (self.runs_dir / f"{name}.partial", self.runs_dir / name) if f.is_dir()), None)
        out = {"stages": {}, "candidates": [], "folder": self.shown(folder) if folder else None}
        order = ("sft", "dpo", "sft-retry", "dpo-retry")  # the order the stages train in
        stages = sorted(folder.glob("stages/*"), key=lambda d: (order.index(d.name) if d.name in order else 9, d.name)) \
            if folder else []
        for stage_dir in stages:
            lines = {}
            for line in _complete_lines(stage_dir / PROGRESS):
                lines[(line["step"], "loss" in line)] = line  # a resumed stage logs its steps again: the last wins
            logs = sorted(lines.values(), key=lambda x: x["step"])
            losses = [(x["step"], x["loss"]) for x in logs if "loss" in x]
            last = logs[-1] if logs else None
            eta = None
            if last and len(logs) > 1 and last["step"] > logs[0]["step"] and last["elapsed_s"] > logs[0]["elapsed_s"]:
                rate = (last["elapsed_s"] - logs[0]["elapsed_s"]) / (last["step"] - logs[0]["step"])
                eta = round(rate * (last["max_steps"] - last["step"]))
            out["stages"][stage_dir.name] = {"step": last["step"] if last else 0, "max_steps": last and last["max_steps"],
                                             "eta_s": eta, "losses": losses, "done": (stage_dir / "DONE").exists(),
                                             "history": logs}
            out["candidates"] += stage_candidates(stage_dir)
        return out

    def progress_plot(self, seen: dict, out: Path) -> Path | None:
        """Write the training plot (SFT loss, DPO margin and accuracy, the candidates' probe scores) of what
        `progress` saw to `out`; None before the first log."""
        from stylealign.plots import training_plot

        histories = {stage: p["history"] for stage, p in seen["stages"].items() if p["history"]}
        if not histories:
            return None
        return training_plot(histories, out, {"candidates": seen["candidates"]} if seen["candidates"] else None)

    def report(self, run: str) -> str:
        """The run's evaluation report (Markdown), or a line saying there is none yet."""
        path = self.run_dir(run) / "eval" / "report.md"
        return path.read_text(encoding="utf-8") if path.is_file() else f"No evaluation of {run} yet."

    def report_plots(self, run: str) -> list[Path]:
        """The evaluation's PNG plots of a run."""
        return sorted((self.run_dir(run) / "eval").glob("*.png"))

    def export_verdict(self, run: str) -> str:
        """The export check's verdict on runs/RUN/export, in a line."""
        import json

        path = self.run_dir(run) / "export" / "report.json"
        if not path.is_file():
            return "No export check yet (exported with --no-check, or still running)."
        report = json.loads(path.read_text(encoding="utf-8"))
        failed = [g["check"] for g in report.get("gates", []) if not g["passed"]]
        return ("Check passed: the exports answer like the adapter." if report.get("passed")
                else f"Check FAILED: {', '.join(failed) or 'see report.md'}.")

    def runs(self) -> list[str]:
        return sorted(p.parent.name for p in self.runs_dir.glob("*/manifest.json"))


def _line_of(text: str, problem: str) -> int:
    """Return the line of the top-level key a problem names (`style.do: ...` -> the `style:` line), else 1."""
    key = re.split(r"[.:\s\[]", problem.strip(), maxsplit=1)[0]
    for number, line in enumerate(text.splitlines(), 1):
        if key and re.match(rf"{re.escape(key)}\s*:", line):
            return number
    return 1


def _with_metadata(row: dict, kind: str, row_id: str, category: str, rejected_kind: str) -> dict:
    """Return `row` with the project's metadata it lacks filled in (what synth writes for its own rows)."""
    from stylealign.data.rows import first_user_turn
    from stylealign.text import detect_language

    filled = {"id": row_id, "category": category,
              "language": detect_language(first_user_turn(row) or ""), **row}
    if kind == "sft" and "verdict" not in row:
        from stylealign.data import VERDICTS
        from stylealign.evaluate.verdict import parse_verdict

        verdict = parse_verdict(row["messages"][-1]["content"], filled["language"])
        filled["verdict"] = verdict if verdict in VERDICTS else "none"
    if kind == "preference":
        filled.setdefault("rejected_kind", rejected_kind)
    return filled


def _complete_lines(path: Path) -> list[dict]:
    """The whole JSON lines of a log being appended to (a torn last line is not read)."""
    import json

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n") and line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
