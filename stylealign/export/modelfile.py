"""An Ollama Modelfile for base GGUF + LoRA GGUF, with a TEMPLATE equivalent to the base's chat template.

The Go template is derived, not hand-written: the HF chat template is rendered around sentinel
contents, which yields each role's text before and after its content, the generation prompt, and any
system prompt the template adds when there is none. Every literal is emitted as a quoted Go string, so
the `{{-` trim markers that lay the template out never eat a newline of the chat format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SENTINEL = "\x00{}\x00"
ROLES = ("system", "user", "assistant")


class TemplateError(ValueError):
    """The chat template is not a plain per-message wrapper, so no equivalent Go template is derived."""


@dataclass(frozen=True)
class ChatFormat:
    """Per role (prefix, suffix) around the content; the generation prompt; the template's default system text."""

    wrap: dict[str, tuple[str, str]]
    generation_prompt: str
    default_system: str


def chat_format(tokenizer) -> ChatFormat:
    """Return the chat format behind the tokenizer's template (TemplateError when it is not per-message)."""
    sys_, user, asst, user2 = ({"role": r, "content": SENTINEL.format(n)} for r, n in
                               (("system", "s"), ("user", "u"), ("assistant", "a"), ("user", "u2")))
    try:
        full = _render(tokenizer, [sys_, user, asst, user2], False).split("\x00")
        alone = _render(tokenizer, [user], False).split("\x00")
        with_answer = _render(tokenizer, [user, asst], False).split("\x00")
        gen = _render(tokenizer, [user], True)[len(_render(tokenizer, [user], False)):]
    except Exception as e:  # a template that refuses a system turn, or any other shape
        raise TemplateError(f"the chat template cannot render a system/user/assistant conversation: {e}") from None
    if len(full) != 9 or len(alone) != 3 or len(with_answer) != 5:
        raise TemplateError("the chat template drops or repeats message contents")
    # full: [pre, s, s_post + u_pre, u, u_post + a_pre, a, a_post + u_pre, u2, u_post]
    u_post, a_post = alone[2], with_answer[4]
    u_pre = full[6][len(a_post):]
    wrap = {"system": (full[0], full[2][:len(full[2]) - len(u_pre)]), "user": (u_pre, u_post),
            "assistant": (full[4][len(u_post):], a_post)}
    default_system = alone[0][:len(alone[0]) - len(u_pre)]
    fmt = ChatFormat(wrap, gen, default_system)
    _verify(tokenizer, fmt)
    return fmt


def _render(tokenizer, messages, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def expand(fmt: ChatFormat, messages: list[dict], generation_prompt: bool = True) -> str:
    """Return the conversation as the derived format writes it (what the Go template must produce)."""
    out = fmt.default_system if messages and messages[0]["role"] != "system" else ""
    for m in messages:
        pre, post = fmt.wrap[m["role"]]
        out += pre + m["content"] + post
    return out + (fmt.generation_prompt if generation_prompt else "")


def _verify(tokenizer, fmt: ChatFormat) -> None:
    """Raise TemplateError unless the derived format reproduces the HF template on probe conversations."""
    probes = [[{"role": "user", "content": "Hi"}],
              [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
               {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Why?"}]]
    for p in probes:
        if expand(fmt, p) != _render(tokenizer, p, True):
            raise TemplateError("the chat template is not a plain per-message wrapper (no Go equivalent derived)")


def go_template(fmt: ChatFormat) -> str:
    """Return an Ollama (Go text/template) TEMPLATE over .Messages equivalent to the chat format."""
    q = lambda s: "{{ " + json.dumps(s, ensure_ascii=False) + " }}"  # noqa: E731  (a Go string literal)
    lines = []
    if fmt.default_system:
        lines.append('{{- if or (eq (len .Messages) 0) (ne (index .Messages 0).Role "system") }}'
                     + q(fmt.default_system) + "{{ end }}")
    lines.append("{{- range $i, $m := .Messages }}")
    for k, role in enumerate(ROLES):
        pre, post = fmt.wrap[role]
        lines.append(("{{- if" if k == 0 else "{{- else if") + f' eq $m.Role "{role}" }}}}'
                     + q(pre) + "{{ $m.Content }}" + q(post))
    lines.append("{{- end }}")
    lines.append('{{- if and (eq (len (slice $.Messages $i)) 1) (ne $m.Role "assistant") }}'
                 + q(fmt.generation_prompt) + "{{ end }}")
    lines.append("{{- end }}")
    return "\n".join(lines)


def stop_tokens(tokenizer, fmt: ChatFormat) -> list[str]:
    """Return the stop strings: the end-of-turn marker of the assistant suffix and the EOS token."""
    stops = []
    end = fmt.wrap["assistant"][1].strip()
    if end:
        stops.append(end)
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    return stops


def modelfile(base_gguf: str, adapter_gguf: str, template: str, system: str | None, stops: list[str],
              params: dict) -> str:
    """Return the Modelfile text (paths relative to the Modelfile's folder work with `ollama create`)."""
    lines = [f"FROM {base_gguf}", f"ADAPTER {adapter_gguf}", f'TEMPLATE """{template}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}" for s in stops]
    lines += [f"PARAMETER {k} {v}" for k, v in params.items()]
    return "\n".join(lines) + "\n"
