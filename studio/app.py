"""Director Studio: one page composed of the panels in studio/panels, wired to core.project.workspace.

    python launch.py [--host 127.0.0.1] [--port 7860] [--auth user:password] [--data-dir DIR] [--model DIR]
"""

from __future__ import annotations

import argparse
import collections
import functools
import hmac
import os
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

CSS = "#frame-status p {margin: 0}"
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
    h = Handlers(workspace)
    with gr.Blocks(title="Director Studio", delete_cache=(3600, 86400)) as app:
        session = gr.State({})
        gr.Markdown("# Director Studio\nPrompt → video plan → dynamic scene graph → layout-guided video.")
        note = gr.Markdown(elem_id="message")
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("## 1. Prompt and plan")
                p = prompt_panel.render(llm_fields=not remote)
                gr.Markdown("## 2. Scenes")
                s = scenes_panel.render()
            with gr.Column(scale=1):
                gr.Markdown("## 3. Layout")
                l = layout_panel.render()
                gr.Markdown("## 4. Scene graph")
                g = graph_panel.render()
        gr.Markdown("## 5. Render")
        r = render_panel.render(guidance_scale=recommended_guidance_scale(workspace.model), layout_alpha=recommended_layout_alpha(workspace.model))

        views = [p.plan_json, s.scenes, s.entities, l.scene, l.frame, l.boxes, l.status, l.entity, g.graph, g.events, g.timeline]
        outputs = [session, note, *views]
        where = [l.scene, l.frame]

        # The open project is part of the page's address (?project=N): a reload keeps it, and a new
        # tab starts on the project list instead of another tab's project.
        url_project = gr.Textbox(visible="hidden", elem_id="url-project")

        def follow_project(event):
            """After an event that may have opened another project: the project list, the address and
            the project's renders."""
            return (
                event.then(h.project_choices, None, p.projects)
                .then(h.project_url, [session], url_project)
                .then(None, [url_project], None, js=SET_PROJECT_IN_URL)
                .then(h.gallery, [session], r.gallery)
            )

        # The page is usable as soon as the plan, scenes and layout are shown; the two plotly figures
        # follow in a second event (drawing them is most of a cold page load).
        loaded = app.load(h.load, [session], outputs)
        follow_project(loaded.then(h.graph_views, [session, l.scene, l.frame], [g.graph, g.timeline]))
        planner_inputs = [session, p.prompt, p.planner, p.llm_model, p.base_url, p.api_key, p.frames, p.llm_timeout, p.llm_retries]
        follow_project(p.generate.click(h.generate, planner_inputs, outputs))
        p.undo.click(h.undo, [session, *where], outputs)
        p.redo.click(h.redo, [session, *where], outputs)
        follow_project(p.open_project.click(h.open_project, [session, p.projects], outputs))
        p.projects.focus(h.project_choices, None, p.projects)
        follow_project(p.import_file.upload(h.import_plan, [session, p.import_file], outputs))
        p.export.click(h.export_plan, [session], p.export_file)

        # Edits report next to the panel they came from.
        scene_outputs = [session, s.message, *views]
        layout_outputs = [session, l.message, *views]
        event_outputs = [session, g.message, *views]
        s.scenes.input(h.edit_scenes, [session, s.scenes, *where], scene_outputs)
        s.entities.input(h.edit_entities, [session, s.entities, *where], scene_outputs)
        s.scenes.select(h.pick_scene, [session], layout_outputs, show_progress="hidden")
        s.add_scene.click(h.add_scene, [session, *where], scene_outputs)
        s.delete_scene.click(h.delete_scene, [session, *where], scene_outputs)
        s.move_up.click(functools.partial(h.move_scene, offset=-1), [session, *where], scene_outputs)
        s.move_down.click(functools.partial(h.move_scene, offset=1), [session, *where], scene_outputs)

        l.scene.input(h.select, [session, l.scene, gr.State(0)], layout_outputs)
        l.frame.release(h.select, [session, *where], layout_outputs)
        # The annotator also fires .change when the views set its value; a drag's handler takes
        # milliseconds, so its outputs are not covered by a progress overlay while it runs.
        l.boxes.change(h.boxes_changed, [session, l.boxes, *where], layout_outputs, trigger_mode="always_last", show_progress="hidden")
        l.remove_keyframe.click(h.remove_keyframe, [session, *where], layout_outputs)
        l.absent.click(h.make_absent, [session, *where, l.entity], layout_outputs)

        g.events.input(h.edit_events, [session, g.events, *where], event_outputs)

        r.run.click(
            h.render, [session, r.steps, r.guidance, r.alpha, r.seed], [r.video, r.downloads, r.render_status, r.gallery],
            concurrency_limit=1, concurrency_id="render",
        )
        r.gallery.select(h.play_render, [session], [r.video, r.downloads])
        r.cancel.click(h.cancel, None, r.render_status, queue=False)
    return app


def warm_up() -> None:
    """Build every view once for a small plan, so the first page load does not pay for first calls
    (plotly figure classes, networkx layout, PIL drawing)."""
    from core.plan import parse_plan
    from studio.views import all_views

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
    all_views(plan, 0, 3)


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
    first visitor does not pay for first calls (plotly, networkx, PIL, Gradio's page config).
    """
    warm_up()
    # Gradio's copies of served files (videos, exports, sketches) go under the data folder, private
    # to the user, and are deleted after a day (and at every start).
    temp = workspace.data_dir / "gradio-tmp"
    temp.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(temp))
    app = build_app(workspace, remote=auth is not None)
    app.queue(max_size=max_queue, default_concurrency_limit=8)
    app.launch(
        server_name=host,
        server_port=port,
        auth=RateLimitedLogin(*auth) if isinstance(auth, tuple) else auth,
        run_history=False,  # Gradio would otherwise keep every event's inputs in the browser's localStorage
        allowed_paths=[str(workspace.output_dir)],
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
