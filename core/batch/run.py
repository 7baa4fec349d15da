"""A batch from jobs file to manifest (:func:`run_batch`), and the evaluation on the same path (:func:`eval_on_ray`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.batch.jobs import MANIFEST, Job, job_settings, outputs_of, read_jobs, read_manifest, remove_stale_temporaries, up_to_date
from core.batch.workers import MAX_TASK_RETRIES, Cluster, first_line, plan_on_ray, pool_size, ray_session, render_on_ray
from core.messages import one_line, short_repr


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
                results = render_on_ray(to_render, model=model, cluster=cluster)
                while True:
                    try:
                        result = next(results)
                    except StopIteration:
                        break
                    except Exception as error:  # workers died past the retries: the unfinished jobs are error lines
                        message = f"not rendered: a worker died more than {MAX_TASK_RETRIES} times ({first_line(error)}); rerun to retry"
                        for row in to_render:
                            job = by_line[row["index"]]
                            if job.line not in entries:
                                record(_entry(job, error=_on_line(jobs_path, job, message), settings=job_settings(job.settings, model), hash_=row["plan_hash"]))
                        break
                    job = by_line[int(result["index"])]  # outside the try: an error in on_entry is the caller's, not a dead worker
                    record(
                        _entry(
                            job, error=_on_line(jobs_path, job, result["error"]) if result["status"] != "ok" else None,
                            settings=job_settings(job.settings, model), hash_=hashes[job.line], seconds=float(result["seconds"]), worker=str(result["worker"]),
                        )
                    )
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
