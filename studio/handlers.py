"""Event handlers: each reads the session's project, calls one core function, returns the views.

Every handler returns ``[session, message, *views]`` where views are studio.views.all_views(...).
A refused edit returns the last good plan's views and the core's validation message.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import gradio as gr

from core.plan import PlanValidationError, VideoPlan
from core.planner import PlanError
from core.planner.llm import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S
from core.project import editing
from core.project.workspace import Workspace
from core.render import RenderCancelled, RenderSettings
from studio.views import GRAPH_VIEWS, SKETCH_SIZE, VIEW_COUNT, all_views, box_labels, clamp, escape_markdown, graph_figures


def message(text: str | None, ok: str = "", plan: VideoPlan | None = None) -> str:
    """A status line: the core's error (plan text in it shown as typed, never as markup; a field
    path ``scenes[1]`` followed by the scene's id as the page shows it) or ``ok``."""
    if not text:
        return ok
    if plan is not None:
        ids = [scene.id for scene in plan.scenes]
        text = re.sub(r"scenes\[(\d+)\]", lambda m: f"{m.group(0)} ({ids[int(m.group(1))]})" if int(m.group(1)) < len(ids) else m.group(0), text)
    return f"⚠️ {escape_markdown(text)}"


class Handlers:
    """The studio's event functions over one Workspace.

    ``session`` (a gr.State, one per browser tab) is ``{"project": id, "version": id, "canvas":
    [scene, frame]}``: the open project, the version of the plan the tab shows (every edit, undo and
    redo is made on it, so a stale tab never overwrites another's work) and the frame the box
    editor was last given.
    """

    def __init__(self, workspace: Workspace):
        self.ws = workspace

    # helpers ---------------------------------------------------------------------------------

    def _project(self, session: dict | None) -> int | None:
        if session and session.get("project") is not None:
            return session["project"]
        return None

    def _views(self, session, plan: VideoPlan | None, scene, frame, note: str = "", version: int | None = None):
        """[session, message, *views] for ``plan`` (at ``version``) at the selected scene and frame."""
        session = dict(session or {})
        if plan is None:
            return [session, note, *[gr.update()] * VIEW_COUNT]
        if version is not None:
            session["version"] = version
        project = self._project(session)
        sel = _sel(plan, scene, frame)
        session["canvas"] = list(sel)
        warnings = self.ws.warnings(plan)
        if warnings:  # what the model cannot draw as written, at its field
            more = f" (and {len(warnings) - 2} more)" if len(warnings) > 2 else ""
            note = f"{note}  \n⚠️ {escape_markdown('; '.join(warnings[:2]) + more)}".strip()
        base = self.ws.rendered_frame(project, plan, *sel) if project is not None else None
        return [session, note, *all_views(plan, scene, frame, base)]

    def _show(self, session, project: int, scene, frame, note: str = ""):
        """The views of ``project``'s current version, which the session now has open."""
        session = dict(session or {}, project=project)
        version, plan = self.ws.store.current(project)
        return self._views(session, plan, scene, frame, note, version)

    def _edit(self, session, scene, frame, change, *args, ok=""):
        project = self._project(session)
        if project is None:
            return self._views(session, None, scene, frame, message("Generate or open a plan first."))
        result = self.ws.edit(project, change, *args, base_version=(session or {}).get("version"), note=ok.rstrip("."))
        return self._views(session, result.plan, scene, frame, message(result.error, ok, result.plan), result.version)

    # project ---------------------------------------------------------------------------------

    def load(self, session, request: gr.Request | None = None):
        """Page load: open the project named in the page's address (``?project=N``, so a reload keeps
        it), else the tab's own; a new tab starts on the project list, not on another tab's project."""
        session = dict(session or {})
        project = _project_in_url(request) or self._project(session)
        if project is None or not self.ws.store.exists(project):
            session.pop("project", None)
            note = "Type a prompt and press **Generate plan**, or pick one of the **Projects**."
            return self._views(session, None, 0, 0, note if project is None else f"Project {project} does not exist. {note}")
        views = self._show(session, project, 0, 0, f"Opened project {project}.")
        for index in GRAPH_VIEWS:  # drawn by graph_views right after: plotly is the slow part of a first load
            views[2 + index] = gr.update()
        return views

    @staticmethod
    def project_url(session) -> str:
        """The open project's id as text, for the page's address (``?project=N``); empty for none."""
        project = (session or {}).get("project")
        return "" if project is None else str(project)

    def graph_views(self, session, scene, frame):
        """The scene-graph and timeline figures of the current plan (after :meth:`load`)."""
        plan = self._current(session)
        if plan is None:
            return [gr.update(), gr.update()]
        return graph_figures(plan, scene, frame)

    def generate(self, session, prompt, planner, llm_model, base_url, api_key, frames, llm_timeout=DEFAULT_TIMEOUT_S, llm_retries=DEFAULT_RETRIES):
        session = dict(session or {})
        try:
            plan = self.ws.plan_prompt(
                prompt or "", planner=planner, llm_model=llm_model, base_url=base_url, api_key=api_key, num_frames=int(frames),
                llm_timeout=float(DEFAULT_TIMEOUT_S if llm_timeout is None else llm_timeout),
                llm_retries=int(DEFAULT_RETRIES if llm_retries is None else llm_retries),
            )
        except (PlanValidationError, PlanError) as error:
            return self._views(session, None, 0, 0, message(str(error)))
        project = self.ws.create_project(plan)
        return self._show(session, project, 0, 0, f"New project {project}: {len(plan.scenes)} scene(s), {len(plan.entities)} entities.")

    def _current(self, session) -> VideoPlan | None:
        project = self._project(session)
        return self.ws.store.current(project)[1] if project is not None else None

    def project_choices(self):
        return gr.update(choices=[(f"{p.id}: {p.name} ({p.versions} versions)", p.id) for p in self.ws.store.list_projects()])

    def open_project(self, session, project_id):
        if project_id is None:
            return self._views(session, None, 0, 0, message("Pick a project to open."))
        return self._show(session, int(project_id), 0, 0, f"Opened project {project_id}.")

    def undo(self, session, scene, frame):
        return self._history(session, scene, frame, self.ws.undo)

    def redo(self, session, scene, frame):
        return self._history(session, scene, frame, self.ws.redo)

    def _history(self, session, scene, frame, move):
        project = self._project(session)
        if project is None:
            return self._views(session, None, scene, frame, message("Generate or open a plan first."))
        result = move(project, base_version=(session or {}).get("version"))
        return self._views(session, result.plan, scene, frame, message(result.error, result.message), result.version)

    def import_plan(self, session, file_path):
        if not file_path:
            return self._views(session, None, 0, 0, "")
        try:
            project, _ = self.ws.import_plan(Path(file_path).read_bytes(), self._project(session))
        except PlanValidationError as error:
            return self._views(session, None, 0, 0, message(str(error)))
        return self._show(session, project, 0, 0, "Imported the plan.")

    def export_plan(self, session):
        project = self._project(session)
        return str(self.ws.export_plan(project)) if project is not None else None

    # scenes and entities ---------------------------------------------------------------------

    def edit_scenes(self, session, rows, scene, frame):
        rows = _rows(rows)
        return self._edit(session, scene, frame, editing.update_scenes, rows, ok="Scenes saved.")

    def edit_entities(self, session, rows, scene, frame):
        rows = [r[:4] for r in _rows(rows)]
        return self._edit(session, scene, frame, editing.update_entities, rows, ok="Entities saved.")

    def add_scene(self, session, scene, frame):
        return self._edit(session, scene, frame, editing.add_scene, ok="Scene added.")

    def delete_scene(self, session, scene, frame):
        return self._edit(session, 0, 0, editing.delete_scene, int(scene or 0), ok="Scene deleted.")

    def move_scene(self, session, scene, frame, offset: int):
        plan = self._current(session)
        target = int(scene or 0) + offset
        views = self._edit(session, target, frame, editing.move_scene, int(scene or 0), offset, ok="Scene moved.")
        return views if plan is None or 0 <= target < len(plan.scenes) else self._edit(session, scene, frame, editing.move_scene, int(scene or 0), offset)

    # layout ----------------------------------------------------------------------------------

    def pick_scene(self, session, evt: gr.SelectData):
        """A click in the scene list selects that scene for the layout, the scene graph and
        **Delete selected scene**. The tables are left alone: the click may start a cell edit."""
        plan = self._current(session)
        index = getattr(evt, "index", None)
        if plan is None or index is None:
            return [gr.update()] * (2 + VIEW_COUNT)
        row = index[0] if isinstance(index, (list, tuple)) else index
        out = self._views(session, plan, int(row), 0)
        for position in (0, 1, 2):  # plan JSON, scenes table, entities table
            out[2 + position] = gr.update()
        return out

    def select(self, session, scene, frame):
        return self._views(session, self._current(session), scene, frame, "")

    def boxes_changed(self, session, value, scene, frame):
        """The box editor sends all boxes of the frame; a moved or resized one makes a keyframe."""
        plan = self._current(session)
        if plan is None or not value:
            return [gr.update()] * (2 + VIEW_COUNT)
        scene, frame = _sel(plan, scene, frame)
        if list((session or {}).get("canvas") or [scene, frame]) != [scene, frame]:
            # The editor still holds another frame's boxes (the views were just set for a new
            # project, scene or frame and the slider's value raced ahead): not a drag.
            return [gr.update()] * (2 + VIEW_COUNT)
        by_label = {label: eid for eid, label in box_labels(plan).items()}
        boxes = {}
        for box in value.get("boxes") or []:
            entity_id = by_label.get(box.get("label"))
            if entity_id is None:
                continue
            boxes[entity_id] = [round(min(max(box[k] / SKETCH_SIZE, 0.0), 1.0), 4) for k in ("xmin", "ymin", "xmax", "ymax")]
        current = editing.frame_boxes(plan, scene, frame)
        if _same_boxes(boxes, current):
            # Also reached when the editor's value was set by another event: change nothing, or
            # the update would fire this handler again.
            return [gr.update()] * (2 + VIEW_COUNT)
        return self._edit(session, scene, frame, editing.set_keyframe, scene, frame, boxes, ok=f"Keyframe saved at frame {frame}.")

    def remove_keyframe(self, session, scene, frame):
        return self._edit(session, scene, frame, editing.remove_keyframe, int(scene or 0), int(frame or 0), ok="Keyframe removed.")

    def make_absent(self, session, scene, frame, entity_id):
        return self._edit(session, scene, frame, editing.set_absent, int(scene or 0), int(frame or 0), entity_id, ok="Entity taken off screen here.")

    # events ----------------------------------------------------------------------------------

    def edit_events(self, session, rows, scene, frame):
        return self._edit(session, scene, frame, editing.update_events, int(scene or 0), _rows(rows), ok="Events saved.")

    # render ----------------------------------------------------------------------------------

    def render(self, session, steps, guidance, alpha, seed, request: gr.Request | None = None, progress=gr.Progress()):
        """Render the open project; returns (video, downloads, status, gallery)."""
        project = self._project(session)
        if project is None:
            raise gr.Error("Generate or open a plan first.")
        try:
            settings = RenderSettings(num_inference_steps=int(steps), guidance_scale=float(guidance), layout_alpha=float(alpha), seed=int(seed))
        except ValueError as error:
            raise gr.Error(str(error).splitlines()[0]) from None
        start = time.perf_counter()

        def on_progress(p):
            done = (p.scene * p.steps + p.step) / (p.scenes * p.steps)
            elapsed = time.perf_counter() - start
            eta = f", about {elapsed * (1 - done) / done:.0f} s left" if done > 0.05 else ""
            progress(done, desc=f"scene {p.scene + 1}/{p.scenes}, step {p.step}/{p.steps}{eta}")

        token = request.session_hash if request is not None else "default"
        try:
            record = self.ws.render(project, settings, session=token, on_progress=on_progress)
        except RenderCancelled as error:
            return gr.update(), gr.update(), message(f"{error}."), gr.update()
        return record.video, [record.video, record.plan], f"Rendered {Path(record.video).name} in {record.seconds:.1f} s.", self.gallery(session)

    def gallery(self, session):
        """The open project's renders, newest first, as (video, caption) pairs for a gr.Gallery."""
        project = self._project(session)
        return [] if project is None else [(r.video, r.label) for r in self.ws.renders(project)]

    def play_render(self, session, evt: gr.SelectData):
        """A render picked in the gallery: play it and offer its files."""
        project = self._project(session)
        records = self.ws.renders(project) if project is not None else []
        index = getattr(evt, "index", None)
        if index is None or not 0 <= int(index) < len(records):
            return gr.update(), gr.update()
        record = records[int(index)]
        return record.video, [record.video, record.plan]

    def cancel(self, request: gr.Request | None = None):
        self.ws.cancel(request.session_hash if request is not None else "default")
        return "Cancelling after the current step..."


def _project_in_url(request: gr.Request | None) -> int | None:
    """The project id in the page's address (``?project=N``), or None."""
    text = (request.query_params.get("project") if request is not None else None) or ""
    return int(text) if text.isdigit() else None


def _rows(rows) -> list[list]:
    if rows is None:
        return []
    if hasattr(rows, "values"):  # pandas DataFrame
        return rows.values.tolist()
    if isinstance(rows, dict) and "data" in rows:
        return rows["data"]
    return [list(r) for r in rows]


def _sel(plan: VideoPlan, scene, frame) -> tuple[int, int]:
    sel = clamp(plan, scene, frame)
    return sel.scene, sel.frame


def _same_boxes(a: dict, b: dict, tolerance: float = 1.5 / SKETCH_SIZE) -> bool:
    if a.keys() != b.keys():
        return False
    return all(abs(x - y) <= tolerance for k in a for x, y in zip(a[k], b[k]))
