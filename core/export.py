"""MP4 export with moviepy (H.264, yuv420p), written atomically, and read back for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.outputs import write_together


def encode_mp4(frames: np.ndarray, path: str | Path, *, fps: int) -> None:
    """Encode frames as an H.264/yuv420p MP4 straight into ``path`` (not atomic: see :func:`write_mp4`).

    Args:
        frames: np.ndarray (N, H, W, 3) uint8 with N >= 1 and even H, W (yuv420p needs them).
        path: the file to write (replaced if it exists).
        fps: frames per second (1-60).

    Raises:
        ValueError: wrong shape, dtype or fps.
    """
    from moviepy import ImageSequenceClip

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames: must be a non-empty (N, H, W, 3) uint8 array (got {frames.shape} {frames.dtype})")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frames: height and width must be even for yuv420p (got {frames.shape[1]}x{frames.shape[2]})")
    if not 1 <= fps <= 60:
        raise ValueError(f"fps: must be in [1, 60] (got {fps})")
    clip = ImageSequenceClip(list(frames), fps=fps)
    try:
        # ffmpeg picks the container from the file name; temporary names end in .tmp
        clip.write_videofile(str(path), codec="libx264", fps=fps, ffmpeg_params=["-pix_fmt", "yuv420p", "-f", "mp4"], logger=None, audio=False)
    finally:
        clip.close()


def write_mp4(frames: np.ndarray, path: str | Path, *, fps: int) -> Path:
    """Write frames as an H.264/yuv420p MP4 at ``fps``, atomically (a temporary file in the same
    folder, then a rename). Arguments and errors as :func:`encode_mp4`."""
    path = Path(path)
    write_together({path: lambda tmp: encode_mp4(frames, tmp, fps=fps)})
    return path


def read_mp4(path: str | Path) -> tuple[np.ndarray, float]:
    """Read an MP4 back: (frames np.ndarray (N, H, W, 3) uint8, fps)."""
    from moviepy import VideoFileClip

    with VideoFileClip(str(path), audio=False) as clip:
        frames = np.stack(list(clip.iter_frames(dtype="uint8")))
        return frames, float(clip.fps)
