"""Renders and rendered scenes are kept on disk: a reload or a restart loses neither."""

import numpy as np
import pytest

from core.planner.rules import plan_with_rules
from core.project.renders import SceneCache
from core.project.workspace import Workspace
from core.render import DEFAULT_MODEL, RenderSettings


def test_scene_cache_round_trip_and_least_recently_used_eviction(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    cache = SceneCache(tmp_path, max_bytes=3 * (frames.nbytes + 128) + 10)
    for key in ("a1", "b2", "c3"):
        cache[key] = frames
    np.testing.assert_array_equal(cache["a1"], frames)  # read: a1 is now the most recently used
    cache["d4"] = frames
    assert cache.get("b2") is None and "a1" in cache and "d4" in cache
    assert cache.get("zz") is None
    with pytest.raises(KeyError):
        cache["not/a/key"] = frames


@pytest.mark.skipif(not (DEFAULT_MODEL / "model_index.json").exists(), reason="shipped model missing")
def test_a_restart_keeps_the_renders_and_the_scene_cache(tmp_path):
    plan = plan_with_rules("A red ball rolls from left to right across the grass.")
    first = Workspace(tmp_path / "data")
    project = first.create_project(plan)
    record = first.render(project, RenderSettings(num_inference_steps=2))
    assert first.renders(project) == [record] and record.seconds > 0 and record.settings["num_inference_steps"] == 2

    again = Workspace(tmp_path / "data")  # a restart: nothing in memory
    assert again.renders(project) == [record]
    assert again.rendered_frame(project, plan, 0, 3) is not None  # the canvas can show the rendered frame
    steps_rendered = []
    second = again.render(project, RenderSettings(num_inference_steps=2), on_progress=lambda p: steps_rendered.append(p.step < p.steps))
    assert not any(steps_rendered)  # every scene came from the cache on disk
    assert [r.video for r in again.renders(project)] == [second.video, record.video]
