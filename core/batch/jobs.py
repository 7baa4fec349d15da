"""Jobs files and manifests of a batch: reading and checking jobs, plan hashes, what is up to date."""

from __future__ import annotations

import glob
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from core.messages import one_line, short_repr

MANIFEST = "manifest.jsonl"


JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


JOB_KEYS = ("id", "prompt", "plan", "seed", "frames")  # plus the fields of core.render.RenderSettings


MAX_JOB_BYTES = 1_100_000  # a plan may have 1 MB (core.plan.MAX_PLAN_BYTES), plus the job's other keys


FRAMES_RANGE = (8, 64)


class BatchError(ValueError):
    """A batch cannot start (Ray missing, a cluster that cannot be reached, a jobs file without
    jobs). The message is one line naming the option or file."""


@dataclass(frozen=True)
class Job:
    """One line of a jobs file.

    Attributes:
        line: 1-based line number in the jobs file.
        id: the output name (``<id>.mp4``): the job's ``id``, else the line number as ``0007``.
        prompt: text to plan, or "" for a plan job.
        plan: the plan as JSON text, or "" for a prompt job.
        frames: frames per scene for a prompt job (8-64).
        settings: the job's ``RenderSettings`` as JSON (the command's, with the job's overrides).
        error: "" for a valid job, else one line saying what is wrong (the job is not run).
    """

    line: int
    id: str
    prompt: str = ""
    plan: str = ""
    frames: int = 16
    settings: str = ""
    error: str = ""


def read_jobs(path: str | Path, *, settings, frames: int = 16) -> list[Job]:
    """Read a jobs file: one JSON object per line, ``{"prompt": str}`` or ``{"plan": {...}}``, with
    optional ``id`` (1-64 of ``[A-Za-z0-9_-]``, unique), ``seed``, ``frames`` (prompt jobs, 8-64) and
    any field of :class:`core.render.RenderSettings` (``num_inference_steps``, ``guidance_scale``,
    ...), which override ``settings`` for that job. Blank lines are skipped.

    Args:
        path: the jobs file (UTF-8 JSON lines).
        settings: the command's RenderSettings, the defaults of every job.
        frames: frames per scene for prompt jobs without their own ``frames``.

    Returns:
        One Job per non-blank line, in file order; an invalid line is a Job whose ``error`` says
        why, prefixed with ``<file>:<line>:``.

    Raises:
        OSError: the file cannot be read.
        BatchError: the file has no jobs or is not UTF-8.
    """
    path = Path(path)
    name = short_repr(path.name, 60)[1:-1]
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BatchError(f"{name}: not UTF-8 text (byte {error.start})") from None
    jobs: list[Job] = []
    seen: dict[str, int] = {}  # job id -> its line
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            job = _parse_job(line, number, settings=settings, frames=frames, seen=seen)
        except _RefusedJob as refused:
            job = Job(line=number, id=refused.job_id or f"{number:04d}", error=one_line(f"{name}:{number}: {refused}"))
        jobs.append(job)
    if not jobs:
        raise BatchError(f"{name}: has no jobs")
    return jobs


class _RefusedJob(ValueError):
    """A jobs-file line that is not a valid job; ``job_id`` is its id when that much was valid."""

    def __init__(self, message: str, job_id: str = ""):
        super().__init__(message)
        self.job_id = job_id


def _parse_job(line: str, number: int, *, settings, frames: int, seen: dict[str, int]) -> Job:
    """One line of a jobs file as a Job (see :func:`read_jobs`). Raises _RefusedJob naming the field."""
    item = _job_object(line)
    job_id = item.get("id", f"{number:04d}")
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        raise _RefusedJob(f"id: must be 1-64 of [A-Za-z0-9_-] (got {short_repr(job_id)})")
    if job_id in seen:
        raise _RefusedJob(f"id: {job_id!r} is already used on line {seen[job_id]}")
    seen[job_id] = number
    _check_job_fields(item, job_id)
    job_frames = item.get("frames", frames)
    if type(job_frames) is not int or not FRAMES_RANGE[0] <= job_frames <= FRAMES_RANGE[1]:
        raise _RefusedJob(f"frames: must be an integer in [{FRAMES_RANGE[0]}, {FRAMES_RANGE[1]}] (got {short_repr(job_frames)})", job_id)
    plan = json.dumps(item["plan"]) if "plan" in item else ""
    return Job(line=number, id=job_id, prompt=item.get("prompt", ""), plan=plan, frames=job_frames, settings=_job_render_settings(item, settings, job_id))


