"""What the autoencoder alone lets the layout metrics reach: exact drawings of the planned videos,
scored as drawn and after encode -> decode.

    .venv/bin/python benchmarks/vae_ceiling.py [PROMPTS.jsonl ...] [--vae DIR ...] [--misses]
    .venv/bin/python benchmarks/vae_ceiling.py --grid 0.15 0.24 --vae DIR ... [--figure PNG] [--by-contrast] [--silhouettes]

Each prompt is planned with the offline rules planner and drawn exactly by
:func:`core.evaluation.scoring.draw_plan` (the toy world's own renderer: perfect boxes, colours and
identities). The drawing is scored by :mod:`core.evaluation`'s detector and metrics, then every
autoencoder given with ``--vae`` (a folder with an ``AutoencoderKL`` config, drawn at 64x64, or a
``FrameAutoencoderKL`` one, model v2's, at 128x128; default: the shipped model's ``vae/``)
reconstructs it from the posterior mean and the reconstruction is scored too. No
denoiser is involved: a metric below the issue's bar here cannot be cleared by any UNet trained on
these latents.

``--misses`` adds, per prompt file and autoencoder, where its kind accuracy is lost: the
(entity, frame)s whose kind the classifier gets right as drawn and wrong after encode -> decode,
counted by prompt, planned kind and what they were taken for (or "unmatched").

``--grid SIDE ...`` scores single shapes instead: for each side (a share of the frame), one exact
drawing of every kind x colour x background (384 frames) at a random place, and the kind accuracy
of the shape classifier on the drawing and on each autoencoder's reconstruction, overall and by
kind, colour and background. It shows what the prompt sets are too small to: which combinations
an autoencoder loses. ``--figure`` draws, for every kind, three colour/background pairs (the
first colour on the sky, and the two that ``--grid`` found hardest: a blue shape on the night and a
green one on the grass), each as drawn and as every autoencoder reconstructs it, cropped around the
shape and enlarged 3x; one block of rows per side.
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


FIGURE_PAIRS = (("red", "sky"), ("blue", "night"), ("green", "grass"))  # (colour, background) columns of --figure


def grid_figure(blocks: list[tuple[dict, list, list]], path: Path, zoom: int = 3) -> None:
    """Write the ``--figure`` PNG from ``(rows, combos, boxes)`` per side: ``rows`` name -> (N, 128, 128, 3)
    uint8 frames of the ``combos`` (kind, colour, background), ``boxes`` their (x0, y0, x1, y1) pixels."""
    import numpy as np
    from PIL import Image

    from core.toyworld.world import KINDS

    pad = 8
    tiles = []
    for rows, combos, boxes in blocks:
        crop = max(x1 - x0 for x0, _, x1, _ in boxes) + 2 * pad
        for kind in KINDS:
            line = []
            for color, background in FIGURE_PAIRS:
                i = combos.index((kind, color, background))
                x0, y0 = (max(0, min(128 - crop, v - pad)) for v in boxes[i][:2])
                line += [frames[i, y0 : y0 + crop, x0 : x0 + crop] for frames in rows.values()]
                line.append(np.full((crop, 4, 3), 255, np.uint8))
            tiles.append(np.concatenate(line, axis=1))
        tiles.append(np.full((4, tiles[-1].shape[1], 3), 255, np.uint8))
    width = max(t.shape[1] for t in tiles)
    image = np.concatenate([np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in tiles])
    Image.fromarray(image).resize((image.shape[1] * zoom, image.shape[0] * zoom), Image.NEAREST).save(path)


def grid_rows(vaes: dict, sides: list[float], seed: int = 1, figure: Path | None = None, by_contrast: bool = False, silhouettes: bool = False) -> None:
    """Print the ``--grid`` table: kind accuracy of single exact shapes, drawn and reconstructed;
    with ``figure``, also write :func:`grid_figure`'s PNG there; with ``by_contrast``, a second table
    of the same frames' kind accuracy in each quarter of the shape colour's RGB distance (0-255 a
    channel) from its background, and of the stars below and above the median distance; with
    ``silhouettes``, a table per side, reconstruction and kind of the mean foreground pixels a frame
    (farther than the detector's ``FOREGROUND_DISTANCE`` from the background) as drawn, those the
    reconstruction loses and gains, and the median RGB distance of the lost ones from the background
    as drawn and as decoded (a point faded out, or a notch or hole filled in)."""
    import itertools
    from collections import defaultdict

    import numpy as np

    from core.toyworld.detect import FOREGROUND_DISTANCE, detect
    from core.toyworld.shapes import classify
    from core.toyworld.world import BACKGROUNDS, COLORS, KINDS, ToyObject, render_frame

    def foreground(frame, background):  # (H, W) bool: the detector's test, farther than its threshold from the background
        return np.linalg.norm(frame.astype(np.float32) - np.float32(BACKGROUNDS[background]), axis=-1) > FOREGROUND_DISTANCE

    def correct(frame, kind, background) -> bool:
        found = detect(frame, background=background)
        return bool(found) and classify(frame, found[0], background=background).kind == kind

    rng = np.random.default_rng(seed)
    blocks, by_distance, pixel_rows = [], [], []
    print("| side | frames | kind accuracy | " + " | ".join(KINDS) + " | worst colour | worst background |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in KINDS) + " | --- | --- |")
    for side in sides:
        combos = list(itertools.product(KINDS, COLORS, BACKGROUNDS))
        frames, boxes = [], []
        for kind, color, background in combos:
            x, y = rng.uniform(0.05, 0.95 - side, size=2)
            frames.append(render_frame(background, [ToyObject(kind, color, (x, y, x + side, y + side))], 128))
            boxes.append(tuple(int(round(v * 128)) for v in (x, y, x + side, y + side)))
        drawn = np.stack(frames)
        rows = {"drawn at 128": drawn}
        for name, (vae, size) in vaes.items():
            if size == 128:
                rows[name] = np.concatenate([reconstruct(vae, drawn[i : i + 48]) for i in range(0, len(drawn), 48)])
        for name, videos in rows.items():
            by = {"kind": defaultdict(list), "color": defaultdict(list), "background": defaultdict(list)}
            hits = []
            for frame, (kind, color, background) in zip(videos, combos):
                ok = correct(frame, kind, background)
                hits.append(ok)
                for key, value in (("kind", kind), ("color", color), ("background", background)):
                    by[key][value].append(ok)
            distance = np.array([np.linalg.norm(np.subtract(COLORS[c], BACKGROUNDS[b])) for _, c, b in combos])
            stars = np.array([kind == "star" for kind, _, _ in combos])
            by_distance.append((side, name, np.array(hits), distance, stars))
            mean = {key: {k: float(np.mean(v)) for k, v in groups.items()} for key, groups in by.items()}
            worst = {key: min(mean[key].items(), key=lambda item: item[1]) for key in ("color", "background")}
            print(
                f"| {side:.2f} | {name} | {np.mean(list(mean['kind'].values())):.3f} | "
                + " | ".join(f"{mean['kind'][k]:.2f}" for k in KINDS)
                + " | " + " | ".join(f"{k} {v:.2f}" for k, v in worst.values()) + " |"
            )
        blocks.append((rows, combos, boxes))
        masks = [foreground(frame, background) for frame, (_, _, background) in zip(drawn, combos)]
        for name, videos in list(rows.items())[1:]:
            for kind in KINDS:
                lost, gained, drawn_distance, kept_distance = [], [], [], []
                for frame, decoded, mask, (k, _, background) in zip(drawn, videos, masks, combos):
                    if k != kind:
                        continue
                    seen = foreground(decoded, background)
                    lost.append((mask & ~seen).sum())
                    gained.append((~mask & seen).sum())
                    gone = mask & ~seen
                    bg = np.float32(BACKGROUNDS[background])
                    drawn_distance += list(np.linalg.norm(frame[gone].astype(np.float32) - bg, axis=-1))
                    kept_distance += list(np.linalg.norm(decoded[gone].astype(np.float32) - bg, axis=-1))
                size = np.mean([m.sum() for m, (k, _, _) in zip(masks, combos) if k == kind])
                medians = (np.median(drawn_distance), np.median(kept_distance)) if drawn_distance else (float("nan"),) * 2
                pixel_rows.append((side, name, kind, size, np.mean(lost), np.mean(gained), *medians))
    if figure is not None:
        grid_figure(blocks, figure)
    if silhouettes:
        print()
        print("| side | frames | kind | foreground pixels drawn | lost | gained | lost pixels' distance drawn | decoded |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for side, name, kind, size, lost, gained, far, near in pixel_rows:
            print(f"| {side:.2f} | {name} | {kind} | {size:.0f} | {lost:.1f} | {gained:.1f} | {far:.0f} | {near:.0f} |")
    if by_contrast:
        edges = np.quantile(by_distance[0][3], [0.0, 0.25, 0.5, 0.75, 1.0])
        quarters = [f"RGB distance {lo:.0f}-{hi:.0f}" for lo, hi in zip(edges[:-1], edges[1:])]
        print()
        print("| side | frames | " + " | ".join(quarters) + " | stars below median | stars above median |")
        print("| --- | --- | " + " | ".join("---" for _ in quarters) + " | --- | --- |")
        for side, name, hits, distance, stars in by_distance:
            quarter = np.clip(np.searchsorted(edges, distance, side="right") - 1, 0, 3)  # the top edge belongs to the last quarter
            median = edges[2]
            cells = [hits[quarter == q].mean() for q in range(4)] + [hits[stars & (distance < median)].mean(), hits[stars & (distance >= median)].mean()]
            print(f"| {side:.2f} | {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


def kind_misses(plans, drawn_scores, decoded_scores) -> list[tuple[str, str, str, int]]:
    """``--misses``' rows: (prompt, planned kind, what the reconstruction's classifier says or
    "unmatched", (entity, frame)s) for the (entity, frame)s right as drawn and wrong after decoding,
    most first. The scores are :func:`core.evaluation.scoring.score_video`'s, one per plan."""
    from collections import Counter

    lost = Counter()
    for plan, drawn, decoded in zip(plans, drawn_scores, decoded_scores):
        for before, after in zip(drawn.entity_frames, decoded.entity_frames):
            if before.planned_kind and before.detected_kind == before.planned_kind and after.detected_kind != after.planned_kind:
                lost[plan.prompt, before.planned_kind, after.detected_kind or "unmatched"] += 1
    return [(*key, count) for key, count in lost.most_common()]


