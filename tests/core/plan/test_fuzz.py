"""Property-based fuzzing of the plan schema (hypothesis): whatever a plan file holds, the core either
accepts it (and can build its scene graphs) or refuses it with one bounded line. Runs in seconds."""

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.plan import PlanValidationError, VideoPlan, parse_plan
from core.scene_graph import build_dsg
from tests.core.plan.test_plan import make_plan

# JSON values, with the strings a hostile file would use: control characters, markup, huge text.
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "\n", "\x1b[31m", "<img src=x>", "e1", "s1", "color", "x" * 5000, "\u2028", "\ufeff"]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True), texts)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(texts, inner, max_size=5)), max_leaves=12)


def paths(data, prefix=()):
    """Every (container path, key) in a JSON tree."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for key, value in items:
        yield prefix + (key,)
        yield from paths(value, prefix + (key,))


BASE = make_plan()
BASE["scenes"][0]["enrichment"] = [{"subject": "ball", "predicate": "has size", "object": "big", "start": 0, "end": 15}]
PATHS = list(paths(BASE))


@st.composite
def mutated_plans(draw):
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "delete", "add-key"]))
            if action == "replace":
                parent[path[-1]] = draw(values)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(texts)] = draw(values)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this branch
    return data


def assert_one_bounded_line(error: PlanValidationError) -> None:
    message = str(error)
    assert message and len(message) <= 300, message
    assert message.isprintable(), repr(message)  # no newline, escape or separator can forge a line
    assert all(line.isprintable() and len(line) <= 300 for line in error.errors)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_plans(), st.booleans())
def test_any_plan_file_is_accepted_or_refused_with_one_line(data, as_text):
    try:
        text = json.dumps(data, allow_nan=True)
        plan = parse_plan(text if as_text else data)
    except PlanValidationError as error:
        assert_one_bounded_line(error)
        return
    assert isinstance(plan, VideoPlan)
    assert parse_plan(plan.model_dump_json()) == plan  # what is accepted round-trips
    graphs = build_dsg(plan)
    assert [len(g.frames) for g in graphs] == [s.num_frames for s in plan.scenes]
