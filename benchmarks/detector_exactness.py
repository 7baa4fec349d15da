"""How exact the toy-world detector is on frames drawn from known boxes, per shape kind.

    .venv/bin/python benchmarks/detector_exactness.py [--frames 800] [--seed 0] [--size 64]

Each frame is one object drawn by :func:`core.toyworld.world.render_frame` (the training data's own
renderer) with a random kind (cycled), palette colour, background, and a square box whose side is
uniform in [0.12, 0.6] of the frame (the toy world's range of sizes, grow and shrink included) at a
random position. For every kind it prints the mean IoU between the drawn box and the best detection
of the right colour (0 when there is none) and the share of frames with exactly one detection of
the right colour, and how often the shape classifier (:mod:`core.toyworld.shapes`, ``kind_accuracy``)
names that detection's kind (0 when there is none). Whatever falls short of 1.00 here is the
detector's or classifier's error, not the model's: the metrics of ``launch.py eval`` carry it into
every render of that kind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np

    from core.toyworld.detect import box_iou, detect
    from core.toyworld.shapes import classify
    from core.toyworld.world import BACKGROUNDS, COLORS, KINDS, ToyObject, render_frame

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=800, help="frames to draw, spread evenly over the kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels: 64 as layout2vid-toy renders, 128 as wan-toy (16-1024)")
    args = parser.parse_args()
    if args.frames < len(KINDS):
        parser.error(f"--frames: must be >= {len(KINDS)} (one per kind; got {args.frames})")
    if not 16 <= args.size <= 1024:
        parser.error(f"--size: must be 16-1024 pixels (got {args.size})")

    rng = np.random.default_rng(args.seed)
    small = 0.2  # sides below this are reported apart: the grow/shrink extremes
    rows: dict[str, list[tuple[float, bool, bool, bool]]] = {kind: [] for kind in KINDS}
    for i in range(args.frames):
        kind = KINDS[i % len(KINDS)]
        color = str(rng.choice(list(COLORS)))
        background = str(rng.choice(list(BACKGROUNDS)))
        side = rng.uniform(0.12, 0.6)
        x0, y0 = rng.uniform(0.0, 1.0 - side, size=2)
        box = (float(x0), float(y0), float(x0 + side), float(y0 + side))
        frame = render_frame(background, [ToyObject(kind, color, box)], args.size)
        detections = detect(frame)
        matches = sorted((d for d in detections if d.color == color), key=lambda d: -box_iou(box, d.box))
        iou = box_iou(box, matches[0].box) if matches else 0.0
        single = len(detections) == 1 and detections[0].color == color
        named = bool(matches) and classify(frame, matches[0]).kind == kind
        rows[kind].append((iou, single, side < small, named))

    print(f"{args.frames} drawn frames of {args.size}x{args.size}, seed {args.seed}; side < {small} counted apart as 'small'")
    print("| kind | mean IoU | one detection | kind classified | mean IoU, small | one detection, small | kind classified, small |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind in [*KINDS, "all"]:
        items = [r for rs in rows.values() for r in rs] if kind == "all" else rows[kind]
        tiny = [r for r in items if r[2]]
        cells = [np.mean([r[0] for r in items]), np.mean([r[1] for r in items]), np.mean([r[3] for r in items])]
        cells += [np.mean([r[0] for r in tiny]), np.mean([r[1] for r in tiny]), np.mean([r[3] for r in tiny])] if tiny else [float("nan")] * 3
        print(f"| {kind} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
