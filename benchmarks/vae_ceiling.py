"""What the autoencoder alone lets the layout metrics reach: exact drawings of the planned videos,
scored as drawn and after encode -> decode.

    .venv/bin/python benchmarks/vae_ceiling.py [PROMPTS.jsonl ...] [--vae DIR ...]
    .venv/bin/python benchmarks/vae_ceiling.py --grid 0.15 0.24 --vae DIR ...

Each prompt is planned with the offline rules planner and drawn exactly by
:func:`core.evaluation.scoring.draw_plan` (the toy world's own renderer: perfect boxes, colours and
identities). The drawing is scored by :mod:`core.evaluation`'s detector and metrics, then every
autoencoder given with ``--vae`` (a folder with an ``AutoencoderKL`` config, drawn at 64x64, or a
``FrameAutoencoderKL`` one, model v2's, at 128x128; default: the shipped model's ``vae/``)
reconstructs it from the posterior mean and the reconstruction is scored too. No
denoiser is involved: a metric below the issue's bar here cannot be cleared by any UNet trained on
these latents.

``--grid SIDE ...`` scores single shapes instead: for each side (a share of the frame), one exact
drawing of every kind x colour x background (384 frames) at a random place, and the kind accuracy
of the shape classifier on the drawing and on each autoencoder's reconstruction, overall and by
kind, colour and background. It shows what the prompt sets are too small to: which combinations
an autoencoder loses.
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


def grid_rows(vaes: dict, sides: list[float], seed: int = 1) -> None:
    """Print the ``--grid`` table: kind accuracy of single exact shapes, drawn and reconstructed."""
    import itertools
    from collections import defaultdict

    import numpy as np

    from core.toyworld.detect import detect
    from core.toyworld.shapes import classify
    from core.toyworld.world import BACKGROUNDS, COLORS, KINDS, ToyObject, render_frame

    def correct(frame, kind, background) -> bool:
        found = detect(frame, background=background)
        return bool(found) and classify(frame, found[0], background=background).kind == kind

    rng = np.random.default_rng(seed)
    print("| side | frames | kind accuracy | " + " | ".join(KINDS) + " | worst colour | worst background |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in KINDS) + " | --- | --- |")
    for side in sides:
        combos = list(itertools.product(KINDS, COLORS, BACKGROUNDS))
        frames = []
        for kind, color, background in combos:
            x, y = rng.uniform(0.05, 0.95 - side, size=2)
            frames.append(render_frame(background, [ToyObject(kind, color, (x, y, x + side, y + side))], 128))
        drawn = np.stack(frames)
        rows = {"drawn at 128": drawn}
        for name, (vae, size) in vaes.items():
            if size == 128:
                rows[name] = np.concatenate([reconstruct(vae, drawn[i : i + 48]) for i in range(0, len(drawn), 48)])
        for name, videos in rows.items():
            by = {"kind": defaultdict(list), "color": defaultdict(list), "background": defaultdict(list)}
            for frame, (kind, color, background) in zip(videos, combos):
                ok = correct(frame, kind, background)
                for key, value in (("kind", kind), ("color", color), ("background", background)):
                    by[key][value].append(ok)
            mean = {key: {k: float(np.mean(v)) for k, v in groups.items()} for key, groups in by.items()}
            worst = {key: min(mean[key].items(), key=lambda item: item[1]) for key in ("color", "background")}
            print(
                f"| {side:.2f} | {name} | {np.mean(list(mean['kind'].values())):.3f} | "
                + " | ".join(f"{mean['kind'][k]:.2f}" for k in KINDS)
                + " | " + " | ".join(f"{k} {v:.2f}" for k, v in worst.values()) + " |"
            )


def main() -> None:
    from core.evaluation.run import read_prompts
    from core.evaluation.scoring import aggregate, draw_plan, score_video
    from core.planner.rules import plan_with_rules

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompts", nargs="*", type=Path, default=[ROOT / "assets" / "eval" / "toyworld_dev.jsonl", ROOT / "assets" / "eval" / "toyworld_heldout.jsonl"])
    parser.add_argument("--vae", nargs="*", type=Path, default=[ROOT / "assets" / "layout2vid-toy" / "vae"])
    parser.add_argument("--grid", nargs="+", type=float, metavar="SIDE", help="score single shapes of these sides (shares of a 128x128 frame) instead of prompts")
    args = parser.parse_args()

    vaes = {str(path): load_autoencoder(path) for path in args.vae}
    if args.grid:
        grid_rows(vaes, args.grid)
        return
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