def _job_object(line: str) -> dict:
    """The JSON object of a jobs-file line. Raises _RefusedJob (too large, not JSON, not an object)."""
    size = len(line.encode("utf-8", "surrogatepass"))
    if size > MAX_JOB_BYTES:
        raise _RefusedJob(f"job: must be at most {MAX_JOB_BYTES // 1000} kB (got {size / 1000:.0f} kB)")
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise _RefusedJob(f"not JSON ({error.msg})") from None
    if not isinstance(item, dict):
        raise _RefusedJob('must be a JSON object such as {"prompt": "..."}')
    return item


def _check_job_fields(item: dict, job_id: str) -> None:
    """Known keys only, exactly one of prompt and plan, each of the right type."""
    from core.render import RenderSettings

    allowed = (*JOB_KEYS, *RenderSettings.model_fields)
    unknown = [key for key in item if key not in allowed]
    if unknown:
        raise _RefusedJob(f"unknown key {short_repr(unknown[0])} (allowed: {', '.join(allowed)})", job_id)
    if ("prompt" in item) == ("plan" in item):
        raise _RefusedJob('needs exactly one of "prompt" and "plan"', job_id)
    if "prompt" in item and (not isinstance(item["prompt"], str) or not item["prompt"].strip()):
        raise _RefusedJob("prompt: must be a non-empty string", job_id)
    if "plan" in item and not isinstance(item["plan"], dict):
        raise _RefusedJob("plan: must be a JSON object (a video plan)", job_id)
    if "frames" in item and "plan" in item:
        raise _RefusedJob("frames: only for prompt jobs (a plan gives each scene's num_frames)", job_id)


def _job_render_settings(item: dict, settings, job_id: str) -> str:
    """The job's RenderSettings as JSON: the command's, with the job's own fields over them (strict JSON types)."""
    from pydantic import ValidationError

    from core.plan import format_validation_error
    from core.render import RenderSettings

    overrides = {key: value for key, value in item.items() if key in RenderSettings.model_fields}
    try:
        return RenderSettings.model_validate_json(json.dumps({**settings.model_dump(mode="json"), **overrides}), strict=True).model_dump_json()
    except ValidationError as error:
        raise _RefusedJob(format_validation_error(error)[0], job_id) from None


def plan_hash(plan) -> str:
    """A hash of everything in a plan (its canonical JSON): 16 hex digits."""
    return hashlib.sha256(plan.model_dump_json().encode()).hexdigest()[:16]


def model_settings(model: dict) -> dict:
    """The model options that change a video (folder, adapter, dtype, scheduler), for the manifest.

    Args:
        model: keyword arguments of :func:`core.render.load_pipeline`.
    """
    return {key: (str(model[key]) if model.get(key) is not None else None) for key in ("model", "adapter", "dtype", "scheduler")}


def job_settings(job_settings_json: str, model: dict) -> dict:
    """What a job's outputs depend on besides its plan: ``{"render": RenderSettings as JSON values,
    "model": model_settings(model)}`` (compared as JSON to decide a skip)."""
    return {"render": json.loads(job_settings_json), "model": model_settings(model)}


def outputs_of(job_id: str) -> tuple[str, str]:
    """The files a job writes in the output folder: ``(<id>.mp4, <id>.plan.json)``."""
    return f"{job_id}.mp4", f"{job_id}.plan.json"


def remove_stale_temporaries(out: Path, names) -> int:
    """Remove what a writer killed mid-write leaves of ``out/<name>``: the temporary and backup files
    of :func:`core.outputs.write_together` (``.<name>.*.tmp``, ``.<name>.*.bak``). Call it only when
    no writer is running on those names (one batch per output folder at a time).

    Returns:
        The number of files removed.
    """
    removed = 0
    for name in names:
        for stale in [*out.glob(f".{glob.escape(name)}.*.tmp"), *out.glob(f".{glob.escape(name)}.*.bak")]:
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


def up_to_date(previous: dict | None, *, hash_: str, settings: dict, out: Path) -> bool:
    """Whether a job can be skipped: the manifest's last entry for its id is ``ok`` with the same
    plan hash and settings, and both output files exist (the plan file holding that same plan)."""
    from core.plan import load_plan

    if not previous or previous.get("status") != "ok" or previous.get("plan_hash") != hash_ or previous.get("settings") != settings:
        return False
    video, plan_file = (out / name for name in outputs_of(previous["id"]))
    if not video.is_file() or video.stat().st_size == 0:
        return False
    try:
        return plan_hash(load_plan(plan_file)) == hash_
    except (OSError, ValueError):
        return False


def read_manifest(path: Path) -> dict[str, dict]:
    """The last ``ok`` entry per job id of a manifest, the entries a rerun may skip on (lines appended
    by an interrupted run come last and win; a later error leaves the files of an earlier success
    in place, so it does not hide that success). Unreadable lines are ignored; a missing file gives
    ``{}``."""
    entries: dict[str, dict] = {}
    try:
        text = path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return entries
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry.get("status") == "ok":
            entries[entry["id"]] = entry
    return entries
