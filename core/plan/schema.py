"""The video plan: the contract between planners, the studio and the renderer (pydantic v2, JSON on disk).

A plan follows VideoDirectorGPT (arXiv 2309.15091): scenes with a description and a background,
entities whose ids are consistency groups across scenes, and keyframe boxes per scene that are
interpolated linearly in between. Each scene's ``events`` are Dysen-VDM's action plan
(arXiv 2308.13812, step I): (agent, predicate, target, (start, end)) with times in frames.

Boxes are xyxy normalised to [0, 1], origin top left. An entity missing from a keyframe's ``boxes``
is off screen there.

This module holds the schema, its limits and its one-line validation messages; :mod:`core.plan.io`
reads and writes plans, :mod:`core.plan.interpolation` fills in the frames between keyframes.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.messages import MAX_MESSAGE_CHARS, escape_control, one_line, short_repr

SCHEMA_VERSION = 1


# Limits of a plan, enforced before any work (README, "Plan format").
MAX_PLAN_BYTES = 1_000_000


MAX_SCENES = 8


MIN_FRAMES, MAX_FRAMES = 8, 64


MAX_ENTITIES = 64


MAX_ENTITIES_PER_SCENE = 8


MAX_PROMPT_CHARS = 2000


MAX_ATTRIBUTES = 16


MAX_ATTRIBUTE_CHARS = 64


MAX_EVENTS_PER_SCENE = 32


MAX_ENRICHMENT_PER_SCENE = 64


MAX_WORD_CHARS = 80


ID_PATTERN = r"^[A-Za-z0-9_\-]{1,32}$"


class PlanValidationError(ValueError):
    """A plan failed validation. ``errors`` holds one line per problem, each naming its field path;
    every line has control characters escaped and at most 300 characters (core.messages)."""

    def __init__(self, errors: list[str]):
        self.errors = [one_line(e) for e in errors] or ["plan: invalid"]
        first = self.errors[0]
        if len(self.errors) > 1:
            more = f" (and {len(self.errors) - 1} more)"
            first = one_line(first, MAX_MESSAGE_CHARS - len(more)) + more
        super().__init__(first)


def check_prompt(prompt: str | None) -> str:
    """Check a prompt before planning it: 1-:data:`MAX_PROMPT_CHARS` characters, not all blank.

    Returns:
        The prompt with surrounding whitespace removed.

    Raises:
        PlanValidationError: ``prompt: ...`` naming the allowed length.
    """
    if not prompt or len(prompt) > MAX_PROMPT_CHARS:
        raise PlanValidationError([f"prompt: must have 1-{MAX_PROMPT_CHARS} characters (got {len(prompt or '')})"])
    if not prompt.strip():
        raise PlanValidationError(["prompt: must not be blank"])
    return prompt.strip()


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text


def _text(max_length: int, *, min_length: int = 1):
    """A required text field of 1..max_length characters that is not only whitespace."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length), AfterValidator(_not_blank)]


AttributeText = Annotated[str, Field(min_length=1, max_length=MAX_ATTRIBUTE_CHARS)]


def _check_box(box: list[float]) -> list[float]:
    if len(box) != 4:
        raise ValueError(f"a box must have 4 numbers [x0, y0, x1, y1] (got {len(box)})")
    x0, y0, x1, y1 = box
    for name, value in zip(("x0", "y0", "x1", "y1"), box):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1] (got {value:g})")
    if not x0 < x1:
        raise ValueError(f"x0 must be < x1 (got {x0:g} >= {x1:g})")
    if not y0 < y1:
        raise ValueError(f"y0 must be < y1 (got {y0:g} >= {y1:g})")
    return [float(v) for v in box]


Box = Annotated[list[float], AfterValidator(_check_box)]


class Entity(BaseModel):
    """A thing in the video. Its ``id`` is its consistency group: one id, one appearance, in every scene."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    name: _text(80)
    kind: _text(40)
    attributes: dict[AttributeText, AttributeText] = Field(default_factory=dict, max_length=MAX_ATTRIBUTES)

    @property
    def color(self) -> str | None:
        return self.attributes.get("color")


class Keyframe(BaseModel):
    """Boxes of the entities on screen at one frame of a scene."""

    model_config = ConfigDict(extra="forbid")
    frame: int = Field(ge=0)
    boxes: dict[str, Box] = Field(default_factory=dict)


class Event(BaseModel):
    """One timed action triplet (Dysen-VDM step I): ``agent predicate target`` over frames [start, end].

    A colour change is ``predicate="turns"`` with the new colour as ``target``.
    """

    model_config = ConfigDict(extra="forbid")
    agent: str = Field(pattern=ID_PATTERN)
    predicate: _text(60)
    target: str | None = Field(default=None, max_length=MAX_WORD_CHARS)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class Triplet(BaseModel):
    """An enrichment triplet from scene imagination (Dysen-VDM step III), valid over frames [start, end]."""

    model_config = ConfigDict(extra="forbid")
    subject: _text(MAX_WORD_CHARS)
    predicate: _text(MAX_WORD_CHARS)
    object: _text(MAX_WORD_CHARS)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class Scene(BaseModel):
    """One scene: rendered on its own, then concatenated."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    description: _text(MAX_PROMPT_CHARS)
    background: _text(80)
    num_frames: int = Field(ge=MIN_FRAMES, le=MAX_FRAMES)
    keyframes: list[Keyframe] = Field(max_length=MAX_FRAMES)
    events: list[Event] = Field(default_factory=list, max_length=MAX_EVENTS_PER_SCENE)
    enrichment: list[Triplet] = Field(default_factory=list, max_length=MAX_ENRICHMENT_PER_SCENE)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)

    @field_validator("keyframes")
    @classmethod
    def _sorted_keyframes(cls, keyframes: list[Keyframe]) -> list[Keyframe]:
        frames = [k.frame for k in keyframes]
        if len(set(frames)) != len(frames):
            raise ValueError(f"keyframe frames must be unique (repeated: {_repeated(frames)})")
        return sorted(keyframes, key=lambda k: k.frame)

    @model_validator(mode="after")
    def _check_times(self) -> "Scene":
        last = self.num_frames - 1
        frames = [k.frame for k in self.keyframes]
        if not frames or frames[0] != 0 or frames[-1] != last:
            raise ValueError(f"keyframes: must include frame 0 and frame {last} (num_frames - 1) (got {short_repr(frames)})")
        for i, event in enumerate(self.events):
            if not event.start <= event.end <= last:
                raise ValueError(f"events[{i}]: start <= end <= {last} required (got {event.start}..{event.end})")
        for i, triplet in enumerate(self.enrichment):
            if not triplet.start <= triplet.end <= last:
                raise ValueError(f"enrichment[{i}]: start <= end <= {last} required (got {triplet.start}..{triplet.end})")
        return self

    def entity_ids(self) -> list[str]:
        """Ids of entities with a box in any keyframe, in order of first appearance."""
        seen: dict[str, None] = {}
        for keyframe in self.keyframes:
            for entity_id in keyframe.boxes:
                seen.setdefault(entity_id)
        return list(seen)


