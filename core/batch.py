"""Batch rendering on Ray: many plans, many workers, nothing lost.

    python launch.py batch JOBS.jsonl --out DIR [--workers N] [--gpus-per-worker G] [--ray-address ADDR] [render options]

Data flow, on Ray Data (``ray[data]``, the optional ``[scale]`` extra):

1. the driver reads ``JOBS.jsonl`` (:func:`read_jobs`); a line that is not a valid job becomes an
   error line of the manifest, never a failed batch;
2. planning runs as cheap Ray tasks (``Dataset.map``, :func:`plan_on_ray`); a job whose outputs
   already exist with the same plan hash and settings is skipped (:func:`up_to_date`);
3. rendering runs with ``Dataset.map_batches`` over a fixed actor pool (``ActorPoolStrategy``):
   each actor (:class:`BatchRenderer`) loads one pipeline when it starts and renders one job per
   call, writing ``DIR/<id>.mp4`` and ``DIR/<id>.plan.json`` together and atomically
   (:func:`core.outputs.write_together`). A worker process that dies is restarted by Ray and its job
   retried (``max_restarts``, ``max_task_retries``); an exception inside a job is an error line;
4. the driver appends each result to ``DIR/manifest.jsonl`` as it arrives, then rewrites the file
   with one line per job, in the order of the jobs file (:func:`run_batch`).

Without a ``--ray-address`` the driver starts an embedded local cluster with this machine's CPUs
(and GPUs); with one it joins that cluster, whose workers must see ``DIR`` (a shared file system).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.messages import one_line, short_repr

RAY_REQUIREMENT = "ray[data]==2.60.0"
INSTALL_HINT = f'batch rendering needs Ray: pip install -e ".[scale]" (or pip install "{RAY_REQUIREMENT}")'
MAX_RESTARTS = 3  # times Ray restarts a render worker whose process died
MAX_TASK_RETRIES = 3  # times Ray resends the job a dead worker held
MANIFEST = "manifest.jsonl"
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
JOB_KEYS = ("id", "prompt", "plan", "seed", "frames")  # plus the fields of core.render.RenderSettings
MAX_JOB_BYTES = 1_100_000  # a plan may have 1 MB (core.plan.MAX_PLAN_BYTES), plus the job's other keys
FRAMES_RANGE = (8, 64)


class BatchError(ValueError):
    """A batch cannot start (Ray missing, a cluster that cannot be reached, a jobs file without
    jobs). The message is one line naming the option or file."""


def require_ray():
    """Import Ray and Ray Data.

    Returns:
        The ``ray`` module.

    Raises:
        BatchError: Ray is not installed (the message says how to install it, in one line).
    """
    try:
        import ray
        import ray.data
    except ModuleNotFoundError as error:
        if (error.name or "ray").split(".")[0] == "ray":
            raise BatchError(INSTALL_HINT) from None
        raise
    return ray


# ------------------------------------------------------------------------------------------------
# Jobs
# ------------------------------------------------------------------------------------------------


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
    from pydantic import ValidationError

    from core.plan import format_validation_error
    from core.render import RenderSettings

    path = Path(path)
    name = short_repr(path.name, 60)[1:-1]
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BatchError(f"{name}: not UTF-8 text (byte {error.start})") from None
    base = settings.model_dump(mode="json")
    allowed = (*JOB_KEYS, *RenderSettings.model_fields)
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue

        def bad(message: str, job_id: str = f"{number:04d}", number: int = number) -> Job:
            return Job(line=number, id=job_id, error=one_line(f"{name}:{number}: {message}"))

        if len(line.encode("utf-8", "surrogatepass")) > MAX_JOB_BYTES:
            jobs.append(bad(f"job: must be at most {MAX_JOB_BYTES // 1000} kB (got {len(line.encode()) / 1000:.0f} kB)"))
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            jobs.append(bad(f"not JSON ({error.msg})"))
            continue
        if not isinstance(item, dict):
            jobs.append(bad("must be a JSON object such as {\"prompt\": \"...\"}"))
            continue
        job_id = item.get("id", f"{number:04d}")
        if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
            jobs.append(bad(f"id: must be 1-64 of [A-Za-z0-9_-] (got {short_repr(job_id)})"))
            continue
        if job_id in seen:
            jobs.append(bad(f"id: {job_id!r} is already used on line {seen[job_id]}", f"{number:04d}"))
            continue
        seen[job_id] = number
        unknown = [key for key in item if key not in allowed]
        if unknown:
            jobs.append(bad(f"unknown key {short_repr(unknown[0])} (allowed: {', '.join(allowed)})", job_id))
            continue
        if ("prompt" in item) == ("plan" in item):
            jobs.append(bad('needs exactly one of "prompt" and "plan"', job_id))
            continue
        if "prompt" in item and (not isinstance(item["prompt"], str) or not item["prompt"].strip()):
            jobs.append(bad("prompt: must be a non-empty string", job_id))
            continue
        if "plan" in item and not isinstance(item["plan"], dict):
            jobs.append(bad("plan: must be a JSON object (a video plan)", job_id))
            continue
        job_frames = item.get("frames", frames)
        if "frames" in item and "plan" in item:
            jobs.append(bad("frames: only for prompt jobs (a plan gives each scene's num_frames)", job_id))
            continue
        if type(job_frames) is not int or not FRAMES_RANGE[0] <= job_frames <= FRAMES_RANGE[1]:
            jobs.append(bad(f"frames: must be an integer in [{FRAMES_RANGE[0]}, {FRAMES_RANGE[1]}] (got {short_repr(job_frames)})", job_id))
            continue
        overrides = {key: value for key, value in item.items() if key in RenderSettings.model_fields}
        try:
            job_settings = RenderSettings.model_validate_json(json.dumps({**base, **overrides}), strict=True)
        except ValidationError as error:
            jobs.append(bad(format_validation_error(error)[0], job_id))
            continue
        jobs.append(
            Job(
                line=number, id=job_id, prompt=item.get("prompt", ""), plan=json.dumps(item["plan"]) if "plan" in item else "",
                frames=job_frames, settings=job_settings.model_dump_json(),
            )
        )
    if not jobs:
        raise BatchError(f"{name}: has no jobs")
    return jobs


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


# ------------------------------------------------------------------------------------------------
# The cluster
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """Where batch renders run and how wide.

    Attributes:
        workers: render actors (each loads one pipeline); None: one per GPU share when
            ``gpus_per_worker`` > 0, else one per CPU of the cluster. At most the number of jobs
            to render are started.
        gpus_per_worker: GPUs reserved per actor (0: CPU actors, 1 CPU each; 0.5: two per GPU).
        address: None for an embedded local cluster on this machine; ``auto`` or ``ray://host:port``
            to join a running one.
    """

    workers: int | None = None
    gpus_per_worker: float = 0.0
    address: str | None = None


@contextmanager
def ray_session(cluster: Cluster):
    """Connect to Ray for the duration of a batch.

    Reuses a Ray already initialised in this process (and leaves it running); otherwise starts an
    embedded local cluster (this machine's CPUs, at least ``cluster.workers``, and its GPUs) or
    joins ``cluster.address``, and shuts it down at the end.

    Yields:
        The ``ray`` module.

    Raises:
        BatchError: Ray is missing, or the cluster cannot be joined (one line).
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if cluster.address:
        if cluster.address.startswith("ray://"):
            import importlib.util

            if importlib.util.find_spec("grpc") is None:
                raise BatchError('--ray-address: ray:// needs the Ray client: pip install "ray[client]==2.60.0"')
        try:
            ray.init(address=cluster.address, logging_level=logging.WARNING)
        except Exception as error:  # Ray raises ConnectionError, RuntimeError or ValueError here
            raise BatchError(one_line(f"--ray-address: cannot join {cluster.address!r}: {_first_line(error)}")) from None
    else:
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, cluster.workers or 0), include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def pool_size(ray, cluster: Cluster, jobs: int) -> int:
    """Render actors to start: ``cluster.workers`` (default: one per GPU share or per CPU of the
    cluster), at most ``jobs``.

    Raises:
        BatchError: GPUs asked for that the cluster does not have.
    """
    resources = ray.cluster_resources()
    if cluster.gpus_per_worker > 0:
        gpus = resources.get("GPU", 0.0)
        if gpus < cluster.gpus_per_worker:
            raise BatchError(f"--gpus-per-worker: the cluster has {gpus:g} GPU(s), a worker asks for {cluster.gpus_per_worker:g}")
        workers = cluster.workers or max(1, int(gpus // cluster.gpus_per_worker))
        if cluster.address is None and workers * cluster.gpus_per_worker > gpus:
            raise BatchError(f"--workers: {workers} workers x {cluster.gpus_per_worker:g} GPU need {workers * cluster.gpus_per_worker:g} GPUs; this machine has {gpus:g}")
    else:
        workers = cluster.workers or max(1, int(resources.get("CPU", 1)))
    return max(1, min(workers, jobs))


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _error_line(error: Exception) -> str:
    """A job's error as one line: the message of a user error, the type too for anything else."""
    from core.plan import PlanValidationError

    if isinstance(error, (PlanValidationError, ValueError, OSError)):
        return one_line(_first_line(error))
    return one_line(f"{type(error).__name__}: {_first_line(error)}")


# ------------------------------------------------------------------------------------------------
# Planning: Ray tasks
# ------------------------------------------------------------------------------------------------


def plan_row(row: dict, planner: dict) -> dict:
    """Plan one job (a Ray Data ``map`` function, run as a Ray task).

    Args:
        row: ``{"prompt": str, "plan": str (JSON), "frames": int, ...}``; exactly one of prompt and
            plan is non-empty; ``frames`` 0 means the planner's default.
        planner: ``{"planner": "rules" | "openai", "llm_model", "llm_timeout", "llm_retries",
            "no_cache"}`` (only ``planner`` is needed for rules).

    Returns:
        ``row`` with ``plan`` (the validated plan as JSON), ``plan_hash`` and ``error`` ("" or one line).
    """
    from core.plan import parse_plan

    try:
        if row["plan"]:
            plan = parse_plan(row["plan"])
        else:
            plan = _plan_prompt(row["prompt"], int(row["frames"]) or None, planner)
        return {**row, "plan": plan.model_dump_json(), "plan_hash": plan_hash(plan), "error": ""}
    except Exception as error:  # a bad job is a line in the manifest, never a failed batch
        return {**row, "plan": "", "plan_hash": "", "error": _error_line(error)}


def _plan_prompt(prompt: str, frames: int | None, planner: dict):
    extra = {} if frames is None else {"num_frames": frames}
    if planner.get("planner", "rules") == "openai":
        from core.planner.llm import OpenAIPlanner

        llm = OpenAIPlanner(
            model=planner["llm_model"], timeout=planner["llm_timeout"], retries=planner["llm_retries"], cache_dir="" if planner.get("no_cache") else None
        )
        return llm.plan(prompt, **extra)
    from core.planner.rules import plan_with_rules

    return plan_with_rules(prompt, **extra)


def plan_on_ray(rows: list[dict], planner: dict) -> list[dict]:
    """Plan rows with Ray Data tasks (:func:`plan_row`); Ray must be initialised.

    Returns:
        The planned rows, in the order given.
    """
    import ray.data

    if not rows:
        return []
    planned = ray.data.from_items(rows, override_num_blocks=len(rows)).map(plan_row, fn_kwargs={"planner": planner}).take_all()
    return sorted(planned, key=lambda row: row["index"])


# ------------------------------------------------------------------------------------------------
# Rendering: an actor pool
# ------------------------------------------------------------------------------------------------


class BatchRenderer:
    """A Ray Data actor: one pipeline, loaded in ``__init__``, renders one job per row.

    Input rows: ``{"index": int, "plan": str (JSON), "settings": str (RenderSettings JSON),
    "video": str, "plan_path": str}``; the MP4 and the plan are written to ``video`` and
    ``plan_path`` together (temporary files, then renames). Output rows add ``status``
    (``ok``/``error``), ``error``, ``seconds`` (render and write), ``render_seconds``, ``worker``
    (``host:pid``), ``guidance_scale`` (as resolved for the model), ``default_interval`` (JSON of
    the model's ``default_guidance_interval`` or null) and, with ``return_frames``, ``frames``
    (the (F, H, W, 3) uint8 array as bytes) and ``shape`` (JSON).
    """

    def __init__(self, model: dict, return_frames: bool = False):
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.return_frames = return_frames
        self.pipe, self.load_error = None, ""
        try:
            from core.render import load_pipeline

            self.pipe = load_pipeline(**model)
            self.pipe.set_progress_bar_config(disable=True)
        except Exception as error:  # every job of this worker then reports it
            self.load_error = one_line(f"model: {_error_line(error)}")

    def __call__(self, batch: dict) -> dict:
        rows = [{key: batch[key][i] for key in batch} for i in range(len(batch["index"]))]
        results = [self.render(row) for row in rows]
        return {key: [result[key] for result in results] for key in results[0]}

    def render(self, row: dict) -> dict:
        """Render one row (see the class docstring); an exception becomes an ``error`` row."""
        result = {
            "index": int(row["index"]), "status": "error", "error": self.load_error, "seconds": 0.0, "render_seconds": 0.0,
            "worker": self.worker, "guidance_scale": 0.0, "default_interval": "null", "frames": b"", "shape": "[]",
        }
        if self.pipe is None:
            return result
        start = time.perf_counter()
        try:
            from core.export import encode_mp4
            from core.outputs import write_together
            from core.plan import parse_plan, save_plan
            from core.render import RenderSettings, render_plan, resolve_controls

            plan = parse_plan(str(row["plan"]))
            settings = RenderSettings.model_validate_json(str(row["settings"]))
            result["guidance_scale"] = float(resolve_controls(self.pipe, settings)["guidance_scale"])
            interval = getattr(self.pipe.config, "default_guidance_interval", None)
            result["default_interval"] = json.dumps(list(interval) if interval is not None else None)
            frames = render_plan(self.pipe, plan, settings)
            result["render_seconds"] = time.perf_counter() - start
            write_together({Path(row["video"]): lambda tmp: encode_mp4(frames, tmp, fps=plan.fps), Path(row["plan_path"]): lambda tmp: save_plan(plan, tmp)})
            if self.return_frames:
                result["frames"], result["shape"] = frames.tobytes(), json.dumps(list(frames.shape))
            result["status"], result["error"] = "ok", ""
        except Exception as error:  # a bad job is a line in the manifest, never a failed batch
            result["error"] = _error_line(error)
        result["seconds"] = time.perf_counter() - start
        return result


def render_on_ray(rows: list[dict], *, model: dict, cluster: Cluster, return_frames: bool = False) -> Iterator[dict]:
    """Render rows (see :class:`BatchRenderer`) on a fixed pool of render actors; Ray must be
    initialised.

    Each actor holds ``cluster.gpus_per_worker`` GPUs (or 1 CPU) and gets one job per call; a dead
    actor is restarted up to :data:`MAX_RESTARTS` times and its job resent up to
    :data:`MAX_TASK_RETRIES` times.

    Yields:
        Result rows as they finish (not in order).

    Raises:
        BatchError: GPUs asked for that the cluster does not have.
        Exception: Ray's error when a job's worker died more often than the retries allow.
    """
    import ray
    import ray.data

    if not rows:
        return
    workers = pool_size(ray, cluster, len(rows))
    context = ray.data.DataContext.get_current()
    context.max_consecutive_actor_init_deaths = MAX_RESTARTS  # an actor killed while loading is replaced
    resources = {"num_gpus": cluster.gpus_per_worker} if cluster.gpus_per_worker > 0 else {"num_cpus": 1}
    with warnings.catch_warnings():
        # Ray 2.60 takes max_restarts and max_task_retries only through the deprecated
        # **ray_remote_args (named parameters exist for resources only); its default for actor pools
        # is -1, unbounded, under which a job that kills its worker every time never ends.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            BatchRenderer,
            fn_constructor_kwargs={"model": model, "return_frames": return_frames},
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
            batch_size=1,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_TASK_RETRIES,
            **resources,
        )
    yield from dataset.iter_rows()


# ------------------------------------------------------------------------------------------------
# The batch
# ------------------------------------------------------------------------------------------------


@dataclass
class BatchSummary:
    """What a batch did.

    Attributes:
        ok: jobs rendered in this run. errors: jobs with an error line. skipped: jobs whose outputs
        were up to date. seconds: wall-clock time of the whole batch (cluster start included).
        workers: render actors started (0 when nothing was rendered). manifest: its path.
    """

    ok: int
    errors: int
    skipped: int
    seconds: float
    workers: int
    manifest: Path

    @property
    def videos_per_minute(self) -> float:
        """Videos rendered per minute of wall-clock time (0 when none)."""
        return 60.0 * self.ok / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (
            f"batch: {self.ok} ok, {self.errors} error{'' if self.errors == 1 else 's'}, {self.skipped} skipped; "
            f"{self.videos_per_minute:.1f} videos per minute ({self.seconds:.1f} s, {self.workers} worker{'' if self.workers == 1 else 's'}); "
            f"manifest {self.manifest}"
        )


def run_batch(
    jobs_path: str | Path,
    out: str | Path,
    *,
    settings,
    model: dict,
    planner: dict | None = None,
    frames: int = 16,
    cluster: Cluster = Cluster(),
    on_entry: Callable[[dict], None] | None = None,
) -> BatchSummary:
    """Render every job of a jobs file (:func:`read_jobs`) into ``out`` on Ray.

    Writes ``out/<id>.mp4`` and ``out/<id>.plan.json`` per job and ``out/manifest.jsonl``, one JSON
    line per job in file order: ``id``, ``line``, ``status`` (``ok``/``error``), ``error`` (one
    line or null), ``outputs`` (file names in ``out``), ``seconds`` (on the worker), ``worker``
    (``host:pid``), ``plan_hash``, ``settings`` (:func:`job_settings`) and ``skipped`` (true when the
    outputs were up to date and nothing ran). While the batch runs, entries are appended as they
    come, so an interrupted batch keeps what it finished; a rerun skips those. One batch per output
    folder at a time: a batch removes the temporary files that killed writers left there.

    Args:
        jobs_path: the jobs file.
        out: the output folder (created; on a joined cluster it must be visible to every worker).
        settings: the RenderSettings every job starts from.
        model: keyword arguments of :func:`core.render.load_pipeline`.
        planner: see :func:`plan_row` (default: the offline rules planner).
        frames: frames per scene for prompt jobs (8-64).
        cluster: where and how wide to render.
        on_entry: called with each manifest entry as it is decided.

    Returns:
        The summary (also the numbers of the last line the CLI prints).

    Raises:
        BatchError: Ray missing, a cluster that cannot be joined, a jobs file without jobs, GPUs
            the cluster does not have.
        OSError: the jobs file cannot be read or ``out`` cannot be written.
    """
    start = time.perf_counter()
    out = Path(out)
    jobs = read_jobs(jobs_path, settings=settings, frames=frames)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    previous = read_manifest(manifest)
    entries: dict[int, dict] = {}  # by line: an invalid line's default id may also be another line's id
    counts = {"ok": 0, "error": 0, "skipped": 0}
    workers = 0

    with open(manifest, "a", encoding="utf-8") as log:

        def record(entry: dict) -> None:
            entries[entry["line"]] = entry
            counts["skipped" if entry["skipped"] else entry["status"]] += 1
            log.write(json.dumps(entry) + "\n")
            log.flush()
            if on_entry is not None:
                on_entry(entry)

        by_line = {job.line: job for job in jobs}
        names = [name for job in jobs for name in outputs_of(job.id)]
        remove_stale_temporaries(out, names)  # left by an earlier batch that was killed
        for job in jobs:
            if job.error:
                record(_entry(job, error=job.error))
        valid = [job for job in jobs if not job.error]
        with ray_session(cluster) as ray:
            rows = [{"index": job.line, "prompt": job.prompt, "plan": job.plan, "frames": job.frames} for job in valid]
            to_render = []
            for row in plan_on_ray(rows, planner or {"planner": "rules"}):
                job = by_line[row["index"]]
                depends = job_settings(job.settings, model)
                if row["error"]:
                    record(_entry(job, error=_on_line(jobs_path, job, row["error"]), settings=depends))
                elif up_to_date(previous.get(job.id), hash_=row["plan_hash"], settings=depends, out=out):
                    record({**previous[job.id], "line": job.line, "skipped": True})
                else:
                    video, plan_file = (out / name for name in outputs_of(job.id))
                    to_render.append(
                        {"index": job.line, "plan": row["plan"], "plan_hash": row["plan_hash"], "settings": job.settings, "video": str(video.resolve()), "plan_path": str(plan_file.resolve())}
                    )
            hashes = {row["index"]: row["plan_hash"] for row in to_render}
            if to_render:
                workers = pool_size(ray, cluster, len(to_render))
                try:
                    for result in render_on_ray(to_render, model=model, cluster=cluster):
                        job = by_line[int(result["index"])]
                        record(
                            _entry(
                                job, error=_on_line(jobs_path, job, result["error"]) if result["status"] != "ok" else None,
                                settings=job_settings(job.settings, model), hash_=hashes[job.line], seconds=float(result["seconds"]), worker=str(result["worker"]),
                            )
                        )
                except Exception as error:  # workers died past the retries: the unfinished jobs are error lines
                    message = f"not rendered: a worker died more than {MAX_TASK_RETRIES} times ({_first_line(error)}); rerun to retry"
                    for row in to_render:
                        job = by_line[row["index"]]
                        if job.line not in entries:
                            record(_entry(job, error=_on_line(jobs_path, job, message), settings=job_settings(job.settings, model), hash_=row["plan_hash"]))
                remove_stale_temporaries(out, names)  # left by workers killed mid-write (their jobs were redone)
    from core.outputs import atomic_write_bytes

    atomic_write_bytes(manifest, "".join(json.dumps(entries[job.line]) + "\n" for job in jobs).encode())
    return BatchSummary(ok=counts["ok"], errors=counts["error"], skipped=counts["skipped"], seconds=time.perf_counter() - start, workers=workers, manifest=manifest)


def _on_line(jobs_path, job: Job, message: str) -> str:
    return one_line(f"{short_repr(Path(jobs_path).name, 60)[1:-1]}:{job.line}: {message}")


def _entry(job: Job, *, error: str | None, settings: dict | None = None, hash_: str = "", seconds: float = 0.0, worker: str = "") -> dict:
    ok = error is None
    return {
        "id": job.id, "line": job.line, "status": "ok" if ok else "error", "error": error,
        "outputs": list(outputs_of(job.id)) if ok else [], "seconds": round(seconds, 3), "worker": worker or None,
        "plan_hash": hash_ or None, "settings": settings, "skipped": False,
    }


# ------------------------------------------------------------------------------------------------
# Evaluation on the same path
# ------------------------------------------------------------------------------------------------


def eval_on_ray(prompts: list[dict], videos: Path, *, settings, model: dict, cluster: Cluster) -> Iterator[tuple]:
    """Plan (rules, as the serial evaluation) and render evaluation prompts on Ray.

    Writes ``videos/NNN.mp4`` and ``videos/NNN.plan.json`` (NNN the 0-based prompt index).

    Yields:
        ``(index, plan, frames, render_seconds, sampler)`` as videos finish (not in order):
        frames np.ndarray (F, H, W, 3) uint8, sampler ``{"guidance_scale": float,
        "default_interval": [start, end] | None}`` as the worker's model resolved them.

    Raises:
        ValueError: a prompt that does not plan or render (``prompt N: <error>``, 1-based).
    """
    import numpy as np

    from core.plan import parse_plan

    rows = [{"index": i, "prompt": item["prompt"], "plan": "", "frames": 0} for i, item in enumerate(prompts)]
    with ray_session(cluster):
        planned = plan_on_ray(rows, {"planner": "rules"})
        for row in planned:
            if row["error"]:
                raise ValueError(one_line(f"prompt {row['index'] + 1}: {row['error']}"))
        plans = {row["index"]: row["plan"] for row in planned}
        jobs = [
            {"index": i, "plan": plan, "settings": settings.model_dump_json(), "video": str((videos / f"{i:03d}.mp4").resolve()), "plan_path": str((videos / f"{i:03d}.plan.json").resolve())}
            for i, plan in plans.items()
        ]
        finished = []
        for result in render_on_ray(jobs, model=model, cluster=cluster, return_frames=True):
            index = int(result["index"])
            if result["status"] != "ok":
                raise ValueError(one_line(f"prompt {index + 1}: {result['error']}"))
            frames = np.frombuffer(result["frames"], dtype=np.uint8).reshape(json.loads(result["shape"]))
            sampler = {"guidance_scale": float(result["guidance_scale"]), "default_interval": json.loads(result["default_interval"])}
            finished.append(index)
            yield index, parse_plan(plans[index]), frames, float(result["render_seconds"]), sampler
        remove_stale_temporaries(videos, [f"{i:03d}{suffix}" for i in finished for suffix in (".mp4", ".plan.json")])
