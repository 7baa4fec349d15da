"""Batch rendering on a local Ray cluster (2 CPUs, shared by every test of this module): two workers
render 4 jobs and record 1 invalid one while one of them is killed mid-job, and nothing is lost; a
rerun renders nothing; ``eval`` on Ray workers gives the serial path's metrics. Also the jobs file's
checks and the skip rule, without Ray. Jobs are plans (planning prompts is the CLI test's) and
renders are 8 frames in 2 steps: most of the time is Ray's and the workers' start-up."""

import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from core.batch import MAX_TASK_RETRIES, BatchError, Cluster, read_jobs, run_batch, up_to_date
from core.export import read_mp4
from core.plan import save_plan
from core.planner.rules import plan_with_rules
from core.render import RenderSettings
from tests.conftest import EVAL_PROMPTS

RED = "A red ball rolls from left to right across the grass."
BLUE = "A blue star falls from the top of the night sky to the bottom."
FAST = RenderSettings(num_inference_steps=2)
MODEL = {}  # the default model (model v2, 128x128) on the CPU


@pytest.fixture(scope="module")
def ray_cluster():
    """One embedded cluster for the module: run_batch finds Ray initialised and leaves it running."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def write_jobs(path, jobs):
    path.write_text("".join((job if isinstance(job, str) else json.dumps(job)) + "\n" for job in jobs))
    return path


def an_invalid_plan():
    plan = json.loads(plan_with_rules(RED, num_frames=8).model_dump_json())
    plan["scenes"][0]["keyframes"][-1]["boxes"]["e1"] = [0.6, 0.4, 0.1, 0.6]
    return plan


def _render_workers() -> list[int]:
    """Pids of the Ray actor processes on this machine that run a BatchRenderer."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                title = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            if title.startswith("ray::MapWorker(MapBatches(BatchRenderer))"):
                found.append(int(name))
    return found


def _pid(worker: str) -> int:
    return int(worker.rsplit(":", 1)[1])  # the manifest's worker is host:pid


def test_two_workers_render_four_jobs_record_the_invalid_one_lose_nothing_to_a_kill_and_a_rerun_renders_nothing(tmp_path, ray_cluster):
    # One slow job first and three quick ones: the first result comes from the worker that does not
    # hold the slow job, and at that moment the other worker, mid-render, is killed (SIGKILL).
    plan = json.loads(plan_with_rules(BLUE, num_frames=8).model_dump_json())
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"id": "slow", "plan": plan, "num_inference_steps": 48},  # still rendering when the first quick job is done, even on a cold machine
            {"id": "seed-5", "plan": plan, "seed": 5},
            {"plan": plan},
            {"id": "guided", "plan": plan, "guidance_scale": 4.0},
            {"id": "broken", "plan": an_invalid_plan()},
        ],
    )
    out, killed = tmp_path / "out", []

    def kill_the_other_worker(entry):
        if killed or not entry["worker"]:
            return
        deadline = time.monotonic() + 20  # the other actor may still be starting on a cold machine
        while time.monotonic() < deadline:
            others = [pid for pid in _render_workers() if pid != _pid(entry["worker"])]
            if others:
                os.kill(others[0], signal.SIGKILL)
                killed.append(others[0])
                return
            time.sleep(0.2)

    summary = run_batch(jobs, out, settings=FAST, model=MODEL, cluster=Cluster(workers=2), on_entry=kill_the_other_worker)
    assert killed and MAX_TASK_RETRIES >= 1
    assert (summary.ok, summary.errors, summary.skipped, summary.workers) == (4, 1, 0, 2)
    assert summary.line().startswith("batch: 4 ok, 1 error, 0 skipped; ") and "videos per minute" in summary.line()

    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [e["id"] for e in entries] == ["slow", "seed-5", "0003", "guided", "broken"]  # one line per job, file order
    for entry in entries[:4]:
        assert entry["status"] == "ok" and entry["error"] is None and entry["seconds"] > 0
        frames, fps = read_mp4(out / entry["outputs"][0])
        assert frames.shape == (8, 128, 128, 3) and fps == 8
        assert (out / entry["outputs"][1]).is_file()
    assert all(_pid(e["worker"]) != killed[0] for e in entries[:4] if e["seconds"] > 0 and e["id"] == "slow")  # redone by another process
    assert [e["settings"]["render"]["num_inference_steps"] for e in entries[:4]] == [48, 2, 2, 2]
    assert entries[1]["settings"]["render"]["seed"] == 5 and entries[3]["settings"]["render"]["guidance_scale"] == 4.0
    assert len({e["plan_hash"] for e in entries[:4]}) == 1  # one plan, four settings
    broken = entries[4]
    assert broken["status"] == "error" and broken["outputs"] == [] and not (out / "broken.mp4").exists()
    assert broken["error"] == "jobs.jsonl:5: scenes[0].keyframes[1].boxes.e1: x0 must be < x1 (got 0.6 >= 0.1)"
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".mp4") == ["0003.mp4", "guided.mp4", "seed-5.mp4", "slow.mp4"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".mp4", ".json")}
    again = run_batch(jobs, out, settings=FAST, model=MODEL, cluster=Cluster(workers=2))
    assert (again.ok, again.errors, again.skipped, again.workers) == (0, 1, 4, 0)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".mp4", ".json")} == written
    rerun = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [e["skipped"] for e in rerun] == [True, True, True, True, False]
    assert [e["plan_hash"] for e in rerun[:4]] == [e["plan_hash"] for e in entries[:4]]


