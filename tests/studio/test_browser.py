"""The studio in a real browser: Debian's Chromium driven by Playwright, the app in this process.

Each test saves a screenshot of the panel it drives. They go to a temporary folder, so a test run
never touches tracked files. To refresh the README's images, name the folder explicitly:

    STUDIO_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest -q tests/studio/test_browser.py

(a relative path is taken from the repository root).
"""

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

from core.export import read_mp4  # noqa: E402
from core.project.workspace import Workspace  # noqa: E402
from core.render import DEFAULT_MODEL, recommended_guidance_scale  # noqa: E402
from studio.app import serve  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PROMPT = "A red ball rolls from left to right across the grass, then a blue star falls from the sky."
VIEWPORT = {"width": 1600, "height": 900}  # the desktop window the page is laid out for
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.start()

    def start(self):
        self.workspace = Workspace(self.data_dir)
        self.app, self.url = serve(self.workspace, port=free_port(), quiet=True)

    def restart(self):
        self.app.close()
        self.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("studio-data"))
    yield server
    server.app.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector("#generate")
    yield page
    context.close()


def current_plan(server) -> dict:
    project = server.workspace.latest_project()
    return json.loads(server.workspace.store.current(project)[1].model_dump_json())


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def generate(page, server, prompt=PROMPT):
    before = server.workspace.latest_project()
    page.fill("#prompt textarea, #prompt input", prompt)
    page.click("#generate")
    wait_for(lambda: server.workspace.latest_project() not in (None, before), what="a new project")
    page.wait_for_selector("#message:has-text('New project')")
    page.wait_for_selector("#frame-status:has-text('Frame 0')")


def fill_fields(page, values: dict[str, str], tries: int = 3):
    """Type ``values`` ({elem_id: text}) into their fields, as a user would, until every field holds its text.

    The fields of a just-opened accordion can still be mounting: a fill that lands before the mount is
    dropped, and a user would see the empty field and type again, so this does the same."""
    def field(elem_id):
        return page.locator(f"#{elem_id} textarea, #{elem_id} input").first

    for elem_id in values:
        field(elem_id).wait_for(state="visible")
    lost = dict(values)
    for _ in range(tries):
        for elem_id, text in lost.items():
            field(elem_id).fill(text)
        time.sleep(0.3)
        lost = {elem_id: text for elem_id, text in values.items() if field(elem_id).input_value() != text}
        if not lost:
            return
    raise AssertionError(f"fields still not holding what was typed after {tries} tries: {sorted(lost)}")


def wait_text(page, selector, text, timeout=30.0):
    wait_for(lambda: text in page.inner_text(selector), timeout=timeout, what=f"{text!r} in {selector}")


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory) -> Path:
    """Where screenshots go: $STUDIO_SCREENSHOTS when set (opt-in refresh of the README's images), else a temporary folder."""
    named = os.environ.get("STUDIO_SCREENSHOTS")
    folder = ROOT / named if named else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def shot(shots_dir):
    """``shot(page, selector, name)`` saves the element matching ``selector`` (the whole page for None) as ``name``."""

    def save(page, selector_or_none, name):
        if selector_or_none is None:
            page.screenshot(path=shots_dir / name, full_page=True)
        else:
            page.locator(selector_or_none).screenshot(path=shots_dir / name)

    return save


def edit_cell(page, table, cell, text):
    """Type ``text`` into a Gradio Dataframe cell (``cell-<row>-<col>``) and press Enter.

    A double click opens the cell's editor a moment later; select-all before it has focus selects
    nothing and the typed text lands after the old value, so wait for the editor to take focus."""
    target = page.locator(f"{table} [data-testid='{cell}']")
    target.dblclick()
    editor = target.locator("textarea")
    wait_for(lambda: editor.count() and editor.evaluate("e => e === document.activeElement"), timeout=10.0, what=f"the editor of {cell} to take focus")
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    wait_for(lambda: editor.input_value() == text, timeout=5.0, what=f"{text!r} in the editor of {cell}")
    page.keyboard.press("Enter")


