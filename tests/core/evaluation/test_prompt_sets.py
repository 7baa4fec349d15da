"""The shipped prompt files plan with the rules planner and pass their own plan checks.

The sealed test set (``assets/eval/toyworld_test.jsonl``) is read here only for its format and its
plan checks: no model renders it in the test suite, so nothing is tuned on it."""

import json

import pytest

from core.evaluation.checks import CHECKS, check_plan
from core.evaluation.run import read_prompts
from core.planner.rules import plan_with_rules
from core.toyworld.world import BACKGROUNDS, COLORS, KINDS
from tests.conftest import EVAL_PROMPTS

TEST_SET = EVAL_PROMPTS / "toyworld_test.jsonl"


def test_the_sealed_test_set_is_new_well_formed_and_covers_the_world():
    items = read_prompts(TEST_SET)
    assert len(items) >= 60 and len({i["prompt"] for i in items}) == len(items)
    seen_before = {i["prompt"] for name in ("toyworld_dev.jsonl", "toyworld_heldout.jsonl", "toyworld_dev2.jsonl") for i in read_prompts(EVAL_PROMPTS / name)}
    assert not seen_before & {i["prompt"] for i in items}
    assert all(i["checks"] and all(c["type"] in CHECKS for c in i["checks"]) for i in items)
    text = " ".join(i["prompt"].lower() for i in items)
    assert all(word in text for word in (*KINDS, *COLORS, *BACKGROUNDS))
    types = {c["type"] for i in items for c in i["checks"]}
    assert {"direction", "color_change", "count", "same_entity", "grow", "shrink", "appear", "disappear"} <= types


@pytest.mark.parametrize("name", ["toyworld_dev.jsonl", "toyworld_heldout.jsonl", "toyworld_dev2.jsonl", "toyworld_test.jsonl"])
def test_every_prompt_plans_and_passes_its_checks(name):
    failed = []
    for item in read_prompts(EVAL_PROMPTS / name):
        results = check_plan(plan_with_rules(item["prompt"]), item["checks"])
        failed += [(item["prompt"], json.dumps(check)) for check, ok in results if not ok]
    assert failed == []
