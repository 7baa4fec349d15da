"""What survives a reload or a restart of the studio: rendered scenes and finished renders, on disk.

- :class:`SceneCache`: each rendered scene's frames under a hash of everything that changes them
  (:func:`core.render.scene_cache_key`: the scene, its entities, the settings, the model), so an
  unchanged scene is never rendered twice, across restarts too. Capped in size, least recently used
  scenes go first.
- :class:`RenderRecord` and :func:`list_renders`: every finished render of a project is an MP4, its
  plan and a small JSON record (version, settings, seconds, when), written together
  (:func:`core.outputs.write_together`), listed newest first.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.outputs import atomic_write_bytes, evict_least_recently_used

DEFAULT_CACHE_BYTES = 500_000_000


class SceneCache:
    """Rendered scenes on disk: ``key -> frames`` (np.ndarray (F, H, W, 3) uint8) as ``<key>.npy``.

    Used by :func:`core.render.render_plan` as its ``cache`` mapping (``in``, ``[]``, ``[] =``).
    Reading marks a scene as recently used; writing evicts the least recently used scenes past
    ``max_bytes``. Files are written atomically; an unreadable file counts as a miss.

    Args:
        folder: where the scenes are kept (created on the first write).
        max_bytes: size cap of the folder (>= 0).
    """

    def __init__(self, folder: str | Path, *, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        if not key.isalnum():
            raise KeyError(key)
        return self.folder / f"{key}.npy"

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> np.ndarray | None:
        """The frames stored under ``key``, or None."""
        path = self._path(key)
        try:
            frames = np.load(path, allow_pickle=False)
            os.utime(path)
        except (OSError, ValueError):
            return None
        return frames

    def __getitem__(self, key: str) -> np.ndarray:
        frames = self.get(key)
        if frames is None:
            raise KeyError(key)
        return frames

    def __setitem__(self, key: str, frames: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(frames, dtype=np.uint8), allow_pickle=False)
        atomic_write_bytes(self._path(key), buffer.getvalue())
        self._evict()

    def _evict(self) -> None:
        evict_least_recently_used(self.folder, "*.npy", self.max_bytes)


@dataclass(frozen=True)
class RenderRecord:
    """One finished render of a project.

    Attributes:
        video, plan: the MP4 and the plan it rendered (paths). project, version: what was rendered.
        settings: the RenderSettings as a dict. model: what rendered it (:func:`core.render.model_id`).
        seconds: how long the render took (wall clock).
        created: when it finished (Unix time).
    """

    video: str
    plan: str
    project: int
    version: int
    settings: dict
    model: str
    seconds: float
    created: float

    @property
    def label(self) -> str:
        """A one-line caption: version, steps, seconds, time of day."""
        steps = self.settings.get("num_inference_steps")
        return f"v{self.version}, {steps} steps, {self.seconds:.1f} s, {time.strftime('%H:%M', time.localtime(self.created))}"


def record_path(video: Path) -> Path:
    """Where a render's record lives: next to its MP4, ``<name>.render.json``."""
    return video.with_suffix(".render.json")


def record_bytes(record: RenderRecord) -> bytes:
    return (json.dumps(asdict(record), indent=1) + "\n").encode()


def list_renders(folder: str | Path, project_id: int) -> list[RenderRecord]:
    """The project's finished renders in ``folder``, newest first (records whose MP4 is gone are skipped)."""
    records = []
    for path in Path(folder).glob(f"project{project_id}-*.render.json"):
        try:
            record = RenderRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if record.project == project_id and Path(record.video).is_file():
            records.append(record)
    return sorted(records, key=lambda r: r.created, reverse=True)