def set_slider(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type='number']")
    box.fill(str(value))
    box.press("Enter")
    page.locator(f"#{elem_id} input[type='range']").dispatch_event("pointerup")


def show_tab(page, name):
    """Open one of the inspector's tabs (Scene, Entities, Events, Render, Project)."""
    page.locator("#inspector-tabs [role='tab']").filter(has_text=name).first.click()


def wait_frame(page, frame, timeout=30.0):
    """Wait until the status names ``frame``; on a timeout, say what the page showed instead."""
    try:
        page.wait_for_selector(f"#frame-status:has-text('Frame {frame} ')", timeout=timeout * 1000)
    except playwright_api.TimeoutError:
        cursor = page.evaluate("() => window.studio && [window.studio.frame, window.studio.frames]")
        pytest.fail(f"frame {frame} never shown: status {page.inner_text('#frame-status')!r}, page cursor [frame, frames] {cursor}")


def drag_box(page, box, dx, dy):
    """Drag the box ``box`` (xyxy in [0, 1] of the frame) by (dx, dy) pixels of the page."""
    _, bbox = canvas_box(page)
    cx = bbox["x"] + (box[0] + box[2]) / 2 * bbox["width"]
    cy = bbox["y"] + (box[1] + box[3]) / 2 * bbox["height"]
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + dx / 2, cy + dy / 2, steps=8)
    page.mouse.move(cx + dx, cy + dy, steps=8)
    page.mouse.up()


def canvas_box(page):
    canvas = page.locator("#box-editor .be-stage").first
    return canvas, canvas.bounding_box()


def test_generate_plan_from_prompt(page, server, shot):
    generate(page, server)
    plan = current_plan(server)
    assert {e["kind"] for e in plan["entities"]} == {"ball", "star"}
    wait_text(page, "#scenes-table", "grass")
    shot(page, None, "studio.png")


def test_a_page_without_a_project_loads_and_steps_frames_without_a_server_error(browser, server, capfd):
    """Events that change nothing (the first scene graph of a page with no project, a frame key
    before any plan) must not fail in Gradio's output check."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(server.url)
    page.wait_for_selector("#generate")
    page.mouse.click(2, 2)  # focus on the page, not on a field
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(1500)  # the load's follow-up events and the key's event, all answered
    page.context.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-2000:]


def test_drag_box_on_frame_0_becomes_keyframe_in_export(page, server, shot):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    before = current_plan(server)["scenes"][0]["keyframes"][0]["boxes"]["e1"]
    time.sleep(0.5)
    drag_box(page, before, 40, -80)
    after = wait_for(lambda: (b := current_plan(server)["scenes"][0]["keyframes"][0]["boxes"]["e1"]) != before and b, what="the dragged box")
    assert after[1] < before[1] - 0.1  # moved up
    show_tab(page, "Project")
    page.click("#export")
    page.wait_for_selector("#export-file a")
    with page.expect_download() as download:
        page.locator("#export-file a").first.click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["scenes"][0]["keyframes"][0]["boxes"]["e1"] == after
    shot(page, "#box-editor", "layout.png")


def test_a_corner_handle_resizes_and_a_box_stays_inside_the_frame(page, server):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    before = current_plan(server)["scenes"][0]["keyframes"][0]["boxes"]["e1"]
    time.sleep(0.5)
    _, bbox = canvas_box(page)
    x, y = bbox["x"] + before[2] * bbox["width"], bbox["y"] + before[3] * bbox["height"]  # the bottom-right handle
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 30, y + 20, steps=6)
    page.mouse.up()
    resized = wait_for(lambda: (b := current_plan(server)["scenes"][0]["keyframes"][0]["boxes"]["e1"]) != before and b, what="the resized box")
    assert resized[:2] == pytest.approx(before[:2], abs=0.01)  # the opposite corner stays
    assert resized[2] > before[2] + 0.05 and resized[3] > before[3] + 0.03
    time.sleep(0.5)
    drag_box(page, resized, -2000, 0)  # far past the left edge
    moved = wait_for(lambda: (b := current_plan(server)["scenes"][0]["keyframes"][0]["boxes"]["e1"]) != resized and b, what="the moved box")
    assert moved[0] == 0.0 and moved[2] - moved[0] == pytest.approx(resized[2] - resized[0], abs=0.01)


def test_a_box_label_is_shown_as_typed_not_as_markup(page, server):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    show_tab(page, "Entities")
    name = "<b onmouseover=alert(1)>ball</b>"
    edit_cell(page, "#entities-table", "cell-0-1", name)
    wait_for(lambda: current_plan(server)["entities"][0]["name"] == name, what="the renamed entity")
    label = page.locator("#box-editor .be-box text").first
    label.wait_for()
    page.wait_for_function("(n) => document.querySelector('#box-editor .be-box text').textContent === n", arg=name, polling=20)
    assert page.locator("#box-editor svg b").count() == 0


def red_box_x(page) -> float:
    """Mean x (pixels) of the red box drawn on the box editor's canvas, from a screenshot."""
    import io

    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(page.locator("#box-editor .be-stage").first.screenshot())).convert("RGB")).astype(int)
    red = (image[..., 0] > 150) & (image[..., 1] < 120) & (image[..., 2] < 120)
    assert red.sum() > 50, "no red box on the canvas"
    return float(red.nonzero()[1].mean())


