"""What the autoencoder alone lets the layout metrics reach: exact drawings of the planned videos,
scored as drawn and after encode -> decode.

    .venv/bin/python benchmarks/vae_ceiling.py [PROMPTS.jsonl ...] [--vae DIR ...]

Each prompt is planned with the offline rules planner and drawn exactly by
:func:`core.evaluation.scoring.draw_plan` (the toy world's own renderer: perfect boxes, colours and
identities). The drawing is scored by :mod:`core.evaluation`'s detector and metrics, then every
autoencoder given with ``--vae`` (a folder with an ``AutoencoderKL`` config, drawn at 64x64, or a
``FrameAutoencoderKL`` one, model v2's, at 128x128; default: the shipped model's ``vae/``)
reconstructs it from the posterior mean and the reconstruction is scored too. No
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


def load_autoencoder(path: Path):
    """The autoencoder of a folder and the frame side it was trained at: an ``AutoencoderKL`` (the
    shipped toy model's, 64) or a :class:`core.models.toy_wan.FrameAutoencoderKL` (model v2's, 128),
    by its config's class."""
    import json

    from diffusers import AutoencoderKL

    from core.models.toy_wan import FrameAutoencoderKL

    if json.loads((path / "config.json").read_text()).get("_class_name") == "FrameAutoencoderKL":
        return FrameAutoencoderKL.from_pretrained(path).float().eval(), 128
    return AutoencoderKL.from_pretrained(path).float().eval(), 64


def reconstruct(vae, frames):
    """frames (F, H, W, 3) uint8 -> the autoencoder's reconstruction from its posterior mean, same shape."""
    import torch

    images = torch.from_numpy(frames.copy()).permute(0, 3, 1, 2).float() / 127.5 - 1  # (F, 3, H, W)
    with torch.no_grad():
        decoded = vae.decode(vae.encode(images).latent_dist.mean).sample
    return ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def main() -> None:
    from core.evaluation.run import read_prompts
    from core.evaluation.scoring import aggregate, draw_plan, score_video
    from core.planner.rules import plan_with_rules

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompts", nargs="*", type=Path, default=[ROOT / "assets" / "eval" / "toyworld_dev.jsonl", ROOT / "assets" / "eval" / "toyworld_heldout.jsonl"])
    parser.add_argument("--vae", nargs="*", type=Path, default=[ROOT / "assets" / "layout2vid-toy" / "vae"])
    args = parser.parse_args()

    vaes = {str(path): load_autoencoder(path) for path in args.vae}
    print("| prompts | frames | " + " | ".join(COLUMNS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |")
    for path in args.prompts:
        plans = [plan_with_rules(item["prompt"]) for item in read_prompts(path)]
        for size in sorted({size for _, size in vaes.values()}):
            drawn = [draw_plan(plan, size) for plan in plans]
            rows = {f"drawn at {size}": drawn}
            for name, (vae, vae_size) in vaes.items():
                if vae_size == size:
                    rows[name] = [reconstruct(vae, frames) for frames in drawn]
            for name, videos in rows.items():
                metrics = aggregate([score_video(plan, frames) for plan, frames in zip(plans, videos)])
                print(f"| {path.name} | {name} | " + " | ".join(f"{metrics[k]:.3f}" for k in COLUMNS) + " |")

if __name__ == "__main__":
    main()
