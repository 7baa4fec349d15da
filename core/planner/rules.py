"""The offline planner: spaCy's English parser plus word lists turn a prompt into a video plan.

No LLM. It stands in for VideoDirectorGPT's planning steps and Dysen-VDM's action planning:

1. Scenes: sentences that start with a scene word ("in the first scene", "in the next scene",
   "later") open a new scene; otherwise the prompt is one scene. (:mod:`core.planner.parse`)
2. Clauses and time: each sentence is cut into clauses at temporal connectives (then, after, before,
   while, finally, at the same time) and at verb chains ("takes a mat and walks out"). Sequential
   clauses get consecutive time slots of the scene; concurrent ones (while, at the same time, a
   participle such as "drinking coffee") share their slot. "X after Y" puts Y first.
   (:mod:`core.planner.parse` cuts, :class:`core.planner.layout.Timeline` assigns the slots)
3. Entities: noun phrases with their colour, size and count ("two red squares" is two entities);
   pronouns and "the same X" refer back, so one entity keeps one id across scenes.
   (:mod:`core.planner.parse` finds the phrases, this module resolves them to entities)
4. Layout: position words (left, right, top, bottom, center, above, below, next to, between) place
   the first keyframe; motion words (directions, toward, fall, rise, roll, slide, fly, drift,
   jump, grow, shrink, appear, disappear, turn <colour>) move the box during the clause's slot.
   (:mod:`core.planner.layout`)

This module holds the builder that runs the steps scene by scene and assembles the VideoPlan.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.plan import MAX_ENTITIES_PER_SCENE, MAX_FRAMES, MIN_FRAMES, Entity, Event, PlanValidationError, Scene, VideoPlan, check_prompt, parse_plan
from core.planner import lexicon as lx
from core.planner.layout import SceneLayout, Timeline, default_size
from core.planner.parse import Clause, Mention, load_parser, parse_scene, places_per_subject, predicate_of, split_scenes

__all__ = ["DEFAULT_FRAMES", "load_parser", "plan_with_rules"]

DEFAULT_FRAMES = 16


@dataclass
class _Roles:
    """The entity ids a clause's subjects (agents) and objects (per preposition) resolve to."""

    agents: list[str]
    objects: list[tuple[str | None, list[str]]]


