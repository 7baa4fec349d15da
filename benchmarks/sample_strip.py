"""Render prompts with a model and save a picture: one row per prompt, every other frame, with
the planned boxes drawn over the frames (for the model card: look at the frames).

    .venv/bin/python benchmarks/sample_strip.py --model assets/layout2vid-toy --out assets/layout2vid-toy/samples.png [--limit 6]
    .venv/bin/python benchmarks/sample_strip.py --per-kind --model DIR --out DIR/kinds.png

``--per-kind`` renders one clip per toy-world kind (``"a <colour> <kind> moves right on the
<background>"``, colours and backgrounds taken in turn) instead of the dev prompts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from core.plan import interpolate_boxes
    from core.planner.rules import plan_with_rules
    from core.render import RenderSettings, load_pipeline, render_scene
    from studio.figures import entity_rgb

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=Path, default=ROOT / "assets" / "eval" / "toyworld_dev.jsonl")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--per-kind", action="store_true", help="one clip per toy-world kind instead of --prompts")
    args = parser.parse_args()

    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    if args.per_kind:
        from core.toyworld.world import BACKGROUNDS, COLORS, KINDS

        colours, backgrounds = list(COLORS), list(BACKGROUNDS)
        prompts = [f"a {colours[i % len(colours)]} {kind} moves right on the {backgrounds[i % len(backgrounds)]}" for i, kind in enumerate(KINDS)]
    else:
        prompts = [json.loads(line)["prompt"] for line in args.prompts.read_text().splitlines() if line.strip()][: args.limit]
    rows = []
    for prompt in prompts:
        plan = plan_with_rules(prompt)
        scene = plan.scenes[0]
        frames = render_scene(pipe, plan, 0, RenderSettings(num_inference_steps=args.steps))
        boxes, masks = interpolate_boxes(scene)
        tiles = []
        for f in range(0, scene.num_frames, 2):
            size = frames.shape[1] * args.scale
            tile = Image.fromarray(frames[f]).resize((size, size), Image.Resampling.NEAREST)
            draw = ImageDraw.Draw(tile)
            for n, entity_id in enumerate(scene.entity_ids()):
                if masks[f, n]:
                    draw.rectangle([v * size for v in boxes[f, n]], outline=entity_rgb(plan, entity_id), width=1)
            tiles.append(np.asarray(tile))
        rows.append(np.concatenate(tiles, axis=1))
        print(f"rendered: {prompt}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
