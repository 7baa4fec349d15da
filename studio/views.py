"""What the panels show for (plan, scene, frame), each view built only when it changed.

``views(plan, scene, frame, wanted, sent)`` returns a dict name -> value for the views in
``wanted`` whose content key differs from the key in ``sent`` (what this tab was last sent), and
records the new keys in ``sent``: a frame step rebuilds the canvas and the status only, a table edit
the plan JSON and what the edit changed, never the figures it left alone.

No torch here: the studio reaches models only through ``core.project.workspace``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import itertools
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from core.outputs import evict_least_recently_used
from core.plan import VideoPlan
from core.project.editing import frame_boxes, is_keyframe
from core.scene_graph import display_names
from studio.figures import entity_rgb, frame_thumbnail, layout_sketch

SKETCH_SIZE = 256
THUMB_SIZE = 64

# Every view a handler may return, by name (studio/app.py maps each to its component).
PLAN_VIEWS = ("plan_json", "scenes", "entities", "entity")
SCENE_VIEWS = ("scene_list", "events", "timeline", "filmstrip")
FRAME_VIEWS = ("boxes", "status")
ALL_VIEWS = PLAN_VIEWS + SCENE_VIEWS + FRAME_VIEWS


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


def rows_key(rows) -> str:
    """A content key for table rows as the page holds them (numbers and text alike as text)."""
    return _digest(json.dumps([[str(c) for c in row] for row in rows]))


def events_key(scene: int, rows) -> str:
    """The content key of the events table of scene ``scene`` showing ``rows``."""
    return _digest(scene, rows_key(rows))


def _digest(*parts) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=10).hexdigest()


def frame_name(scene: int, frame: int, key: str) -> str:
    """The file name of the box editor's picture: it says which frame the editor holds, so a
    change event sent by the editor is applied to the frame the user saw (see :func:`frame_of`)."""
    return f"s{scene}-f{frame}-{key}.png"


def frame_of(path) -> tuple[int, int] | None:
    """(scene, frame) from the box editor's picture path (:func:`frame_name`), or None."""
    if not isinstance(path, (str, Path)):
        return None
    match = re.search(r"^s(\d+)-f(\d+)-[0-9a-f]+\.png$", Path(path).name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def box_editor_value(plan: VideoPlan, scene: int, frame: int, base=None, folder: Path | None = None) -> dict:
    """The box editor's value: the sketch (or rendered frame) and the frame's boxes in pixels. With
    ``folder``, the picture is a PNG file there named after the frame (:func:`frame_name`)."""
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
    image = layout_sketch(plan, scene, frame, size=SKETCH_SIZE, base=base)
    if folder is not None:
        image = _png_file(image, folder, scene, frame)
    return {"image": image, "boxes": boxes}


CANVAS_MAX_BYTES = 64 * 2**20  # the box editor's pictures kept on disk (least recently used go first)
CANVAS_EVICT_EVERY = 64  # pictures written between two clean-ups
_written = itertools.count(1)


def _png_file(image: np.ndarray, folder: Path, scene: int, frame: int) -> str:
    """The picture as a PNG in ``folder`` (written once per content; touched when reused), keeping
    the folder under :data:`CANVAS_MAX_BYTES` by deleting the least recently used pictures."""
    path = folder / frame_name(scene, frame, hashlib.blake2b(image.tobytes(), digest_size=8).hexdigest())
    if path.exists():
        with contextlib.suppress(OSError):
            os.utime(path)
        return str(path)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")  # two events may draw the same frame at once
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    if next(_written) % CANVAS_EVICT_EVERY == 0:
        evict_least_recently_used(folder, "*.png", CANVAS_MAX_BYTES)
    return str(path)


def frame_status(plan: VideoPlan, scene: int, frame: int) -> str:
    kind = "keyframe" if is_keyframe(plan, scene, frame) else "interpolated"
    scene_obj = plan.scenes[scene]
    return f"**Frame {frame} of scene {escape_markdown(scene_obj.id)}: {kind}.** ({frame + 1}/{scene_obj.num_frames})"


def clamp(plan: VideoPlan, scene: int | None, frame: int | None) -> Selection:
    scene = min(max(int(scene or 0), 0), len(plan.scenes) - 1)
    frame = min(max(int(frame or 0), 0), plan.scenes[scene].num_frames - 1)
    return Selection(scene, frame)


def _attr(text) -> str:
    return html.escape(str(text), quote=True)


def scene_list_html(plan: VideoPlan, scene: int) -> str:
    """The scene list: one row per scene (click selects it)."""
    items = []
    for i, s in enumerate(plan.scenes):
        selected = " selected" if i == scene else ""
        items.append(
            f'<li class="scene-item{selected}" data-scene="{i}" title="{_attr(s.description)}">'
            f'<b>{i + 1}. {html.escape(s.id)}</b> <span class="bg">{html.escape(s.background)} · {s.num_frames} f</span>'
            f'<div class="desc">{html.escape(s.description)}</div></li>'
        )
    return f'<ul class="scene-items">{"".join(items)}</ul>'


def timeline_html(plan: VideoPlan, scene: int, frame: int) -> str:
    """The timeline: a frame ruler and one track per entity of the scene, with its keyframes as
    diamonds (``data-frame``: a click jumps there) and its events as bars; a playhead at ``frame``."""
    s = plan.scenes[scene]
    n = s.num_frames
    names = display_names(plan)
    ids = [e.id for e in plan.entities if e.id in s.entity_ids()] or [e.id for e in plan.entities][:1]
    cell = f"calc((100% - 110px) / {n})"

    def left(f: float) -> str:
        return f"calc(110px + (100% - 110px) * {f / n:.5f})"

    ruler = "".join(f'<span class="tick" data-frame="{f}" style="left:{left(f)};width:{cell}">{f}</span>' for f in range(n))
    tracks = []
    for eid in ids:
        rgb = "#%02x%02x%02x" % entity_rgb(plan, eid)
        parts = [f'<span class="name" title="{_attr(eid)}"><i style="background:{rgb}"></i>{html.escape(names.get(eid, eid))}</span>']
        for event in s.events:
            if event.agent == eid:
                label = f"{event.predicate} {names.get(event.target, event.target) if event.target else ''}".strip()
                parts.append(
                    f'<span class="event" style="left:{left(event.start)};width:calc((100% - 110px) * {(event.end - event.start + 1) / n:.5f});'
                    f'background:{rgb}" title="{_attr(label)} ({event.start}-{event.end})">{html.escape(label)}</span>'
                )
        for k in s.keyframes:
            if eid in k.boxes:
                off = " off" if k.boxes[eid] is None else ""
                parts.append(f'<span class="key{off}" data-frame="{k.frame}" style="left:{left(k.frame + 0.5)}" title="keyframe at frame {k.frame}"></span>')
        tracks.append(f'<div class="track" data-entity="{_attr(eid)}">{"".join(parts)}</div>')
    return (
        f'<div class="tl" data-frames="{n}" data-current="{frame}">'
        f'<div class="ruler">{ruler}</div>{"".join(tracks)}'
        f'<div class="playhead" style="left:{left(frame)};width:{cell}"></div></div>'
    )


def filmstrip_html(plan: VideoPlan, scene: int, frame: int, rendered: np.ndarray | None = None) -> str:
    """Thumbnails of every frame of the scene (the rendered frames when the scene has been rendered,
    else the layout), shown at the video's own pixel size, scaled without smoothing."""
    s = plan.scenes[scene]
    thumbs = []
    for f in range(s.num_frames):
        base = rendered[f] if rendered is not None and f < len(rendered) else None
        image = frame_thumbnail(plan, scene, f, size=THUMB_SIZE, base=base)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
        data = base64.b64encode(buffer.getvalue()).decode()
        current = " current" if f == frame else ""
        key = " keyframe" if is_keyframe(plan, scene, f) else ""
        thumbs.append(f'<img class="thumb{current}{key}" data-frame="{f}" title="frame {f}" src="data:image/png;base64,{data}">')
    return f'<div class="strip" data-frames="{s.num_frames}" data-current="{frame}">{"".join(thumbs)}</div>'


def views(plan: VideoPlan, scene, frame, wanted=ALL_VIEWS, sent: dict | None = None, *, rendered=None, folder: Path | None = None) -> dict:
    """The views in ``wanted`` for (plan, scene, frame) that differ from what ``sent`` records
    (all of them for ``sent=None``); ``sent`` is updated with the keys of what is returned.

    Args:
        rendered: the scene's rendered frames (F, 64, 64, 3) uint8, or None: shown in the canvas
            and the filmstrip instead of the sketch.
        folder: where the box editor's pictures are written (None: a numpy image in the value).
    """
    sel = clamp(plan, scene, frame)
    scene, frame = sel.scene, sel.frame
    sent = {} if sent is None else sent
    s = plan.scenes[scene]
    looks = _digest([(e.id, e.name, e.color) for e in plan.entities])
    drawn = "none" if rendered is None else _digest(rendered.shape, hashlib.blake2b(rendered.tobytes(), digest_size=8).hexdigest())
    keyframes = [k.model_dump_json() for k in s.keyframes]
    # What each picture depends on: a new description redraws none of them.
    layout_key = _digest(scene, s.background, s.num_frames, keyframes, looks, drawn)
    timeline_key = _digest(scene, s.num_frames, keyframes, [e.model_dump_json() for e in s.events], looks)
    builders = {
        "plan_json": (lambda: _digest(plan.model_dump_json()), lambda: plan.model_dump_json(indent=2)),
        "scenes": (lambda: rows_key(scene_rows(plan)), lambda: scene_rows(plan)),
        "entities": (lambda: rows_key(entity_rows(plan)), lambda: entity_rows(plan)),
        "entity": (lambda: looks, lambda: _entity_choices(plan)),
        "scene_list": (lambda: _digest(scene, rows_key(scene_rows(plan))), lambda: scene_list_html(plan, scene)),
        "events": (lambda: events_key(scene, event_rows(plan, scene)), lambda: event_rows(plan, scene)),
        "timeline": (lambda: timeline_key, lambda: timeline_html(plan, scene, frame)),
        "filmstrip": (lambda: layout_key, lambda: filmstrip_html(plan, scene, frame, rendered)),
        "boxes": (
            lambda: _digest(layout_key, frame),
            lambda: box_editor_value(plan, scene, frame, None if rendered is None or frame >= len(rendered) else rendered[frame], folder),
        ),
        "status": (lambda: _digest(scene, s.id, keyframes, s.num_frames, frame), lambda: frame_status(plan, scene, frame)),
    }
    out = {}
    for name in wanted:
        key_of, build = builders[name]
        key = key_of()
        if sent.get(name) != key:
            out[name] = build()
            sent[name] = key
    return out


def _entity_choices(plan: VideoPlan):
    choices = [(label, eid) for eid, label in box_labels(plan).items()]
    return gr.update(choices=choices, value=choices[0][1] if choices else None)