def test_a_filmstrip_frame_moves_the_interpolated_box(page, server):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    time.sleep(0.5)
    x0 = red_box_x(page)
    page.click("#filmstrip .thumb[data-frame='8']")
    wait_frame(page, 8)
    assert "interpolated" in page.inner_text("#frame-status")
    time.sleep(0.5)
    assert red_box_x(page) > x0 + 20  # the ball's box moved right on the canvas


def test_editing_an_event_changes_the_timeline(page, server, shot):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    show_tab(page, "Events")
    edit_cell(page, "#events-table", "cell-0-1", "bounces")
    wait_for(lambda: current_plan(server)["scenes"][0]["events"][0]["predicate"] == "bounces", what="the edited event")
    wait_text(page, "#timeline", "bounces")
    show_tab(page, "Scene")
    time.sleep(0.5)
    shot(page, "#scene-graph", "scene_graph.png")
    shot(page, "#timeline", "timeline.png")


def test_invalid_edit_shows_message_and_keeps_plan(page, server, shot):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    edit_cell(page, "#scenes-table", "cell-0-3", "100")
    page.wait_for_selector("#message:has-text('num_frames: must be <= 64')")
    assert current_plan(server)["scenes"][0]["num_frames"] == 16
    shot(page, "#scenes-table", "scenes.png")


def test_reload_keeps_the_last_edit_and_restart_reopens_it(page, server, browser):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    project = server.workspace.latest_project()
    wait_for(lambda: f"?project={project}" in page.evaluate("() => window.location.href"), what="the project in the address")
    edit_cell(page, "#scenes-table", "cell-0-2", "snow")
    wait_for(lambda: current_plan(server)["scenes"][0]["background"] == "snow", what="the edit")
    page.reload()
    wait_text(page, "#scenes-table", "snow")
    address = page.evaluate("() => window.location.href")
    server.restart()
    page.goto(address.replace(address.split("/?")[0], server.url.rstrip("/")))
    wait_text(page, "#scenes-table", "snow")


def test_a_new_tab_starts_on_the_project_list_and_a_stale_tab_is_told(page, server, browser):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    project = server.workspace.latest_project()
    other = browser.new_context(viewport=VIEWPORT).new_page()
    other.goto(server.url)
    wait_text(other, "#message", "pick one of the")
    assert "snow" not in other.inner_text("#scenes-table") and "grass" not in other.inner_text("#scenes-table")
    other.goto(f"{server.url.rstrip('/')}/?project={project}")
    wait_text(other, "#scenes-table", "grass")
    # The first tab changes the background; the second, still showing grass, edits the description.
    edit_cell(page, "#scenes-table", "cell-0-2", "snow")
    wait_for(lambda: current_plan(server)["scenes"][0]["background"] == "snow", what="the first tab's edit")
    edit_cell(other, "#scenes-table", "cell-0-1", "A stale edit.")
    wait_text(other, "#message", "changed in another tab")
    wait_text(other, "#scenes-table", "snow")
    plan = current_plan(server)
    assert plan["scenes"][0]["background"] == "snow" and plan["scenes"][0]["description"] != "A stale edit."
    other.context.close()


