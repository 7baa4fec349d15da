"""benchmarks/count_errors.py on a hand-made eval folder: exact drawings of a plan, with a patch of
another colour painted inside the object in some frames and a blob outside it in one."""

import importlib.util
from pathlib import Path

import pytest

from core.evaluation.scoring import draw_plan
from core.export import write_mp4
from core.plan import save_plan
from core.toyworld.world import COLORS
from tests.core.evaluation.test_scoring import rolling_ball

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "count_errors.py"


def load_script():
    spec = importlib.util.spec_from_file_location("count_errors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extras_are_told_apart_by_where_they_lie(tmp_path):
    plan = rolling_ball()  # a red ball rolling right on the grass, 8 frames, one box a frame
    frames = draw_plan(plan, size=128).copy()
    for f in (2, 3, 4):  # an orange patch at the ball's centre: a second detection inside the box
        x0, y0, x1, y1 = (int(round(v * 128)) for v in plan.scenes[0].keyframes[0].boxes["e1"])
        shift = int(round((0.7 - 0.0) * 128 * f / 7))
        cx, cy = (x0 + x1) // 2 + shift, (y0 + y1) // 2
        frames[f, cy - 5 : cy + 5, cx - 5 : cx + 5] = COLORS["orange"]
    frames[6, 100:112, 10:22] = COLORS["blue"]  # a blue blob far below the box
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(frames, videos / "000.mp4", fps=plan.fps)
    save_plan(plan, videos / "000.plan.json")

    tally = load_script().count_errors(tmp_path)

    assert (tally["frames"], tally["extra"], tally["missing"]) == (8, 4, 0)
    assert tally["extras"] == {("inside", "orange", "grass", False): 3, ("outside", "blue", "grass", False): 1}
    assert tally["videos"] == [("000.mp4", 4, 8, plan.prompt)]
    assert (tally["overlap_frames"], tally["overlap_wrong"]) == (0, 0)  # one entity never overlaps itself


def test_a_folder_without_videos_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no MP4 files"):
        load_script().count_errors(tmp_path)
