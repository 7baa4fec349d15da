"""The LLM planner: VideoDirectorGPT's video planning and Dysen-VDM's action planning and imagination.

Works with any OpenAI-compatible chat endpoint through the openai SDK (OpenAI, Ollama, vLLM,
llama.cpp servers): ``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` and a model name.

Steps, each one LLM call with in-context demonstrations and a JSON schema from a pydantic model:

1. Scenes (VideoDirectorGPT step 1): entities with attributes, one description and background per
   scene, and which entities appear in each scene (an id shared across scenes is a consistency group).
2. Layout (VideoDirectorGPT step 2), per scene: a few keyframes of xyxy boxes in [0, 1]; frames in
   between are interpolated linearly, as in LVD.
3. Actions (Dysen step I), per scene: timed (agent, predicate, target, start, end) triplets.
4. Imagination (Dysen step III), per scene: a sliding window over the scene graphs at the event
   boundaries, (previous enriched, current, next) -> extra attribute and relation triplets for the
   current window; then one global polish pass over the whole scene.

Every answer is parsed into its pydantic model and checked against the plan so far; an answer that
fails is sent back once with the validation error, then :class:`PlanError` is raised. Every failure
of the endpoint (refused, silent past ``timeout``, a body that is not a chat completion, an empty
choice list, an answer over :data:`MAX_ANSWER_CHARS`) is one :class:`PlanError` line as well.

Answers of plans that validated are cached on disk under a hash of the request (model, endpoint,
messages, schema), so replanning the same prompt is free; answers of a plan that failed are never
cached. The cache is capped (:data:`DEFAULT_CACHE_BYTES`) with least-recently-used eviction.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.messages import escape_control, one_line, short_repr
from core.outputs import atomic_write_bytes, evict_least_recently_used
from core.plan import Box, Entity, Event, PlanValidationError, Triplet, VideoPlan, check_prompt, format_validation_error, parse_plan
from core.planner import PlanError
from core.scene_graph import build_scene_graphs, triplets

DEFAULT_TIMEOUT_S = 60.0
TIMEOUT_RANGE_S = (1.0, 600.0)
DEFAULT_RETRIES = 1
MAX_RETRIES = 5
DEFAULT_CACHE_BYTES = 50_000_000
MAX_ANSWER_CHARS = 100_000

T = TypeVar("T", bound=BaseModel)


def default_cache_dir() -> Path:
    """Where LLM answers are cached: ``$DIRECTOR_STUDIO_CACHE/llm``, else
    ``$XDG_CACHE_HOME/director-studio/llm``, else ``~/.cache/director-studio/llm``."""
    if os.environ.get("DIRECTOR_STUDIO_CACHE"):
        return Path(os.environ["DIRECTOR_STUDIO_CACHE"]) / "llm"
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "director-studio" / "llm"


def check_llm_options(timeout: float, retries: int) -> None:
    """Range-check the LLM wait options.

    Raises:
        PlanError: ``llm_timeout`` outside 1-600 seconds or ``llm_retries`` outside 0-5.
    """
    low, high = TIMEOUT_RANGE_S
    if not low <= timeout <= high:
        raise PlanError(f"llm_timeout: must be in [{low:g}, {high:g}] seconds (got {timeout:g})")
    if not 0 <= retries <= MAX_RETRIES:
        raise PlanError(f"llm_retries: must be in [0, {MAX_RETRIES}] (got {retries})")


class AnswerCache:
    """LLM answers on disk, one JSON file per request hash, at most ``max_bytes`` in all.

    Reading an answer marks it as recently used (its modification time); writing one evicts the least
    recently used files until the folder fits. Files are written atomically.

    Args:
        folder: the cache folder (created on the first write).
        max_bytes: size cap of the folder's answer files (>= 0; 0 keeps nothing).
    """

    def __init__(self, folder: str | Path, *, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The cached answer for ``key``, or None (also for an unreadable or corrupt file)."""
        path = self._path(key)
        try:
            content = json.loads(path.read_bytes())["content"]
            os.utime(path)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return content if isinstance(content, str) else None

    def put(self, key: str, request: dict, content: str) -> None:
        """Store an answer, then evict least recently used answers past ``max_bytes``."""
        atomic_write_bytes(self._path(key), json.dumps({"request": request, "content": content}).encode())
        self.evict()

    def evict(self) -> None:
        """Delete the least recently used answer files until the folder holds at most ``max_bytes``."""
        evict_least_recently_used(self.folder, "*.json", self.max_bytes)


