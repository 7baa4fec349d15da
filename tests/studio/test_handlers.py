"""Studio event handlers without a browser: the plan, the store and the views they return."""

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from core.project.workspace import Workspace
from studio.app import auth_pair, parse_args
from studio.handlers import Handlers
from studio.views import ALL_VIEWS, SKETCH_SIZE, box_editor_value

PROMPT = "A red ball rolls from left to right across the grass."

# A view handler returns a dict: "session", "message" and the views that changed, by name (the
# names of the output components in studio/app.py); a view left out is left as the page shows it.
NAMES = {"session", "message", "graph", *ALL_VIEWS}


def named(out) -> dict:
    """A view handler's outputs by name (fails on a name the page does not have); ``shown`` is the
    message as the page shows it (Markdown escapes and HTML entities resolved)."""
    assert isinstance(out, dict) and set(out) <= NAMES, out.keys() if isinstance(out, dict) else out
    views = dict(out)
    if isinstance(views.get("message"), str):
        views["shown"] = html.unescape(re.sub(r"\\(.)", r"\1", views["message"]))
    return views


@pytest.fixture
def handlers(tmp_path):
    return Handlers(Workspace(tmp_path / "data"))


class Tab:
    """One browser tab: calls a handler with the tab's session and keeps the session it returns,
    as Gradio does with a gr.State."""

    def __init__(self, handlers: Handlers, session: dict | None = None):
        self.handlers, self.session = handlers, dict(session or {})

    def __getattr__(self, name):
        def call(*args, **kwargs):
            out = named(getattr(self.handlers, name)(self.session, *args, **kwargs))
            if isinstance(out.get("session"), dict) and "__type__" not in out["session"]:  # absent or gr.update(): unchanged
                self.session = out["session"]
            return out

        return call


def generate(h) -> dict:
    return named(h.generate({}, PROMPT, "rules", "", "", "", 16))


def new_tab(h) -> Tab:
    tab = Tab(h)
    tab.generate(PROMPT, "rules", "", "", "", 16)
    return tab


def test_generate_opens_a_new_project_and_says_so(handlers):
    out = generate(handlers)
    assert out["session"]["project"] == 1
    assert "New project 1" in out["message"]


def test_generate_shows_the_plan_in_every_panel(handlers):
    out = generate(handlers)
    assert json.loads(out["plan_json"])["prompt"] == PROMPT
    assert out["scenes"] == [["s1", PROMPT, "grass", 16, ""]]
    assert [b["label"] for b in out["boxes"]["boxes"]] == ["ball"]
    assert out["boxes"]["image"].shape == (SKETCH_SIZE, SKETCH_SIZE, 3)
    assert "keyframe" in out["status"]


def editor_value(tab: Tab, frame: int) -> dict:
    """The box editor's value at ``frame`` of the tab's plan (what the page holds after showing it)."""
    plan = tab.handlers.ws.store.current(tab.session["project"])[1]
    return box_editor_value(plan, 0, frame)


def drag_first_box(tab: Tab, frame: int) -> dict:
    """Show ``frame``, then move its first box to pixels (10, 20)-(74, 84) of the box editor."""
    tab.select(0, frame)
    value = editor_value(tab, frame)
    value["boxes"][0].update(xmin=10, ymin=20, xmax=74, ymax=84)
    return tab.boxes_changed(value, 0, frame)


def test_dragging_a_box_on_an_interpolated_frame_saves_a_keyframe_there(handlers):
    tab = new_tab(handlers)
    assert "interpolated" in tab.select(0, 5)["status"]
    out = drag_first_box(tab, 5)
    assert "Keyframe saved at frame 5" in out["message"]
    keyframe = next(k for k in json.loads(out["plan_json"])["scenes"][0]["keyframes"] if k["frame"] == 5)
    assert keyframe["boxes"]["e1"] == [round(10 / 256, 4), round(20 / 256, 4), round(74 / 256, 4), round(84 / 256, 4)]
    assert "keyframe" in out["status"] and "interpolated" not in out["status"]


def test_a_dragged_box_can_be_undone_and_undo_says_what_it_undid(handlers):
    tab = new_tab(handlers)
    drag_first_box(tab, 5)
    out = tab.undo(0, 5)
    assert out["message"] == "Undid: Keyframe saved at frame 5."
    assert "interpolated" in out["status"]
    assert all(k["frame"] != 5 for k in json.loads(out["plan_json"])["scenes"][0]["keyframes"])