class _Builder:
    """Turns parsed scenes into a VideoPlan's entities and scenes; entities persist across scenes."""

    def __init__(self, prompt: str, num_frames: int):
        self.prompt = prompt
        self.num_frames = num_frames
        self.entities: list[Entity] = []
        self.last_subjects: list[str] = []

    # Entities ---------------------------------------------------------------------------------

    def _find(self, mention: Mention, scene_ids: list[str]) -> str | None:
        """An existing entity this mention refers to (the same / definite / same name)."""
        candidates = [
            e
            for e in self.entities
            if e.attributes.get("_head") == mention.head
            and (mention.color is None or e.color in (None, mention.color) or e.attributes.get("_first_color") == mention.color)
        ]
        if not candidates:
            return None
        if mention.same or mention.definite:
            in_scene = [e for e in candidates if e.id in scene_ids]
            return (in_scene or candidates)[-1].id
        return None

    def _resolve(self, mention: Mention, scene_ids: list[str]) -> list[str]:
        """The entity ids a mention names: an existing entity it refers back to, or ``count`` new ones."""
        existing = self._find(mention, scene_ids)
        if existing and mention.count == 1:
            return [existing]
        ids = []
        for _ in range(mention.count):
            entity_id = f"e{len(self.entities) + 1}"
            kind = lx.KIND_SYNONYMS.get(mention.head, mention.head)
            attributes = dict(mention.attributes)
            if mention.color:
                attributes["color"] = mention.color
            attributes["_head"] = mention.head
            if mention.color:
                attributes["_first_color"] = mention.color
            self.entities.append(Entity(id=entity_id, name=mention.name, kind=kind, attributes=attributes))
            ids.append(entity_id)
        return ids

    def _referents(self, index: int, clause: Clause, scene_ids: list[str]) -> list[str]:
        """The agents of a clause without a subject phrase ("it falls", "then rises").

        The latest subjects, the first two of them (in the first scene only those already in it,
        falling back to all of them); "they" with no latest subjects is the scene's last two entities.
        """
        agents = [a for a in self.last_subjects if a in scene_ids or index > 0][:2] or list(self.last_subjects)
        if clause.pronoun_subject in ("they", "them") and len(scene_ids) > 1 and not agents:
            agents = scene_ids[-2:]
        return agents

    def _size(self, entity_id: str) -> tuple[float, float]:
        entity = next(e for e in self.entities if e.id == entity_id)
        return default_size(entity.attributes.get("_head", entity.kind), entity.attributes)

    # Scenes -----------------------------------------------------------------------------------

    def build_scene(self, index: int, sentences) -> Scene:
        """The scene ``s{index + 1}`` from its sentences (spaCy spans): entities, keyframes, events.

        Raises:
            pydantic.ValidationError: a scene the schema refuses (``num_frames`` outside its range).
        """
        clauses = parse_scene(sentences)
        timeline = Timeline.of_clauses(clauses, self.num_frames)
        roles, scene_ids, first_slot = self._cast(index, clauses, timeline.slots)
        layout = SceneLayout([(eid, self._size(eid)) for eid in scene_ids], self.num_frames)
        self._place(layout, clauses, roles, scene_ids)
        events, frames = self._act(layout, clauses, roles, timeline)
        for eid, track in layout.tracks.items():
            if first_slot.get(eid, 0) > 0 and track.never_hidden():
                track.enter_at(timeline.frames(first_slot[eid])[0])  # introduced in a later slot
            frames |= set(track.waypoints)
        f = self.num_frames
        background = next((c.background for c in clauses if c.background), None)
        return Scene(
            id=f"s{index + 1}",
            description=" ".join(s.text.strip() for s in sentences),
            background=background or "plain",
            num_frames=f,
            keyframes=layout.keyframes(sorted(k for k in frames | {0, f - 1} if 0 <= k < f)),
            events=events,
        )

    def _cast(self, index: int, clauses: list[Clause], slots: list[int]) -> tuple[list[_Roles], list[str], dict[str, int]]:
        """Resolve each clause's mentions to entities.

        Returns:
            The roles per clause, the scene's entity ids in order of appearance (at most
            ``MAX_ENTITIES_PER_SCENE``), and the slot where each entity first appears.
        """
        scene_ids: list[str] = []
        first_slot: dict[str, int] = {}
        roles: list[_Roles] = []
        for clause, slot in zip(clauses, slots):
            agents: list[str] = []
            for m in clause.subjects:
                agents += self._resolve(m, scene_ids)
            if not agents and (clause.pronoun_subject or clause.verb):
                agents = self._referents(index, clause, scene_ids)
            objects = [(prep, self._resolve(m, scene_ids)) for prep, m in clause.objects]
            for eid in agents + [i for _, ids in objects for i in ids]:
                if eid not in scene_ids:
                    scene_ids.append(eid)
                    first_slot[eid] = slot
            if agents:
                self.last_subjects = agents
            roles.append(_Roles(agents, objects))
        return roles, scene_ids[:MAX_ENTITIES_PER_SCENE], first_slot

    @staticmethod
    def _place(layout: SceneLayout, clauses: list[Clause], roles: list[_Roles], scene_ids: list[str]) -> None:
        """Static placement: place words ("on the left") and relations ("above X") move each clause's
        agents before any motion."""
        for clause, role in zip(clauses, roles):
            agents = [a for a in role.agents if a in layout.tracks]
            if clause.place and agents and not clause.source:
                # "a white ring on the left and an orange diamond on the right": place each subject by
                # the place word that follows it.
                per_subject = places_per_subject(clause)
                for eid, place in zip(agents, per_subject or [clause.place] * len(agents)):
                    layout.tracks[eid].place(place)
                layout.spread(agents, [])  # "two red balls on the left": side by side there
            if clause.relation and agents:
                relation, targets = clause.relation
                if targets == ["them"]:
                    target_ids = [e for e in scene_ids if e not in agents][:2]
                else:
                    target_ids = [i for _prep, ids in role.objects for i in ids if i in layout.tracks]
                target_ids = [t for t in target_ids if t not in agents]
                if target_ids and relation not in ("onto",):
                    layout.relate(agents, relation, target_ids)

    @staticmethod
    def _act(layout: SceneLayout, clauses: list[Clause], roles: list[_Roles], timeline: Timeline) -> tuple[list[Event], set[int]]:
        """Motion and events: move each clause's agents over its slot and record one event per agent.

        Returns:
            The events, and the slots' first and last frames (frames that need a keyframe).
        """
        events: list[Event] = []
        frames: set[int] = set()
        for clause, role, slot in zip(clauses, roles, timeline.slots):
            start, end = timeline.frames(slot)
            frames |= {start, end}
            agents = [a for a in role.agents if a in layout.tracks]
            target_ids = [i for _p, ids in role.objects for i in ids if i in layout.tracks and i not in agents]
            for eid in agents:
                layout.move(eid, clause, start, end, agents=agents, target_ids=target_ids)
            layout.spread(agents, [start, end])  # "two red balls roll right": side by side, not one box
            if clause.verb and agents:
                target = _event_target(clause, target_ids)
                predicate = predicate_of(clause)
                at = start if not clause.color_target else (start + end) // 2  # a colour changes mid-slot
                events += [Event(agent=eid, predicate=predicate, target=target, start=at, end=end) for eid in agents]
        return events, frames


