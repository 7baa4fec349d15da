"""The command line as a user runs it: python launch.py plan|graph|render."""

import json
import subprocess
import sys

import pytest

from core.export import read_mp4
from core.render import DEFAULT_MODEL, REFERENCE_MODEL
from tests.conftest import ROOT

PROMPT = "A red ball rolls from left to right across the grass."


def launch(*args, timeout=300):
    return subprocess.run([sys.executable, "launch.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_plan_then_graph(tmp_path):
    result = launch("plan", PROMPT, "--out", tmp_path / "plan.json")
    assert result.returncode == 0, result.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["schema_version"] == 1 and plan["entities"][0]["attributes"]["color"] == "red"
    result = launch("graph", tmp_path / "plan.json", "--out", tmp_path / "dsg.json")
    assert result.returncode == 0, result.stderr
    dsg = json.loads((tmp_path / "dsg.json").read_text())
    assert len(dsg["scenes"][0]["frames"]) == 16
    assert ["ball", "has color", "red"] in dsg["scenes"][0]["frames"][0]


def one_line_error(result):
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_invalid_plan_is_one_line_and_writes_nothing(tmp_path):
    plan = json.loads(launch("plan", PROMPT, "--out", tmp_path / "plan.json").returncode == 0 and (tmp_path / "plan.json").read_text())
    plan["scenes"][0]["keyframes"][1]["boxes"]["e1"] = [0.6, 0.4, 0.1, 0.6]
    (tmp_path / "bad.json").write_text(json.dumps(plan))
    line = one_line_error(launch("render", "--plan", tmp_path / "bad.json", "--out", tmp_path / "video.mp4"))
    assert line == f"error: {tmp_path / 'bad.json'}: scenes[0].keyframes[1].boxes.e1: x0 must be < x1 (got 0.6 >= 0.1)"
    line = one_line_error(launch("graph", tmp_path / "bad.json", "--out", tmp_path / "dsg.json"))
    assert "x0 must be < x1" in line
    assert not (tmp_path / "video.mp4").exists() and not (tmp_path / "dsg.json").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["render", "--prompt", PROMPT, "--out", "v.mp4", "--steps", "0"], "error: --steps: must be >= 1 (got 0)"),
        (["render", "--prompt", PROMPT, "--out", "v.mp4", "--layout-alpha", "2"], "error: --layout-alpha: must be <= 1.0 (got 2.0)"),
        (["render", "--prompt", PROMPT, "--out", "v.gif"], "error: --out: must end in .mp4 (got v.gif)"),
        (
            ["render", "--prompt", PROMPT, "--out", "v.mp4", "--guidance-interval", "0.8", "0.2"],
            "error: --guidance-interval: must be (start, end) with 0 <= start <= end <= 1 (got (0.8, 0.2))",
        ),
        (["plan", "", "--out", "p.json"], "error: prompt: must have 1-2000 characters (got 0)"),
        (["plan", PROMPT, "--out", "p.json", "--frames", "100"], "error: --frames: must be in [8, 64] (got 100)"),
        (["render", "--prompt", PROMPT, "--out", "v.mp4", "--device", "cuda"], "error: device: 'cuda' requested but torch sees no CUDA device (allowed here: cpu)"),
    ],
)
def test_bad_arguments(tmp_path, args, expected):
    args = [str(tmp_path / a) if a.endswith((".mp4", ".json", ".gif")) else a for a in args]
    line = one_line_error(launch(*args))
    assert line == expected
    assert list(tmp_path.iterdir()) == []


def test_eval_takes_the_render_layout_alpha_and_checks_it(tmp_path):
    line = one_line_error(launch("eval", "assets/eval/toyworld_dev.jsonl", "--out", tmp_path / "eval", "--layout-alpha", "-0.5"))
    assert line == "error: --layout-alpha: must be >= 0.0 (got -0.5)"
    assert list(tmp_path.iterdir()) == []


def test_long_prompt_and_forged_key_give_one_short_line(tmp_path):
    line = one_line_error(launch("plan", "x" * 5000, "--out", tmp_path / "plan.json"))
    assert line == "error: prompt: must have 1-2000 characters (got 5000)"
    assert launch("plan", PROMPT, "--out", tmp_path / "plan.json").returncode == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    plan["scenes"][0]["keyframes"][0]["boxes"]["\nerror: fake second line\x1b[31m" + "k" * 5000] = [0.1, 0.1, 0.2, 0.2]
    (tmp_path / "forged.json").write_text(json.dumps(plan))
    line = one_line_error(launch("render", "--plan", tmp_path / "forged.json", "--out", tmp_path / "video.mp4"))
    assert len(line) <= 300 and "\x1b" not in line and "\\nerror: fake second line" in line
    assert not (tmp_path / "video.mp4").exists()


def test_plan_file_over_one_megabyte_is_refused(tmp_path):
    assert launch("plan", PROMPT, "--out", tmp_path / "plan.json").returncode == 0
    big = tmp_path / "big.json"
    big.write_text((tmp_path / "plan.json").read_text() + " " * 1_000_000)
    line = one_line_error(launch("graph", big, "--out", tmp_path / "dsg.json"))
    assert line == f"error: {big}: plan: must be at most 1000 kB (got 1001 kB)"


@pytest.mark.parametrize("blocked", ["video.mp4", "video.plan.json"])
def test_unwritable_output_fails_before_rendering_and_leaves_nothing(tmp_path, blocked):
    assert launch("plan", PROMPT, "--out", tmp_path / "plan.json").returncode == 0
    (tmp_path / blocked).mkdir()  # a folder where a file must go
    before = sorted(p.name for p in tmp_path.iterdir())
    # 200 steps would take minutes: an answer within the timeout means the check ran first.
    result = launch("render", "--plan", tmp_path / "plan.json", "--out", tmp_path / "video.mp4", "--steps", "200", timeout=60)
    line = one_line_error(result)
    assert line.endswith(f"{tmp_path / blocked} is a folder; give a file path")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(("model", "size"), [(None, 128), (REFERENCE_MODEL, 64)], ids=["default-model-v2", "reference-layout2vid"])
def test_render_end_to_end_with_shipped_weights(tmp_path, model, size):
    if not ((model or DEFAULT_MODEL) / "model_index.json").exists():
        pytest.skip("shipped model missing")
    out = tmp_path / "video.mp4"
    chosen = ["--model", model] if model else []
    result = launch("render", "--prompt", "A red ball rolls from left to right across the grass.", "--out", out, "--steps", "10", *chosen)
    assert result.returncode == 0, result.stderr
    frames, fps = read_mp4(out)
    assert frames.shape == (16, size, size, 3) and fps == 8
    assert json.loads(out.with_suffix(".plan.json").read_text())["prompt"].startswith("A red ball")
    # The ball is planned to go from the left third to the right third: its red pixels must follow.
    red = (frames[..., 0].astype(int) > 150) & (frames[..., 1] < 110) & (frames[..., 2] < 110)
    xs = [red[f].nonzero()[1].mean() for f in (0, 15) if red[f].any()]
    assert len(xs) == 2, "no red object in the first or last frame"
    assert xs[0] < size / 2 < xs[1]
