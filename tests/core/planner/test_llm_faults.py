"""The openai planner against a local fake endpoint that answers well, badly or not at all.

Each broken answer must become one PlanError line (at most 300 characters), quickly, and must never
be cached; answers of a plan that validated are cached and replayed without contacting the server.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.planner import PlanError, llm
from core.planner.llm import AnswerCache, OpenAIPlanner

PROMPT = "A red ball rolls to the right on the grass."
VALID_ANSWERS = {
    "ScenesAnswer": llm.DEMO_SCENES,
    "LayoutAnswer": llm.DEMO_LAYOUT,
    "ActionsAnswer": llm.DEMO_ACTIONS,
    "ImaginationAnswer": llm.DEMO_IMAGINATION,
}


def completion(content: str) -> bytes:
    return json.dumps(
        {
            "id": "fake", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        }
    ).encode()


class FakeEndpoint(BaseHTTPRequestHandler):
    server: "FakeServer"

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests += 1
        mode = self.server.mode
        if mode == "silent":
            time.sleep(30)
            return
        body, kind = {
            "valid": (lambda: completion(json.dumps(VALID_ANSWERS[request["response_format"]["json_schema"]["name"]])), "application/json"),
            "text": (lambda: b"hello, I am not an API", "text/plain"),
            "empty-object": (lambda: b"{}", "application/json"),
            "no-choices": (lambda: b'{"choices": []}', "application/json"),
            "truncated": (lambda: completion('{"entities": [')[:-40], "application/json"),
            "truncated-content": (lambda: completion('{"entities": [{"id": "ball", "na'), "application/json"),
            "huge": (lambda: completion("x" * 20_000_000), "application/json"),
        }[mode]
        data = body()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    mode = "valid"
    requests = 0


@pytest.fixture(scope="module")
def server():
    srv = FakeServer(("127.0.0.1", 0), FakeEndpoint)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()


@pytest.fixture
def endpoint(server):
    server.mode, server.requests = "valid", 0
    return server


def planner(srv, cache_dir, **kwargs) -> OpenAIPlanner:
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("retries", 0)
    return OpenAIPlanner("fake", base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", api_key="sk-test", cache_dir=cache_dir, **kwargs)


def one_line_plan_error(run) -> str:
    with pytest.raises(PlanError) as info:
        run()
    message = str(info.value)
    assert "\n" not in message and len(message) <= 300, message
    return message


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("text", "llm: malformed answer from http://127.0.0.1:{port}/v1: not a chat completion (got 'hello, I am not an API')"),
        ("empty-object", "llm: malformed answer from http://127.0.0.1:{port}/v1: no choices (got None)"),
        ("no-choices", "llm: malformed answer from http://127.0.0.1:{port}/v1: no choices (got [])"),
        ("truncated", "llm: malformed answer from http://127.0.0.1:{port}/v1: not JSON (Unterminated string"),
        ("truncated-content", "scenes: invalid JSON: "),
        ("huge", "llm: malformed answer from http://127.0.0.1:{port}/v1: choices[0].message.content: must have at most 100000 characters (got 20000000)"),
    ],
)
def test_malformed_answers_are_one_plan_error_line_and_not_cached(endpoint, tmp_path, mode, expected):
    endpoint.mode = mode
    message = one_line_plan_error(lambda: planner(endpoint, tmp_path).plan(PROMPT))
    assert message.startswith(expected.format(port=endpoint.server_address[1])), message
    assert list(tmp_path.iterdir()) == []


def test_silent_endpoint_fails_within_the_timeout(endpoint, tmp_path):
    endpoint.mode = "silent"
    start = time.monotonic()
    message = one_line_plan_error(lambda: planner(endpoint, tmp_path, timeout=1, retries=1).plan(PROMPT))
    elapsed = time.monotonic() - start
    assert message.startswith("llm: request to http://127.0.0.1:") and "Timeout" in message
    assert endpoint.requests == 2  # the request and its one retry
    assert elapsed < 2 * 1 + 3, elapsed


def test_valid_plan_is_cached_and_replayed_without_the_server(endpoint, tmp_path):
    first = planner(endpoint, tmp_path)
    plan = first.plan(PROMPT)
    assert first.calls >= 5 and [s.id for s in plan.scenes] == ["s1", "s2"]
    endpoint.mode = "text"  # the server breaks: the replay must not notice
    again = planner(endpoint, tmp_path)
    assert again.plan(PROMPT) == plan
    assert again.calls == 0


def test_no_cache_always_asks_the_server(endpoint, tmp_path):
    planner(endpoint, "").plan(PROMPT)
    requests = endpoint.requests
    planner(endpoint, "").plan(PROMPT)
    assert endpoint.requests == 2 * requests


def test_answers_of_a_plan_that_fails_are_not_cached(endpoint, tmp_path, monkeypatch):
    # The steps answer well but the last (polish) step is broken: the whole plan fails, nothing is kept.
    monkeypatch.setitem(VALID_ANSWERS, "ImaginationAnswer", {"triplets": "not a list"})
    one_line_plan_error(lambda: planner(endpoint, tmp_path).plan(PROMPT))
    assert list(tmp_path.iterdir()) == []


def test_cache_evicts_least_recently_used(tmp_path):
    cache = AnswerCache(tmp_path, max_bytes=2500)
    for key in ("a", "b", "c"):
        cache.put(key, {}, "x" * 1000)
        time.sleep(0.01)
    assert cache.get("a") is None  # the oldest went to keep the folder under its cap
    assert cache.get("b") is not None  # read: now the most recently used
    time.sleep(0.01)
    cache.put("d", {}, "x" * 1000)
    assert cache.get("c") is None and cache.get("b") is not None and cache.get("d") is not None


@pytest.mark.parametrize("kwargs, expected", [({"timeout": 0}, "llm_timeout: must be in [1, 600] seconds (got 0)"), ({"retries": 9}, "llm_retries: must be in [0, 5] (got 9)")])
def test_wait_options_are_range_checked(kwargs, expected):
    with pytest.raises(PlanError) as info:
        OpenAIPlanner("fake", base_url="http://127.0.0.1:9/v1", cache_dir="", **kwargs)
    assert str(info.value) == expected