@pytest.mark.skipif(not (DEFAULT_MODEL / "model_index.json").exists(), reason="shipped model missing")
def test_render_progress_download_and_cancel(page, server, shot):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    show_tab(page, "Render")
    # The guidance slider starts at the model's own default (model_index.json), not a generic one.
    assert float(page.locator("#guidance input[type='number']").input_value()) == recommended_guidance_scale(DEFAULT_MODEL)
    set_slider(page, "steps", 8)
    page.click("#render")
    # Progress: gr.Progress shows "scene i/n, step k/K" while the render runs.
    page.wait_for_function("() => /scene 1\\/1, step \\d+\\/8/.test(document.body.innerText)", timeout=60_000, polling=50)
    # A preview of the middle frame appears after step 5, and makes way for the video at the end.
    page.wait_for_selector("#render-preview img", timeout=60_000)
    page.wait_for_selector("#render-status:has-text('Rendered')", timeout=120_000)
    page.wait_for_selector("#render-preview", state="hidden", timeout=10_000)
    link = page.locator("#downloads a").first
    with page.expect_download() as download:
        link.click()
    frames, fps = read_mp4(download.value.path())
    assert frames.shape == (16, 128, 128, 3) and fps == 8
    shot(page, "#video", "render.png")
    # The render is listed in the project's gallery, also after a reload.
    page.wait_for_selector("#renders img, #renders video", timeout=30_000)
    page.reload()
    show_tab(page, "Render")
    page.wait_for_selector("#renders img, #renders video", timeout=30_000)
    wait_text(page, "#renders", "8 steps")
    # Cancel: a long render stops within a step.
    set_slider(page, "steps", 100)
    page.click("#render")
    time.sleep(1.5)
    page.click("#cancel")
    page.wait_for_selector("#render-status:has-text('cancelled')", timeout=60_000)


def test_a_typed_api_key_is_kept_nowhere(page, server, tmp_path):
    from tests.studio.test_handlers import recording_endpoint

    endpoint, url, seen = recording_endpoint()
    try:
        page.fill("#prompt textarea, #prompt input", "A red ball rolls.")
        page.locator("#planner label:has-text('openai')").click()
        show_tab(page, "Project")
        page.locator("#llm-endpoint button").first.click()
        fill_fields(page, {"base-url": url, "api-key": "sk-test-SECRET123", "llm-timeout": "5", "llm-retries": "0"})
        typed = {field: page.locator(f"#{field} textarea, #{field} input").first.input_value() for field in ("base-url", "api-key")}
        page.click("#generate")
        wait_text(page, "#message", "llm: request to")
        # The recorder's handler thread may append after the studio has already shown the failure.
        held = {field: page.locator(f"#{field} textarea, #{field} input").first.input_value() for field in ("base-url", "api-key")}
        wait_for(lambda: seen, timeout=10.0, what=f"a request at {url} (the studio said: {page.inner_text('#message')}; fields before the click {typed}, after {held})")
    finally:
        endpoint.shutdown()
    assert seen == ["Bearer sk-test-SECRET123"]  # it reached the endpoint the user typed, and only that
    storage = page.evaluate("() => JSON.stringify({...window.localStorage}) + JSON.stringify({...window.sessionStorage})")
    assert "SECRET123" not in storage
    assert "SECRET123" not in page.inner_text("body")
    assert "SECRET123" not in page.request.get(server.url + "config").text()
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert b"SECRET123" not in path.read_bytes(), path


def versions(server) -> int:
    return next(p.versions for p in server.workspace.store.list_projects() if p.id == server.workspace.latest_project())


