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
fails is sent back once with the validation error, then :class:`PlanError` is raised. Answers are
cached on disk under a hash of the request (model, endpoint, messages, schema).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.dsg import build_scene_graphs, triplets
from core.plan import Box, Entity, Event, PlanValidationError, Triplet, VideoPlan, format_validation_error, parse_plan
from core.planner import PlanError

T = TypeVar("T", bound=BaseModel)


def default_cache_dir() -> Path:
    """``$DIRECTOR_STUDIO_CACHE/llm`` or ``~/.cache/director-studio/llm``."""
    root = os.environ.get("DIRECTOR_STUDIO_CACHE") or Path.home() / ".cache" / "director-studio"
    return Path(root) / "llm"


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
        cache_dir: where answers are cached (default :func:`default_cache_dir`); None-like "" disables.
        max_tokens: per answer.
        imagination: run Dysen step III (scene imagination) and the polish pass.
        client: an ``openai.OpenAI`` instance to use instead of building one.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | Path | None = None,
        max_tokens: int = 800,
        temperature: float = 0.0,
        imagination: bool = True,
        timeout: float = 300.0,
        client=None,
    ):
        from openai import OpenAI

        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or ""
        self.client = client or OpenAI(
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed-for-local-servers",
            base_url=self.base_url or None,
            timeout=timeout,
            max_retries=1,
        )
        self.cache_dir = default_cache_dir() if cache_dir is None else (Path(cache_dir) if cache_dir else None)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.imagination = imagination
        self.calls = 0  # requests actually sent (cache misses)

    # -- one structured call with one repair ------------------------------------------------------

    def _complete(self, messages: list[dict], schema: type[T]) -> str:
        request = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": False}},
        }
        key = hashlib.sha256(json.dumps([request, self.base_url], sort_keys=True).encode()).hexdigest()
        path = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if path and path.exists():
            return json.loads(path.read_text())["content"]
        from openai import OpenAIError

        try:
            response = self.client.chat.completions.create(**request)
        except OpenAIError as error:
            raise PlanError(f"llm: request to {self.base_url or 'the OpenAI API'} failed: {type(error).__name__}: {str(error)[:200]}") from None
        self.calls += 1
        content = response.choices[0].message.content or ""
        if path:
            from core.plan import atomic_write_bytes

            atomic_write_bytes(path, json.dumps({"request": request, "content": content}).encode())
        return content

    def ask(self, step: str, instructions: str, demo_in: str, demo_out: dict, query: str, schema: type[T], check=None) -> T:
        """Ask for one step's answer, validate it (schema, then ``check``), repair once.

        Raises:
            PlanError: ``"<step>: <field>: <message>"`` when the repaired answer is still invalid.
        """
        messages = [
            {"role": "system", "content": f"{SYSTEM}\n\n{instructions}"},
            {"role": "user", "content": demo_in},
            {"role": "assistant", "content": json.dumps(demo_out)},
            {"role": "user", "content": query},
        ]
        error = ""
        for attempt in range(2):
            content = self._complete(messages, schema)
            try:
                answer = schema.model_validate_json(_strip_fences(content))
                if check is not None:
                    check(answer)
                return answer
            except ValidationError as exc:
                error = "; ".join(format_validation_error(exc)[:3])
            except (PlanValidationError, ValueError) as exc:
                error = str(exc)
            if attempt == 0:
                messages = messages + [
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": f"That answer is invalid: {error}. Reply with corrected JSON only."},
                ]
        raise PlanError(f"{step}: {error}")

    # -- the steps -------------------------------------------------------------------------------

    def plan(self, prompt: str, *, num_frames: int = 16, fps: int = 8) -> VideoPlan:
        """Plan ``prompt`` into a validated VideoPlan with ``num_frames`` frames per scene.

        Raises:
            PlanError: an LLM answer stayed invalid after one repair, or the endpoint failed.
        """
        if not prompt.strip() or len(prompt) > 2000:
            raise PlanError(f"prompt: must have 1-2000 characters (got {len(prompt)})")
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
            raise PlanError(f"plan: {error}") from None
        if self.imagination:
            plan = self.imagine(plan)
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
            return parse_plan(data)
        except PlanValidationError as error:
            raise PlanError(f"imagination: {error}") from None


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
