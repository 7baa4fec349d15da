"""The dynamic scene graph (DSG) of Dysen-VDM (arXiv 2308.13812, section 4.1).

Step II, event-to-DSG conversion: walk a scene's events in time order and, frame by frame, add or
remove triplets, so that every frame has its own scene graph. Each frame's graph is a
``networkx.DiGraph`` with three node types, as in the paper:

- object nodes (``type="object"``), one per entity on screen, keyed by entity id;
- attribute nodes (``type="attribute"``), e.g. colour, linked object -> attribute;
- relation nodes (``type="relation"``), one per (subject, predicate, object) relation, linked
  subject -> relation -> object, where the object is another entity or a plain value node.

Step III's enrichment (scene imagination) arrives as ``Scene.enrichment`` triplets with frame ranges
and is merged here. A colour change is an event ``(agent, "turns", colour)``: from its start frame on
the agent's colour attribute is the new colour, so it shows frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from core.plan import Scene, VideoPlan, interpolate_boxes

COLOR_PREDICATES = {"turns", "turn", "becomes", "changes to", "turns into"}
HAS_COLOR = "has color"


@dataclass
class SceneGraphs:
    """Per-frame scene graphs of one scene: ``frames[f]`` is a networkx.DiGraph."""

    scene_id: str
    frames: list[nx.DiGraph]


def display_names(plan: VideoPlan) -> dict[str, str]:
    """Entity id -> a name unique within the plan (``"ball"``, ``"ball #2"``)."""
    names: dict[str, str] = {}
    counts: dict[str, int] = {}
    for entity in plan.entities:
        counts[entity.name] = counts.get(entity.name, 0) + 1
        names[entity.id] = entity.name if counts[entity.name] == 1 else f"{entity.name} #{counts[entity.name]}"
    return names


def entity_colors(plan: VideoPlan, scene: Scene) -> dict[str, list[str | None]]:
    """Entity id -> colour in each frame of ``scene`` after applying its colour-change events.

    Colours start from ``Entity.attributes["color"]`` (None if unset) and, for each event with a
    colour predicate, take the event's target from its start frame on (events in time order).
    """
    colors = {e.id: [e.color] * scene.num_frames for e in plan.entities}
    for event in sorted(scene.events, key=lambda e: (e.start, e.end)):
        if event.predicate.lower() in COLOR_PREDICATES and event.target and event.agent in colors:
            for frame in range(event.start, scene.num_frames):
                colors[event.agent][frame] = event.target
    return colors


def build_scene_graphs(plan: VideoPlan, scene: Scene) -> SceneGraphs:
    """Dysen step II plus step III merge for one scene.

    Linear in the plan's size: each frame costs O(entities x attributes + events + enrichment).

    Returns:
        SceneGraphs with ``scene.num_frames`` graphs. An entity's object node is present in a frame
        exactly when it is on screen there (it has a box, keyframed or interpolated).
    """
    names = display_names(plan)
    ids_by_name: dict[str, str] = {}
    for entity_id, label in names.items():
        ids_by_name.setdefault(label, entity_id)
    entities = {e.id: e for e in plan.entities}
    entity_ids = scene.entity_ids()
    _, masks = interpolate_boxes(scene, entity_ids)
    colors = entity_colors(plan, scene)
    events = sorted(scene.events, key=lambda e: (e.start, e.end))
    frames = []
    for frame in range(scene.num_frames):
        graph = _FrameGraph(frame=frame, scene_id=scene.id, background=scene.background)
        on_screen = [eid for n, eid in enumerate(entity_ids) if masks[frame, n]]
        for entity_id in on_screen:
            entity = entities[entity_id]
            graph.add_node(entity_id, type="object", label=names[entity_id], kind=entity.kind)
            attributes = dict(entity.attributes)
            if colors[entity_id][frame]:
                attributes["color"] = colors[entity_id][frame]
            for key, value in attributes.items():
                graph.set_attribute(entity_id, HAS_COLOR if key == "color" else f"has {key}", value)
        for event in events:
            if not event.start <= frame <= event.end or event.agent not in graph:
                continue
            if event.predicate.lower() in COLOR_PREDICATES:
                continue  # shown as the colour attribute
            _add_relation(graph, event.agent, event.predicate, event.target, names)
        for triplet in scene.enrichment:
            if triplet.start <= frame <= triplet.end:
                subject = _entity_for_name(triplet.subject, ids_by_name, graph)
                if subject is None:
                    continue
                if triplet.predicate.startswith("has "):
                    graph.set_attribute(subject, triplet.predicate, triplet.object)
                else:
                    _add_relation(graph, subject, triplet.predicate, triplet.object, names)
        frames.append(graph)
    return SceneGraphs(scene_id=scene.id, frames=frames)


class _FrameGraph(nx.DiGraph):
    """One frame's scene graph: a ``networkx.DiGraph`` that also indexes its attribute nodes by
    (entity, predicate), so that replacing an attribute costs O(1) instead of a scan."""

    def set_attribute(self, entity_id: str, predicate: str, value: str) -> None:
        """One value per (entity, predicate): a later fact replaces an earlier one."""
        index = self.graph.setdefault("attribute_nodes", {})
        old = index.get((entity_id, predicate))
        if old is not None and old in self:
            self.remove_node(old)
        node = f"{entity_id}|{predicate}|{value}"
        self.add_node(node, type="attribute", predicate=predicate, label=value)
        self.add_edge(entity_id, node)
        index[(entity_id, predicate)] = node


def _entity_for_name(name: str, ids_by_name: dict[str, str], graph: nx.DiGraph) -> str | None:
    if name in graph and graph.nodes[name].get("type") == "object":
        return name
    entity_id = ids_by_name.get(name)
    return entity_id if entity_id is not None and entity_id in graph else None


def _add_relation(graph: nx.DiGraph, subject: str, predicate: str, target: str | None, names: dict[str, str]) -> None:
    node = f"{subject}|{predicate}|{target}"
    graph.add_node(node, type="relation", label=predicate)
    graph.add_edge(subject, node)
    if target is None:
        return
    if target in names and target in graph:
        graph.add_edge(node, target)
        return
    value = f"value|{target}"
    graph.add_node(value, type="value", label=target)
    graph.add_edge(node, value)


def triplets(graph: nx.DiGraph) -> list[list[str]]:
    """The frame's graph as [subject, predicate, object] triplets with entity names as subjects.

    Attributes give ``[name, "has color", "red"]``; relations give ``[name, predicate, target]``
    (target an entity name, a value, or ``""`` for intransitive actions like "rolls").
    """
    out = []
    for node, data in graph.nodes(data=True):
        if data["type"] != "object":
            continue
        subject = data["label"]
        for child in graph.successors(node):
            child_data = graph.nodes[child]
            if child_data["type"] == "attribute":
                out.append([subject, child_data["predicate"], child_data["label"]])
            elif child_data["type"] == "relation":
                objects = [graph.nodes[o]["label"] for o in graph.successors(child)]
                out.append([subject, child_data["label"], objects[0] if objects else ""])
    return out


def build_dsg(plan: VideoPlan) -> list[SceneGraphs]:
    """Scene graphs of every scene of the plan, in order."""
    return [build_scene_graphs(plan, scene) for scene in plan.scenes]


def dsg_to_json(plan: VideoPlan) -> dict:
    """``{"scenes": [{"id": str, "frames": [[[subject, predicate, object], ...], ...]}]}``."""
    return {"scenes": [{"id": g.scene_id, "frames": [triplets(frame) for frame in g.frames]} for g in build_dsg(plan)]}


def entity_phrase(graph: nx.DiGraph, entity_id: str, fallback: str) -> str:
    """The phrase of an entity in one frame for its grounding token: ``"<colour> <name>"``.

    Uses the frame's colour attribute, so a colour change reaches the renderer at its frame.
    """
    if entity_id not in graph:
        return fallback
    name = graph.nodes[entity_id]["kind"] or graph.nodes[entity_id]["label"]
    for child in graph.successors(entity_id):
        data = graph.nodes[child]
        if data["type"] == "attribute" and data["predicate"] == HAS_COLOR:
            return f"{data['label']} {name}"
    return name


def frame_prompt(graph: nx.DiGraph, scene_text: str) -> str:
    """One frame's prompt: ``scene_text`` followed by what the frame's scene graph says.

    Each on-screen entity contributes its phrase (colour at this frame plus kind) and its
    relations, e.g. ``"the grass: a ball rolls. red ball rolls, blue star above red ball"``; the
    per-frame phrases make a colour change reach the text at its frame (Dysen-VDM's per-frame
    graphs, used without training a graph encoder).

    Args:
        graph: one frame's scene graph from :func:`build_scene_graphs`.
        scene_text: the scene's prompt.

    Returns:
        str; just ``scene_text`` when the frame has no entity on screen.
    """
    parts = []
    for node, data in graph.nodes(data=True):
        if data["type"] != "object":
            continue
        phrase = entity_phrase(graph, node, data["label"])
        relations = []
        for child in graph.successors(node):
            if graph.nodes[child]["type"] == "relation":
                targets = [graph.nodes[o] for o in graph.successors(child)]
                target = ""
                if targets:
                    target = entity_phrase(graph, next(graph.successors(child)), targets[0]["label"]) if targets[0]["type"] == "object" else targets[0]["label"]
                relations.append(f"{graph.nodes[child]['label']} {target}".strip())
        parts.append(f"{phrase} {' and '.join(relations)}" if relations else phrase)
    if not parts:
        return scene_text
    return f"{scene_text.rstrip('. ')}. " + ", ".join(parts)