class VideoPlan(BaseModel):
    """A whole video: prompt, fps, entities and 1-8 scenes."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = SCHEMA_VERSION
    prompt: _text(MAX_PROMPT_CHARS)
    fps: int = Field(default=8, ge=1, le=60)
    entities: list[Entity] = Field(min_length=1, max_length=MAX_ENTITIES)
    scenes: list[Scene] = Field(min_length=1, max_length=MAX_SCENES)

    @model_validator(mode="after")
    def _check_references(self) -> "VideoPlan":
        ids = [e.id for e in self.entities]
        if len(set(ids)) != len(ids):
            raise ValueError(f"entities: ids must be unique (repeated: {_repeated(ids)})")
        known = set(ids)
        scene_ids = [s.id for s in self.scenes]
        if len(set(scene_ids)) != len(scene_ids):
            raise ValueError(f"scenes: ids must be unique (repeated: {_repeated(scene_ids)})")
        allowed = short_repr(", ".join(ids), 80)[1:-1] if len(ids) <= 8 else f"{', '.join(ids[:8])}, ... ({len(ids)} ids)"
        for s, scene in enumerate(self.scenes):
            for k, keyframe in enumerate(scene.keyframes):
                for entity_id in keyframe.boxes:
                    if entity_id not in known:
                        raise ValueError(f"scenes[{s}].keyframes[{k}].boxes.{_key(entity_id)}: unknown entity id (allowed: {allowed})")
            for i, event in enumerate(scene.events):
                if event.agent not in known:
                    raise ValueError(f"scenes[{s}].events[{i}].agent: unknown entity id {short_repr(event.agent)} (allowed: {allowed})")
            count = len(scene.entity_ids())
            if not 1 <= count <= MAX_ENTITIES_PER_SCENE:
                raise ValueError(f"scenes[{s}]: must have 1-{MAX_ENTITIES_PER_SCENE} entities with boxes (got {count})")
        return self

    def entity(self, entity_id: str) -> Entity:
        """The entity with this id. Raises KeyError if none."""
        for entity in self.entities:
            if entity.id == entity_id:
                return entity
        raise KeyError(entity_id)


def _repeated(values: list) -> str:
    seen, repeated = set(), []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return ", ".join(_key(str(v)) for v in repeated[:5]) + (f", ... ({len(repeated)} values)" if len(repeated) > 5 else "")


def _key(key: str) -> str:
    """A dictionary key or id as part of a field path: control characters escaped, long keys elided."""
    return escape_control(key) if len(key) <= 32 else short_repr(key, 32)


def _format_loc(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + _key(str(part))
    return path


_RANGE_MESSAGES = {
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le}",
    "string_too_short": "must have at least {min_length} character(s)",
    "string_too_long": "must have at most {max_length} characters",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} items",
    "string_pattern_mismatch": "must match {pattern}",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
}


def _shown_input(item: dict) -> str:
    value = item.get("input")
    if item["type"] in ("too_long", "too_short") and hasattr(value, "__len__"):
        return f"{len(value)}"
    return short_repr(value)


def format_validation_error(error: ValidationError) -> list[str]:
    """One line per pydantic error: ``<field path>: <message>``."""
    lines = []
    for item in error.errors():
        message = re.sub(r"^(Value error|Assertion failed), ", "", item["msg"])
        if item["type"] in _RANGE_MESSAGES:
            message = _RANGE_MESSAGES[item["type"]].format(**item.get("ctx", {})) + f" (got {_shown_input(item)})"
        elif item["type"] in ("json_invalid", "json_type"):
            message = f"invalid JSON: {item.get('ctx', {}).get('error', item['msg'])}"
        parts = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        if "[key]" in parts:  # a dictionary key is invalid: name the dictionary, not the (maybe huge) key
            parts = parts[: parts.index("[key]") - 1]
            message = f"key {message}"
        loc = _format_loc(parts)
        if not loc:
            lines.append(message)
        elif re.match(r"^[\w\[\].\-]+: ", message):  # a validator's own relative path
            lines.append(f"{loc}.{message}")
        else:
            lines.append(f"{loc}: {message}")
    return lines
