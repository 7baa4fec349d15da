"""Projects and plan versions in SQLite: every accepted edit is a new version; undo and redo walk them.

Versions form a tree: an edit after an undo starts a new branch from the current version, and redo
follows the newest child. The database lives in a data folder outside the source tree (see
:func:`default_data_dir`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.plan import VideoPlan, parse_plan

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    current_version INTEGER
);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    parent INTEGER REFERENCES versions(id),
    plan_json TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_by_parent ON versions(project_id, parent);
"""


def default_data_dir() -> Path:
    """``$DIRECTOR_STUDIO_DATA`` or ``~/.local/share/director-studio``."""
    return Path(os.environ.get("DIRECTOR_STUDIO_DATA") or Path.home() / ".local" / "share" / "director-studio")


class StaleVersionError(Exception):
    """An edit was made on a version that is no longer the project's current one (another tab or
    client changed it first); nothing was written.

    Attributes:
        project_id, base_version: what the edit was made on. current_version: the project's now.
    """

    def __init__(self, project_id: int, base_version: int, current_version: int):
        self.project_id, self.base_version, self.current_version = project_id, base_version, current_version
        super().__init__(f"project {project_id} changed since version {base_version} (now version {current_version}), for example in another tab")


@dataclass(frozen=True)
class VersionMove:
    """The result of an undo or redo: the new current ``version`` and its ``plan``, and ``note``,
    what the undone (or redone) edit was."""

    version: int
    plan: VideoPlan
    note: str


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    name: str
    updated: float
    versions: int


class ProjectStore:
    """Plan versions of projects in one SQLite file (safe to share between threads)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def _write(self):
        """A connection in a transaction that holds SQLite's write lock from its first read
        (``BEGIN IMMEDIATE``), so that a read-check-write cannot interleave with another writer's."""
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def create_project(self, name: str, plan: VideoPlan) -> int:
        """A new project whose first version is ``plan``; returns its id."""
        now = time.time()
        with self._connect() as conn:
            project_id = conn.execute("INSERT INTO projects (name, created, updated) VALUES (?, ?, ?)", (name[:200] or "untitled", now, now)).lastrowid
            version = conn.execute(
                "INSERT INTO versions (project_id, parent, plan_json, note, created) VALUES (?, NULL, ?, 'created', ?)",
                (project_id, plan.model_dump_json(), now),
            ).lastrowid
            conn.execute("UPDATE projects SET current_version = ? WHERE id = ?", (version, project_id))
        return project_id

    def commit(self, project_id: int, plan: VideoPlan, note: str = "", *, base_version: int | None = None) -> int:
        """Save ``plan`` as the project's new current version; returns its id.

        Saving the plan that is already current is a no-op (an edit sent twice makes one version).

        Args:
            base_version: the version the edit was made on; None skips the check.

        Raises:
            StaleVersionError: ``base_version`` is not the current version (nothing is written).
            KeyError: unknown project.
        """
        plan_json = plan.model_dump_json()
        with self._write() as conn:
            current, current_json = self._current_row(conn, project_id)
            if current_json == plan_json:
                return current
            if base_version is not None and base_version != current:
                raise StaleVersionError(project_id, base_version, current)
            now = time.time()
            version = conn.execute(
                "INSERT INTO versions (project_id, parent, plan_json, note, created) VALUES (?, ?, ?, ?, ?)",
                (project_id, current, plan_json, note[:200], now),
            ).lastrowid
            conn.execute("UPDATE projects SET current_version = ?, updated = ? WHERE id = ?", (version, now, project_id))
            return version

    def exists(self, project_id: int) -> bool:
        """Whether a project with this id exists."""
        with self._connect() as conn:
            return conn.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone() is not None

    def current(self, project_id: int) -> tuple[int, VideoPlan]:
        """(version id, plan) of the project's current version. Raises KeyError for an unknown project."""
        with self._connect() as conn:
            version, plan_json = self._current_row(conn, project_id)
        return version, parse_plan(plan_json)

    def _current_row(self, conn, project_id: int) -> tuple[int, str]:
        row = conn.execute(
            "SELECT v.id, v.plan_json FROM projects p JOIN versions v ON v.id = p.current_version WHERE p.id = ?", (project_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"project {project_id} does not exist")
        return row

    def _move(self, project_id: int, target_sql: str, base_version: int | None, undo: bool) -> VersionMove | None:
        with self._write() as conn:
            current, _ = self._current_row(conn, project_id)
            if base_version is not None and base_version != current:
                raise StaleVersionError(project_id, base_version, current)
            row = conn.execute(target_sql, (project_id, current)).fetchone()
            if row is None or row[0] is None:
                return None
            target = row[0]
            conn.execute("UPDATE projects SET current_version = ?, updated = ? WHERE id = ?", (target, time.time(), project_id))
            plan_json, target_note = conn.execute("SELECT plan_json, note FROM versions WHERE id = ?", (target,)).fetchone()
            note = conn.execute("SELECT note FROM versions WHERE id = ?", (current,)).fetchone()[0] if undo else target_note
        return VersionMove(target, parse_plan(plan_json), note)

    def undo(self, project_id: int, *, base_version: int | None = None) -> VersionMove | None:
        """Step back to the parent version; None when there is none. ``note`` says what was undone.

        Raises:
            StaleVersionError: ``base_version`` is given and is not the current version.
        """
        return self._move(project_id, "SELECT parent FROM versions WHERE project_id = ? AND id = ?", base_version, undo=True)

    def redo(self, project_id: int, *, base_version: int | None = None) -> VersionMove | None:
        """Step forward to the newest child version; None when there is none. ``note`` says what was redone.

        Raises:
            StaleVersionError: ``base_version`` is given and is not the current version.
        """
        return self._move(project_id, "SELECT MAX(id) FROM versions WHERE project_id = ? AND parent = ?", base_version, undo=False)

    def history(self, project_id: int) -> tuple[bool, bool]:
        """(can undo, can redo)."""
        with self._connect() as conn:
            current, _ = self._current_row(conn, project_id)
            parent = conn.execute("SELECT parent FROM versions WHERE id = ?", (current,)).fetchone()[0]
            child = conn.execute("SELECT 1 FROM versions WHERE project_id = ? AND parent = ? LIMIT 1", (project_id, current)).fetchone()
        return parent is not None, child is not None

    def list_projects(self) -> list[ProjectInfo]:
        """All projects, most recently updated first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT p.id, p.name, p.updated, COUNT(v.id) FROM projects p LEFT JOIN versions v ON v.project_id = p.id "
                "GROUP BY p.id ORDER BY p.updated DESC, p.id DESC"
            ).fetchall()
        return [ProjectInfo(*row) for row in rows]
