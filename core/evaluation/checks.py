"""Score a plan against the ``checks`` of a prompt file line (``assets/eval/*.jsonl``).

Each check is a dict with a ``type``. Times are global: scene index first, then frame. Box centres
come from interpolated boxes (:func:`core.plan.interpolate_boxes`). Supported types:

entity (kind, color), direction (kind, axis x|y, sign +1|-1), background (value), order (first, then),
grow / shrink (kind), left_of / above (a, b), color_change (kind, from, to), scenes (count),
scenes_at_least (count), same_entity (kind), same_entity_word (word), appear / disappear (kind),
count (kind, n), order_words (words), min_entities (n).
"""

from __future__ import annotations

import itertools

import numpy as np

from core.plan import VideoPlan, interpolate_boxes
from core.scene_graph import entity_colors

MIN_MOTION = 0.05  # a direction counts when the centre moves this far (fraction of the frame)


def _tracks(plan: VideoPlan, entity_id: str):
    """[(scene index, frames present, centres (k, 2), areas (k,))] for one entity."""
    out = []
    for s, scene in enumerate(plan.scenes):
        ids = scene.entity_ids()
        if entity_id not in ids:
            continue
        boxes, masks = interpolate_boxes(scene, ids)
        n = ids.index(entity_id)
        frames = np.flatnonzero(masks[:, n])
        b = boxes[frames, n]
        centres = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        out.append((s, frames, centres, areas))
    return out


def _of_kind(plan: VideoPlan, kind: str) -> list[str]:
    return [e.id for e in plan.entities if e.kind == kind or e.name.split()[-1] == kind]


def _first_time(plan: VideoPlan, entity_id: str) -> tuple[int, int] | None:
    """Global time at which the entity first acts (its first event) or, failing that, appears."""
    for s, scene in enumerate(plan.scenes):
        starts = [e.start for e in scene.events if e.agent == entity_id]
        if starts:
            return (s, min(starts))
    for s, frames, _c, _a in _tracks(plan, entity_id):
        if len(frames):
            return (s, int(frames[0]))
    return None


def _entity(plan: VideoPlan, check: dict) -> bool:
    return any(plan.entity(e).color == check["color"] for e in _of_kind(plan, check["kind"]))


def _direction(plan: VideoPlan, check: dict) -> bool:
    axis = 0 if check["axis"] == "x" else 1
    return any(
        len(frames) > 1 and (centres[-1, axis] - centres[0, axis]) * check["sign"] > MIN_MOTION
        for e in _of_kind(plan, check["kind"])
        for _s, frames, centres, _a in _tracks(plan, e)
    )


def _background(plan: VideoPlan, check: dict) -> bool:
    return any(scene.background == check["value"] for scene in plan.scenes)


def _order(plan: VideoPlan, check: dict) -> bool:
    first = [t for e in _of_kind(plan, check["first"]) if (t := _first_time(plan, e))]
    then = [t for e in _of_kind(plan, check["then"]) if (t := _first_time(plan, e))]
    return bool(first and then and min(first) < min(then))


def _size_change(grow: bool):
    def check_size(plan: VideoPlan, check: dict) -> bool:
        return any(
            len(frames) > 1 and (areas[-1] > 1.2 * areas[0] if grow else areas[-1] < areas[0] / 1.2)
            for e in _of_kind(plan, check["kind"])
            for _s, frames, _c, areas in _tracks(plan, e)
        )

    return check_size


def _relative_position(axis: int):
    def check_position(plan: VideoPlan, check: dict) -> bool:
        for a in _of_kind(plan, check["a"]):
            for b in _of_kind(plan, check["b"]):
                ta, tb = _tracks(plan, a), _tracks(plan, b)
                if ta and tb and ta[0][0] == tb[0][0] and ta[0][2][0, axis] < tb[0][2][0, axis]:
                    return True
        return False

    return check_position


def _color_change(plan: VideoPlan, check: dict) -> bool:
    return any(
        colors[0] == check["from"] and colors[-1] == check["to"]
        for e in _of_kind(plan, check["kind"])
        for colors in (entity_colors(plan, scene)[e] for scene in plan.scenes)
    )


def _same_entity(ids: list[str], plan: VideoPlan) -> bool:
    return any(sum(e in s.entity_ids() for s in plan.scenes) >= 2 for e in ids)


def _presence_change(appear: bool):
    def check_presence(plan: VideoPlan, check: dict) -> bool:
        for e in _of_kind(plan, check["kind"]):
            for scene in plan.scenes:
                ids = scene.entity_ids()
                if e not in ids:
                    continue
                changes = np.diff(interpolate_boxes(scene, ids)[1][:, ids.index(e)].astype(int))
                if (changes > 0).any() if appear else (changes < 0).any():
                    return True
        return False

    return check_presence


def _first_event_with(plan: VideoPlan, word: str) -> tuple[int, int] | None:
    """(scene, start) of the first event whose text ``agent predicate target`` holds ``word``."""
    ids = {e.id for e in plan.entities}
    for s, scene in enumerate(plan.scenes):
        for event in sorted(scene.events, key=lambda e: e.start):
            target = plan.entity(event.target).name if event.target in ids else event.target or ""
            text = f"{plan.entity(event.agent).name} {event.predicate} {target}".lower()
            if word in text.split() or word in text:
                return (s, event.start)
    return None


def _order_words(plan: VideoPlan, check: dict) -> bool:
    times = [_first_event_with(plan, word) for word in check["words"]]
    if any(t is None for t in times):
        return False
    return all(a <= b for a, b in itertools.pairwise(times)) and len(set(times)) == len(times)


CHECKS = {
    "entity": _entity,
    "direction": _direction,
    "background": _background,
    "order": _order,
    "grow": _size_change(grow=True),
    "shrink": _size_change(grow=False),
    "left_of": _relative_position(axis=0),
    "above": _relative_position(axis=1),
    "color_change": _color_change,
    "scenes": lambda plan, check: len(plan.scenes) == check["count"],
    "scenes_at_least": lambda plan, check: len(plan.scenes) >= check["count"],
    "same_entity": lambda plan, check: _same_entity(_of_kind(plan, check["kind"]), plan),
    "same_entity_word": lambda plan, check: _same_entity([e.id for e in plan.entities if check["word"] in e.name.lower().split()], plan),
    "appear": _presence_change(appear=True),
    "disappear": _presence_change(appear=False),
    "count": lambda plan, check: len(_of_kind(plan, check["kind"])) == check["n"],
    "min_entities": lambda plan, check: len(plan.entities) >= check["n"],
    "order_words": _order_words,
}


def run_check(plan: VideoPlan, check: dict) -> bool:
    """True when the plan passes one check (:data:`CHECKS`, by its ``type``).

    Raises:
        ValueError: an unknown check type.
    """
    kind = check.get("type")
    if kind not in CHECKS:
        raise ValueError(f"checks[].type: unknown check type {kind!r}")
    return bool(CHECKS[kind](plan, check))


def check_plan(plan: VideoPlan, checks: list[dict]) -> list[tuple[dict, bool]]:
    """Each check with its result."""
    return [(check, run_check(plan, check)) for check in checks]