def test_the_page_fits_a_desktop_window_without_scrolling(page, server, shot):
    generate(page, server)
    time.sleep(1.0)
    assert page.evaluate("() => document.scrollingElement.scrollHeight") <= VIEWPORT["height"] + 4
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= VIEWPORT["width"] + 4
    # The canvas is not covered by a label and not blown up: the 64 px video at a whole multiple, unsmoothed.
    box = page.locator("#box-editor .be-stage").first.bounding_box()
    assert 256 <= min(box["width"], box["height"]) <= 420 and min(box["width"], box["height"]) % 64 == 0
    shot(page, None, "studio.png")


def test_a_frame_then_open_writes_no_keyframe(page, server):
    # Issue 23 item 1: a frame picked, then Open, saved frame 0's boxes at that frame.
    generate(page, server, "A red ball rolls from left to right across the grass.")
    project = server.workspace.latest_project()
    page.click("#filmstrip .thumb[data-frame='12']")
    wait_frame(page, 12)
    before = versions(server)
    page.locator("#projects input").click()
    page.locator("#projects [role='option'], ul.options li").filter(has_text=f"{project}: ").first.click()
    page.click("#open-project")
    page.wait_for_selector(f"#message:has-text('Opened project {project}.')")
    wait_frame(page, 0)
    time.sleep(1.5)  # the box editor's change events after the new value
    assert versions(server) == before
    assert [k["frame"] for k in current_plan(server)["scenes"][0]["keyframes"]] == [0, 15]


def test_arrow_keys_step_frames_and_a_drag_after_them_keyframes_only_that_frame(page, server):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    page.locator("#frame-status").click()  # focus on the page, not on a field
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    wait_frame(page, 3)
    page.keyboard.press("ArrowLeft")
    wait_frame(page, 2)
    time.sleep(1.0)
    assert [k["frame"] for k in current_plan(server)["scenes"][0]["keyframes"]] == [0, 15]  # stepping wrote nothing
    from core.project.editing import frame_boxes
    from core.plan import parse_plan

    box = frame_boxes(parse_plan(current_plan(server)), 0, 2)["e1"]
    drag_box(page, box, 0, 60)
    page.wait_for_selector("#message:has-text('Keyframe saved at frame 2.')")
    time.sleep(1.0)
    keyframes = current_plan(server)["scenes"][0]["keyframes"]
    assert [k["frame"] for k in keyframes] == [0, 2, 15]
    assert keyframes[1]["boxes"]["e1"][1] > box[1] + 0.1  # moved down, at the frame on screen
    # Ctrl+Z undoes the drag and says so.
    page.locator("#frame-status").click()
    page.keyboard.press("Control+z")
    page.wait_for_selector("#message:has-text('Undid: Keyframe saved at frame 2.')")
    assert [k["frame"] for k in current_plan(server)["scenes"][0]["keyframes"]] == [0, 15]


def test_clicking_a_keyframe_in_the_timeline_opens_that_frame(page, server, shot):
    generate(page, server)
    page.locator("#timeline .key[data-frame='8']").first.click()
    wait_frame(page, 8)
    assert "keyframe" in page.inner_text("#frame-status")
    shot(page, "#timeline", "timeline.png")


def test_one_enter_in_a_table_makes_one_edit(page, server):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    calls = []
    edit = server.workspace.edit
    server.workspace.edit = lambda *a, **k: calls.append(a[1].__name__) or edit(*a, **k)
    try:
        before = versions(server)
        edit_cell(page, "#scenes-table", "cell-0-2", "snow")
        wait_for(lambda: current_plan(server)["scenes"][0]["background"] == "snow", what="the edit")
        time.sleep(1.5)
    finally:
        server.workspace.edit = edit
    assert calls == ["update_scenes"] and versions(server) == before + 1


def test_space_plays_the_layout_and_pausing_opens_the_frame_reached(page, server):
    generate(page, server, "A red ball rolls from left to right across the grass.")
    page.locator("#frame-status").click()
    before = versions(server)
    page.keyboard.press(" ")
    page.wait_for_selector("#play-overlay")
    time.sleep(0.8)  # about six frames at 8 per second
    page.keyboard.press(" ")
    page.wait_for_selector("#play-overlay", state="detached")
    reached = page.evaluate("() => window.studio.frame")
    assert reached > 0
    wait_frame(page, reached)  # the canvas and the status show the frame where it paused
    assert versions(server) == before
