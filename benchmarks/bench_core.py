"""Speed and memory of the main job on this machine, printed as figures (not a timed test).

    .venv/bin/python benchmarks/bench_core.py [--model assets/layout2vid-toy] [--steps 25] [--rounds 5]

Prints: planning time per dev prompt with the rules planner (parser already loaded); seconds to
render one 16-frame scene at the model's frame size (64x64 for ``layout2vid-toy``, 128x128 for
``wan-toy``) at 25 steps with classifier-free guidance on the model's default guidance interval, beside
its target (10 s at 64x64, 15 s at 128x128); peak resident memory;
the render's achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode) beside this machine's own
fp32 matmul GFLOP/s, measured in the same run; the cost of the layout controls (gated attention on,
text only, training-free guidance, guidance on every step) as ratios measured in the same run, over ``--rounds`` interleaved
rounds: the ratio of the best times and the median of each round's own ratio, beside the ratio of
their FLOPs (counted once per variant; not for energy guidance, whose autograd.grad the counter
cannot run).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from core.planner.rules import load_parser, plan_with_rules
    from core.render import RenderSettings, load_pipeline, recommended_guidance_scale, render_scene

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--prompts", type=Path, default=ROOT / "assets" / "eval" / "toyworld_dev.jsonl")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the layout-control renders (>= 1)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds: must be >= 1 (got {args.rounds})")

    load_parser()
    prompts = [json.loads(line)["prompt"] for line in args.prompts.read_text().splitlines() if line.strip()]
    times = []
    for prompt in prompts:
        start = time.perf_counter()
        plan_with_rules(prompt)
        times.append(time.perf_counter() - start)
    print(f"plan (rules): mean {1000 * sum(times) / len(times):.1f} ms, max {1000 * max(times):.1f} ms per prompt over {len(times)} prompts (target <= 1000 ms)")

    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    plan = plan_with_rules("A red ball rolls from left to right across the grass.")
    assert plan.scenes[0].num_frames == 16
    settings = RenderSettings(num_inference_steps=args.steps)
    render_scene(pipe, plan, 0, RenderSettings(num_inference_steps=2))  # warm-up
    runs = []
    for seed in range(3):
        start = time.perf_counter()
        frames = render_scene(pipe, plan, 0, settings.model_copy(update={"seed": seed}))
        runs.append(time.perf_counter() - start)
    seconds = min(runs)
    with FlopCounterMode(display=False) as counter:
        render_scene(pipe, plan, 0, settings)
    flops = counter.get_total_flops()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    machine = matmul_gflops()
    achieved = flops / seconds / 1e9
    interval = getattr(pipe.config, "default_guidance_interval", None) or [0.0, 1.0]
    target_s = 15 if frames.shape[1] >= 128 else 10  # model v2's bar at 128x128; the first model's at 64x64
    print(f"render: {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]}, {args.steps} steps, guidance {recommended_guidance_scale(args.model)} "
          f"on {interval[0]:g}-{interval[1]:g} of the steps: "
          f"{seconds:.2f} s (best of {len(runs)}: {', '.join(f'{r:.2f}' for r in runs)}; target <= {target_s} s)")
    print(f"peak memory (max RSS): {peak_gb:.2f} GB (target <= 3 GB)")
    print(f"render FLOPs: {flops / 1e9:.1f} GFLOP -> {achieved:.1f} GFLOP/s achieved")
    print(f"machine fp32 matmul (1024^3): {machine:.1f} GFLOP/s; render/matmul ratio {achieved / machine:.2f}")
    print(f"torch threads: {torch.get_num_threads()}")

    # Layout control costs, interleaved so that machine noise hits every variant alike.
    variants = {
        "gated attention on (alpha 1)": settings,
        "gated attention on, conditional branch only (--unconditional-layout none)": settings.model_copy(update={"unconditional_layout": "none"}),
        "gated attention on, guidance on every step (--guidance-interval 0 1)": settings.model_copy(update={"guidance_interval": (0.0, 1.0)}),
        "gated attention off (text only)": settings.model_copy(update={"layout_control": "none"}),
        "training-free guidance (adapter off)": settings.model_copy(update={"layout_control": "guidance"}),
        "training-free masking, alpha 1 (adapter off)": settings.model_copy(
            update={"layout_control": "guidance", "box_guidance_method": "mask", "box_guidance_alpha": 1.0}
        ),
    }
    times = {name: [] for name in variants}
    for seed in range(args.rounds):
        for name, variant in variants.items():
            start = time.perf_counter()
            render_scene(pipe, plan, 0, variant.model_copy(update={"seed": seed}))
            times[name].append(time.perf_counter() - start)
    # Two statistics: the best times' ratio, and the median over rounds of each round's own ratio
    # (renders seconds apart, so a slow spell of a shared machine cancels out).
    off = times["gated attention off (text only)"]
    for name, t in times.items():
        per_round = statistics.median(a / b for a, b in zip(t, off))
        print(f"{name}: {min(t):.2f} s (best of {args.rounds}), {min(t) / min(off):.2f}x text only; median of per-round ratios {per_round:.3f}x")
        print(f"    per round: {', '.join(f'{x:.2f}' for x in t)} s")
    # The FLOPs of each variant (one render, FlopCounterMode), the machine-independent cost. The
    # energy guidance's autograd.grad cannot run under the counter, so it has none.
    flops = {}
    for name, variant in variants.items():
        if variant.layout_control == "guidance" and (variant.box_guidance_method or "energy") == "energy":
            continue
        with FlopCounterMode(display=False) as counter:
            render_scene(pipe, plan, 0, variant)
        flops[name] = counter.get_total_flops()
    off_flops = flops["gated attention off (text only)"]
    print("FLOPs: " + "; ".join(f"{name}: {value / 1e9:.1f} GFLOP, {value / off_flops:.3f}x" for name, value in flops.items()))
    print("targets: gated attention <= 1.15x, training-free guidance <= 1.5x text only")


if __name__ == "__main__":
    main()