# ------------------------------------------------------------------------------------------------
# Answer schemas (what each step asks the LLM for)
# ------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SceneSketch(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,32}$")
    description: str = Field(min_length=1, max_length=400)
    background: str = Field(min_length=1, max_length=80)
    entity_ids: list[str] = Field(min_length=1, max_length=8)


class ScenesAnswer(_Strict):
    """Step 1: entities and scenes."""

    entities: list[Entity] = Field(min_length=1, max_length=16)
    scenes: list[SceneSketch] = Field(min_length=1, max_length=8)


class KeyframeAnswer(_Strict):
    frame: int = Field(ge=0)
    boxes: dict[str, Box]


class LayoutAnswer(_Strict):
    """Step 2: a few keyframes of one scene."""

    keyframes: list[KeyframeAnswer] = Field(min_length=2, max_length=8)


class ActionsAnswer(_Strict):
    """Dysen step I: timed action triplets of one scene."""

    events: list[Event] = Field(max_length=12)


TripletWords = Annotated[list[Annotated[str, Field(min_length=1, max_length=60)]], Field(min_length=3, max_length=3)]


class ImaginationAnswer(_Strict):
    """Dysen step III: extra triplets for the current window (attributes as ``has <attribute>``)."""

    triplets: list[TripletWords] = Field(max_length=12)


# ------------------------------------------------------------------------------------------------
# Demonstrations
# ------------------------------------------------------------------------------------------------

DEMO_PROMPT = "A red ball rolls to the right on the grass, then it turns blue. Later, the ball falls into the ocean."
DEMO_SCENES = {
    "entities": [{"id": "ball", "name": "ball", "kind": "ball", "attributes": {"color": "red"}}],
    "scenes": [
        {"id": "s1", "description": "A red ball rolls to the right on the grass and turns blue.", "background": "grass", "entity_ids": ["ball"]},
        {"id": "s2", "description": "The blue ball falls into the ocean.", "background": "ocean", "entity_ids": ["ball"]},
    ],
}
DEMO_LAYOUT = {"keyframes": [{"frame": 0, "boxes": {"ball": [0.05, 0.55, 0.3, 0.8]}}, {"frame": 15, "boxes": {"ball": [0.65, 0.55, 0.9, 0.8]}}]}
DEMO_ACTIONS = {"events": [{"agent": "ball", "predicate": "rolls", "target": "grass", "start": 0, "end": 15}, {"agent": "ball", "predicate": "turns", "target": "blue", "start": 10, "end": 10}]}
DEMO_IMAGINATION = {"triplets": [["ball", "has texture", "shiny"], ["ball", "casts", "shadow"]]}

SYSTEM = (
    "You are a film director's planning assistant. You turn a video prompt into a precise, "
    "physically plausible plan. Answer with JSON only, exactly matching the schema."
)


# ------------------------------------------------------------------------------------------------
# The planner
# ------------------------------------------------------------------------------------------------


