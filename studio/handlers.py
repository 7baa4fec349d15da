"""Event handlers: each reads the session's project, calls one core function, returns the views.

Every view handler returns a dict: ``session``, ``message`` and the views that changed, by name
(studio.views). A refused edit returns the last good plan's views and the core's validation message.
"""

from __future__ import annotations

import contextvars
import queue
import re
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np

from core.plan import PlanValidationError, VideoPlan
from core.planner import PlanError
from core.planner.llm import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S
from core.project import editing
from core.project.workspace import Workspace
from core.render import RenderCancelled, RenderSettings
from core.scene_graph import build_scene_graphs
from studio.figures import scene_graph_svg
from studio.views import ALL_VIEWS, FRAME_VIEWS, SCENE_VIEWS, SKETCH_SIZE, box_labels, clamp, escape_markdown, events_key, frame_of, rows_key, views

PREVIEW_EVERY = 5  # denoising steps between two render previews


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
    [scene, frame], "sent": {view: key}}``: the open project, the version of the plan the tab shows
    (every edit, undo and redo is made on it, so a stale tab never overwrites another's work), the
    scene and frame the tab shows (layout edits apply there) and what each view was last sent as
    (a handler returns only the views that changed).

    Every view handler returns a dict: ``session``, ``message`` and the changed views by name
    (studio.views.ALL_VIEWS, plus ``graph``); a name left out is left as it is on the page.
    """

    def __init__(self, workspace: Workspace, *, frames_dir: Path | None = None):
        self.ws = workspace
        self.frames_dir = frames_dir  # where the box editor's pictures are written (None: numpy images)
        self._rendered_cache: dict = {}

    # helpers ---------------------------------------------------------------------------------

    def _project(self, session: dict | None) -> int | None:
        if session and session.get("project") is not None:
            return session["project"]
        return None

    @staticmethod
    def _where(session, scene, frame) -> tuple[int, int]:
        """The scene and frame an event applies to: those given, else those the tab shows."""
        canvas = list((session or {}).get("canvas") or [0, 0])
        return int(canvas[0] if scene is None else scene), int(canvas[1] if frame is None else frame)

    def _rendered(self, project: int | None, plan: VideoPlan, scene: int):
        """The scene's frames as the project's last render drew them (same content and settings), or None."""
        if project is None:
            return None
        records = self.ws.renders(project)
        if not records:
            return None
        key = (project, records[0].video, plan.scenes[scene].model_dump_json(), scene)
        if key not in self._rendered_cache:
            frames = [self.ws.rendered_frame(project, plan, scene, 0)]
            if frames[0] is not None:
                frames = [self.ws.rendered_frame(project, plan, scene, f) for f in range(plan.scenes[scene].num_frames)]
            self._rendered_cache = {key: None if frames[0] is None or any(f is None for f in frames) else np.stack(frames)}
        return self._rendered_cache[key]

    def _views(self, session, plan: VideoPlan | None, scene, frame, note: str = "", version: int | None = None, wanted=ALL_VIEWS) -> dict:
        """{session, message, *views in ``wanted`` that changed} for ``plan`` (at ``version``) at the
        given scene and frame."""
        session = dict(session or {})
        if plan is None:
            return {"session": session, "message": note}
        if version is not None:
            session["version"] = version
        project = self._project(session)
        sel = clamp(plan, scene, frame)
        session["canvas"] = [sel.scene, sel.frame]
        sent = dict(session.get("sent") or {})
        warnings = self.ws.warnings(plan) if wanted is not FRAME_VIEWS else []
        if warnings:  # what the model cannot draw as written, at its field
            more = f" (and {len(warnings) - 2} more)" if len(warnings) > 2 else ""
            note = f"{note}  \n⚠️ {escape_markdown('; '.join(warnings[:2]) + more)}".strip()
        out = views(plan, sel.scene, sel.frame, wanted, sent, rendered=self._rendered(project, plan, sel.scene), folder=self.frames_dir)
        session["sent"] = sent
        result = {"session": session, **out}
        if note or wanted is not FRAME_VIEWS:
            result["message"] = note
        return result

    def _show(self, session, project: int, scene, frame, note: str = "") -> dict:
        """The views of ``project``'s current version, which the session now has open."""
        session = dict(session or {}, project=project)
        version, plan = self.ws.store.current(project)
        return self._views(session, plan, scene, frame, note, version)

    def _edit(self, session, scene, frame, change, *args, ok="") -> dict:
        project = self._project(session)
        if project is None:
            return self._views(session, None, scene, frame, message("Generate or open a plan first."))
        result = self.ws.edit(project, change, *args, base_version=(session or {}).get("version"), note=ok.rstrip("."))
        return self._views(session, result.plan, scene, frame, message(result.error, ok, result.plan), result.version)

    # project ---------------------------------------------------------------------------------

    def load(self, session, request: gr.Request | None = None) -> dict:
        """Page load: open the project named in the page's address (``?project=N``, so a reload keeps
        it), else the tab's own; a new tab starts on the project list, not on another tab's project.
        The scene graph is drawn by :meth:`graph_view` right after, outside the first response."""
        session = dict(session or {}, sent={})
        project = _project_in_url(request) or self._project(session)
        if project is None or not self.ws.store.exists(project):
            session.pop("project", None)
            note = "Type a prompt and press **Generate plan**, or pick one of the **Projects**."
            return self._views(session, None, 0, 0, note if project is None else f"Project {project} does not exist. {note}")
        return self._show(session, project, 0, 0, f"Opened project {project}.")

    @staticmethod
    def project_url(session) -> str:
        """The open project's id as text, for the page's address (``?project=N``); empty for none."""
        project = (session or {}).get("project")
        return "" if project is None else str(project)

    def graph_view(self, session) -> dict:
        """The scene graph of the frame the tab shows, when it differs from the one it shows.

        Returns nothing (not even the session) when there is nothing to change: this runs beside
        the tab's other events, and writing back the session it read could undo theirs (a page's
        first graph, written after a Generate, would close the new project)."""
        session = dict(session or {})
        plan = self._current(session)
        if plan is None:
            return {}
        sel = clamp(plan, *self._where(session, None, None))
        graph = build_scene_graphs(plan, plan.scenes[sel.scene]).frames[sel.frame]
        key = repr((sel.scene, sorted(graph.nodes(data=True)), sorted(graph.edges())))
        sent = dict(session.get("sent") or {})
        if sent.get("graph") == key:
            return {}
        sent["graph"] = key
        session["sent"] = sent
        return {"session": session, "graph": scene_graph_svg(plan, sel.scene, sel.frame)}

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

    def open_project(self, session, project_id) -> dict:
        if project_id is None:
            return self._views(session, None, 0, 0, message("Pick a project to open."))
        return self._show(session, int(project_id), 0, 0, f"Opened project {project_id}.")

    def undo(self, session, scene=None, frame=None) -> dict:
        return self._history(session, scene, frame, self.ws.undo)

    def redo(self, session, scene=None, frame=None) -> dict:
        return self._history(session, scene, frame, self.ws.redo)

    def _history(self, session, scene, frame, move) -> dict:
        scene, frame = self._where(session, scene, frame)
        project = self._project(session)
        if project is None:
            return self._views(session, None, scene, frame, message("Generate or open a plan first."))
        result = move(project, base_version=(session or {}).get("version"))
        return self._views(session, result.plan, scene, frame, message(result.error, result.message), result.version)

    def import_plan(self, session, file_path) -> dict:
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

    def _table_edit(self, session, name: str, shown: str, scene, frame, change, *args, ok: str) -> dict:
        """A table edit: the table already shows what was typed (content key ``shown``), so it is
        sent back only when the plan's rows differ from it (a refused edit, another tab's change, a
        normalised value)."""
        session = dict(session or {})
        if (session.get("sent") or {}).get(name) == shown or session.get("refused") == [name, shown]:
            # Nothing typed (the table holds what this tab was last sent or saved), or Gradio's
            # Dataframe sending one Enter twice after the first was refused (stale or invalid): the
            # repeat carries the rows typed before the fresh state came back and would overwrite it.
            return {"session": session}
        session["sent"] = dict(session.get("sent") or {}, **{name: shown})
        scene, frame = self._where(session, scene, frame)
        out = self._edit(session, scene, frame, change, *args, ok=ok)
        out["session"]["refused"] = [name, shown] if out.get("message", "").startswith("⚠️") else None
        return out

    def edit_scenes(self, session, rows, scene=None, frame=None) -> dict:
        rows = _rows(rows)
        return self._table_edit(session, "scenes", rows_key(rows), scene, frame, editing.update_scenes, rows, ok="Scenes saved.")

    def edit_entities(self, session, rows, scene=None, frame=None) -> dict:
        rows = _rows(rows)
        return self._table_edit(session, "entities", rows_key(rows), scene, frame, editing.update_entities, [r[:4] for r in rows], ok="Entities saved.")

    def add_scene(self, session, scene=None, frame=None) -> dict:
        scene, frame = self._where(session, scene, frame)
        return self._edit(session, scene, frame, editing.add_scene, ok="Scene added.")

    def delete_scene(self, session, scene=None, frame=None) -> dict:
        scene, frame = self._where(session, scene, frame)
        return self._edit(session, 0, 0, editing.delete_scene, scene, ok="Scene deleted.")

    def move_scene(self, session, scene=None, frame=None, *, offset: int) -> dict:
        scene, frame = self._where(session, scene, frame)
        plan = self._current(session)
        target = scene + offset
        if plan is None or 0 <= target < len(plan.scenes):
            return self._edit(session, target, frame, editing.move_scene, scene, offset, ok="Scene moved.")
        return self._edit(session, scene, frame, editing.move_scene, scene, offset)

    # layout ----------------------------------------------------------------------------------

    def pick_scene(self, session, evt: gr.SelectData) -> dict:
        """A click in the scene list (or a row of the scenes table) selects that scene at frame 0
        for the canvas, the timeline and the scene buttons. Tables are not re-sent (a click in one
        may start a cell edit)."""
        plan = self._current(session)
        index = getattr(evt, "index", None)
        if plan is None or index is None:
            return {"session": dict(session or {})}
        row = index[0] if isinstance(index, (list, tuple)) else index
        return self._views(session, plan, int(row), 0, wanted=SCENE_VIEWS + FRAME_VIEWS)

    def goto_frame(self, session, evt: gr.SelectData) -> dict:
        """A frame picked in the filmstrip or the timeline, or stepped to with the keyboard: the
        canvas and the status, nothing else."""
        plan = self._current(session)
        index = getattr(evt, "index", None)
        if plan is None or index is None:
            return {}
        # Quick steps can reach the server out of order: one older than the last shown is skipped
        # (and the session left alone).
        seq = getattr(evt, "value", None)
        if isinstance(seq, int) and seq <= (session or {}).get("frame_request", 0):
            return {}
        session = dict(session or {}, frame_request=seq if isinstance(seq, int) else 0)
        scene, _ = self._where(session, None, None)
        out = self._views(session, plan, scene, int(index), wanted=FRAME_VIEWS)
        return {**out, **self.graph_view(out["session"])}  # the graph only when it changed (rarely)

    def select(self, session, scene, frame) -> dict:
        """Show ``scene`` and ``frame`` (every view that changed)."""
        return self._views(session, self._current(session), scene, frame, "")

    def boxes_changed(self, session, value, scene=None, frame=None) -> dict:
        """The box editor sends all boxes of the frame it holds; a moved or resized one makes that
        frame a keyframe. The frame is the one named by the editor's picture (the frame the user saw,
        whatever the tab has been asked to show since), else the one given, else the tab's."""
        plan = self._current(session)
        if plan is None or not value:
            return {"session": dict(session or {})}
        held = frame_of(value.get("image"))
        if held is not None:
            scene, frame = held
        elif list((session or {}).get("canvas") or [scene, frame]) != [scene, frame]:
            # The editor still holds another frame's boxes (the views were just set for a new
            # project, scene or frame): not a drag.
            return {"session": dict(session or {})}
        scene, frame = self._where(session, scene, frame)
        if not (0 <= scene < len(plan.scenes) and 0 <= frame < plan.scenes[scene].num_frames):
            return {"session": dict(session or {})}
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
            return {"session": dict(session or {})}
        return self._edit(session, scene, frame, editing.set_keyframe, scene, frame, boxes, ok=f"Keyframe saved at frame {frame}.")

    def remove_keyframe(self, session, scene=None, frame=None) -> dict:
        scene, frame = self._where(session, scene, frame)
        return self._edit(session, scene, frame, editing.remove_keyframe, scene, frame, ok="Keyframe removed.")

    def make_absent(self, session, scene=None, frame=None, entity_id=None) -> dict:
        scene, frame = self._where(session, scene, frame)
        return self._edit(session, scene, frame, editing.set_absent, scene, frame, entity_id, ok="Entity taken off screen here.")

    # events ----------------------------------------------------------------------------------

    def edit_events(self, session, rows, scene=None, frame=None) -> dict:
        rows = _rows(rows)
        scene, frame = self._where(session, scene, frame)
        return self._table_edit(session, "events", events_key(scene, rows), scene, frame, editing.update_events, scene, rows, ok="Events saved.")

    # render ----------------------------------------------------------------------------------

    def render(self, session, steps, guidance, alpha, seed, request: gr.Request | None = None, progress=gr.Progress()):
        """Render the open project, yielding (video, downloads, status, gallery, preview) updates:
        a preview of the current scene's middle frame every :data:`PREVIEW_EVERY` steps while the
        render runs (in a worker thread), then the video."""
        project = self._project(session)
        if project is None:
            raise gr.Error("Generate or open a plan first.")
        try:
            settings = RenderSettings(num_inference_steps=int(steps), guidance_scale=float(guidance), layout_alpha=float(alpha), seed=int(seed))
        except ValueError as error:
            raise gr.Error(str(error).splitlines()[0]) from None
        start = time.perf_counter()
        previews: queue.Queue = queue.Queue()

        def on_progress(p):
            done = (p.scene * p.steps + p.step) / (p.scenes * p.steps)
            elapsed = time.perf_counter() - start
            eta = f", about {elapsed * (1 - done) / done:.0f} s left" if done > 0.05 else ""
            progress(done, desc=f"scene {p.scene + 1}/{p.scenes}, step {p.step}/{p.steps}{eta}")
            if p.preview is not None:
                previews.put(p.preview)

        token = request.session_hash if request is not None else "default"
        outcome: dict = {}

        def work():
            try:
                outcome["record"] = self.ws.render(project, settings, session=token, on_progress=on_progress, preview_every=PREVIEW_EVERY)
            except Exception as error:  # handed to the event's thread below
                outcome["error"] = error
            finally:
                previews.put(None)

        # Gradio finds the event's progress bar through context variables: the worker runs in a copy of ours.
        threading.Thread(target=contextvars.copy_context().run, args=(work,), daemon=True, name=f"render-{token}").start()
        yield gr.update(), gr.update(), gr.update(), gr.update(), gr.update(value=None, visible=True)
        while (preview := previews.get()) is not None:
            yield gr.update(), gr.update(), gr.update(), gr.update(), preview
        hidden = gr.update(value=None, visible=False)
        error = outcome.get("error")
        if isinstance(error, RenderCancelled):
            yield gr.update(), gr.update(), message(f"{error}."), gr.update(), hidden
            return
        if error is not None:
            raise error
        record = outcome["record"]
        yield record.video, [record.video, record.plan], f"Rendered {Path(record.video).name} in {record.seconds:.1f} s.", self.gallery(session), hidden

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
