"""The studio's single entry point into the core: projects, edits, planning and rendering.

A Workspace owns the project store (SQLite), the output folder (the only folder the app serves files
from), the lazily loaded pipeline and the per-scene render cache. Every edit goes through
:meth:`Workspace.edit`, which keeps the last good plan when an edit is invalid.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core.outputs import atomic_write_bytes, write_together
from core.plan import PlanValidationError, VideoPlan, parse_plan
from core.planner.llm import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S
from core.project.renders import RenderRecord, SceneCache, list_renders, record_bytes, record_path
from core.project.store import ProjectStore, StaleVersionError
from core.vocabulary import plan_warnings

NO_KEY = "no-key"  # what a visitor's own endpoint gets when they typed no key (never the server's)
STALE_MESSAGE = "This project changed in another tab; showing its latest version. Nothing was overwritten: make the edit again if you still want it."


@dataclass
class EditResult:
    """What the user sees after an edit, undo or redo.

    Attributes:
        plan: the plan now current (the unchanged one if the edit was refused or stale).
        version: its version id (what the next edit should be made on).
        error: why the edit was refused (one line), or None.
        stale: the edit was made on an old version (another tab changed the project); nothing was written.
        message: what happened, for an undo or redo (``"Undid: keyframe saved at frame 5."``).
    """

    plan: VideoPlan
    version: int
    error: str | None = None
    stale: bool = False
    message: str = ""


class Workspace:
    """Projects, edits and renders for one data folder.

    Args:
        data_dir: holds ``studio.sqlite3`` and ``outputs/``.
        model: pipeline folder for rendering (None: the shipped toy model).
        device, dtype: where the pipeline runs.
        load_options: more keyword arguments for :func:`core.render.load_pipeline` (``adapter``,
            ``scheduler``, ``cpu_offload``, ``compile_unet``).
    """

    def __init__(self, data_dir: str | Path, *, model: str | None = None, device: str = "cpu", dtype: str = "fp32", **load_options):
        self.data_dir = Path(data_dir)
        self.output_dir = self.data_dir / "outputs"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.store = ProjectStore(self.data_dir / "studio.sqlite3")
        self.model, self.device, self.dtype = model, device, dtype
        self.load_options = load_options
        self._pipe = None
        self._pipe_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self.scene_cache = SceneCache(self.data_dir / "scene-cache")
        self._cancel: dict[str, threading.Event] = {}
        self._vocabulary = None  # what the model can draw, read from its model_index.json on first use

    def warnings(self, plan: VideoPlan) -> list[str]:
        """What the loaded model cannot draw as the plan says (:func:`core.vocabulary.plan_warnings`)."""
        if self._vocabulary is None:
            from core.render import read_model_index
            from core.vocabulary import model_vocabulary

            self._vocabulary = model_vocabulary(read_model_index(self.model))
        return plan_warnings(plan, self._vocabulary)

    # Projects ----------------------------------------------------------------------------------

    def plan_prompt(
        self,
        prompt: str,
        *,
        planner: str = "rules",
        llm_model: str = "",
        base_url: str = "",
        api_key: str = "",
        num_frames: int = 16,
        llm_timeout: float = DEFAULT_TIMEOUT_S,
        llm_retries: int = DEFAULT_RETRIES,
    ) -> VideoPlan:
        """Plan a prompt with the chosen planner (``llm_timeout`` seconds per request, 1-600, and
        ``llm_retries`` retries, 0-5, for the openai planner).

        The server's own key (``$OPENAI_API_KEY``) is only ever sent to the server's own endpoint
        (``$OPENAI_BASE_URL``, else OpenAI's): a ``base_url`` typed by a visitor gets the key they
        typed, or none.

        Raises:
            PlanValidationError: a bad prompt. PlanError: the planner failed (one line).
        """
        if planner == "openai":
            from core.planner.llm import OpenAIPlanner

            own_endpoint = not base_url or base_url.rstrip("/") == os.environ.get("OPENAI_BASE_URL", "").rstrip("/")
            key = api_key or (None if own_endpoint else NO_KEY)
            llm = OpenAIPlanner(llm_model or "gpt-4o-mini", base_url=base_url or None, api_key=key, timeout=llm_timeout, retries=llm_retries)
            return llm.plan(prompt, num_frames=num_frames)
        from core.planner.rules import plan_with_rules

        return plan_with_rules(prompt, num_frames=num_frames)

    def create_project(self, plan: VideoPlan, name: str | None = None) -> int:
        return self.store.create_project(name or plan.prompt[:60], plan)

    def latest_project(self) -> int | None:
        projects = self.store.list_projects()
        return projects[0].id if projects else None

    def import_plan(self, data: bytes, project_id: int | None = None) -> tuple[int, VideoPlan]:
        """Validate an uploaded plan (at most 1 MB, core.plan.MAX_PLAN_BYTES) and save it as a new
        version (or a new project). Raises PlanValidationError naming the field."""
        plan = parse_plan(data)
        if project_id is None:
            return self.create_project(plan), plan
        self.store.commit(project_id, plan, "import")
        return project_id, plan

    def export_plan(self, project_id: int) -> Path:
        """Write the current plan to the output folder; returns the file."""
        version, plan = self.store.current(project_id)
        path = self.output_dir / f"project{project_id}-v{version}.plan.json"
        atomic_write_bytes(path, (plan.model_dump_json(indent=2) + "\n").encode())
        return path

    # Edits --------------------------------------------------------------------------------------

    def edit(self, project_id: int, change: Callable[..., VideoPlan], *args, base_version: int | None = None, note: str = "") -> EditResult:
        """Apply ``change(plan, *args)`` to the current plan and save it as a new version.

        The change is applied only on ``base_version`` (the version the user was looking at; None:
        the current one when read) and committed only if no other edit landed in between, so no
        acknowledged edit is ever overwritten. An invalid or stale edit saves nothing.

        Args:
            change: a pure edit from :mod:`core.project.editing` (plan in, validated plan out).
            base_version: the version the edit was made on.
            note: what the edit was, kept with the version (undo says it).

        Returns:
            EditResult; ``error`` is the validation line or :data:`STALE_MESSAGE`.
        """
        version, plan = self.store.current(project_id)
        if base_version is not None and base_version != version:
            return EditResult(plan, version, STALE_MESSAGE, stale=True)
        try:
            new_plan = change(plan, *args)
        except PlanValidationError as error:
            return EditResult(plan, version, str(error))
        try:
            new_version = self.store.commit(project_id, new_plan, note or getattr(change, "__name__", "edit"), base_version=version)
        except StaleVersionError:
            version, plan = self.store.current(project_id)
            return EditResult(plan, version, STALE_MESSAGE, stale=True)
        return EditResult(new_plan, new_version)

    def undo(self, project_id: int, *, base_version: int | None = None) -> EditResult:
        """Step the project back one version, if ``base_version`` is still current.

        Returns:
            EditResult with ``message`` ``"Undid: <note>."`` or ``"Nothing to undo."``, or ``stale``.
        """
        return self._history(project_id, self.store.undo, base_version, "Undid", "Nothing to undo.")

    def redo(self, project_id: int, *, base_version: int | None = None) -> EditResult:
        """Step the project forward one version (the newest branch), if ``base_version`` is still current.

        Returns:
            EditResult with ``message`` ``"Redid: <note>."`` or ``"Nothing to redo."``, or ``stale``.
        """
        return self._history(project_id, self.store.redo, base_version, "Redid", "Nothing to redo.")

    def _history(self, project_id: int, move, base_version: int | None, verb: str, nothing: str) -> EditResult:
        try:
            moved = move(project_id, base_version=base_version)
        except StaleVersionError:
            version, plan = self.store.current(project_id)
            return EditResult(plan, version, STALE_MESSAGE, stale=True)
        if moved is None:
            version, plan = self.store.current(project_id)
            return EditResult(plan, version, message=nothing)
        return EditResult(moved.plan, moved.version, message=f"{verb}: {moved.note.rstrip('.')}.")

    # Rendering ------------------------------------------------------------------------------------

    def pipeline(self):
        """The pipeline, loaded on first use."""
        with self._pipe_lock:
            if self._pipe is None:
                from core.render import load_pipeline

                self._pipe = load_pipeline(self.model, device=self.device, dtype=self.dtype, **self.load_options)
                self._pipe.set_progress_bar_config(disable=True)
            return self._pipe

    def cancel(self, session: str) -> None:
        """Ask the render of ``session`` to stop after its current denoising step."""
        self._cancel.setdefault(session, threading.Event()).set()

    def render(self, project_id: int, settings, *, session: str = "default", on_progress=None, preview_every: int = 0) -> RenderRecord:
        """Render the current plan to ``outputs/``: the MP4, its plan and its record, written together.

        ``on_progress`` gets a :class:`core.render.Progress` after every denoising step, with a
        preview frame every ``preview_every`` steps (0: none).

        Scenes whose content, settings and model did not change since any earlier render come from
        the scene cache on disk (kept across restarts).

        Returns:
            The render's :class:`core.project.renders.RenderRecord` (also listed by :meth:`renders`).

        Raises:
            RenderCancelled: :meth:`cancel` was called for this session.
        """
        from core.export import encode_mp4
        from core.render import model_id, render_plan

        version, plan = self.store.current(project_id)
        event = self._cancel.setdefault(session, threading.Event())
        event.clear()
        with self._render_lock:
            start = time.perf_counter()
            pipe = self.pipeline()
            frames = render_plan(
                pipe, plan, settings, on_progress=on_progress, should_cancel=event.is_set, cache=self.scene_cache, preview_every=preview_every
            )
            seconds = time.perf_counter() - start
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"  # two renders in one second keep both
        video = self.output_dir / f"project{project_id}-v{version}-{stamp}.mp4"
        plan_path = video.with_suffix(".plan.json")
        record = RenderRecord(
            video=str(video), plan=str(plan_path), project=project_id, version=version, settings=settings.model_dump(mode="json"),
            model=model_id(pipe), seconds=round(seconds, 2), created=time.time(),
        )
        plan_bytes = (plan.model_dump_json(indent=2) + "\n").encode()
        write_together(
            {
                video: lambda tmp: encode_mp4(frames, tmp, fps=plan.fps),
                plan_path: lambda tmp: tmp.write_bytes(plan_bytes),
                record_path(video): lambda tmp: tmp.write_bytes(record_bytes(record)),
            }
        )
        return record

    def renders(self, project_id: int) -> list[RenderRecord]:
        """The project's finished renders, newest first (they survive reloads and restarts)."""
        return list_renders(self.output_dir, project_id)

    def rendered_frame(self, project_id: int, plan: VideoPlan, scene_index: int, frame: int) -> np.ndarray | None:
        """The frame of this exact scene as the project's last render drew it, if that scene (same
        content, settings and model) is in the scene cache; None otherwise."""
        from core.render import RenderSettings, scene_cache_key

        records = self.renders(project_id)
        if not records:
            return None
        last = records[0]
        key = scene_cache_key(plan, scene_index, RenderSettings(**last.settings), last.model)
        frames = self.scene_cache.get(key)
        return None if frames is None or frame >= len(frames) else frames[frame]
