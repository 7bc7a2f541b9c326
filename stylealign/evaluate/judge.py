"""L2 (optional) pairwise judge: which of two answers better fits the persona, judged in both orders.

A Judge is any callable `(prompt, answer_a, answer_b) -> "A" | "B" | "tie"`. Two implementations:
a local Hugging Face chat model (`hf:PATH`) and an OpenAI-compatible endpoint (`openai:URL#MODEL`,
through stylealign.backend's client, key from $STYLEALIGN_JUDGE_API_KEY, $STYLEALIGN_API_KEY or $OPENAI_API_KEY). Each pair is judged with
the adapter's answer first and then second; verdicts that disagree count as a tie, which removes
position bias from the win rate and is reported as "position consistency".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from stylealign.errors import UserError
from stylealign.evaluate.stats import bootstrap_ci

RUBRIC_PATH = Path(__file__).resolve().parents[2] / "eval" / "rubrics" / "style_judge.md"
DEFAULT_PERSONA = ("Sharp, candid, human, never rude: leads with a verdict, takes positions and gives reasons, "
                   "no reflexive hedges or boilerplate, short vivid sentences, honest 'I don't know'.")
# Names of base models too small to judge anything (and the model under test): refused as judges.
WEAK_JUDGES = re.compile(r"smollm2[-_ ]?135m", re.I)


class JudgeError(UserError, ValueError):
    """The judge spec is invalid or names a model that must not be used as a judge."""


class Judge(Protocol):
    def __call__(self, prompt: str, answer_a: str, answer_b: str) -> str:
        """Return "A", "B" or "tie"."""


def load_rubric(path: str | Path | None = None) -> str:
    """Return the judge prompt template: the part of the rubric file below the `---` line."""
    text = Path(path or RUBRIC_PATH).read_text(encoding="utf-8")
    return text.split("\n---\n", 1)[1].strip() if "\n---\n" in text else text


def build_prompt(template: str, persona: str, prompt: str, answer_a: str, answer_b: str) -> str:
    """Return the filled-in judge prompt: one pass over the template, so braces inside answers stay as written."""
    values = {"persona": persona, "prompt": prompt, "answer_a": answer_a, "answer_b": answer_b}
    return re.sub(r"\{(persona|prompt|answer_a|answer_b)\}", lambda m: values[m.group(1)], template)


def parse_verdict(text: str) -> str:
    """Return "A", "B" or "tie" from a judge reply (the first standalone A/B/TIE token; tie if none)."""
    m = re.search(r"\b(TIE|A|B)\b", text.strip().upper())
    return "tie" if not m or m.group(1) == "TIE" else m.group(1)


class HFJudge:
    """A local Hugging Face chat model as judge (greedy, a few tokens)."""

    def __init__(self, path: str, rubric: str | None = None, persona: str = DEFAULT_PERSONA, max_new_tokens: int = 4):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path, self.template, self.persona, self.max_new_tokens = path, rubric or load_rubric(), persona, max_new_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).eval()

    def __call__(self, prompt: str, answer_a: str, answer_b: str) -> str:
        import torch

        msg = [{"role": "user", "content": build_prompt(self.template, self.persona, prompt, answer_a, answer_b)}]
        ids = self.tokenizer.apply_chat_template(msg, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = self.model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False)
        return parse_verdict(self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))


class OpenAIJudge:
    """An OpenAI-compatible /chat/completions endpoint as judge (temperature 0; retries with backoff)."""

    def __init__(self, url: str, model: str, rubric: str | None = None, persona: str = DEFAULT_PERSONA,
                 api_key: str | None = None, timeout: float = 120.0, retries: int = 4, backoff: float = 1.0):
        from stylealign.backend import KEY_ENVS, Endpoint, api_key_from_env

        key = api_key or api_key_from_env(("STYLEALIGN_JUDGE_API_KEY", *KEY_ENVS))
        self.endpoint = Endpoint(url, key, timeout, retries, backoff)
        self.model, self.template, self.persona = model, rubric or load_rubric(), persona

    def __call__(self, prompt: str, answer_a: str, answer_b: str) -> str:
        from stylealign.backend import chat_completion, reply_text

        body = {"model": self.model, "temperature": 0, "max_tokens": 8,
                "messages": [{"role": "user", "content": build_prompt(self.template, self.persona, prompt, answer_a, answer_b)}]}
        return parse_verdict(reply_text(chat_completion(self.endpoint, body)))


def check_not_weak(path_or_name: str, base_model: str | None = None) -> None:
    """Raise JudgeError if the judge is the small embedded model or the base model under test."""
    same_as_base = base_model is not None and _same_model(path_or_name, base_model)
    if WEAK_JUDGES.search(path_or_name) or same_as_base:
        raise JudgeError(
            f"refusing judge {path_or_name!r}: it is the base model under test or the 135M embedded model, "
            "which cannot judge style (it would grade itself, near-randomly). Use a capable instruct model "
            "(hf:PATH to a large local model, or openai:URL#MODEL).")


def _same_model(a: str, b: str) -> bool:
    """Return True when two model names/paths refer to the same model (resolved paths or names)."""
    try:
        from stylealign.models import resolve_base

        b = resolve_base(b).path if not Path(b).exists() else b
    except Exception:  # unknown alias or models module unavailable: compare as given
        pass
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve() or a == b


def make_judge(spec: str, base_model: str | None = None, persona: str = DEFAULT_PERSONA,
               rubric_path: str | None = None) -> Judge:
    """Return a Judge for "hf:PATH" or "openai:URL#MODEL"; refuses the base / 135M model (JudgeError)."""
    kind, _, rest = spec.partition(":")
    rubric = load_rubric(rubric_path)
    if kind == "hf" and rest:
        check_not_weak(rest, base_model)
        return HFJudge(rest, rubric, persona)
    if kind == "openai":
        from stylealign.backend import parse_spec

        try:
            url, model, opts = parse_spec(spec)
        except ValueError as e:
            raise JudgeError(str(e)) from None
        check_not_weak(model, base_model)
        return OpenAIJudge(url, model, rubric, persona, timeout=float(opts.get("timeout", 120)),
                           retries=int(opts.get("retries", 4)), backoff=float(opts.get("backoff", 1.0)))
    raise JudgeError(f"bad judge spec {spec!r}: use hf:PATH or openai:URL#MODEL")


def judge_pair(judge: Callable[[str, str, str], str], prompt: str, adapter: str, baseline: str) -> dict:
    """Return {"first", "second", "consistent", "outcome"} for one pair judged in both orders.

    "first": winner with the adapter shown as A; "second": winner with the adapter shown as B; each
    is "adapter", "baseline" or "tie". The outcome is their common verdict, or "tie" if they differ.
    """
    first = {"A": "adapter", "B": "baseline"}.get(judge(prompt, adapter, baseline), "tie")
    second = {"A": "baseline", "B": "adapter"}.get(judge(prompt, baseline, adapter), "tie")
    consistent = first == second
    return {"first": first, "second": second, "consistent": consistent, "outcome": first if consistent else "tie"}


def win_rate_summary(records: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """Return wins/ties/losses, win rate (ties = half) with bootstrap 95% CI, and position consistency."""
    outcomes = [r["outcome"] for r in records]
    scores = np.array([{"adapter": 1.0, "tie": 0.5, "baseline": 0.0}[o] for o in outcomes])
    lo, hi = bootstrap_ci(scores, n_boot, seed=seed) if scores.size else (None, None)
    return {
        "n": len(records),
        "wins": outcomes.count("adapter"), "ties": outcomes.count("tie"), "losses": outcomes.count("baseline"),
        "win_rate": float(scores.mean()) if scores.size else None, "ci": [lo, hi],
        "position_consistency": float(np.mean([r["consistent"] for r in records])) if records else None,
        "adapter_first_wins": sum(r["first"] == "adapter" for r in records),
        "adapter_second_wins": sum(r["second"] == "adapter" for r in records),
    }
