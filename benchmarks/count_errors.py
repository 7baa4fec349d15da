"""Why frames of an eval run miss the planned count: extra or missing detections, and where the extras lie.

    .venv/bin/python benchmarks/count_errors.py runs/dev [--top 10]

Reads the videos an eval run saved (``launch.py eval ... --out DIR`` writes ``DIR/videos/NNN.mp4``
and ``NNN.plan.json``), detects every frame with ``launch.py eval``'s own detector, and for each frame
whose number of detections differs from the number of planned on-screen entities counts whether it
has too many or too few. Detections come sorted by pixel count, largest first; the ones beyond the
planned count are the frame's *extras*. Each extra is tallied by whether its centre lies inside a
planned box (a patch of another colour inside an object, or a shape split in two) or outside every
box (a fragment or a halo), by its palette colour, whether the prompt names that colour, and the
scene's background. Frames whose planned boxes overlap (two boxes sharing at least
:data:`core.training.toy_data.OVERLAP_SHARE` of the smaller one, the training's ``--oversample overlap`` rule)
are counted among the wrong frames and among all frames. The videos are read back from MP4, so figures can differ slightly from the
run's ``count_accuracy``, which scores the frames before encoding.

Prints the totals, the extras' size (pixels, at the frame size of the run), the tally, and the
videos with the most wrong frames.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def count_errors(folder: Path) -> dict:
    """Tally the wrong-count frames of an eval run.

    Args:
        folder: an eval output folder holding ``videos/NNN.mp4`` and ``videos/NNN.plan.json``.

    Returns:
        ``{"frames": int, "extra": int, "missing": int, "overlap_frames": int, "overlap_wrong": int, "extra_pixels": list[int],
        "extras": Counter[(where, colour, background, named)], "videos": [(name, wrong, frames, prompt)]}``,
        where ``where`` is ``"inside"`` or ``"outside"`` (the extra's centre against the planned xyxy
        boxes) and ``named`` says whether the prompt's plan gives any entity that colour.

    Raises:
        FileNotFoundError: ``folder/videos`` holds no MP4.
    """
    import torch

    from core.evaluation.scoring import score_video
    from core.export import read_mp4
    from core.plan import load_plan
    from core.plan.interpolation import interpolate_boxes
    from core.training.toy_data import OVERLAP_SHARE, box_overlap

    videos = sorted((folder / "videos").glob("*.mp4"))
    if not videos:
        raise FileNotFoundError(f"{folder / 'videos'}: no MP4 files; pass the --out folder of a launch.py eval run")
    tally = {"frames": 0, "extra": 0, "missing": 0, "overlap_frames": 0, "overlap_wrong": 0, "extra_pixels": [], "extras": Counter(), "videos": []}
    for mp4 in videos:
        plan = load_plan(mp4.with_name(mp4.stem + ".plan.json"))
        frames, _ = read_mp4(mp4)
        score = score_video(plan, frames)
        named = {e.color for e in plan.entities}
        index, wrong = 0, 0
        for scene in plan.scenes:
            ids = scene.entity_ids()
            boxes, masks = interpolate_boxes(scene, ids)
            overlapping = (box_overlap(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(masks) > 0) >= OVERLAP_SHARE).flatten(1).any(-1)
            for f in range(scene.num_frames):
                detections, hit = score.detections[index], score.count_hits[index]
                index += 1
                tally["frames"] += 1
                tally["overlap_frames"] += int(overlapping[f])
                if hit:
                    continue
                wrong += 1
                tally["overlap_wrong"] += int(overlapping[f])
                planned = [tuple(float(v) for v in boxes[f, n]) for n in range(len(ids)) if masks[f, n]]
                tally["extra" if len(detections) > len(planned) else "missing"] += 1
                for det in detections[len(planned):]:
                    cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
                    inside = any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in planned)
                    tally["extras"][("inside" if inside else "outside", det.color, scene.background, det.color in named)] += 1
                    tally["extra_pixels"].append(det.pixels)
        tally["videos"].append((mp4.name, wrong, index, plan.prompt))
    return tally


def main() -> int:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the --out folder of a launch.py eval run")
    parser.add_argument("--top", type=int, default=10, help="how many videos to list, most wrong frames first")
    args = parser.parse_args()
    try:
        tally = count_errors(args.folder)
    except FileNotFoundError as error:
        print(f"error: folder: {error}", file=sys.stderr)
        return 2
    wrong = tally["extra"] + tally["missing"]
    print(f"{args.folder}: {wrong} of {tally['frames']} frames with the wrong count: {tally['extra']} with extra detections, {tally['missing']} with too few")
    print(f"frames whose planned boxes overlap: {tally['overlap_wrong']} of the {wrong} wrong, {tally['overlap_frames']} of all {tally['frames']}")
    extras = tally["extras"]
    if extras:
        pixels = np.array(tally["extra_pixels"])
        inside = sum(n for key, n in extras.items() if key[0] == "inside")
        unnamed = sum(n for key, n in extras.items() if not key[3])
        print(f"{len(pixels)} extra detections: {inside} inside a planned box, {len(pixels) - inside} outside every box; "
              f"{unnamed} in a colour the prompt does not name; pixels median {int(np.median(pixels))}, 90th percentile {int(np.percentile(pixels, 90))}")
        print("| where | colour | background | colour named | extras |\n| --- | --- | --- | --- | --- |")
        for (where, color, background, named), n in extras.most_common():
            print(f"| {where} | {color} | {background} | {'yes' if named else 'no'} | {n} |")
    for name, bad, frames, prompt in sorted(tally["videos"], key=lambda v: -v[1])[: args.top]:
        if bad:
            print(f"{name}: {bad}/{frames} frames wrong: {prompt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