def test_redo_with_nothing_to_redo_says_so(handlers):
    assert new_tab(handlers).redo(0, 0)["message"] == "Nothing to redo."


def test_unchanged_boxes_change_nothing(handlers):
    tab = new_tab(handlers)
    value = tab.select(0, 3)["boxes"]
    out = tab.boxes_changed(value, 0, 3)
    assert set(out) == {"session"}
    assert handlers.ws.store.history(tab.session["project"]) == (False, False)  # no new version to undo


def test_editor_value_of_another_frame_is_not_saved_as_a_keyframe(handlers):
    # The slider says 16 while the editor was just given frame 0 (a project opened, a scene changed):
    # the editor's change event must not write frame 0's boxes at frame 16.
    tab = new_tab(handlers)
    value = editor_value(tab, 0)
    tab.select(0, 12)
    out = tab.boxes_changed(value, 0, 0)  # the page's slider raced ahead of the editor
    assert set(out) == {"session"}
    assert handlers.ws.store.history(tab.session["project"]) == (False, False)


def test_invalid_edit_shows_the_message_and_keeps_the_plan(handlers):
    tab = new_tab(handlers)
    out = tab.edit_scenes([["s1", PROMPT, "grass", 100]], 0, 0)
    assert out["shown"] == "⚠️ scenes[0] (s1).num_frames: must be <= 64 (got 100)"
    assert out["scenes"][0][3] == 16  # the table shows the plan again
    assert "plan_json" not in out and "timeline" not in out  # nothing else changed
    assert handlers.ws.store.current(tab.session["project"])[1].scenes[0].num_frames == 16


def test_editing_an_event_updates_timeline_and_graph_and_not_the_table_it_came_from(handlers):
    tab = new_tab(handlers)
    out = tab.edit_events([["e1", "rolls", "grass", 0, 15], ["e1", "turns", "blue", 8, 8]], 0, 10)
    assert "events" not in out  # the table already shows what was typed
    assert "turns blue" in out["timeline"]
    graph = tab.graph_view()["graph"]
    assert ">blue</text>" in graph  # the new attribute is a node of the scene graph


def test_a_scene_seed_typed_in_the_table_is_saved(handlers):
    out = new_tab(handlers).edit_scenes([["s1", PROMPT, "grass", 16, "42"]], 0, 0)
    assert json.loads(out["plan_json"])["scenes"][0]["seed"] == 42


def test_a_scene_seed_that_is_not_an_integer_is_refused(handlers):
    out = new_tab(handlers).edit_scenes([["s1", PROMPT, "grass", 16, "x"]], 0, 0)
    assert out["shown"].startswith("⚠️ scenes[0] (s1).seed: must be blank or an integer")


def test_undo_and_redo_walk_the_versions(handlers):
    tab = new_tab(handlers)
    tab.edit_scenes([["s1", "Changed.", "snow", 16]], 0, 0)
    assert tab.undo(0, 0)["scenes"][0][2] == "grass"
    assert tab.redo(0, 0)["scenes"][0][2] == "snow"


def test_an_edit_sent_twice_makes_one_version(handlers):
    tab = new_tab(handlers)
    rows = [["s1", "Changed once.", "snow", 16]]
    first = tab.session
    tab.edit_scenes(rows, 0, 0)
    Tab(handlers, first).edit_scenes(rows, 0, 0)  # the same edit again, from the state before the first
    assert [p.versions for p in handlers.ws.store.list_projects()] == [2]


def test_a_stale_tab_cannot_overwrite_another_tabs_edit(handlers):
    one = new_tab(handlers)
    two = Tab(handlers)
    two.open_project(one.session["project"])
    one.edit_scenes([["s1", "Renamed in tab one.", "snow", 16]], 0, 0)
    out = two.edit_scenes([["s1", PROMPT, "desert", 16]], 0, 0)  # tab two still shows the old table
    assert out["shown"].startswith("⚠️ This project changed in another tab")
    assert out["scenes"][0][1:3] == ["Renamed in tab one.", "snow"]  # tab two now shows the fresh state
    assert handlers.ws.store.current(one.session["project"])[1].scenes[0].background == "snow"
    # Made again on the fresh state, tab two's edit lands.
    assert two.edit_scenes([["s1", "Renamed in tab one.", "desert", 16]], 0, 0)["scenes"][0][2] == "desert"


