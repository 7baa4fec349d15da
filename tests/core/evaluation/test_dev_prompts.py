"""benchmarks/dev_prompts.py: the procedural dev set is drawn the same way for a seed, covers the
world's kinds, colours and backgrounds, and never repeats a prompt it is told to skip."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from core.evaluation.run import read_prompts
from core.toyworld.world import BACKGROUNDS, COLORS, KINDS
from tests.conftest import EVAL_PROMPTS

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "dev_prompts.py"


def load_script():
    spec = importlib.util.spec_from_file_location("dev_prompts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_seed_draws_the_same_prompts_and_skips_the_excluded_ones():
    draw = load_script().draw_prompts
    first, _ = draw(10, 3, set())
    assert draw(10, 3, set())[0] == first
    assert draw(10, 4, set())[0] != first
    again, rejected = draw(10, 3, {first[0]["prompt"]})
    assert first[0]["prompt"] not in {i["prompt"] for i in again} and rejected >= 1


def test_the_shipped_dev2_set_is_the_scripts_seed_0_draw_and_covers_the_world(tmp_path):
    out = tmp_path / "dev2.jsonl"
    result = subprocess.run([sys.executable, str(SCRIPT), "--count", "40", "--seed", "0", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    shipped = read_prompts(EVAL_PROMPTS / "toyworld_dev2.jsonl")
    assert [json.loads(line) for line in out.read_text().splitlines()] == shipped
    text = " ".join(i["prompt"].lower() for i in shipped)
    assert all(word in text for word in (*COLORS, *BACKGROUNDS)) and all(k in text for k in KINDS)


def test_a_count_out_of_range_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--count", "0", "--out", str(tmp_path / "x.jsonl")], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip() == "error: --count: must be in [1, 500] (got 0)"
    assert not (tmp_path / "x.jsonl").exists()
