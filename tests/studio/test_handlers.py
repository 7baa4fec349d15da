"""Studio event handlers without a browser: the plan, the store and the views they return."""

import json

import pytest

from core.workspace import Workspace
from studio.app import auth_pair, parse_args
from studio.handlers import Handlers
from studio.views import SKETCH_SIZE

PROMPT = "A red ball rolls from left to right across the grass."
# Output order: session, message, plan json, scenes, entities, scene, frame, boxes, status, entity, graph, events, timeline


@pytest.fixture
def handlers(tmp_path):
    return Handlers(Workspace(tmp_path / "data"))


def generate(h):
    return h.generate({}, PROMPT, "rules", "", "", "", 16)


def test_generate_creates_a_project_and_shows_the_plan(handlers):
    out = generate(handlers)
    session, note, plan_json = out[0], out[1], json.loads(out[2])
    assert session["project"] == 1 and "New project 1" in note
    assert plan_json["entities"][0]["attributes"]["color"] == "red"
    assert out[3] == [["s1", PROMPT, "grass", 16, ""]]
    assert [b["label"] for b in out[7]["boxes"]] == ["ball"]
    assert out[7]["image"].shape == (SKETCH_SIZE, SKETCH_SIZE, 3)
    assert "keyframe" in out[8]


def test_dragging_a_box_makes_a_keyframe_and_a_version(handlers):
    session = generate(handlers)[0]
    value = handlers.select(session, 0, 5)[7]
    assert "interpolated" in handlers.select(session, 0, 5)[8]
    box = value["boxes"][0]
    box.update(xmin=10, ymin=20, xmax=74, ymax=84)
    out = handlers.boxes_changed(session, value, 0, 5)
    assert "Keyframe saved at frame 5" in out[1]
    plan = json.loads(out[2])
    keyframe = next(k for k in plan["scenes"][0]["keyframes"] if k["frame"] == 5)
    assert keyframe["boxes"]["e1"] == [round(10 / 256, 4), round(20 / 256, 4), round(74 / 256, 4), round(84 / 256, 4)]
    assert "keyframe" in out[8] and "interpolated" not in out[8]
    assert handlers.ws.store.history(session["project"]) == (True, False)


def test_unchanged_boxes_change_nothing(handlers):
    session = generate(handlers)[0]
    value = handlers.select(session, 0, 3)[7]
    out = handlers.boxes_changed(session, value, 0, 3)
    assert all(isinstance(o, dict) and o.get("__type__") == "update" and len(o) == 1 for o in out)
    assert handlers.ws.store.history(session["project"]) == (False, False)


def test_invalid_edit_shows_the_message_and_keeps_the_plan(handlers):
    out = generate(handlers)
    session, before = out[0], out[2]
    out = handlers.edit_scenes(session, [["s1", PROMPT, "grass", 100]], 0, 0)
    assert out[1] == "⚠️ scenes[0].num_frames: must be <= 64 (got 100)"
    assert out[2] == before
    assert handlers.ws.store.current(session["project"])[1].scenes[0].num_frames == 16


def test_editing_an_event_updates_table_timeline_and_graph(handlers):
    session = generate(handlers)[0]
    out = handlers.edit_events(session, [["e1", "rolls", "grass", 0, 15], ["e1", "turns", "blue", 8, 8]], 0, 10)
    assert out[11][-1] == ["e1", "turns", "blue", 8, 8]
    assert any("turns blue" in label for label in out[12].data[0].y)
    graph_labels = [t for trace in out[10].data for t in (trace.text or [])]
    assert "blue" in graph_labels


def test_scene_seed_is_editable(handlers):
    session = generate(handlers)[0]
    out = handlers.edit_scenes(session, [["s1", PROMPT, "grass", 16, "42"]], 0, 0)
    assert json.loads(out[2])["scenes"][0]["seed"] == 42
    out = handlers.edit_scenes(session, [["s1", PROMPT, "grass", 16, "x"]], 0, 0)
    assert out[1].startswith("⚠️ scenes[0].seed: must be blank or an integer")


def test_undo_redo_walk_versions(handlers):
    session = generate(handlers)[0]
    handlers.edit_scenes(session, [["s1", "Changed.", "snow", 16]], 0, 0)
    assert handlers.undo(session, 0, 0)[3][0][2] == "grass"
    assert handlers.redo(session, 0, 0)[3][0][2] == "snow"


def test_restart_reopens_the_latest_project(tmp_path):
    first = Handlers(Workspace(tmp_path / "data"))
    session = generate(first)[0]
    first.edit_scenes(session, [["s1", "Edited before restart.", "desert", 16]], 0, 0)
    restarted = Handlers(Workspace(tmp_path / "data"))
    out = restarted.load({})
    assert out[0]["project"] == session["project"]
    assert out[3][0][1:3] == ["Edited before restart.", "desert"]


def test_import_rejects_big_or_invalid_files(handlers, tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 1_100_000)
    assert handlers.import_plan({}, str(big))[1] == "⚠️ plan file: must be at most 1000 kB (got 1100 kB)"
    bad = tmp_path / "bad.json"
    bad.write_text('{"prompt": "x"}')
    assert handlers.import_plan({}, str(bad))[1].startswith("⚠️ ")
    assert handlers.ws.store.list_projects() == []


def test_remote_binding_requires_auth():
    with pytest.raises(ValueError, match=r"^--host: binding 0\.0\.0\.0 requires --auth"):
        auth_pair(parse_args(["--host", "0.0.0.0"]))
    assert auth_pair(parse_args(["--host", "0.0.0.0", "--auth", "ana:secret"])) == ("ana", "secret")
    assert auth_pair(parse_args([])) is None


def test_page_load_shows_the_layout_first_and_the_graph_figures_next(handlers):
    generate(handlers)
    out = handlers.load({})
    assert out[0]["project"] == 1 and "Frame 0" in out[8]
    assert out[10] == {"__type__": "update"} and out[12] == {"__type__": "update"}  # figures not drawn yet
    graph, timeline = handlers.graph_views(out[0], 0, 0)
    assert any(trace.type == "scatter" for trace in graph.data) and len(timeline.data) > 0
    assert handlers.graph_views({}, 0, 0) == [{"__type__": "update"}, {"__type__": "update"}]