def test_undo_in_a_stale_tab_does_not_undo_another_tabs_edit(handlers):
    one = new_tab(handlers)
    two = Tab(handlers)
    two.open_project(one.session["project"])
    one.edit_scenes([["s1", "Edited in tab one.", "snow", 16]], 0, 0)
    out = two.undo(0, 0)
    assert out["shown"].startswith("⚠️ This project changed in another tab")
    assert handlers.ws.store.current(one.session["project"])[1].scenes[0].background == "snow"


def test_concurrent_edits_lose_nothing(handlers):
    import threading

    project = new_tab(handlers).session["project"]
    tabs = [Tab(handlers) for _ in range(4)]
    tables = [tab.open_project(project)["scenes"] for tab in tabs]  # what each tab's table shows
    acknowledged: list[str] = []

    def typist(n: int, name: str):
        tab = tabs[n]
        for i in range(8):
            for _ in range(200):  # a stale tab is shown the fresh state and types its edit again
                row = tables[n][0]
                out = tab.edit_scenes([[row[0], f"{row[1]} {name}{i}", "grass", 16, ""]], 0, 0)
                tables[n] = out.get("scenes", [[row[0], f"{row[1]} {name}{i}", "grass", 16, ""]])
                if out.get("message") == "Scenes saved.":
                    acknowledged.append(f"{name}{i}")
                    break

    threads = [threading.Thread(target=typist, args=(n, f"t{n}-")) for n in range(len(tabs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = handlers.ws.store.current(project)[1].scenes[0].description.split()
    assert len(acknowledged) == 32
    assert all(word in final for word in acknowledged)  # every acknowledged edit is in the plan


def test_a_new_tab_starts_on_the_project_list_and_the_address_reopens_a_project(handlers):
    project = new_tab(handlers).session["project"]
    fresh = named(handlers.load({}))
    assert fresh["session"].get("project") is None and "Projects" in fresh["message"]
    request = type("Request", (), {"query_params": {"project": str(project)}})()
    again = named(handlers.load({}, request))
    assert again["session"]["project"] == project and "Frame 0" in again["status"]
    assert handlers.project_url(again["session"]) == str(project)


def test_restart_keeps_the_project_named_in_the_address(tmp_path):
    tab = new_tab(Handlers(Workspace(tmp_path / "data")))
    tab.edit_scenes([["s1", "Edited before restart.", "desert", 16]], 0, 0)
    request = type("Request", (), {"query_params": {"project": str(tab.session["project"])}})()
    out = named(Handlers(Workspace(tmp_path / "data")).load({}, request))
    assert out["scenes"][0][1:3] == ["Edited before restart.", "desert"]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b" " * 1_100_000, "⚠️ plan: must be at most 1000 kB (got 1100 kB)"),
        (b'{"prompt": "x"}', "⚠️ entities: Field required"),
        (b"not json", "⚠️ invalid JSON"),
    ],
    ids=["too-big", "not-a-plan", "not-json"],
)
def test_import_refuses_a_bad_file_with_a_message(handlers, tmp_path, content, expected):
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    out = named(handlers.import_plan({}, str(path)))
    assert out["shown"].startswith(expected)
    assert handlers.ws.store.list_projects() == []


def test_remote_binding_requires_auth():
    with pytest.raises(ValueError, match=r"^--host: binding 0\.0\.0\.0 requires --auth"):
        auth_pair(parse_args(["--host", "0.0.0.0"]))
    assert auth_pair(parse_args(["--host", "0.0.0.0", "--auth", "ana:secret"])) == ("ana", "secret")
    assert auth_pair(parse_args([])) is None


def test_page_load_shows_the_layout_first_and_the_scene_graph_next(handlers):
    project = new_tab(handlers).session["project"]
    out = named(handlers.load({"project": project}))
    assert out["session"]["project"] == 1 and "Frame 0" in out["status"] and 'data-frame="15"' in out["timeline"]
    assert "graph" not in out  # drawn next, outside the first response
    graph = handlers.graph_view(out["session"])["graph"]
    assert graph.startswith("<svg") and graph.count("<circle") > 4  # nodes and legend
    # A page's first graph (no project yet) sends nothing, so finishing after a Generate it cannot
    # write back the session it read and close the new project.
    assert handlers.graph_view({}) == {}


def test_plan_text_in_a_message_is_shown_as_typed_not_as_markup(handlers):
    out = new_tab(handlers).edit_events([["<img src=x onerror=alert(1)>", "rolls", "", 0, 15]], 0, 0)
    assert "<img" not in out["message"] and "&lt;img src=x onerror=alert(1)&gt;" in out["message"]
    assert out["shown"].startswith("⚠️ scenes[0] (s1).events[0].agent: must match") and "'<img src=x onerror=alert(1)>'" in out["shown"]


