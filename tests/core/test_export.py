import numpy as np
import pytest

from core.export import read_mp4, write_mp4


def test_mp4_round_trip_keeps_frame_count_size_and_colours(tmp_path):
    frames = np.zeros((12, 64, 64, 3), dtype=np.uint8)
    frames[:, :, :32] = (220, 40, 40)  # left half red
    frames[6:, 32:, :] = (40, 90, 235)  # right half blue from frame 6
    path = write_mp4(frames, tmp_path / "v.mp4", fps=8)
    back, fps = read_mp4(path)
    assert back.shape == (12, 64, 64, 3) and fps == 8
    assert np.abs(back[0, 32, 8].astype(int) - (220, 40, 40)).max() < 30
    assert np.abs(back[10, 32, 56].astype(int) - (40, 90, 235)).max() < 30
    assert back[2, 32, 56].max() < 30
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temporary file left
    # Readable like any file the user writes (the temporary file's 0o600 is not kept).
    (tmp_path / "plain.txt").write_text("x")
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777


def test_bad_frames_leave_no_file(tmp_path):
    with pytest.raises(ValueError, match="^frames"):
        write_mp4(np.zeros((4, 63, 64, 3), dtype=np.uint8), tmp_path / "v.mp4", fps=8)
    with pytest.raises(ValueError, match=r"^fps: must be in \[1, 60\]"):
        write_mp4(np.zeros((4, 64, 64, 3), dtype=np.uint8), tmp_path / "v.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []
