"""Edits a person makes in the studio, as pure functions: plan in, validated plan out.

Every function returns a new VideoPlan or raises PlanValidationError naming the field; the input
plan is never changed, so a caller that keeps the last good plan loses nothing on a bad edit.
"""

from __future__ import annotations

import copy

from core.plan import PlanValidationError, VideoPlan, interpolate_boxes, parse_plan


def _data(plan: VideoPlan) -> dict:
    return copy.deepcopy(plan.model_dump(mode="json"))


def _scene_index(plan: VideoPlan, scene_index: int) -> int:
    if not 0 <= scene_index < len(plan.scenes):
        raise PlanValidationError([f"scene: must be in [0, {len(plan.scenes) - 1}] (got {scene_index})"])
    return scene_index


def frame_boxes(plan: VideoPlan, scene_index: int, frame: int) -> dict[str, list[float]]:
    """Boxes on screen at one frame (keyframed or interpolated), entity id -> xyxy."""
    scene = plan.scenes[_scene_index(plan, scene_index)]
    ids = scene.entity_ids()
    boxes, masks = interpolate_boxes(scene, ids)
    return {eid: [round(float(v), 4) for v in boxes[frame, n]] for n, eid in enumerate(ids) if masks[frame, n]}


def is_keyframe(plan: VideoPlan, scene_index: int, frame: int) -> bool:
    return any(k.frame == frame for k in plan.scenes[_scene_index(plan, scene_index)].keyframes)


def set_keyframe(plan: VideoPlan, scene_index: int, frame: int, boxes: dict[str, list[float]]) -> VideoPlan:
    """Make ``frame`` a keyframe with exactly ``boxes`` (entities left out are off screen there)."""
    data = _data(plan)
    scene = data["scenes"][_scene_index(plan, scene_index)]
    if not 0 <= frame < scene["num_frames"]:
        raise PlanValidationError([f"frame: must be in [0, {scene['num_frames'] - 1}] (got {frame})"])
    keyframes = [k for k in scene["keyframes"] if k["frame"] != frame]
    keyframes.append({"frame": frame, "boxes": {k: [float(x) for x in v] for k, v in boxes.items()}})
    scene["keyframes"] = sorted(keyframes, key=lambda k: k["frame"])
    return parse_plan(data)


def set_absent(plan: VideoPlan, scene_index: int, frame: int, entity_id: str) -> VideoPlan:
    """Take an entity off screen at ``frame`` (a keyframe without its box)."""
    boxes = frame_boxes(plan, scene_index, frame)
    boxes.pop(entity_id, None)
    return set_keyframe(plan, scene_index, frame, boxes)


def remove_keyframe(plan: VideoPlan, scene_index: int, frame: int) -> VideoPlan:
    """Remove the keyframe at ``frame``; frame 0 and the last frame must stay."""
    data = _data(plan)
    scene = data["scenes"][_scene_index(plan, scene_index)]
    last = scene["num_frames"] - 1
    if frame in (0, last):
        raise PlanValidationError([f"keyframes: frame 0 and frame {last} cannot be removed (got {frame})"])
    if not any(k["frame"] == frame for k in scene["keyframes"]):
        raise PlanValidationError([f"keyframes: frame {frame} is not a keyframe"])
    scene["keyframes"] = [k for k in scene["keyframes"] if k["frame"] != frame]
    return parse_plan(data)


def update_scenes(plan: VideoPlan, rows: list[list]) -> VideoPlan:
    """Apply the scene table: rows of [id, description, background, num_frames, seed], in order.

    ``seed`` may be blank (the render seed plus the scene's index is used).

    A row whose id is new copies the layout of the last scene; a missing id deletes that scene.
    Changing ``num_frames`` rescales the scene's keyframes and event times.
    """
    data = _data(plan)
    by_id = {s["id"]: s for s in data["scenes"]}
    scenes = []
    for i, row in enumerate(rows):
        if len(row) < 4:
            raise PlanValidationError([f"scenes[{i}]: a row needs id, description, background, num_frames"])
        scene_id, description, background, frames = (str(row[0]).strip(), str(row[1]), str(row[2]), row[3])
        try:
            frames = int(float(frames))
        except (TypeError, ValueError):
            raise PlanValidationError([f"scenes[{i}].num_frames: must be an integer in [8, 64] (got {frames!r})"]) from None
        scene = copy.deepcopy(by_id.get(scene_id) or data["scenes"][-1])
        scene.update(id=scene_id, description=description, background=background)
        if len(row) > 4:
            seed = str(row[4]).strip() if row[4] is not None else ""
            try:
                scene["seed"] = int(float(seed)) if seed and seed.lower() != "nan" else None
            except ValueError:
                raise PlanValidationError([f"scenes[{i}].seed: must be blank or an integer in [0, 2147483647] (got {seed!r})"]) from None
        if frames != scene["num_frames"] and 8 <= frames <= 64:
            scene = _rescale(scene, frames)
        else:
            scene["num_frames"] = frames
        scenes.append(scene)
    data["scenes"] = scenes
    return parse_plan(data)


