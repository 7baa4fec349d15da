"""What every panel shows for (plan, scene, frame): one function so each event refreshes the same views.

No torch here: the studio reaches models only through ``core.project.workspace``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import gradio as gr

from core.plan import VideoPlan
from core.project.editing import frame_boxes, is_keyframe
from core.scene_graph import display_names
from studio.figures import entity_rgb, events_timeline, layout_sketch, scene_graph_figure

SKETCH_SIZE = 256
VIEW_COUNT = 11  # values returned by all_views


@dataclass
class Selection:
    scene: int = 0
    frame: int = 0


def escape_markdown(text: str) -> str:
    """``text`` for a gr.Markdown output, shown exactly as typed: HTML special characters become
    entities and the Markdown punctuation that makes emphasis, code, links and tables is
    backslash-escaped, so plan text such as ``<img src=x>`` or ``[link](javascript:...)`` is never
    rendered as markup. Meant for one-line messages (line-start syntax such as ``#`` does not arise)."""
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", html.escape(text, quote=False))


def scene_rows(plan: VideoPlan) -> list[list]:
    return [[s.id, s.description, s.background, s.num_frames, "" if s.seed is None else s.seed] for s in plan.scenes]


def entity_rows(plan: VideoPlan) -> list[list]:
    rows = []
    for e in plan.entities:
        scenes = ", ".join(s.id for s in plan.scenes if e.id in s.entity_ids())
        rows.append([e.id, e.name, e.kind, e.color or "", scenes])
    return rows


def event_rows(plan: VideoPlan, scene: int) -> list[list]:
    return [[e.agent, e.predicate, e.target or "", e.start, e.end] for e in plan.scenes[scene].events]


def box_labels(plan: VideoPlan) -> dict[str, str]:
    """Entity id -> the label shown on its box (unique display name)."""
    return display_names(plan)


def annotator_value(plan: VideoPlan, scene: int, frame: int, base=None) -> dict:
    """The box editor's value: the sketch (or rendered frame) and the frame's boxes in pixels."""
    labels = box_labels(plan)
    boxes = []
    for entity_id, (x0, y0, x1, y1) in frame_boxes(plan, scene, frame).items():
        boxes.append(
            {
                "xmin": round(x0 * SKETCH_SIZE),
                "ymin": round(y0 * SKETCH_SIZE),
                "xmax": round(x1 * SKETCH_SIZE),
                "ymax": round(y1 * SKETCH_SIZE),
                "label": labels[entity_id],
                "color": entity_rgb(plan, entity_id),
            }
        )
    return {"image": layout_sketch(plan, scene, frame, size=SKETCH_SIZE, base=base), "boxes": boxes}


def frame_status(plan: VideoPlan, scene: int, frame: int) -> str:
    kind = "keyframe" if is_keyframe(plan, scene, frame) else "interpolated"
    scene_obj = plan.scenes[scene]
    keyframes = ", ".join(str(k.frame) for k in scene_obj.keyframes)
    return f"**Frame {frame} of scene {escape_markdown(scene_obj.id)}: {kind}.** Keyframes: {keyframes}"


def scene_choices(plan: VideoPlan) -> list[tuple[str, int]]:
    return [(f"{i + 1}. {s.id}: {s.description[:40]}", i) for i, s in enumerate(plan.scenes)]


def clamp(plan: VideoPlan, scene: int | None, frame: int | None) -> Selection:
    scene = min(max(int(scene or 0), 0), len(plan.scenes) - 1)
    frame = min(max(int(frame or 0), 0), plan.scenes[scene].num_frames - 1)
    return Selection(scene, frame)


GRAPH_VIEWS = (8, 10)  # positions of the scene-graph and timeline figures in all_views


def graph_figures(plan: VideoPlan, scene: int | None, frame: int | None) -> list:
    """The scene-graph network and the events timeline of the selected scene and frame."""
    sel = clamp(plan, scene, frame)
    return [scene_graph_figure(plan, sel.scene, sel.frame), events_timeline(plan, sel.scene, sel.frame)]


def all_views(plan: VideoPlan, scene: int | None, frame: int | None, base=None) -> list:
    """Values for ALL_VIEW outputs (see studio/app.py), in order."""
    sel = clamp(plan, scene, frame)
    entity_choices = [(label, eid) for eid, label in box_labels(plan).items()]
    return [
        plan.model_dump_json(indent=2),  # plan json
        scene_rows(plan),  # scenes table
        entity_rows(plan),  # entities table
        gr.update(choices=scene_choices(plan), value=sel.scene),  # scene picker
        gr.update(maximum=plan.scenes[sel.scene].num_frames - 1, value=sel.frame),  # frame slider
        annotator_value(plan, sel.scene, sel.frame, base),  # box editor
        frame_status(plan, sel.scene, sel.frame),  # keyframe / interpolated
        gr.update(choices=entity_choices, value=entity_choices[0][1] if entity_choices else None),  # entity picker
        scene_graph_figure(plan, sel.scene, sel.frame),  # scene graph
        event_rows(plan, sel.scene),  # events table
        events_timeline(plan, sel.scene, sel.frame),  # timeline
    ]
