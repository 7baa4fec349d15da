"""Output files of one command: checked before any work, then written together or not at all.

A render takes minutes, so an output path that cannot be written (a folder, a read-only file, a
folder that cannot be created) is refused before the render starts (:func:`check_writable`). The
files of one command (an MP4 and its plan, say) are staged as temporary files beside their targets
and renamed into place together (:func:`write_together`): if one rename fails, the files already
renamed are put back as they were, so a failure never leaves a video without its plan.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from core.messages import short_repr

# The permissions ``open(path, "w")`` gives a new file: 0o666 less the umask (read once, at import,
# since reading the umask means setting it). Temporary files are 0o600; renamed outputs get this.
_MASK = os.umask(0o022)
os.umask(_MASK)
NEW_FILE_MODE = 0o666 & ~_MASK


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename; the file
    gets the permissions a plain ``open()`` would give it (:data:`NEW_FILE_MODE`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, NEW_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OutputError(OSError):
    """An output path cannot be written. The message is one line naming the option and the path."""


def _shown(path: Path) -> str:
    return short_repr(str(path), 120)[1:-1]


def check_writable(path: str | Path, option: str = "--out") -> Path:
    """Check, without leaving anything behind, that ``path`` can be written as a file.

    Missing parent folders are allowed when they can be created. A temporary file is created in
    the nearest existing folder and removed at once, so read-only file systems and permissions are
    tested for real (also when running as root).

    Args:
        path: the output file.
        option: the command-line option or field named in the error.

    Returns:
        ``Path(path)``.

    Raises:
        OutputError: ``path`` is a folder, is an existing file that is not writable, or its folder
            cannot be written or created.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option}: {_shown(path)} is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{option}: {_shown(path)} is not writable")
    folder = path.parent
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{option}: {_shown(folder)} is not a folder, so {_shown(path)} cannot be written")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"{option}: cannot write in {_shown(folder)} ({error.strerror or type(error).__name__})") from None
    return path


def write_together(writers: dict[Path, Callable[[Path], None]]) -> list[Path]:
    """Write several files as one commit: all of them end up written, or none changes.

    Args:
        writers: target path -> a function that writes the file's content to the path it is given
            (a temporary file in the target's folder).

    Returns:
        The target paths, in the order given.

    Raises:
        OSError: a writer or a rename failed; every target is then as it was before the call and no
            temporary file is left.
    """
    staged: list[tuple[Path, Path]] = []  # (temporary file, target)
    backups: list[tuple[Path, Path]] = []  # (backup of a replaced target, target)
    placed: list[Path] = []
    try:
        for target, write in writers.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            staged.append((Path(tmp), target))
            write(Path(tmp))
            os.chmod(tmp, NEW_FILE_MODE)
        for tmp, target in staged:
            if target.exists() and not target.is_dir():
                fd, backup = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".bak")
                os.close(fd)
                try:
                    os.replace(target, backup)
                except BaseException:
                    os.unlink(backup)
                    raise
                backups.append((Path(backup), target))
            os.replace(tmp, target)
            placed.append(target)
    except BaseException:
        for target in placed:
            target.unlink(missing_ok=True)
        for backup, target in backups:
            os.replace(backup, target)
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for backup, _ in backups:
        backup.unlink(missing_ok=True)
    return list(writers)


def evict_least_recently_used(folder: str | Path, pattern: str, max_bytes: int) -> int:
    """Delete the least recently used files (oldest modification time; readers touch what they use)
    matching ``pattern`` in ``folder`` until those left hold at most ``max_bytes``.

    Returns:
        How many files were deleted. Files that vanish meanwhile are skipped.
    """
    files = []
    for path in Path(folder).glob(pattern):
        try:
            stat = path.stat()
        except OSError:
            continue
        files.append((stat.st_mtime, stat.st_size, path))
    total, deleted = sum(size for _, size, _ in files), 0
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        deleted += 1
    return deleted

