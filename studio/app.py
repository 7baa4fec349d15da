"""Director Studio: one page composed of the panels in studio/panels, wired to core.project.workspace.

    python launch.py [--host 127.0.0.1] [--port 7860] [--auth user:password] [--data-dir DIR] [--model DIR]
"""

from __future__ import annotations

import argparse
import collections
import functools
import hmac
import os
import shutil
import threading
import time
from pathlib import Path

import gradio as gr

from core.project.store import default_data_dir
from core.project.workspace import Workspace
from core.render import check_model_options, recommended_guidance_scale, recommended_layout_alpha
from core.settings import add_model_options, model_options
from studio.handlers import Handlers
from studio.panels import graph as graph_panel
from studio.panels import layout as layout_panel
from studio.panels import prompt as prompt_panel
from studio.panels import render as render_panel
from studio.panels import scenes as scenes_panel
from studio.panels import timeline as timeline_panel
from studio.views import ALL_VIEWS, FRAME_VIEWS, SCENE_VIEWS

# One window of 1600x900 without page scrolling: the top bar, then the scene list (left), the canvas
# and filmstrip (centre) and the inspector (right, scrolls inside itself), then the timeline.
CSS = """
footer { display: none !important; }
.gradio-container { max-width: 100% !important; padding: 4px 10px !important; }
.gradio-container > .main > .wrap, .gradio-container .contain { gap: 6px !important; }
#topbar { gap: 6px; align-items: center; }
#brand .brand { font-weight: 700; font-size: 14px; line-height: 1.1; }
#message { min-height: 22px; max-height: 44px; overflow-y: auto; font-size: 13px; }
#message p, #frame-status p { margin: 0; }
#workspace { height: 580px; flex-wrap: nowrap; gap: 8px; }
#left, #centre, #inspector { height: 580px; }
#left { overflow-y: auto; }
#inspector { overflow-y: auto; overflow-x: hidden; }
#centre { gap: 4px; }
#box-editor img, #video video, #renders img { image-rendering: pixelated; }
#frame-status { font-size: 13px; }
.tight { gap: 4px !important; }
#timeline { border-top: 1px solid #ddd; padding-top: 2px; }
"""
SET_PROJECT_IN_URL = """(project) => {
  const url = new URL(window.location.href);
  if (project) { url.searchParams.set("project", project); } else { url.searchParams.delete("project"); }
  window.history.replaceState(window.history.state, "", url);
}"""


