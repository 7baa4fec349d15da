"""What a model can draw, and where a plan asks for something else.

A closed-world model (the shipped toy models: a ``model_index.json`` that lists the ``backgrounds`` it
was trained on) knows the toy world's eight kinds, eight colours and six backgrounds
(:mod:`core.toyworld.world`); anything else in a plan is drawn as the nearest thing it knows, so the
studio and the command line flag it at its field, with the list of what the model knows. An
open-domain backbone knows no fixed list, so nothing is flagged there.

A scene's ``background`` field is what renders (:func:`core.render.scene_prompt` makes the
description agree with it); a description that names another background gets a warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from core.messages import short_repr
from core.plan import VideoPlan


@dataclass(frozen=True)
class Vocabulary:
    """The kinds, colours and backgrounds a model knows; None for a field it does not restrict."""

    kinds: tuple[str, ...] | None = None
    colors: tuple[str, ...] | None = None
    backgrounds: tuple[str, ...] | None = None


def model_vocabulary(config: Mapping | object) -> Vocabulary:
    """The vocabulary of a model from its pipeline ``config`` or ``model_index.json`` dict: the toy
    world's for a closed-world model (one whose config lists ``backgrounds``), else unrestricted."""
    from core.toyworld.world import COLORS, KINDS

    backgrounds = config.get("backgrounds") if isinstance(config, Mapping) else getattr(config, "backgrounds", None)
    if not backgrounds:
        return Vocabulary()
    return Vocabulary(kinds=KINDS, colors=tuple(COLORS), backgrounds=tuple(backgrounds))


def conflicting_backgrounds(description: str, background: str, known: tuple[str, ...]) -> list[str]:
    """The known backgrounds a scene description names when it does not name the scene's own
    ``background`` (``"a ball on the desert"`` with background ``ocean``: ``["desert"]``). A
    description that names its own background too (``"falls from the sky into the ocean"``) has
    none: other backgrounds there are directions, not the setting."""
    named = sorted(set(re.findall(r"[a-z]+", description.lower())) & set(known))
    return [] if background.lower() in named else named


def agree_with_background(description: str, background: str, known: tuple[str, ...]) -> str:
    """``description`` with the backgrounds of :func:`conflicting_backgrounds` replaced by
    ``background``, and a compound that qualifies the field with another background ("the night
    sky" with background ``night``) cut to the field's own word ("the night"), so that the text a
    closed-world model reads names one background, the plan's field."""
    for other in conflicting_backgrounds(description, background, known):
        description = re.sub(rf"\b{other}\b", background, description, flags=re.IGNORECASE)
    others = "|".join(re.escape(k) for k in known if k.lower() != background.lower())
    if others:
        description = re.sub(rf"\b({re.escape(background)})\s+(?:{others})\b", r"\1", description, flags=re.IGNORECASE)
    return description


def plan_warnings(plan: VideoPlan, vocabulary: Vocabulary) -> list[str]:
    """One line per field the model cannot draw as written, naming the field and what it knows.

    Returns:
        e.g. ``["entities[0].kind: 'dragon' is not a kind this model knows (ball, square, ...)",
        "scenes[0].description: names 'desert' but the background is 'ocean' (the background renders)"]``;
        empty when everything is known.
    """
    warnings = []
    for i, entity in enumerate(plan.entities):
        if vocabulary.kinds is not None and entity.kind.lower() not in vocabulary.kinds:
            warnings.append(f"entities[{i}].kind: {short_repr(entity.kind)} is not a kind this model knows ({', '.join(vocabulary.kinds)})")
        color = entity.color
        if vocabulary.colors is not None and color is not None and color.lower() not in vocabulary.colors:
            warnings.append(f"entities[{i}].attributes.color: {short_repr(color)} is not a colour this model knows ({', '.join(vocabulary.colors)})")
    for s, scene in enumerate(plan.scenes):
        if vocabulary.backgrounds is None:
            continue
        if scene.background.lower() not in vocabulary.backgrounds:
            known = ", ".join(vocabulary.backgrounds)
            warnings.append(f"scenes[{s}].background: {short_repr(scene.background)} is not a background this model knows ({known})")
            continue
        others = conflicting_backgrounds(scene.description, scene.background, vocabulary.backgrounds)
        if others:
            warnings.append(f"scenes[{s}].description: names {others[0]!r} but the background is {scene.background!r} (the background renders)")
    return warnings
