"""A user's projects in the studio: plan versions, edits and renders, kept on disk.

- :mod:`core.project.store`: projects and plan versions in SQLite (undo, redo, version checks);
- :mod:`core.project.editing`: edits as pure functions (plan in, validated plan out);
- :mod:`core.project.renders`: finished renders and the scene cache on disk;
- :mod:`core.project.workspace`: the studio's single entry point into the core.
"""