def build_app(workspace: Workspace, *, remote: bool = False) -> gr.Blocks:
    """The studio page for ``workspace`` (nothing is launched here).

    Args:
        remote: a server that others log in to: the LLM endpoint and key are the server's
            (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``), not fields a visitor can set.
    """
    h = Handlers(workspace, frames_dir=frames_dir(workspace))
    with gr.Blocks(title="Director Studio", delete_cache=(3600, 86400)) as app:
        session = gr.State({})
        p = prompt_panel.toolbar()
        note = gr.Markdown(elem_id="message")
        with gr.Row(elem_id="workspace", equal_height=False):
            with gr.Column(scale=0, min_width=250, elem_id="left"):
                s = scenes_panel.scene_list()
            with gr.Column(scale=5, elem_id="centre"):
                l = layout_panel.render()
            with gr.Column(scale=4, elem_id="inspector"):
                with gr.Tabs(elem_id="inspector-tabs"):
                    with gr.Tab("Scene", elem_id="tab-scene"):
                        scenes = scenes_panel.scenes_table()
                        graph = graph_panel.scene_graph()
                    with gr.Tab("Entities", elem_id="tab-entities"):
                        entities = scenes_panel.entities_table()
                    with gr.Tab("Events", elem_id="tab-events"):
                        events = graph_panel.events_table()
                    with gr.Tab("Render", elem_id="tab-render"):
                        r = render_panel.render(guidance_scale=recommended_guidance_scale(workspace.model), layout_alpha=recommended_layout_alpha(workspace.model))
                    with gr.Tab("Project", elem_id="tab-project"):
                        pt = prompt_panel.project_tab(llm_fields=not remote)
        timeline = timeline_panel.timeline()

        # Handlers return the views that changed, by name; each event lists every view it may change.
        named = {
            "session": session, "message": note, "plan_json": pt.plan_json, "scenes": scenes, "entities": entities,
            "entity": l.entity, "scene_list": s.items, "events": events, "timeline": timeline, "filmstrip": l.strip,
            "boxes": l.boxes, "status": l.status, "graph": graph,
        }

        def views(names):
            return [named[name] for name in ("session", "message", *names)]

        def wired(fn):
            """``fn`` returning {component: value} (Gradio leaves the outputs not named as they are;
            for an empty dict, which Gradio would reject as too few values, it leaves them all)."""

            @functools.wraps(fn)
            def run(*args, **kwargs):
                out = {named[name]: value for name, value in fn(*args, **kwargs).items()}
                return out if out else gr.skip()

            return run

        every = views(ALL_VIEWS)
        frame_views = views(FRAME_VIEWS)
        scene_views = views(SCENE_VIEWS + FRAME_VIEWS)
        graph_out = [session, graph]

        # The open project is part of the page's address (?project=N): a reload keeps it, and a new
        # tab starts on the project list instead of another tab's project.
        url_project = gr.Textbox(visible="hidden", elem_id="url-project")

        def then_graph(event):
            return event.then(wired(h.graph_view), [session], graph_out, show_progress="hidden")

        def follow_project(event):
            """After an event that may have opened another project: the scene graph, the project
            list, the address and the project's renders."""
            return (
                then_graph(event)
                .then(h.project_choices, None, p.projects, show_progress="hidden")
                .then(h.project_url, [session], url_project, show_progress="hidden")
                .then(None, [url_project], None, js=SET_PROJECT_IN_URL)
                .then(h.gallery, [session], r.gallery, show_progress="hidden")
            )

        follow_project(app.load(wired(h.load), [session], every, queue=False))
        planner_inputs = [session, p.prompt, p.planner, pt.llm_model, pt.base_url, pt.api_key, pt.frames, pt.llm_timeout, pt.llm_retries]
        follow_project(p.generate.click(wired(h.generate), planner_inputs, every))
        follow_project(p.open_project.click(wired(h.open_project), [session, p.projects], every))
        follow_project(pt.import_file.upload(wired(h.import_plan), [session, pt.import_file], every))
        p.projects.focus(h.project_choices, None, p.projects, show_progress="hidden")
        pt.export.click(h.export_plan, [session], pt.export_file)
        # Undo and redo act on the scene and frame the tab shows (in the session).
        # Every event that writes to the plan runs in one queue, in order (each takes milliseconds):
        # an Undo pressed right after an Enter comes after that edit and after Gradio's repeat of it.
        edits = dict(concurrency_limit=1, concurrency_id="edit")
        then_graph(p.undo.click(wired(h.undo), [session], every, show_progress="hidden", **edits))
        then_graph(p.redo.click(wired(h.redo), [session], every, show_progress="hidden", **edits))

        # Table edits: Enter (or leaving a cell) sends the table once; the edit applies to the
        # version the tab shows, so a repeat would be refused as stale rather than applied twice.
        # One edit at a time: a repeat then sees the session the first left.
        quiet = dict(show_progress="hidden", trigger_mode="always_last", **edits)
        then_graph(scenes.input(wired(h.edit_scenes), [session, scenes], every, **quiet))
        then_graph(entities.input(wired(h.edit_entities), [session, entities], every, **quiet))
        then_graph(events.input(wired(h.edit_events), [session, events], every, **quiet))
        then_graph(scenes.select(wired(h.pick_scene), [session], scene_views, show_progress="hidden"))
        then_graph(s.items.select(wired(h.pick_scene), [session], scene_views, show_progress="hidden"))
        then_graph(s.add_scene.click(wired(h.add_scene), [session], every, **edits))
        then_graph(s.delete_scene.click(wired(h.delete_scene), [session], every, **edits))
        then_graph(s.move_up.click(wired(functools.partial(h.move_scene, offset=-1)), [session], every, **edits))
        then_graph(s.move_down.click(wired(functools.partial(h.move_scene, offset=1)), [session], every, **edits))

        # A frame picked in the filmstrip or the timeline, or stepped to with the keys: the canvas
        # and the status (and the scene graph when it changed), nothing else.
        # Every step is applied, in order (one at a time), so the canvas ends on the last frame asked for.
        for picker in (l.strip, timeline):
            picker.select(
                wired(h.goto_frame), [session], [*frame_views, graph], show_progress="hidden", trigger_mode="multiple", concurrency_limit=1, concurrency_id="frame"
            )
        # The box editor fires .input on a release only (never when the views set its value); a
        # drag's handler takes milliseconds, so no progress overlay covers it.
        then_graph(l.boxes.input(wired(h.boxes_changed), [session, l.boxes], every, trigger_mode="always_last", show_progress="hidden", queue=False))
        then_graph(l.remove_keyframe.click(wired(h.remove_keyframe), [session], every, **edits))
        then_graph(l.absent.click(wired(lambda session, entity: h.make_absent(session, None, None, entity)), [session, l.entity], every, **edits))

        r.run.click(
            h.render, [session, r.steps, r.guidance, r.alpha, r.seed], [r.video, r.downloads, r.render_status, r.gallery, r.preview],
            concurrency_limit=1, concurrency_id="render",
        )
        r.gallery.select(h.play_render, [session], [r.video, r.downloads])
        r.cancel.click(h.cancel, None, r.render_status, queue=False)
    return app


