"""The OpenAI-compatible backend against a fake server on 127.0.0.1: request bodies, model names per
adapter, key from the environment, concurrency limit, retries with backoff, timeouts, clear errors."""

import json
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stylealign.backend import Backend, BackendError, OpenAIBackend, open_backend, parse_spec
from stylealign.evaluate.judge import make_judge
from stylealign.generate import GenerationConfig, Generator

GREEDY = GenerationConfig(max_new_tokens=12, do_sample=False, repetition_penalty=1.0)


class FakeServer:
    """A threaded HTTP server whose replies a test scripts: `script(n, body)` -> (status, payload, delay)."""

    def __init__(self, script=None):
        self.requests, self.in_flight, self.max_in_flight = [], 0, 0
        self.script = script or (lambda n, body: (200, _reply(f"{body['model']}: {body['messages'][-1]['content']}"), 0))
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append((self.path, dict(self.headers), body))
                    n = len(outer.requests)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                status, payload, delay = outer.script(n, body)
                time.sleep(delay)
                with outer.lock:
                    outer.in_flight -= 1
                out = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _reply(text: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def _convs(n: int) -> list[list[dict]]:
    return [[{"role": "system", "content": "be sharp"}, {"role": "user", "content": f"q{i}"}] for i in range(n)]


def test_rows_go_to_the_model_of_their_adapter_in_order_with_the_generation_settings(monkeypatch):
    monkeypatch.setenv("STYLEALIGN_API_KEY", "sk-test")
    with FakeServer() as srv:
        backend = open_backend(f"openai:{srv.url}#base-model", adapter_models={"sc": "sc-lora"})
        cfg = GenerationConfig(max_new_tokens=7, temperature=0.5, top_p=0.8, repetition_penalty=1.2, seed=3)
        stopped = []
        out = backend.generate(_convs(3), [None, "sc", "other"], cfg, strengths={"sc": 1.0}, stopped=stopped)
    assert out == ["base-model: q0", "sc-lora: q1", "other: q2"]  # unknown adapters: served under their own name
    assert stopped == [True] * 3
    path, headers, body = next(r for r in srv.requests if r[2]["model"] == "base-model")  # concurrent: any order
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test"
    assert body["messages"] == _convs(1)[0] and body["max_tokens"] == 7 and body["seed"] == 3
    assert (body["temperature"], body["top_p"]) == (0.5, 0.8)
    assert body["repetition_penalty"] == body["repeat_penalty"] == 1.2  # vLLM's and llama.cpp's names


def test_greedy_is_temperature_zero_and_penalty_can_be_left_out():
    with FakeServer() as srv:
        backend = open_backend(f"openai:{srv.url}#m?penalty=none")
        backend.generate(_convs(1), [None], GenerationConfig(do_sample=False, repetition_penalty=1.3))
        open_backend(f"openai:{srv.url}#m").generate(_convs(1), [None], GREEDY)
    body = srv.requests[0][2]
    assert body["temperature"] == 0.0 and body["top_p"] == 1.0
    assert "repetition_penalty" not in body and "repeat_penalty" not in body
    assert srv.requests[1][2]["repeat_penalty"] == 1.0  # sent at 1.0 too: llama-cpp-python's server defaults to 1.1


def test_concurrency_is_limited():
    with FakeServer(lambda n, body: (200, _reply("ok"), 0.15)) as srv:
        OpenAIBackend(srv.url, "m", concurrency=3).generate(_convs(9), [None] * 9, GREEDY)
    assert len(srv.requests) == 9 and 2 <= srv.max_in_flight <= 3


def test_transient_failures_are_retried_with_backoff(monkeypatch):
    import stylealign.backend

    waits = []  # the backend's own waits (the fake server sleeps through the real time.sleep)
    monkeypatch.setattr(stylealign.backend, "time", types.SimpleNamespace(sleep=waits.append))
    statuses = {1: 503, 2: 429}
    with FakeServer(lambda n, body: (statuses.get(n, 200), _reply("fine") if n > 2 else {"error": "busy"}, 0)) as srv:
        out = OpenAIBackend(srv.url, "m", retries=3, backoff=0.2).generate(_convs(1), [None], GREEDY)
    assert out == ["fine"] and len(srv.requests) == 3
    assert len(waits) == 2 and 0.1 <= waits[0] <= 0.2  # a jittered backoff after the 503 ...
    assert waits[1] == 0  # ... and the 429's Retry-After of 0 s


def test_a_client_error_fails_at_once_with_the_servers_message():
    with FakeServer(lambda n, body: (400, {"error": {"message": "model 'm' not found"}}, 0)) as srv:
        with pytest.raises(BackendError, match=r"HTTP 400: model 'm' not found"):
            OpenAIBackend(srv.url, "m", retries=3, backoff=0.01).generate(_convs(1), [None], GREEDY)
    assert len(srv.requests) == 1


def test_a_slow_server_times_out_after_the_retries():
    with FakeServer(lambda n, body: (200, _reply("late"), 5.0)) as srv:
        with pytest.raises(BackendError, match="after 2 attempts"):  # the 5 s reply never arrives: two 0.2 s timeouts
            OpenAIBackend(srv.url, "m", timeout=0.2, retries=1, backoff=0.01).generate(_convs(1), [None], GREEDY)
        assert len(srv.requests) == 2


def test_no_server_is_one_clear_error():
    with FakeServer() as srv:
        url = srv.url
    with pytest.raises(BackendError, match="is the server running"):
        OpenAIBackend(url, "m", retries=1, backoff=0.01).generate(_convs(1), [None], GREEDY)


def test_strengths_other_than_one_are_refused_and_the_stream_ends_with_every_answer():
    with FakeServer() as srv:
        backend = OpenAIBackend(srv.url, "base")
        with pytest.raises(ValueError, match="in-process backend"):
            backend.generate(_convs(1), ["sc"], GREEDY, strengths={"sc": 0.5})
        steps = list(backend.stream(_convs(2), [None, "sc"], GREEDY))
    assert len(steps) == 2 and steps[-1] == ["base: q0", "sc: q1"] and "" in steps[0]


@pytest.mark.parametrize("spec,match", [("http://h/v1#m", "bad backend spec"), ("openai:http://h/v1", "bad backend spec"),
                                        ("openai:h:8000/v1#m", "bad backend spec"),
                                        ("openai:http://h/v1#m?threads=2", "unknown option"),
                                        ("openai:http://h/v1#m?concurrency=0", "concurrency must be")])
def test_bad_specs_say_how_to_fix_them(spec, match):
    with pytest.raises(ValueError, match=match):
        open_backend(spec)


def test_spec_options_parse():
    assert parse_spec("openai:https://api.example.com/v1#gpt-x?timeout=5") == ("https://api.example.com/v1", "gpt-x", {"timeout": "5"})
    b = open_backend("openai:http://127.0.0.1:1/v1#m?concurrency=8&retries=0&timeout=5")
    assert (b.concurrency, b.endpoint.retries, b.endpoint.timeout) == (8, 0, 5.0)


def test_the_judge_uses_the_same_client_and_retries():
    with FakeServer(lambda n, body: (503 if n == 1 else 200, _reply("A"), 0)) as srv:
        judge = make_judge(f"openai:{srv.url}#big-model?retries=2&backoff=0.01")
        assert judge("q", "a1", "a2") == "A"
    assert len(srv.requests) == 2 and srv.requests[1][2]["temperature"] == 0


def test_both_implementations_are_backends():
    assert issubclass(Generator, Backend) and issubclass(OpenAIBackend, Backend)


def test_eval_runs_baseline_and_adapter_as_two_models_on_one_server(tmp_path):
    from stylealign.cli import main

    run = tmp_path / "sc-run"
    run.mkdir()
    answers = {"base": "It may depend on many factors. I hope this helps!", "sc-run": "No. Use Postgres; it fits."}
    with FakeServer(lambda n, body: (200, _reply(answers[body["model"]]), 0)) as srv:
        rc = main(["eval", "--adapter", str(run), "--backend", f"openai:{srv.url}#base", "--suite", "eval/suites/smoke.jsonl",
                   "--limit", "3", "--no-classifier", "--no-plots", "--quiet", "--greedy", "--n-boot", "50", "--out", str(tmp_path / "ev")])
    assert rc == 0 and sorted({b["model"] for _, _, b in srv.requests}) == ["base", "sc-run"]
    assert len(srv.requests) == 12  # 3 prompts x 2 models x (the pass asked for + the greedy coherence probe)
    rows = [json.loads(line) for line in (tmp_path / "ev" / "answers.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["answers"] == {"baseline": answers["base"], "sc-run": answers["sc-run"]} for r in rows)
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["retention"]["status"] == "skipped"  # a server gives no logits
    assert report["comparisons"]["sc-run"]["overall"]["hedge_rate"]["diff"] < 0


def test_eval_with_a_bad_backend_spec_is_one_line(capsys, tmp_path):
    from stylealign.cli import main

    (tmp_path / "r").mkdir()
    assert main(["eval", "--adapter", str(tmp_path / "r"), "--backend", "vllm://x"]) == 2
    assert "bad backend spec" in capsys.readouterr().err