def main() -> None:
    from core.evaluation.run import read_prompts
    from core.evaluation.scoring import aggregate, draw_plan, score_video
    from core.planner.rules import plan_with_rules

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompts", nargs="*", type=Path, default=[ROOT / "assets" / "eval" / "toyworld_dev.jsonl", ROOT / "assets" / "eval" / "toyworld_heldout.jsonl"])
    parser.add_argument("--vae", nargs="*", type=Path, default=[ROOT / "assets" / "layout2vid-toy" / "vae"])
    parser.add_argument("--grid", nargs="+", type=float, metavar="SIDE", help="score single shapes of these sides (shares of a 128x128 frame) instead of prompts")
    parser.add_argument("--figure", type=Path, help="with --grid: write drawn and reconstructed shapes of every kind to this PNG")
    parser.add_argument("--by-contrast", action="store_true", help="with --grid: also score the frames by each quarter of their shape's colour distance from the background")
    parser.add_argument(
        "--silhouettes", action="store_true",
        help="with --grid: also count, per kind, the foreground pixels (the detector's test) each reconstruction loses and gains, "
        "and the median distance from the background of the lost ones as drawn and as decoded",
    )
    parser.add_argument("--misses", action="store_true", help="also list, per autoencoder, the (entity, frame)s whose kind is lost in encode -> decode, by prompt")
    args = parser.parse_args()

    vaes = {str(path): load_autoencoder(path) for path in args.vae}
    if args.grid:
        grid_rows(vaes, args.grid, figure=args.figure, by_contrast=args.by_contrast, silhouettes=args.silhouettes)
        return
    print("| prompts | frames | " + " | ".join(COLUMNS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |")
    misses = []
    for path in args.prompts:
        plans = [plan_with_rules(item["prompt"]) for item in read_prompts(path)]
        for size in sorted({size for _, size in vaes.values()}):
            drawn = [draw_plan(plan, size) for plan in plans]
            rows = {f"drawn at {size}": drawn}
            for name, (vae, vae_size) in vaes.items():
                if vae_size == size:
                    rows[name] = [reconstruct(vae, frames) for frames in drawn]
            scores = {name: [score_video(plan, frames) for plan, frames in zip(plans, videos)] for name, videos in rows.items()}
            for name, per_video in scores.items():
                metrics = aggregate(per_video)
                print(f"| {path.name} | {name} | " + " | ".join(f"{metrics[k]:.3f}" for k in COLUMNS) + " |")
                if name != f"drawn at {size}":
                    misses += [(path.name, name, *row) for row in kind_misses(plans, scores[f"drawn at {size}"], per_video)]
    if args.misses:
        print()
        print("| prompts | frames | prompt | planned kind | taken for | (entity, frame)s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for row in misses:
            print("| " + " | ".join(str(v) for v in row) + " |")

if __name__ == "__main__":
    main()
