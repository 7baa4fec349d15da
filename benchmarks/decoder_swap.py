"""Score candidate autoencoders on the shipped denoiser's own latents: render once, decode with each.

    .venv/bin/python benchmarks/decoder_swap.py --vae runs/toy26/vae_decoder [--model DIR] [--seeds 0 1 2] [PROMPTS.jsonl ...]

The decoder stages (``python -m core.training decoder`` / ``refine``) keep the encoder, so the
latents the UNet samples do not change with the decoder. This script renders every prompt once
per seed (``launch.py eval``'s ``full`` variant: rules planner, 25 steps, the model's default
guidance), keeps each scene's final latents, and decodes them with the model's own autoencoder and
with every ``--vae``. Each row is exactly what ``launch.py eval --seed S`` would report with that
autoencoder in the pipeline, for one render per prompt and seed instead of one per candidate.

Every candidate decodes with the model's ``scaling_factor`` (a decoder-stage output folder keeps the
library default until ``python -m core.training export`` writes the data's). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLUMNS = ["box_miou", "box_ap50", "direction_accuracy", "color_accuracy", "count_accuracy", "consistency"]


def captured_latents(pipe, plans, settings) -> list[list]:
    """Render every plan; return each plan's per-scene latents (1, C, F, h, w) as ``pipe`` decoded them."""
    from core.render import render_plan

    captured: list = []
    decode = pipe.decode_latents

    def keep(latents, *args, **kwargs):
        captured.append(latents.detach().clone())
        return decode(latents, *args, **kwargs)

    pipe.decode_latents = keep
    try:
        out = []
        for plan in plans:
            captured.clear()
            render_plan(pipe, plan, settings)
            out.append(list(captured))
    finally:
        del pipe.decode_latents  # back to the class's method
    return out


def main() -> None:
    import numpy as np
    import torch
    from diffusers import AutoencoderKL

    from core.evaluation.run import read_prompts, variant_settings
    from core.evaluation.scoring import aggregate, score_video
    from core.planner.rules import plan_with_rules
    from core.render import REFERENCE_MODEL, load_pipeline

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompts", nargs="*", type=Path, default=[ROOT / "assets" / "eval" / "toyworld_dev.jsonl", ROOT / "assets" / "eval" / "toyworld_heldout.jsonl"])
    parser.add_argument("--model", type=Path, default=REFERENCE_MODEL, help="a Layout2Vid pipeline folder (default: the reference layout2vid-toy)")
    parser.add_argument("--vae", nargs="+", type=Path, required=True, help="autoencoder folders that share the model's encoder")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--limit", type=int, default=None, help="first N prompts of each file")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    scaling_factor = pipe.vae.config.scaling_factor
    candidates = {str(args.model / "vae") + " (the model's)": pipe.vae}
    for path in args.vae:
        vae = AutoencoderKL.from_pretrained(path).to(pipe.vae.dtype).eval()
        vae.register_to_config(scaling_factor=scaling_factor)
        candidates[str(path)] = vae
    print("| prompts | seed | autoencoder | " + " | ".join(COLUMNS) + " |")
    print("| --- " * (len(COLUMNS) + 3) + "|")
    own = pipe.vae
    for prompts in args.prompts:
        items = read_prompts(prompts, args.limit)
        plans = [plan_with_rules(item["prompt"]) for item in items]
        for seed in args.seeds:
            latents = captured_latents(pipe, plans, variant_settings("full", seed=seed))
            for name, vae in candidates.items():
                pipe.vae = vae
                with torch.no_grad():
                    scores = [
                        score_video(plan, np.concatenate([pipe.decode_latents(z) for z in scenes]), checks=item.get("checks"))
                        for item, plan, scenes in zip(items, plans, latents)
                    ]
                pipe.vae = own
                metrics = aggregate(scores)
                print(f"| {prompts.stem} ({len(items)}) | {seed} | {name} | " + " | ".join(f"{metrics[k]:.3f}" for k in COLUMNS) + " |", flush=True)


if __name__ == "__main__":
    main()
