"""``launch.py batch`` as a user runs it: one end-to-end batch on the embedded local Ray cluster (a
prompt job planned on Ray, an invalid plan, a line that is not JSON), and the argument errors, each
one line with exit code 2 before any cluster starts (run in-process: no Ray is started for them)."""

import json
import re
import sys

import pytest

from core.cli import main
from core.export import read_mp4
from core.planner.rules import plan_with_rules
from tests.test_cli import PROMPT, launch


def test_batch_end_to_end_on_the_embedded_cluster(tmp_path):
    plan = json.loads(plan_with_rules(PROMPT, num_frames=8).model_dump_json())
    plan["scenes"][0]["keyframes"][-1]["boxes"]["e1"] = [0.6, 0.4, 0.1, 0.6]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "ball", "prompt": PROMPT, "seed": 3}) + "\n" + json.dumps({"plan": plan}) + "\n{oops\n")
    out = tmp_path / "out"
    result = launch("batch", jobs, "--out", out, "--workers", "1", "--steps", "2", "--frames", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"batch: 1 ok, 2 errors, 0 skipped; [0-9.]+ videos per minute \([0-9.]+ s, 1 worker\); manifest {re.escape(str(out))}/manifest.jsonl", summary), summary
    frames, fps = read_mp4(out / "ball.mp4")
    assert frames.shape == (8, 128, 128, 3) and fps == 8
    assert json.loads((out / "ball.plan.json").read_text())["prompt"] == PROMPT
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(e["id"], e["status"]) for e in entries] == [("ball", "ok"), ("0002", "error"), ("0003", "error")]
    assert entries[0]["outputs"] == ["ball.mp4", "ball.plan.json"] and entries[0]["settings"]["render"]["seed"] == 3
    assert entries[1]["error"] == "jobs.jsonl:2: scenes[0].keyframes[1].boxes.e1: x0 must be < x1 (got 0.6 >= 0.1)"
    assert entries[2]["error"].startswith("jobs.jsonl:3: not JSON")


@pytest.fixture
def jobs_file(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text(json.dumps({"prompt": PROMPT}) + "\n")
    return path


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--workers", "0"], "error: --workers: must be >= 1 (got 0)"),
        (["--gpus-per-worker", "-1"], "error: --gpus-per-worker: must be in [0, 64] (got -1)"),
        (["--device", "cuda"], "error: --device: cuda needs --gpus-per-worker (e.g. 1: one worker per GPU)"),
        (["--gpus-per-worker", "1", "--device", "cpu"], "error: --device: must be cuda with --gpus-per-worker (Ray gives each worker its GPUs; got cpu)"),
        (["--steps", "0"], "error: --steps: must be >= 1 (got 0)"),
        (["--frames", "100"], "error: --frames: must be in [8, 64] (got 100)"),
        (["--model", "/nonexistent/model"], "error: model: /nonexistent/model has no model_index.json (expected a diffusers pipeline folder)"),
    ],
)
def test_bad_batch_options_are_one_line_before_any_cluster(tmp_path, jobs_file, capsys, options, expected):
    assert main(["batch", str(jobs_file), "--out", str(tmp_path / "out"), *options]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [expected]
    assert not (tmp_path / "out").exists()


def test_bad_jobs_files_and_outputs_are_one_line(tmp_path, jobs_file, capsys):
    def error(*args) -> str:
        assert main(["batch", *map(str, args)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1
        return lines[0]

    assert error(tmp_path / "missing.jsonl", "--out", tmp_path / "out") == f"error: {tmp_path / 'missing.jsonl'}: no such file"
    (tmp_path / "empty.jsonl").write_text("\n \n")
    assert error(tmp_path / "empty.jsonl", "--out", tmp_path / "out") == "error: empty.jsonl: has no jobs"
    assert error(jobs_file, "--out", jobs_file) == f"error: --out: {jobs_file} exists and is not a folder"
    assert main(["eval", str(jobs_file), "--out", str(tmp_path / "eval"), "--ray-address", "auto"]) == 2
    assert capsys.readouterr().err.strip() == "error: --ray-address: needs --workers (eval renders here without it)"


def test_without_ray_batch_says_how_to_install_it(tmp_path, jobs_file, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    assert main(["batch", str(jobs_file), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ['error: batch rendering needs Ray: pip install -e ".[scale]" (or pip install "ray[data]==2.60.0")']
    assert main(["eval", str(jobs_file), "--out", str(tmp_path / "eval"), "--workers", "2"]) == 2
    assert "batch rendering needs Ray" in capsys.readouterr().err

