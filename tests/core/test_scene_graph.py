from core.plan import parse_plan
from core.scene_graph import build_scene_graphs, dsg_to_json, entity_phrase
from tests.core.plan.test_plan import make_plan


def color_change_plan():
    data = make_plan()
    data["scenes"][0]["events"].append({"agent": "e1", "predicate": "turns", "target": "blue", "start": 10, "end": 10})
    data["scenes"][0]["enrichment"] = [{"subject": "ball", "predicate": "has texture", "object": "shiny", "start": 0, "end": 4}]
    return parse_plan(data)


def test_colour_change_is_visible_frame_by_frame():
    frames = dsg_to_json(color_change_plan())["scenes"][0]["frames"]
    assert len(frames) == 16
    assert ["ball", "has color", "red"] in frames[9]
    assert ["ball", "has color", "blue"] in frames[10]
    assert ["ball", "has color", "red"] not in frames[10]
    assert ["ball", "rolls", ""] in frames[0]


def test_enrichment_is_merged_for_its_frames_only():
    frames = dsg_to_json(color_change_plan())["scenes"][0]["frames"]
    assert ["ball", "has texture", "shiny"] in frames[4]
    assert ["ball", "has texture", "shiny"] not in frames[5]


def test_graph_nodes_have_types_and_absent_entities_are_removed():
    data = make_plan()
    data["entities"].append({"id": "e2", "name": "star", "kind": "star", "attributes": {"color": "green"}})
    data["scenes"][0]["keyframes"] = [
        {"frame": 0, "boxes": {"e1": [0.1, 0.1, 0.3, 0.3], "e2": [0.5, 0.5, 0.7, 0.7]}},
        {"frame": 8, "boxes": {"e1": [0.1, 0.1, 0.3, 0.3], "e2": [0.5, 0.5, 0.7, 0.7]}},
        {"frame": 9, "boxes": {"e1": [0.1, 0.1, 0.3, 0.3]}},
        {"frame": 15, "boxes": {"e1": [0.1, 0.1, 0.3, 0.3]}},
    ]
    data["scenes"][0]["events"] = [{"agent": "e1", "predicate": "watches", "target": "e2", "start": 0, "end": 15}]
    plan = parse_plan(data)
    graphs = build_scene_graphs(plan, plan.scenes[0]).frames
    types = {d["type"] for _, d in graphs[0].nodes(data=True)}
    assert {"object", "attribute", "relation"} <= types
    assert "e2" in graphs[8] and "e2" not in graphs[9]
    frames = dsg_to_json(plan)["scenes"][0]["frames"]
    assert ["ball", "watches", "star"] in frames[0]
    assert not any(t[0] == "star" for t in frames[12])


def test_phrase_follows_the_frames_colour():
    plan = color_change_plan()
    graphs = build_scene_graphs(plan, plan.scenes[0]).frames
    assert entity_phrase(graphs[0], "e1", "ball") == "red ball"
    assert entity_phrase(graphs[12], "e1", "ball") == "blue ball"
