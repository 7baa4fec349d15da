"""The openai planner against a real local OpenAI-compatible server: xllamacpp serving SmolLM2-135M."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from core.plan import VideoPlan
from core.planner import PlanError
from core.planner.llm import OpenAIPlanner
from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llm_url():
    pytest.importorskip("xllamacpp")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.planner.local_llm", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the local LLM server did not start in 60 s")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize(
    "prompt",
    [
        "A red ball rolls from left to right across the grass.",
        "A pink cross turns blue while it drifts up the sky.",
    ],
)
def test_small_llm_gives_a_valid_plan_or_a_clear_plan_error(llm_url, tmp_path, prompt):
    planner = OpenAIPlanner("smollm2", base_url=llm_url, cache_dir=tmp_path, max_tokens=320)
    try:
        plan = planner.plan(prompt)
    except PlanError as error:
        message = str(error)
        assert message.isprintable() and len(message) <= 300, message
        assert message.split(":")[0].split("[")[0] in {"scenes", "layout", "actions", "imagination", "polish", "plan"}
        assert list(tmp_path.iterdir()) == []  # the answers of a plan that failed are not cached
        return
    assert isinstance(plan, VideoPlan)
    assert plan.prompt == prompt
    assert all(s.num_frames == 16 for s in plan.scenes)
    assert planner.calls >= 4  # scenes, layout, actions, imagination and polish


def test_valid_plans_are_cached_and_failed_ones_are_asked_again(llm_url, tmp_path):
    prompt = "A blue star falls from the top of the night sky to the bottom."
    first = OpenAIPlanner("smollm2", base_url=llm_url, cache_dir=tmp_path, max_tokens=320, imagination=False)
    try:
        expected = first.plan(prompt)
    except PlanError as error:
        expected = error
    assert first.calls >= 1
    again = OpenAIPlanner("smollm2", base_url=llm_url, cache_dir=tmp_path, max_tokens=320, imagination=False)
    try:
        result = again.plan(prompt)
    except PlanError as error:
        result = error
    if isinstance(expected, PlanError):  # nothing was cached: the server is asked again (same answers at temperature 0)
        assert again.calls >= 1 and str(result) == str(expected)
    else:
        assert again.calls == 0 and result == expected


def test_unreachable_endpoint_is_a_plan_error(tmp_path):
    planner = OpenAIPlanner("smollm2", base_url=f"http://127.0.0.1:{free_port()}/v1", cache_dir=tmp_path, timeout=5)
    with pytest.raises(PlanError, match=r"^llm: request to http://127\.0\.0\.1:\d+/v1 failed"):
        planner.plan("A red ball rolls.")


def test_api_key_never_appears_in_errors(tmp_path):
    os.environ.pop("OPENAI_API_KEY", None)
    planner = OpenAIPlanner("m", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="sk-secret-123", cache_dir=tmp_path, timeout=5)
    with pytest.raises(PlanError) as info:
        planner.plan("A red ball rolls.")
    assert "sk-secret-123" not in str(info.value)