def frames_dir(workspace: Workspace) -> Path:
    """Where the box editor's pictures are written (served to the page; cleaned at every start)."""
    return workspace.data_dir / "canvas"


def warm_up() -> None:
    """Build every view once for a small plan, so the first page load does not pay for first calls
    (networkx layout, PIL drawing)."""
    from core.plan import parse_plan
    from studio.figures import scene_graph_svg
    from studio.views import views

    plan = parse_plan(
        {
            "prompt": "warm-up",
            "entities": [{"id": "e1", "name": "ball", "kind": "ball", "attributes": {"color": "red"}}],
            "scenes": [
                {
                    "id": "s1", "description": "warm-up", "background": "grass", "num_frames": 8,
                    "keyframes": [{"frame": 0, "boxes": {"e1": [0.1, 0.1, 0.3, 0.3]}}, {"frame": 7, "boxes": {"e1": [0.6, 0.1, 0.8, 0.3]}}],
                    "events": [{"agent": "e1", "predicate": "rolls", "target": None, "start": 0, "end": 7}],
                }
            ],
        }
    )
    views(plan, 0, 3)
    scene_graph_svg(plan, 0, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The studio's options. ``--host`` and ``--port`` default to Gradio's ``GRADIO_SERVER_NAME`` and
    ``GRADIO_SERVER_PORT`` (then 127.0.0.1 and 7860); the flags override them.

    Raises:
        ValueError: ``GRADIO_SERVER_PORT`` is not a port number.
    """
    port = os.environ.get("GRADIO_SERVER_PORT", "7860")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"GRADIO_SERVER_PORT: must be a port number in [1, 65535] (got {port!r})")
    parser = argparse.ArgumentParser(prog="launch.py", description="Start the Director Studio web app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="address to bind (default $GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(port), help="port (default $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--auth", default=os.environ.get("DIRECTOR_STUDIO_AUTH"), help="user:password (required for a non-local host)")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="projects database and outputs")
    add_model_options(parser)
    parser.add_argument("--max-queue", type=int, default=8, help="renders waiting at most")
    return parser.parse_args(argv)


class RateLimitedLogin:
    """Gradio's ``auth`` callable for one user:password pair, with failed logins rate-limited: after
    ``max_failures`` failures within ``window_s`` seconds, every login is refused until the oldest
    failure leaves the window (a correct password included), which stops password guessing.

    Args:
        user, password: the account. max_failures: >= 1. window_s: seconds.
        clock: time source (tests pass their own).
    """

    def __init__(self, user: str, password: str, *, max_failures: int = 5, window_s: float = 60.0, clock=time.monotonic):
        self.user, self.password = user, password
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self.failures: collections.deque[float] = collections.deque()
        self.lock = threading.Lock()

    def locked(self) -> bool:
        """Whether logins are refused now."""
        now = self.clock()
        with self.lock:
            while self.failures and now - self.failures[0] > self.window_s:
                self.failures.popleft()
            return len(self.failures) >= self.max_failures

    def __call__(self, user: str, password: str) -> bool:
        if self.locked():
            return False
        ok = hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(password.encode(), self.password.encode())
        if not ok:
            with self.lock:
                self.failures.append(self.clock())
        return ok


def auth_pair(args: argparse.Namespace) -> tuple[str, str] | None:
    """(user, password) from --auth; raises ValueError when binding beyond localhost without one."""
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise ValueError("--auth: must be user:password")
        return user, password
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"--host: binding {args.host} requires --auth user:password (or DIRECTOR_STUDIO_AUTH)")
    return None


def serve(workspace: Workspace, *, host: str = "127.0.0.1", port: int = 7860, auth=None, max_queue: int = 8, quiet: bool = False) -> tuple[gr.Blocks, str]:
    """Build the studio for ``workspace``, start it in the background and prime it; returns (app, url).

    Priming builds every view once and fetches the page once from the running server, so that the
    first visitor does not pay for first calls (networkx, PIL, Gradio's page config).
    """
    warm_up()
    # Gradio's copies of served files (videos, exports, sketches) go under the data folder, private
    # to the user, and are deleted after a day (and at every start).
    temp = workspace.data_dir / "gradio-tmp"
    temp.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.rmtree(frames_dir(workspace), ignore_errors=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(temp))
    app = build_app(workspace, remote=auth is not None)
    app.queue(max_size=max_queue, default_concurrency_limit=8)
    app.launch(
        server_name=host,
        server_port=port,
        auth=RateLimitedLogin(*auth) if isinstance(auth, tuple) else auth,
        run_history=False,  # Gradio would otherwise keep every event's inputs in the browser's localStorage
        allowed_paths=[str(workspace.output_dir), str(frames_dir(workspace))],
        show_error=True,
        max_file_size="1mb",
        css=CSS,
        theme=gr.themes.Soft(),
        prevent_thread_lock=True,
        quiet=quiet,
    )
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "localhost") else host
    url = f"http://{local}:{app.server_port}/"
    prime(url)
    return app, url


def prime(url: str) -> None:
    """GET the page and its config once (server-side caches); failures are ignored."""
    import urllib.request

    for path in ("", "config"):
        try:
            with urllib.request.urlopen(url + path, timeout=10) as response:
                response.read()
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        auth = auth_pair(args)
    except ValueError as error:
        print(f"error: {error}", file=__import__("sys").stderr)
        return 2
    options = model_options(args)
    try:
        check_model_options(**options)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=__import__("sys").stderr)
        return 2
    workspace = Workspace(args.data_dir, **options)
    app, _ = serve(workspace, host=args.host, port=args.port, auth=auth, max_queue=args.max_queue, quiet=True)
    print(f"Director Studio on http://{args.host}:{args.port} (data: {args.data_dir})", flush=True)
    app.block_thread()
    return 0
