"""L2 judge plumbing: position-swapped verdicts, win rates, spec parsing, weak-judge refusal, HTTP judge."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from stylealign.evaluate.judge import (
    JudgeError,
    OpenAIJudge,
    build_prompt,
    judge_pair,
    load_rubric,
    make_judge,
    parse_verdict,
    win_rate_summary,
)
from stylealign.fakes import FakeJudge

GOOD, BAD = "No. Use Postgres; it fits.", "Great question! It may depend on many factors. I hope this helps!"


def test_fake_judge_verdicts_flow_into_win_rate_with_the_swap():
    judge = FakeJudge()
    recs = [judge_pair(judge, "q", GOOD, BAD) for _ in range(3)] + [judge_pair(judge, "q", BAD, GOOD)]
    assert len(judge.calls) == 8
    assert judge.calls[0][1:] == (GOOD, BAD) and judge.calls[1][1:] == (BAD, GOOD)  # adapter shown first, then second
    assert [r["outcome"] for r in recs] == ["adapter"] * 3 + ["baseline"]
    s = win_rate_summary(recs, n_boot=200)
    assert (s["wins"], s["ties"], s["losses"]) == (3, 0, 1) and s["win_rate"] == 0.75
    assert s["position_consistency"] == 1.0 and s["ci"][0] <= 0.75 <= s["ci"][1]


def test_a_position_biased_judge_yields_ties_and_low_consistency():
    recs = [judge_pair(FakeJudge(always="A"), "q", GOOD, BAD) for _ in range(5)]
    assert all(r["first"] == "adapter" and r["second"] == "baseline" and r["outcome"] == "tie" for r in recs)
    s = win_rate_summary(recs, n_boot=100)
    assert s["win_rate"] == 0.5 and s["position_consistency"] == 0.0 and s["adapter_first_wins"] == 5


def test_mixed_outcomes_count_ties_as_half():
    recs = [{"first": "adapter", "second": "adapter", "consistent": True, "outcome": "adapter"},
            {"first": "tie", "second": "tie", "consistent": True, "outcome": "tie"},
            {"first": "baseline", "second": "adapter", "consistent": False, "outcome": "tie"},
            {"first": "baseline", "second": "baseline", "consistent": True, "outcome": "baseline"}]
    s = win_rate_summary(recs, n_boot=100)
    assert s["win_rate"] == pytest.approx((1 + 0.5 + 0.5) / 4) and s["position_consistency"] == 0.75


@pytest.mark.parametrize("reply,verdict", [("A", "A"), ("b.", "B"), ("TIE", "tie"), ("Answer B is better", "B"),
                                           ("", "tie"), ("I cannot decide", "tie")])
def test_parse_judge_reply(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_rubric_template_fills_safely():
    text = build_prompt(load_rubric(), "P", "what {x}?", "ans {answer_b}", "B")
    assert "what {x}?" in text and "ans {answer_b}" in text and "{persona}" not in text


def test_weak_or_base_judges_are_refused():
    with pytest.raises(JudgeError, match="135M"):
        make_judge("hf:/models/SmolLM2-135M-Instruct")
    with pytest.raises(JudgeError):
        make_judge("hf:/some/model", base_model="/some/model")
    with pytest.raises(JudgeError, match="bad judge spec"):
        make_judge("gpt4")


def test_openai_compatible_judge_over_http():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            out = json.dumps({"choices": [{"message": {"content": "B"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        judge = make_judge(f"openai:http://127.0.0.1:{server.server_port}/v1#big-model")
        assert isinstance(judge, OpenAIJudge) and judge("q", "a1", "a2") == "B"
    finally:
        server.shutdown()
    path, body = seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "big-model" and body["temperature"] == 0
    assert "a1" in body["messages"][0]["content"]
