"""The studio's service: the persona loop (write, train, evaluate, improve, export) as calls the browser app
makes, each returning plain data. Long steps become jobs (stylealign.jobs) that run the CLI, so the studio
does exactly what the commands do and a crash in a job never takes the server down.

Everything the studio reads or writes lies in its workspace (personas/, runs/, .stylealign/): names are checked
against one pattern and paths resolved inside it, so nothing outside can be read or written through the UI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stylealign.errors import NotFound, UserError
from stylealign.jobs import DEFAULT_JOBS, Job, JobQueue

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
EXPORT_TARGETS = ("merged", "gguf", "ollama")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # one uploaded data file


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

        problems = check_draft(draft, self.personas_dir)
        if problems:
            raise UserError("; ".join(problems))
        return write_persona(draft, self.personas_dir)

    def spec(self, name: str) -> str:
        return (self.persona_dir(name) / "persona.yaml").read_text(encoding="utf-8")

    def save_spec(self, name: str, text: str) -> list[str]:
        """Save an edited persona.yaml if it loads and validates; return the problems (file:line: what) instead
        of saving when it does not. The file on disk is replaced whole or not at all."""
        from stylealign.files import write_atomic

        folder = self.persona_dir(name)
        problems = self.check_spec_text(folder, text)
        if not problems:
            write_atomic(folder / "persona.yaml", text)
        return problems

    def check_spec_text(self, folder: Path, text: str) -> list[str]:
        """Return what is wrong with a persona.yaml text for `folder` (loading, then the data checks)."""
        import shutil
        import tempfile

        from stylealign.checker import check_persona
        from stylealign.errors import describe
        from stylealign.personas import load_persona

        with tempfile.TemporaryDirectory() as tmp:  # the draft beside a copy-free view of the persona's files
            draft = Path(tmp) / folder.name
            shutil.copytree(folder, draft, ignore=shutil.ignore_patterns("persona.yaml"), symlinks=True)
            (draft / "persona.yaml").write_text(text, encoding="utf-8")
            try:
                persona = load_persona(str(draft))
            except Exception as e:
                known = describe(e)
                if known is None:
                    raise
                return [known[0].replace(str(draft), str(folder))]
            return [p.replace(str(draft), str(folder)) for p in check_persona(persona).problems]

    def validate(self, name: str) -> list[str]:
        """`personas validate NAME`: every problem, as file:line: what."""
        from stylealign.checker import check_persona
        from stylealign.personas import load_persona

        return check_persona(load_persona(str(self.persona_dir(name)))).problems

    # -- jobs ---------------------------------------------------------------------------------------------------
    def train(self, persona: str, run: str, recipe: str = "smollm2-135m_qlora_cpu", overrides: dict | None = None,
              stage: str = "all") -> Job:
        """Queue `stylealign train STAGE` for a persona into runs/RUN; `overrides` are recipe fields."""
        from stylealign.config import load_recipe

        overrides = {k: str(v) for k, v in (overrides or {}).items() if str(v).strip()}
        load_recipe(recipe, dict(overrides))  # a bad field or value fails now, in one line, not in the job
        argv = ["train", stage, "--persona", str(self.persona_dir(persona)), "--recipe", recipe,
                "--run", str(self.run_dir(run, finished=False))]
        for key, value in overrides.items():
            argv += [f"--{key}", value]
        return self.queue.submit(argv)

    def evaluate(self, run: str, limit: int = 8) -> Job:
        """Queue `stylealign eval` of a finished run (its report in runs/RUN/eval)."""
        if limit < 1:
            raise UserError(f"limit {limit}: evaluate at least 1 prompt per suite")
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

        folder, target = self.run_dir(run), self.run_dir(next_run, finished=False)
        pairs = self.root / ".stylealign" / "studio" / f"votes-{check_name('run', next_run)}.jsonl"
        n = export_preferences(str(self.inside(votes)), str(pairs))
        if n == 0:
            raise UserError(f"{votes}: no decisive votes yet; vote in the Arena tab's blind battles first")
        return n, self.queue.submit(["train", "dpo", "--init", str(folder), "--data", str(pairs), "--run", str(target)])

    def report(self, run: str) -> str:
        """The run's evaluation report (Markdown), or a line saying there is none yet."""
        path = self.run_dir(run) / "eval" / "report.md"
        return path.read_text(encoding="utf-8") if path.is_file() else f"No evaluation of {run} yet."

    def runs(self) -> list[str]:
        return sorted(p.parent.name for p in self.runs_dir.glob("*/manifest.json"))
