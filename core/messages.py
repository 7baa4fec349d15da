"""One-line, bounded error messages: what a person sees on stderr, in the studio or in a manifest.

Every user-facing error in Director Studio is one line of at most :data:`MAX_MESSAGE_CHARS`
characters. Values from the user's input (a prompt, a dictionary key, an LLM's answer) are quoted
with :func:`short_repr`, which escapes control characters and elides long values, so that a key
holding ``"\\nerror: fake"`` or an ANSI escape cannot forge a second line or recolour a terminal,
and a 50 MB prompt costs one short line.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 300
MAX_VALUE_CHARS = 40


def escape_control(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1, line and paragraph separators) written as
    a Python escape (``\\n``, ``\\x1b``, ``\\u2028``); printable characters, non-ASCII letters
    included, are kept as they are."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def short_repr(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """A value quoted for an error message: ``repr``-like, control characters escaped, and elided
    past ``limit`` characters as ``'xxxx...' (5000 chars)`` (or ``[...] (1000 items)`` for a list).

    Args:
        value: any value; strings are quoted, other objects shown through ``repr``.
        limit: the most characters kept of the value itself (>= 8).
    """
    if isinstance(value, str):
        shown = escape_control(value)
        if len(shown) <= limit:
            return repr(value) if value.isprintable() else f"'{shown}'"
        return f"'{shown[: limit - 3]}...' ({len(value)} chars)"
    if isinstance(value, (list, tuple, dict)) and len(value) > 8:
        shown = escape_control(repr(value))
        unit = "keys" if isinstance(value, dict) else "items"
        return f"{shown[: limit - 3]}... ({len(value)} {unit})" if len(shown) > limit else shown
    shown = escape_control(repr(value))
    return shown if len(shown) <= limit else f"{shown[: limit - 3]}... ({len(shown)} chars)"


def one_line(message: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` as one line of at most ``limit`` characters: control characters escaped (so a
    newline in a value cannot start a second line), the end elided with ``...`` when too long."""
    text = escape_control(str(message))
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."