def _event_target(clause: Clause, target_ids: list[str]) -> str | None:
    """An event's target: the new colour, the first target entity, an object's name, or the background
    for a verb that is not static."""
    if clause.color_target:
        return clause.color_target
    if target_ids:
        return target_ids[0]
    obj = next((m for p, m in clause.objects), None)
    return obj.name if obj else (clause.background if clause.verb not in lx.STATIC_VERBS else None)


def plan_with_rules(prompt: str, *, num_frames: int = DEFAULT_FRAMES, fps: int = 8) -> VideoPlan:
    """Plan a prompt offline (steps 1-4 of this module's docstring).

    Args:
        prompt: 1-2000 characters of English (core.plan.MAX_PROMPT_CHARS).
        num_frames: frames per scene (8-64).
        fps: frames per second of the video.

    Returns:
        A validated VideoPlan: at most ``core.plan.MAX_SCENES`` scenes (one per scene word, scenes
        without entities dropped), entities that keep their id across scenes.

    Raises:
        PlanValidationError: the prompt is empty or too long, ``num_frames`` is outside 8-64, no
            entity could be found, or ``fps`` is out of range.
    """
    check_prompt(prompt)
    if not MIN_FRAMES <= num_frames <= MAX_FRAMES:
        raise PlanValidationError([f"num_frames: must be in [{MIN_FRAMES}, {MAX_FRAMES}] (got {num_frames})"])
    nlp = load_parser()
    builder = _Builder(prompt.strip(), num_frames)
    scenes = []
    for index, sentences in enumerate(split_scenes(prompt.strip(), nlp)):
        scenes.append(builder.build_scene(index, sentences))
    scenes = [s for s in scenes if s.entity_ids()]
    if not scenes:
        raise PlanValidationError(["entities: no entity found in the prompt; name at least one thing to show"])
    used = {eid for s in scenes for eid in s.entity_ids()} | {e.agent for s in scenes for e in s.events}
    entities = [
        Entity(id=e.id, name=e.name, kind=e.kind, attributes={k: v for k, v in e.attributes.items() if not k.startswith("_")})
        for e in builder.entities
        if e.id in used
    ]
    data = {
        "prompt": prompt.strip(),
        "fps": fps,
        "entities": [e.model_dump() for e in entities],
        "scenes": [s.model_dump() for s in scenes],
    }
    known = {e.id for e in entities}
    for scene in data["scenes"]:
        scene["events"] = [ev for ev in scene["events"] if ev["agent"] in known]
    return parse_plan(data)
