"""Ray: the cluster, planning tasks and the actor pool of render workers (one pipeline per actor)."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.batch.jobs import BatchError, plan_hash
from core.messages import one_line

RAY_REQUIREMENT = "ray[data]==2.60.0"


INSTALL_HINT = f'batch rendering needs Ray: pip install -e ".[scale]" (or pip install "{RAY_REQUIREMENT}")'


MAX_RESTARTS = 3  # times Ray restarts a render worker whose process died


MAX_TASK_RETRIES = 3  # times Ray resends the job a dead worker held


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
            raise BatchError(one_line(f"--ray-address: cannot join {cluster.address!r}: {first_line(error)}")) from None
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


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _error_line(error: Exception) -> str:
    """A job's error as one line: the message of a user error, the type too for anything else."""
    from core.plan import PlanValidationError

    if isinstance(error, (PlanValidationError, ValueError, OSError)):
        return one_line(first_line(error))
    return one_line(f"{type(error).__name__}: {first_line(error)}")


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