def test_eval_on_ray_workers_gives_the_serial_metrics(tmp_path, ray_cluster):
    import torch

    from core.evaluation.run import read_prompts, run_eval
    from core.render import load_pipeline

    prompts = read_prompts(EVAL_PROMPTS / "toyworld_dev.jsonl", limit=2)
    settings = RenderSettings(num_inference_steps=2)
    parallel = run_eval(prompts, tmp_path / "ray", settings=settings, variant="full", cluster=Cluster(workers=2), model=MODEL)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a 1-CPU worker: the same arithmetic, so the same pixels
    try:
        pipe = load_pipeline()
        pipe.set_progress_bar_config(disable=True)
        serial = run_eval(prompts, tmp_path / "serial", pipe=pipe, settings=settings, variant="full")
    finally:
        torch.set_num_threads(threads)
    parallel.pop("seconds_per_video"), serial.pop("seconds_per_video")
    assert parallel == serial and parallel["videos"] == 2
    saved = [json.loads((tmp_path / run / "metrics.json").read_text())["settings"] for run in ("ray", "serial")]
    assert saved[0] == saved[1]
    assert sorted(p.name for p in (tmp_path / "ray" / "videos").iterdir()) == ["000.mp4", "000.plan.json", "001.mp4", "001.plan.json"]


def test_job_lines_are_checked_one_by_one(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"prompt": RED},
            "not json",
            '["a list"]',
            {"prompt": RED, "plan": {}},
            {"id": "a/b", "prompt": RED},
            {"id": "x", "prompt": RED},
            {"id": "x", "prompt": BLUE},
            {"prompt": RED, "steps": 3},
            {"prompt": RED, "num_inference_steps": 0},
            {"prompt": RED, "seed": "3"},
            {"prompt": RED, "frames": 100},
            {"plan": {"prompt": RED}, "frames": 8},
            {"prompt": "  "},
            {"prompt": BLUE, "seed": 7, "frames": 8, "layout_control": "none"},
        ],
    )
    parsed = read_jobs(jobs, settings=FAST, frames=16)
    errors = [job.error.removeprefix(f"jobs.jsonl:{job.line}: ") for job in parsed]
    assert errors[0] == "" and parsed[0].id == "0001" and parsed[0].frames == 16
    assert errors[1] == "not JSON (Expecting value)"
    assert errors[2].startswith("must be a JSON object")
    assert errors[3] == 'needs exactly one of "prompt" and "plan"'
    assert errors[4] == "id: must be 1-64 of [A-Za-z0-9_-] (got 'a/b')"
    assert errors[5] == "" and errors[6] == "id: 'x' is already used on line 6"
    assert errors[7].startswith("unknown key 'steps' (allowed: id, prompt, plan, seed, frames, num_inference_steps, ")
    assert errors[8] == "num_inference_steps: must be >= 1 (got 0)"
    assert errors[9].startswith("seed: ")  # a JSON string is not a seed
    assert errors[10] == "frames: must be an integer in [8, 64] (got 100)"
    assert errors[11].startswith("frames: only for prompt jobs")
    assert errors[12] == "prompt: must be a non-empty string"
    last = json.loads(parsed[13].settings)
    assert errors[13] == "" and (last["seed"], last["layout_control"], last["num_inference_steps"], parsed[13].frames) == (7, "none", 2, 8)
    assert all(len(job.error) <= 300 and "\n" not in job.error for job in parsed)
    with pytest.raises(BatchError, match="empty.jsonl: has no jobs"):
        read_jobs(write_jobs(tmp_path / "empty.jsonl", ["", "  "]), settings=FAST)


def test_a_job_is_skipped_only_with_the_same_plan_settings_and_files(tmp_path):
    from core.batch import plan_hash

    plan = plan_with_rules(RED, num_frames=8)
    settings = {"render": FAST.model_dump(mode="json"), "model": {"model": None}}
    previous = {"id": "a", "status": "ok", "plan_hash": plan_hash(plan), "settings": settings}
    (tmp_path / "a.mp4").write_bytes(b"video")
    save_plan(plan, tmp_path / "a.plan.json")
    assert up_to_date(previous, hash_=plan_hash(plan), settings=settings, out=tmp_path)
    assert not up_to_date(previous, hash_="0" * 16, settings=settings, out=tmp_path)
    assert not up_to_date(previous, hash_=plan_hash(plan), settings={**settings, "model": {"model": "other"}}, out=tmp_path)
    assert not up_to_date({**previous, "status": "error"}, hash_=plan_hash(plan), settings=settings, out=tmp_path)
    assert not up_to_date(None, hash_=plan_hash(plan), settings=settings, out=tmp_path)
    save_plan(plan_with_rules(BLUE, num_frames=8), tmp_path / "a.plan.json")  # the plan file was replaced
    assert not up_to_date(previous, hash_=plan_hash(plan), settings=settings, out=tmp_path)
    save_plan(plan, tmp_path / "a.plan.json")
    (tmp_path / "a.mp4").unlink()
    assert not up_to_date(previous, hash_=plan_hash(plan), settings=settings, out=tmp_path)


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    from core.batch import remove_stale_temporaries

    for name in (".a.mp4.x1.tmp", ".a.plan.json.x2.tmp", ".a.mp4.x3.bak", ".ab.mp4.x4.tmp", "a.mp4", ".b.mp4.x5.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert remove_stale_temporaries(tmp_path, ["a.mp4", "a.plan.json"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ab.mp4.x4.tmp", ".b.mp4.x5.tmp", "a.mp4"]
