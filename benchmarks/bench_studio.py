"""Studio speed, printed as figures (not a timed test).

    .venv/bin/python benchmarks/bench_studio.py [--cold 10]

Measures, in one run: page ready (navigation until the last project's plan, scenes and layout are
shown; the two plotly figures follow in a second event, timed too) in headless Chromium; server time of a box drag (a moved box saved as a keyframe
and every view rebuilt); server time of a frame-slider step; plan generation with the rules planner.
Targets (issue 3): page <= 3 s, drag <= 150 ms, slider <= 200 ms, rules plan <= 1 s.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "A red ball rolls from left to right across the grass, then a blue star falls from the sky."


def timed(fn, *args, repeat=20):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times)


def main() -> None:
    import argparse

    from core.planner.rules import load_parser

    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=0, help="also time the first load on N fresh servers and browsers")
    args = parser.parse_args()
    from core.workspace import Workspace
    from studio.handlers import Handlers

    load_parser()
    handlers = Handlers(Workspace(Path(tempfile.mkdtemp()) / "data"))
    med, worst = timed(lambda: handlers.generate({}, PROMPT, "rules", "", "", "", 16), repeat=5)
    print(f"plan generation (rules, all views): median {1000 * med:.0f} ms, max {1000 * worst:.0f} ms (target <= 1000 ms)")
    session = handlers.generate({}, PROMPT, "rules", "", "", "", 16)[0]

    state = {"x": 0}

    def drag():
        value = handlers.select(session, 0, 0)[7]
        state["x"] = (state["x"] + 7) % 60
        box = value["boxes"][0]
        box["xmin"], box["xmax"] = 10 + state["x"], 70 + state["x"]
        out = handlers.boxes_changed(session, value, 0, 0)
        assert "Keyframe saved" in out[1], out[1]

    select_med, _ = timed(lambda: handlers.select(session, 0, 0))
    drag_med, drag_worst = timed(drag)
    print(f"box drag saved + views rebuilt: median {1000 * (drag_med - select_med):.0f} ms, max {1000 * (drag_worst - select_med):.0f} ms (target <= 150 ms)")
    frames = iter(range(10**6))
    med, worst = timed(lambda: handlers.select(session, 0, next(frames) % 16))
    print(f"frame slider step (all views incl. scene graph): median {1000 * med:.0f} ms, max {1000 * worst:.0f} ms (target <= 200 ms)")

    from playwright.sync_api import sync_playwright

    from tests.studio.test_browser import ARGS, CHROMIUM, Server

    server = Server(handlers.ws.data_dir)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            loads, drawn = [], []
            for _ in range(3):
                page = browser.new_page()
                start = time.perf_counter()
                page.goto(server.url)
                page.wait_for_selector("#frame-status:has-text('Frame 0')")
                loads.append(time.perf_counter() - start)
                page.wait_for_selector("#scene-graph .main-svg")
                page.wait_for_selector("#timeline .main-svg")
                drawn.append(time.perf_counter() - start)
                page.close()
            browser.close()
        print(f"page ready (plan, scenes and layout of the last project shown): first load after start {loads[0]:.2f} s, then {', '.join(f'{t:.2f}' for t in loads[1:])} s (target <= 3 s)")
        print(f"scene-graph and timeline figures drawn: {', '.join(f'{t:.2f}' for t in drawn)} s")
    finally:
        server.app.close()
    if args.cold:
        cold_loads(args.cold)


def cold_loads(trials: int) -> None:
    """First page load on ``trials`` fresh servers, each with a fresh browser (the worst case)."""
    from playwright.sync_api import sync_playwright

    from core.workspace import Workspace
    from studio.handlers import Handlers
    from tests.studio.test_browser import ARGS, CHROMIUM, Server

    firsts = []
    for _ in range(trials):
        data = Path(tempfile.mkdtemp()) / "data"
        Handlers(Workspace(data)).generate({}, PROMPT, "rules", "", "", "", 16)
        server = Server(data)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                page = browser.new_page()
                start = time.perf_counter()
                page.goto(server.url)
                page.wait_for_selector("#frame-status:has-text('Frame 0')")
                firsts.append(time.perf_counter() - start)
                browser.close()
        finally:
            server.app.close()
    over = sum(t > 3 for t in firsts)
    print(f"first load on {trials} fresh servers and browsers: median {statistics.median(firsts):.2f} s, max {max(firsts):.2f} s, {over} over 3 s")


if __name__ == "__main__":
    main()
