"""Plan limits and error lines: every bad plan is refused before any work with one bounded line."""

import json

import pytest

from core.plan import MAX_PLAN_BYTES, PlanValidationError, load_plan, parse_plan
from tests.core.plan.test_plan import error_of, make_plan


def check_line(line: str) -> str:
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert len(line) <= 300, len(line)
    return line


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["entities"][0]["attributes"].update({f"a{i}": "x" for i in range(17)}), "entities[0].attributes: must have at most 16 items (got 18)"),
        (lambda d: d["entities"][0]["attributes"].update({"k" * 65: "x"}), "entities[0].attributes: key must have at most 64 characters (got 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...' (65 chars))"),
        (lambda d: d["entities"][0]["attributes"].update({"size": "y" * 65}), "entities[0].attributes.size: must have at most 64 characters (got 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy...' (65 chars))"),
        (lambda d: d["entities"][0].update(name="   "), "entities[0].name: must not be blank"),
        (lambda d: d.update(prompt=" \n\t "), "prompt: must not be blank"),
        (lambda d: d["scenes"][0].update(events=d["scenes"][0]["events"] * 33), "scenes[0].events: must have at most 32 items (got 33)"),
        (
            lambda d: d["scenes"][0].update(enrichment=[{"subject": "ball", "predicate": "has size", "object": "big", "start": 0, "end": 1}] * 65),
            "scenes[0].enrichment: must have at most 64 items (got 65)",
        ),
        (lambda d: d["scenes"][0]["events"][0].update(agent="<img src=x>"), "scenes[0].events[0].agent: must match ^[A-Za-z0-9_\\-]{1,32}$ (got '<img src=x>')"),
        (lambda d: d["entities"].extend({"id": f"x{i}", "name": "n", "kind": "k"} for i in range(64)), "entities: must have at most 64 items (got 65)"),
    ],
)
def test_limits_name_the_field_and_the_range(mutate, expected):
    data = make_plan()
    mutate(data)
    assert check_line(error_of(data)) == expected


@pytest.mark.parametrize("field, value", [("fps", "8"), ("fps", True), ("num_frames", "16"), ("num_frames", 16.5)])
def test_numbers_must_be_json_numbers(field, value):
    data = make_plan()
    (data if field == "fps" else data["scenes"][0])[field] = value
    line = error_of(json.dumps(data))
    assert line.startswith(("fps: must be an integer", "scenes[0].num_frames: must be an integer")), line


def test_long_prompt_is_elided_in_one_line():
    data = make_plan()
    data["prompt"] = "x" * 5000
    line = check_line(error_of(json.dumps(data)))
    assert line == "prompt: must have at most 2000 characters (got 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' (5000 chars))"


def test_forged_key_cannot_start_a_second_line():
    data = make_plan()
    data["scenes"][0]["keyframes"][0]["boxes"]["\nerror: fake second line\x1b[31m"] = [0.1, 0.1, 0.2, 0.2]
    line = check_line(error_of(json.dumps(data)))
    assert line.startswith("scenes[0].keyframes[0].boxes.\\nerror: fake second line\\x1b[31m: unknown entity id")


def test_a_thousand_scenes_give_one_short_line():
    data = make_plan()
    data["scenes"] = [dict(data["scenes"][0], id=f"s{i}") for i in range(1000)]
    assert check_line(error_of(json.dumps(data))) == "scenes: must have at most 8 items (got 1000)"


def test_many_errors_still_one_line():
    data = make_plan()
    for i in range(50):
        data["entities"].append({"id": "e1", "name": "\x1b" * 100, "kind": "", "attributes": {}})
    line = check_line(error_of(data))
    assert "(and " in line


def test_file_over_one_megabyte_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(make_plan()) + " " * MAX_PLAN_BYTES)
    with pytest.raises(PlanValidationError) as info:
        load_plan(path)
    assert str(info.value) == f"{path}: plan: must be at most 1000 kB (got 1000 kB)" or str(info.value).startswith(f"{path}: plan: must be at most 1000 kB")


def test_file_with_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(make_plan()).encode())
    assert load_plan(path).prompt == "A red ball rolls right."


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps(make_plan()).replace("grass", "gr\u00e4ss").encode("latin-1"))
    with pytest.raises(PlanValidationError) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}: not UTF-8 text (byte ")
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(PlanValidationError) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}: invalid JSON")


def test_valid_plan_at_the_limits_is_accepted():
    data = make_plan()
    data["entities"][0]["attributes"] = {f"a{i:02d}": "v" * 64 for i in range(16)}
    data["scenes"][0]["events"] = data["scenes"][0]["events"] * 32
    plan = parse_plan(json.dumps(data))
    assert len(plan.entities[0].attributes) == 16 and len(plan.scenes[0].events) == 32