def _rescale(scene: dict, frames: int) -> dict:
    old_last, new_last = scene["num_frames"] - 1, frames - 1

    def remap(f: int) -> int:
        return round(f * new_last / old_last)

    keyframes: dict[int, dict] = {}
    for k in scene["keyframes"]:
        keyframes[remap(k["frame"])] = {"frame": remap(k["frame"]), "boxes": k["boxes"]}
    scene["keyframes"] = sorted(keyframes.values(), key=lambda k: k["frame"])
    for event in scene["events"] + scene.get("enrichment", []):
        event["start"], event["end"] = remap(event["start"]), remap(event["end"])
    scene["num_frames"] = frames
    return scene


def add_scene(plan: VideoPlan) -> VideoPlan:
    """Append a copy of the last scene with a new id (the same entities keep their ids)."""
    data = _data(plan)
    ids = {s["id"] for s in data["scenes"]}
    n = len(data["scenes"]) + 1
    while f"s{n}" in ids:
        n += 1
    scene = copy.deepcopy(data["scenes"][-1])
    scene.update(id=f"s{n}", seed=None)
    data["scenes"].append(scene)
    return parse_plan(data)


def delete_scene(plan: VideoPlan, scene_index: int) -> VideoPlan:
    data = _data(plan)
    del data["scenes"][_scene_index(plan, scene_index)]
    return parse_plan(data)


def move_scene(plan: VideoPlan, scene_index: int, offset: int) -> VideoPlan:
    """Move a scene up (offset -1) or down (+1) in the list."""
    data = _data(plan)
    i = _scene_index(plan, scene_index)
    j = min(max(i + offset, 0), len(data["scenes"]) - 1)
    data["scenes"].insert(j, data["scenes"].pop(i))
    return parse_plan(data)


def update_entities(plan: VideoPlan, rows: list[list]) -> VideoPlan:
    """Apply the entity table: rows of [id, name, kind, color] (ids are fixed; color may be empty)."""
    data = _data(plan)
    by_id = {e["id"]: e for e in data["entities"]}
    for i, row in enumerate(rows):
        entity_id = str(row[0])
        if entity_id not in by_id:
            raise PlanValidationError([f"entities[{i}].id: unknown entity id {entity_id!r} (ids cannot be edited)"])
        entity = by_id[entity_id]
        entity["name"], entity["kind"] = str(row[1]).strip(), str(row[2]).strip()
        color = str(row[3] or "").strip()
        if color:
            entity["attributes"]["color"] = color
        else:
            entity["attributes"].pop("color", None)
    return parse_plan(data)


def update_events(plan: VideoPlan, scene_index: int, rows: list[list]) -> VideoPlan:
    """Replace a scene's events with table rows [agent, predicate, target, start, end] (empty rows skipped)."""
    data = _data(plan)
    events = []
    for i, row in enumerate(rows):
        if not any(str(x).strip() for x in row):
            continue
        agent, predicate, target, start, end = (list(row) + [""] * 5)[:5]
        try:
            start, end = int(float(start)), int(float(end))
        except (TypeError, ValueError):
            raise PlanValidationError([f"scenes[{scene_index}].events[{i}]: start and end must be integers (got {start!r}, {end!r})"]) from None
        target = str(target).strip() or None
        events.append({"agent": str(agent).strip(), "predicate": str(predicate).strip(), "target": target, "start": start, "end": end})
    data["scenes"][_scene_index(plan, scene_index)]["events"] = events
    return parse_plan(data)