def test_a_broken_llm_endpoint_is_one_message_within_the_timeout(handlers, tmp_path, monkeypatch):
    import threading
    import time

    from tests.core.planner.test_llm_faults import FakeEndpoint, FakeServer

    monkeypatch.setenv("DIRECTOR_STUDIO_CACHE", str(tmp_path / "cache"))
    server = FakeServer(("127.0.0.1", 0), FakeEndpoint)
    server.mode = "silent"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.monotonic()
        out = named(handlers.generate({}, PROMPT, "openai", "fake", f"http://127.0.0.1:{server.server_address[1]}/v1", "sk-test", 16, 1, 0))
        assert time.monotonic() - start < 4
    finally:
        server.shutdown()
    assert out["shown"].startswith("⚠️ llm: request to http://127.0.0.1:") and "Timeout" in out["shown"]
    assert "\n" not in out["message"] and out["session"].get("project") is None


def recording_endpoint():
    """A local OpenAI-compatible endpoint that records the Authorization header of every request."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1", seen


def test_a_typed_base_url_never_receives_the_servers_key(handlers, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-SECRET")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("DIRECTOR_STUDIO_CACHE", str(tmp_path / "cache"))
    server, url, seen = recording_endpoint()
    try:
        out = named(handlers.generate({}, PROMPT, "openai", "m", url, "", 16, 5, 0))
        assert out["shown"].startswith("⚠️ llm: request to") and "SECRET" not in out["message"]
        named(handlers.generate({}, PROMPT, "openai", "m", url, "sk-typed-by-user", 16, 5, 0))
    finally:
        server.shutdown()
    assert seen == ["Bearer no-key", "Bearer sk-typed-by-user"]


def test_gradio_server_port_and_name_are_honoured_and_flags_override(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    args = parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7999)
    args = parse_args(["--port", "8001", "--host", "127.0.0.1"])
    assert (args.host, args.port) == ("127.0.0.1", 8001)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "http")
    with pytest.raises(ValueError, match=r"^GRADIO_SERVER_PORT: must be a port number in \[1, 65535\] \(got 'http'\)$"):
        parse_args([])


def test_failed_logins_are_rate_limited():
    from studio.app import RateLimitedLogin

    now = [0.0]
    login = RateLimitedLogin("ana", "secret", max_failures=3, window_s=60, clock=lambda: now[0])
    assert login("ana", "secret")
    assert not any(login("ana", guess) for guess in ("a", "b", "c"))
    assert not login("ana", "secret")  # locked: even the right password waits
    now[0] = 61.0
    assert login("ana", "secret")


def test_a_colour_the_model_cannot_draw_is_flagged_after_the_edit(handlers):
    out = new_tab(handlers).edit_entities([["e1", "ball", "ball", "teal", "s1"]], 0, 0)
    assert out["shown"].startswith("Entities saved.")
    assert "⚠️ entities[0].attributes.color: 'teal' is not a colour this model knows (red, orange" in out["shown"]


def test_clicking_a_scene_row_selects_it_and_delete_removes_that_scene(handlers):
    tab = new_tab(handlers)
    tab.add_scene(0, 0)
    tab.edit_scenes([["s1", PROMPT, "grass", 16], ["s2", "The second scene.", "snow", 16]], 0, 0)
    out = tab.pick_scene(type("SelectData", (), {"index": 1})())
    assert "scenes" not in out  # the tables are left alone: a click in one may start a cell edit
    assert "scene s2" in out["status"] and 'class="scene-item selected" data-scene="1"' in out["scene_list"]
    out = tab.delete_scene()  # the selected one
    assert [row[0] for row in out["scenes"]] == ["s1"]
    assert [row[0] for row in out["scenes"]] == ["s1"]


def test_a_frame_step_sends_only_the_canvas_and_the_status(handlers):
    tab = new_tab(handlers)
    out = tab.goto_frame(type("SelectData", (), {"index": 7})())
    assert set(out) <= {"session", "boxes", "status", "graph"} and "Frame 7 " in out["status"]
    assert tab.session["canvas"] == [0, 7]
    assert set(tab.goto_frame(type("SelectData", (), {"index": 7})())) == {"session"}  # the same frame again: nothing


def test_a_frame_step_overtaken_by_a_later_one_is_skipped(handlers):
    # Three quick Right presses can reach the server as steps 1, 3, 2: the canvas stays on 3.
    tab = new_tab(handlers)
    step = lambda frame, seq: tab.goto_frame(type("SelectData", (), {"index": frame, "value": seq})())  # noqa: E731
    assert "Frame 1 " in step(1, 1)["status"]
    assert "Frame 3 " in step(3, 3)["status"]
    assert step(2, 2) == {} and tab.session["canvas"] == [0, 3]  # nothing sent, the session not written back
    assert "Frame 2 " in step(2, 4)["status"]  # a later step back is applied


def test_a_description_edit_redraws_no_picture(handlers):
    tab = new_tab(handlers)
    out = tab.edit_scenes([["s1", "A new description.", "grass", 16, ""]])
    assert out["message"] == "Scenes saved."
    assert {"plan_json", "scene_list"} <= set(out)
    assert not {"scenes", "boxes", "timeline", "filmstrip", "status"} & set(out)


def test_the_editor_picture_names_its_frame_so_a_late_change_lands_where_the_user_saw_it(tmp_path):
    handlers = Handlers(Workspace(tmp_path / "data"), frames_dir=tmp_path / "canvas")
    tab = new_tab(handlers)
    held = tab.select(0, 5)["boxes"]
    assert held["image"].endswith(".png") and "s0-f5-" in held["image"]
    tab.goto_frame(type("SelectData", (), {"index": 9})())  # the user stepped on before the editor's event arrived
    assert set(tab.boxes_changed(held)) == {"session"}  # frame 5's own boxes: no keyframe anywhere
    held["boxes"][0].update(xmin=10, ymin=20, xmax=74, ymax=84)
    out = tab.boxes_changed(held)  # a real drag on frame 5
    assert "Keyframe saved at frame 5" in out["message"]
    plan = handlers.ws.store.current(tab.session["project"])[1]
    assert [k.frame for k in plan.scenes[0].keyframes] == [0, 5, 15]


def test_a_refused_table_sent_again_is_dropped_not_applied_on_the_fresh_state(handlers):
    # Gradio's Dataframe sends one Enter twice; when the first was refused as stale, the repeat
    # (the same stale rows, now on the fresh version) must not overwrite the other tab's edit.
    one = new_tab(handlers)
    two = Tab(handlers)
    two.open_project(one.session["project"])
    one.edit_scenes([["s1", PROMPT, "snow", 16, ""]])
    stale = [["s1", "A stale edit.", "grass", 16, ""]]
    assert two.edit_scenes(stale)["shown"].startswith("⚠️ This project changed in another tab")
    assert set(two.edit_scenes(stale)) == {"session"}
    assert handlers.ws.store.current(one.session["project"])[1].scenes[0].background == "snow"
    assert two.edit_scenes([["s1", "A fresh edit.", "snow", 16, ""]])["message"] == "Scenes saved."


def test_a_render_shows_previews_of_the_middle_frame_then_the_video(handlers):
    tab = new_tab(handlers)
    updates = list(handlers.render(tab.session, 10, 2.5, 1.0, 0, progress=lambda *a, **k: None))
    previews = [u[4] for u in updates if isinstance(u[4], np.ndarray)]
    assert len(previews) == 1 and previews[0].shape == (128, 128, 3) and previews[0].dtype == np.uint8  # after step 5 of 10
    video, downloads, status, gallery, preview = updates[-1]
    assert Path(video).is_file() and status.startswith("Rendered ") and len(gallery) == 1
    assert preview["visible"] is False  # the preview makes way for the video
    assert updates[0][4]["visible"] is True


def test_the_editor_pictures_stay_under_their_cap_and_the_one_in_use_is_kept(tmp_path, monkeypatch):
    import studio.views

    monkeypatch.setattr(studio.views, "CANVAS_MAX_BYTES", 6_000)  # about three sketches
    monkeypatch.setattr(studio.views, "CANVAS_EVICT_EVERY", 4)
    folder = tmp_path / "canvas"
    handlers = Handlers(Workspace(tmp_path / "data"), frames_dir=folder)
    tab = new_tab(handlers)
    for frame in range(1, 16):
        shown = tab.select(0, frame)["boxes"]["image"]
    pictures = list(folder.glob("*.png"))
    assert sum(p.stat().st_size for p in pictures) <= 6_000 + 3 * max(p.stat().st_size for p in pictures)  # the cap, plus those written since the last clean-up
    assert len(pictures) < 10 and Path(shown).is_file()
