"""Batch rendering on Ray: many plans, many workers, nothing lost.

    python launch.py batch JOBS.jsonl --out DIR [--workers N] [--gpus-per-worker G] [--ray-address ADDR] [render options]

Data flow, on Ray Data (``ray[data]``, the optional ``[scale]`` extra):

1. the driver reads ``JOBS.jsonl`` (:func:`core.batch.jobs.read_jobs`); a line that is not a valid job becomes an
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

Modules: :mod:`core.batch.jobs` (jobs files, manifests), :mod:`core.batch.workers` (Ray: cluster,
tasks, render actors), :mod:`core.batch.run` (a batch end to end, and the evaluation on Ray). The
names below are the package's public API.
"""

from core.batch.jobs import (
    FRAMES_RANGE,
    JOB_ID_PATTERN,
    JOB_KEYS,
    MANIFEST,
    MAX_JOB_BYTES,
    BatchError,
    Job,
    job_settings,
    model_settings,
    outputs_of,
    plan_hash,
    read_jobs,
    read_manifest,
    remove_stale_temporaries,
    up_to_date,
)
from core.batch.run import BatchSummary, eval_on_ray, run_batch
from core.batch.workers import (
    INSTALL_HINT,
    MAX_RESTARTS,
    MAX_TASK_RETRIES,
    RAY_REQUIREMENT,
    BatchRenderer,
    Cluster,
    first_line,
    plan_on_ray,
    plan_row,
    pool_size,
    ray_session,
    render_on_ray,
    require_ray,
)

__all__ = ['MANIFEST', 'JOB_ID_PATTERN', 'JOB_KEYS', 'MAX_JOB_BYTES', 'FRAMES_RANGE', 'BatchError', 'Job', 'read_jobs', 'plan_hash', 'model_settings', 'job_settings', 'outputs_of', 'remove_stale_temporaries', 'up_to_date', 'read_manifest', 'BatchSummary', 'run_batch', 'eval_on_ray', 'RAY_REQUIREMENT', 'INSTALL_HINT', 'MAX_RESTARTS', 'MAX_TASK_RETRIES', 'require_ray', 'Cluster', 'ray_session', 'pool_size', 'first_line', 'plan_row', 'plan_on_ray', 'BatchRenderer', 'render_on_ray']
