"""What the autoencoder alone lets the layout metrics reach: exact drawings of the planned videos,
scored as drawn and after encode -> decode.

    .venv/bin/python benchmarks/vae_ceiling.py [PROMPTS.jsonl ...] [--vae DIR ...]

Each prompt is planned with the offline rules planner and drawn exactly by
:func:`core.evaluation.scoring.draw_plan` (the toy world's own renderer: perfect boxes, colours and
identities). The drawing is scored by :mod:`core.evaluation`'s detector and metrics, then every
autoencoder given with ``--vae`` (a folder with an ``AutoencoderKL`` config; default: the shipped
model's ``vae/``) reconstructs it from the posterior mean and the reconstruction is scored too. No
denoiser is involved: a metric below the issue's bar here cannot be cleared by any UNet trained on
these latents.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLUMNS = ["box_miou", "box_ap50", "color_accuracy", "count_accuracy", "consistency", "kind_accuracy", "background_accuracy"]


def main() -> None:
    import torch
    from diffusers import AutoencoderKL

    from core.evaluation.run import read_prompts
    from core.evaluation.scoring import aggregate, draw_plan, score_video
    from core.planner.rules import plan_with_rules

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompts", nargs="*", type=Path, default=[ROOT / "assets" / "eval" / "toyworld_dev.jsonl", ROOT / "assets" / "eval" / "toyworld_heldout.jsonl"])
    parser.add_argument("--vae", nargs="*", type=Path, default=[ROOT / "assets" / "layout2vid-toy" / "vae"])
    args = parser.parse_args()

    vaes = {str(path): AutoencoderKL.from_pretrained(path).float().eval() for path in args.vae}
    print("| prompts | frames | " + " | ".join(COLUMNS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |")
    for path in args.prompts:
        plans = [plan_with_rules(item["prompt"]) for item in read_prompts(path)]
        drawn = [draw_plan(plan) for plan in plans]
        rows = {"drawn": drawn}
        for name, vae in vaes.items():
            rows[name] = []
            for frames in drawn:
                images = torch.from_numpy(frames.copy()).permute(0, 3, 1, 2).float() / 127.5 - 1
                with torch.no_grad():
                    decoded = vae.decode(vae.encode(images).latent_dist.mean).sample
                rows[name].append(((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
        for name, videos in rows.items():
            metrics = aggregate([score_video(plan, frames) for plan, frames in zip(plans, videos)])
            print(f"| {path.name} | {name} | " + " | ".join(f"{metrics[k]:.3f}" for k in COLUMNS) + " |")


if __name__ == "__main__":
    main()
