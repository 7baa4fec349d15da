"""Score a plan against the ``checks`` of a prompt file line (``assets/eval/*.jsonl``).

Each check is a dict with a ``type``. Times are global: scene index first, then frame. Box centres
come from interpolated boxes (:func:`core.plan.interpolate_boxes`). Supported types:

entity (kind, color), direction (kind, axis x|y, sign +1|-1), background (value), order (first, then),
grow / shrink (kind), left_of / above (a, b), color_change (kind, from, to), scenes (count),
scenes_at_least (count), same_entity (kind), same_entity_word (word), appear / disappear (kind),
count (kind, n), order_words (words), min_entities (n).
"""

from __future__ import annotations

import numpy as np

from core.dsg import entity_colors
from core.plan import VideoPlan, interpolate_boxes

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


def run_check(plan: VideoPlan, check: dict) -> bool:
    """True when the plan passes one check. Raises ValueError for an unknown check type."""
    kind = check.get("type")
    if kind == "entity":
        return any(plan.entity(e).color == check["color"] for e in _of_kind(plan, check["kind"]))
    if kind == "direction":
        axis = 0 if check["axis"] == "x" else 1
        for e in _of_kind(plan, check["kind"]):
            for _s, frames, centres, _a in _tracks(plan, e):
                if len(frames) > 1 and (centres[-1, axis] - centres[0, axis]) * check["sign"] > MIN_MOTION:
                    return True
        return False
    if kind == "background":
        return any(scene.background == check["value"] for scene in plan.scenes)
    if kind == "order":
        first = [t for e in _of_kind(plan, check["first"]) if (t := _first_time(plan, e))]
        then = [t for e in _of_kind(plan, check["then"]) if (t := _first_time(plan, e))]
        return bool(first and then and min(first) < min(then))
    if kind in ("grow", "shrink"):
        for e in _of_kind(plan, check["kind"]):
            for _s, frames, _c, areas in _tracks(plan, e):
                if len(frames) > 1 and (areas[-1] > 1.2 * areas[0] if kind == "grow" else areas[-1] < areas[0] / 1.2):
                    return True
        return False
    if kind in ("left_of", "above"):
        axis = 0 if kind == "left_of" else 1
        for a in _of_kind(plan, check["a"]):
            for b in _of_kind(plan, check["b"]):
                ta, tb = _tracks(plan, a), _tracks(plan, b)
                if ta and tb and ta[0][0] == tb[0][0] and ta[0][2][0, axis] < tb[0][2][0, axis]:
                    return True
        return False
    if kind == "color_change":
        for e in _of_kind(plan, check["kind"]):
            for scene in plan.scenes:
                colors = entity_colors(plan, scene)[e]
                if colors[0] == check["from"] and colors[-1] == check["to"]:
                    return True
        return False
    if kind == "scenes":
        return len(plan.scenes) == check["count"]
    if kind == "scenes_at_least":
        return len(plan.scenes) >= check["count"]
    if kind in ("same_entity", "same_entity_word"):
        if kind == "same_entity":
            ids = _of_kind(plan, check["kind"])
        else:
            ids = [e.id for e in plan.entities if check["word"] in e.name.lower().split()]
        return any(sum(e in s.entity_ids() for s in plan.scenes) >= 2 for e in ids)
    if kind in ("appear", "disappear"):
        for e in _of_kind(plan, check["kind"]):
            for scene in plan.scenes:
                ids = scene.entity_ids()
                if e not in ids:
                    continue
                present = interpolate_boxes(scene, ids)[1][:, ids.index(e)]
                changes = np.diff(present.astype(int))
                if (kind == "appear" and (changes > 0).any()) or (kind == "disappear" and (changes < 0).any()):
                    return True
        return False
    if kind == "count":
        return len(_of_kind(plan, check["kind"])) == check["n"]
    if kind == "min_entities":
        return len(plan.entities) >= check["n"]
    if kind == "order_words":
        times = []
        for word in check["words"]:
            found = None
            for s, scene in enumerate(plan.scenes):
                for event in sorted(scene.events, key=lambda e: e.start):
                    target = event.target or ""
                    if target in {e.id for e in plan.entities}:
                        target = plan.entity(target).name
                    text = f"{plan.entity(event.agent).name} {event.predicate} {target}".lower()
                    if word in text.split() or word in text:
                        found = (s, event.start)
                        break
                if found:
                    break
            if found is None:
                return False
            times.append(found)
        return all(a <= b for a, b in zip(times, times[1:])) and len(set(times)) == len(times)
    raise ValueError(f"checks[].type: unknown check type {kind!r}")


def check_plan(plan: VideoPlan, checks: list[dict]) -> list[tuple[dict, bool]]:
    """Each check with its result."""
    return [(check, run_check(plan, check)) for check in checks]
