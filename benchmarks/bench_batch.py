"""Batch rendering throughput on Ray: videos per minute with 1 and 2 workers, the same jobs, one run.

    .venv/bin/python benchmarks/bench_batch.py [--jobs 8] [--steps 25] [--frames 16] [--workers 1 2]

One embedded local Ray cluster (this machine's CPUs) serves every run. Planning is warmed up first
(Ray Data's first run and spaCy's load in the task workers), so each timed run is what a batch costs
on a running cluster: planning, starting the render actors (each loads the default model), the
renders and the writes. Each run writes to a fresh folder, so nothing is skipped. Printed per run:
the end-to-end videos per minute, the mean render time per video on a worker, and the start-up
(wall time less the renders' share per worker); then the ratio of the videos per minute.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8, help="prompt jobs per run (the dev prompts, cycled)")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (the default of render)")
    parser.add_argument("--frames", type=int, default=16, help="frames per scene (8-64)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import ray

    from core.batch import Cluster, plan_on_ray, run_batch
    from core.render import RenderSettings

    prompts = [json.loads(line)["prompt"] for line in (ROOT / "assets" / "eval" / "toyworld_dev.jsonl").read_text().splitlines() if line.strip()]
    jobs = [{"id": f"job{i:03d}", "prompt": prompts[i % len(prompts)], "frames": args.frames, "seed": i} for i in range(args.jobs)]
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    try:
        plan_on_ray([{"index": i, "prompt": job["prompt"], "plan": "", "frames": args.frames} for i, job in enumerate(jobs)], {"planner": "rules"})
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            jobs_file = Path(tmp) / "jobs.jsonl"
            jobs_file.write_text("".join(json.dumps(job) + "\n" for job in jobs))
            for workers in args.workers:
                out = Path(tmp) / f"out{workers}"
                summary = run_batch(jobs_file, out, settings=RenderSettings(num_inference_steps=args.steps), model={}, cluster=Cluster(workers=workers))
                entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
                assert summary.ok == len(jobs) and summary.errors == 0, summary.line()
                render = sum(e["seconds"] for e in entries) / len(entries)
                rows.append((workers, summary.ok, summary.seconds, summary.videos_per_minute, render, summary.seconds - render * len(entries) / workers))
    finally:
        ray.shutdown()

    print(f"{args.jobs} prompt jobs ({args.frames} frames each), {args.steps} steps, the default model (model v2, 128x128) on the CPU; {os.cpu_count()} CPUs")
    print(f"{'workers':>7} {'videos':>6} {'seconds':>8} {'videos/min':>10} {'s/video on a worker':>20} {'start-up s':>10}")
    for workers, videos, seconds, per_minute, render, startup in rows:
        print(f"{workers:>7} {videos:>6} {seconds:>8.1f} {per_minute:>10.2f} {render:>20.2f} {startup:>10.1f}")
    if len(rows) >= 2:
        print(f"{rows[-1][0]} workers / {rows[0][0]} worker{'s' if rows[0][0] > 1 else ''}: {rows[-1][3] / rows[0][3]:.2f}x videos per minute")


if __name__ == "__main__":
    main()