class OpenAIPlanner:
    """Plan with an OpenAI-compatible chat model.

    Args:
        model: the model name sent to the endpoint.
        base_url: endpoint (default ``$OPENAI_BASE_URL``, else the openai SDK default).
        api_key: key (default ``$OPENAI_API_KEY``; local servers accept any string).
        cache_dir: where answers are cached (default :func:`default_cache_dir`); ``""`` disables the cache.
        cache_bytes: size cap of the cache folder (least recently used answers are evicted).
        max_tokens: per answer.
        imagination: run Dysen step III (scene imagination) and the polish pass.
        timeout: seconds to wait for the endpoint per request (connect, and between bytes of the
            answer), 1-600.
        retries: how many times a failed request (connection error, timeout, 5xx) is sent again, 0-5.
        client: an ``openai.OpenAI`` instance to use instead of building one.

    Raises:
        PlanError: ``timeout`` or ``retries`` out of range.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | Path | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_tokens: int = 800,
        temperature: float = 0.0,
        imagination: bool = True,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        client=None,
    ):
        from openai import OpenAI

        check_llm_options(timeout, retries)
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or ""
        self.client = client or OpenAI(
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed-for-local-servers",
            base_url=self.base_url or None,
            timeout=timeout,
            max_retries=retries,
        )
        folder = default_cache_dir() if cache_dir is None else (Path(cache_dir) if cache_dir else None)
        self.cache = AnswerCache(folder, max_bytes=cache_bytes) if folder else None
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.imagination = imagination
        self.calls = 0  # requests actually sent (cache misses)
        self._pending: dict[str, tuple[dict, str]] = {}  # answers of the plan in progress, cached once it validates

    # -- one structured call with one repair ------------------------------------------------------

    def _complete(self, messages: list[dict], schema: type[T]) -> tuple[str, str, dict]:
        """Send one request (or replay it from the cache). Returns (content, cache key, request).

        Raises:
            PlanError: the endpoint failed or answered with something that is not a chat completion.
        """
        request = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": False}},
        }
        key = hashlib.sha256(json.dumps([request, self.base_url], sort_keys=True).encode()).hexdigest()
        cached = self.cache.get(key) if self.cache else None
        if cached is not None:
            return cached, key, request
        where = escape_control(self.base_url or "the OpenAI API")[:80]
        try:
            response = self.client.chat.completions.create(**request)
        except ValueError as error:  # a 200 answer whose body is not JSON (cut short, say)
            raise PlanError(f"llm: malformed answer from {where}: not JSON ({short_repr(str(error), 120)[1:-1]})") from None
        except Exception as error:  # the SDK's errors (connection, timeout, status), and anything else a broken answer raises
            raise PlanError(f"llm: request to {where} failed: {type(error).__name__}: {short_repr(str(error), 120)[1:-1]}") from None
        self.calls += 1
        return answer_content(response, where), key, request

    def ask(self, step: str, instructions: str, demo_in: str, demo_out: dict, query: str, schema: type[T], check=None) -> T:
        """Ask for one step's answer, validate it (schema, then ``check``), repair once.

        A valid answer is kept for the cache, written only if the whole plan validates.

        Raises:
            PlanError: ``"<step>: <field>: <message>"`` when the repaired answer is still invalid,
                or ``"llm: ..."`` when the endpoint failed.
        """
        messages = [
            {"role": "system", "content": f"{SYSTEM}\n\n{instructions}"},
            {"role": "user", "content": demo_in},
            {"role": "assistant", "content": json.dumps(demo_out)},
            {"role": "user", "content": query},
        ]
        error = ""
        for attempt in range(2):
            content, key, request = self._complete(messages, schema)
            try:
                answer = schema.model_validate_json(_strip_fences(content))
                if check is not None:
                    check(answer)
                self._pending[key] = (request, content)
                return answer
            except ValidationError as exc:
                error = "; ".join(format_validation_error(exc)[:3])
            except (PlanValidationError, ValueError) as exc:
                error = str(exc)
            error = one_line(error, 200)
            if attempt == 0:
                messages = messages + [
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": f"That answer is invalid: {error}. Reply with corrected JSON only."},
                ]
        raise PlanError(one_line(f"{step}: {error}"))

    def _commit_cache(self) -> None:
        """Cache the answers of the plan that just validated."""
        pending, self._pending = self._pending, {}
        if self.cache is None:
            return
        for key, (request, content) in pending.items():
            try:
                self.cache.put(key, request, content)
            except OSError:
                return  # a cache that cannot be written costs a later request, never this plan

    # -- the steps -------------------------------------------------------------------------------

    def plan(self, prompt: str, *, num_frames: int = 16, fps: int = 8) -> VideoPlan:
        """Plan ``prompt`` into a validated VideoPlan with ``num_frames`` frames per scene.

        Raises:
            PlanValidationError: the prompt is empty, blank or over 2000 characters.
            PlanError: an LLM answer stayed invalid after one repair, or the endpoint failed.
        """
        prompt = check_prompt(prompt)
        self._pending = {}
        last = num_frames - 1
        sketch = self.ask(
            "scenes",
            "Step 1: split the prompt into 1-8 scenes. List every entity once with a short id, its noun "
            "as written (name), a kind, and attributes such as color. An entity in several scenes keeps its id.",
            f"Prompt: {DEMO_PROMPT}",
            DEMO_SCENES,
            f"Prompt: {prompt}",
            ScenesAnswer,
            check=_check_sketch,
        )
        entities = {e.id: e for e in sketch.entities}
        scenes = []
        for scene in sketch.scenes:
            ids = list(dict.fromkeys(scene.entity_ids))
            layout = self.ask(
                f"layout[{scene.id}]",
                f"Step 2: give 2-4 keyframes of bounding boxes for the scene. Frames are 0..{last}; include frame 0 "
                f"and frame {last}. Boxes are [x0, y0, x1, y1] in [0, 1], origin top left, x0 < x1, y0 < y1. "
                "An entity left out of a keyframe is off screen there. Motion is interpolated between keyframes.",
                f"Scene: {DEMO_SCENES['scenes'][0]['description']}\nEntities: ball\nFrames: 0..15",
                DEMO_LAYOUT,
                f"Scene: {scene.description}\nEntities: {', '.join(f'{i} ({entities[i].name})' for i in ids)}\nFrames: 0..{last}",
                LayoutAnswer,
                check=lambda a, ids=ids: _check_layout(a, ids, last),
            )
            actions = self.ask(
                f"actions[{scene.id}]",
                f"Dysen step I: list the scene's actions in time order as (agent, predicate, target, start, end) with "
                f"frames in 0..{last}. The agent is an entity id; the target is an entity id, a word, or null. A colour "
                "change is predicate 'turns' with the new colour as target.",
                f"Scene: {DEMO_SCENES['scenes'][0]['description']}\nEntities: ball\nFrames: 0..15",
                DEMO_ACTIONS,
                f"Scene: {scene.description}\nEntities: {', '.join(ids)}\nFrames: 0..{last}",
                ActionsAnswer,
                check=lambda a, ids=ids: _check_events(a, ids, last),
            )
            scenes.append(
                {
                    "id": scene.id,
                    "description": scene.description,
                    "background": scene.background,
                    "num_frames": num_frames,
                    "keyframes": _complete_keyframes([k.model_dump() for k in layout.keyframes], last),
                    "events": [e.model_dump() for e in actions.events],
                }
            )
        data = {"prompt": prompt, "fps": fps, "entities": [e.model_dump() for e in sketch.entities], "scenes": scenes}
        try:
            plan = parse_plan(data)
        except PlanValidationError as error:
            raise PlanError(one_line(f"plan: {error}")) from None
        if self.imagination:
            plan = self.imagine(plan)
        self._commit_cache()
        return plan

    def imagine(self, plan: VideoPlan) -> VideoPlan:
        """Dysen step III: enrich the scene graphs window by window, then one global polish pass."""
        data = plan.model_dump()
        for s, scene in enumerate(plan.scenes):
            graphs = build_scene_graphs(plan, scene).frames
            cuts = sorted({0, scene.num_frames - 1} | {e.start for e in scene.events} | {e.end for e in scene.events})
            enrichment: list[Triplet] = []
            previous: list[list[str]] = []
            for i, frame in enumerate(cuts):
                end = cuts[i + 1] - 1 if i + 1 < len(cuts) else scene.num_frames - 1
                end = max(end, frame)
                current = triplets(graphs[frame])
                following = triplets(graphs[cuts[i + 1]]) if i + 1 < len(cuts) else []
                answer = self.ask(
                    f"imagination[{scene.id}][{frame}]",
                    "Dysen step III, scene imagination: given the previous (already enriched), current and next "
                    "scene graphs as [subject, predicate, object] triplets, add missing attributes (as 'has <attribute>') "
                    "and relations for the CURRENT graph only. Keep them consistent with the neighbours. Use the "
                    "subjects' names.",
                    json.dumps({"previous": [], "current": [["ball", "has color", "red"], ["ball", "rolls", "grass"]], "next": [["ball", "has color", "blue"]]}),
                    DEMO_IMAGINATION,
                    json.dumps({"previous": previous, "current": current, "next": following}),
                    ImaginationAnswer,
                    check=_check_triplets,
                )
                new = [Triplet(subject=t[0], predicate=t[1], object=t[2], start=frame, end=end) for t in answer.triplets if len(t) == 3]
                enrichment += new
                previous = current + [[t.subject, t.predicate, t.object] for t in new]
            polished = self.ask(
                f"polish[{scene.id}]",
                "Global polish: here are all enrichment triplets of the scene. Return the list with contradictions and "
                "duplicates removed (keep the best), each as [subject, predicate, object].",
                json.dumps([["ball", "has texture", "shiny"], ["ball", "has texture", "shiny"]]),
                {"triplets": [["ball", "has texture", "shiny"]]},
                json.dumps([[t.subject, t.predicate, t.object] for t in enrichment]),
                ImaginationAnswer,
                check=_check_triplets,
            )
            keep = {tuple(t) for t in polished.triplets if len(t) == 3}
            data["scenes"][s]["enrichment"] = [t.model_dump() for t in enrichment if (t.subject, t.predicate, t.object) in keep]
        try:
            plan = parse_plan(data)
        except PlanValidationError as error:
            raise PlanError(one_line(f"imagination: {error}")) from None
        self._commit_cache()
        return plan


def answer_content(response: object, where: str) -> str:
    """The text of the first choice of a chat completion, checked field by field.

    The openai SDK builds its typed response without validating it, so a server that answers 200
    with plain text, ``{}`` or ``{"choices": []}`` gives a string or a half-empty object; this
    turns every such shape into one PlanError line.

    Raises:
        PlanError: not a chat completion, no choices, no text content, or content over
            :data:`MAX_ANSWER_CHARS` characters.
    """
    from openai.types.chat import ChatCompletion

    if not isinstance(response, ChatCompletion):
        return _bad_answer(where, f"not a chat completion (got {short_repr(response, 60)})")
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        return _bad_answer(where, f"no choices (got {short_repr(choices, 60)})")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        return _bad_answer(where, f"choices[0].message.content: must be text (got {short_repr(content, 60)})")
    if len(content) > MAX_ANSWER_CHARS:
        return _bad_answer(where, f"choices[0].message.content: must have at most {MAX_ANSWER_CHARS} characters (got {len(content)})")
    return content


def _bad_answer(where: str, problem: str) -> str:
    raise PlanError(one_line(f"llm: malformed answer from {where}: {problem}"))


def _strip_fences(content: str) -> str:
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("{") :] if "{" in text else text
    return text


def _check_sketch(answer: ScenesAnswer) -> None:
    ids = [e.id for e in answer.entities]
    if len(set(ids)) != len(ids):
        raise ValueError(f"entities: ids must be unique (got {ids})")
    for i, scene in enumerate(answer.scenes):
        for entity_id in scene.entity_ids:
            if entity_id not in ids:
                raise ValueError(f"scenes[{i}].entity_ids: unknown entity id {entity_id!r} (allowed: {', '.join(ids)})")


def _check_layout(answer: LayoutAnswer, ids: list[str], last: int) -> None:
    frames = [k.frame for k in answer.keyframes]
    for i, keyframe in enumerate(answer.keyframes):
        if keyframe.frame > last:
            raise ValueError(f"keyframes[{i}].frame: must be in [0, {last}] (got {keyframe.frame})")
        for entity_id in keyframe.boxes:
            if entity_id not in ids:
                raise ValueError(f"keyframes[{i}].boxes.{entity_id}: unknown entity id (allowed: {', '.join(ids)})")
    if len(set(frames)) != len(frames):
        raise ValueError(f"keyframes: frames must be unique (got {frames})")
    if not any(k.boxes for k in answer.keyframes):
        raise ValueError("keyframes: at least one keyframe must have a box")


def _check_events(answer: ActionsAnswer, ids: list[str], last: int) -> None:
    for i, event in enumerate(answer.events):
        if event.agent not in ids:
            raise ValueError(f"events[{i}].agent: unknown entity id {event.agent!r} (allowed: {', '.join(ids)})")
        if not event.start <= event.end <= last:
            raise ValueError(f"events[{i}]: start <= end <= {last} required (got {event.start}..{event.end})")


def _check_triplets(answer: ImaginationAnswer) -> None:
    for i, triplet in enumerate(answer.triplets):
        if len(triplet) != 3 or not all(isinstance(x, str) and x.strip() for x in triplet):
            raise ValueError(f"triplets[{i}]: must be [subject, predicate, object] strings (got {triplet})")


def _complete_keyframes(keyframes: list[dict], last: int) -> list[dict]:
    """Add frame 0 and the last frame when the LLM left them out (holding the nearest boxes)."""
    keyframes = sorted(keyframes, key=lambda k: k["frame"])
    if keyframes[0]["frame"] != 0:
        keyframes.insert(0, {"frame": 0, "boxes": dict(keyframes[0]["boxes"])})
    if keyframes[-1]["frame"] != last:
        keyframes.append({"frame": last, "boxes": dict(keyframes[-1]["boxes"])})
    return keyframes
