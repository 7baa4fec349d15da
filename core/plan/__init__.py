"""The video plan (VideoDirectorGPT's plan, Dysen-VDM's timed actions): the contract between the
planners, the studio and the renderer.

- :mod:`core.plan.schema`: the pydantic models (:class:`VideoPlan`, :class:`Scene`, :class:`Entity`,
  ...), their limits and one-line validation messages;
- :mod:`core.plan.io`: JSON text and files (:func:`parse_plan`, :func:`load_plan`, :func:`save_plan`);
- :mod:`core.plan.interpolation`: boxes between keyframes (:func:`interpolate_boxes`).

The names below are the package's public API, so that ``from core.plan import VideoPlan`` works.
"""

from core.plan.interpolation import interpolate_boxes
from core.plan.io import load_plan, parse_plan, save_plan
from core.plan.schema import (
    ID_PATTERN,
    MAX_ATTRIBUTE_CHARS,
    MAX_ATTRIBUTES,
    MAX_ENRICHMENT_PER_SCENE,
    MAX_ENTITIES,
    MAX_ENTITIES_PER_SCENE,
    MAX_EVENTS_PER_SCENE,
    MAX_FRAMES,
    MAX_PLAN_BYTES,
    MAX_PROMPT_CHARS,
    MAX_SCENES,
    MAX_WORD_CHARS,
    MIN_FRAMES,
    SCHEMA_VERSION,
    Box,
    Entity,
    Event,
    Keyframe,
    PlanValidationError,
    Scene,
    Triplet,
    VideoPlan,
    check_prompt,
    format_validation_error,
)

__all__ = [
    "ID_PATTERN", "MAX_ATTRIBUTE_CHARS", "MAX_ATTRIBUTES", "MAX_ENRICHMENT_PER_SCENE", "MAX_ENTITIES", "MAX_ENTITIES_PER_SCENE",
    "MAX_EVENTS_PER_SCENE", "MAX_FRAMES", "MAX_PLAN_BYTES", "MAX_PROMPT_CHARS", "MAX_SCENES", "MAX_WORD_CHARS", "MIN_FRAMES",
    "SCHEMA_VERSION", "Box", "Entity", "Event", "Keyframe", "PlanValidationError", "Scene", "Triplet", "VideoPlan",
    "check_prompt", "format_validation_error", "interpolate_boxes", "load_plan", "parse_plan", "save_plan",
]
