"""How far eval runs fall below model v2's bars: the figure that chooses a fine-tune and its guidance.

    .venv/bin/python benchmarks/shortfall.py runs/dev-g2.0 runs/heldout-g2.0 runs/dev2-g2.0 [--pool] [--margin 0.02]

Reads ``metrics.json`` from each ``launch.py eval ... --out DIR`` folder and prints the run's row
and its *shortfall*: the sum, over model v2's eight bars (box mIoU >= 0.70, AP50 >= 0.90, colour
>= 0.95, count >= 0.95, consistency >= 0.95, direction >= 0.97, kind >= 0.85, background >= 0.98),
of how far the figure falls below its bar (0 where the bar is met). ``--pool`` adds one row for all
the folders together: each figure is the mean of the folders' figures weighted by their number of
prompts (``videos`` in metrics.json), and the shortfall is computed from those pooled figures. This
is how the model card chooses between candidates: dev (12), held-out (8) and the procedural dev2 (40)
pooled, 60 prompts (dev and held-out alone, 20 prompts, before dev2 was drawn).
``--margin M`` raises every bar by M (capped at 1.0) before the gaps are summed, so that a figure just
above its bar on the 20 prompts, where the sealed test has been below it, still counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BARS = {
    "box_miou": 0.70,
    "box_ap50": 0.90,
    "color_accuracy": 0.95,
    "count_accuracy": 0.95,
    "consistency": 0.95,
    "direction_accuracy": 0.97,
    "kind_accuracy": 0.85,
    "background_accuracy": 0.98,
}


def shortfall(figures: dict[str, float], margin: float = 0.0) -> float:
    """Sum of how far each figure falls below its bar in ``BARS`` (figures in [0, 1]; >= 0, 0 when all bars are met).

    Args:
        figures: ``{key: value}`` with every key of ``BARS``, values in [0, 1].
        margin: added to every bar (each capped at 1.0) before the gaps are summed; in [0, 0.2].

    Raises:
        KeyError: a bar's figure is missing from ``figures``.
        ValueError: ``margin`` is outside [0, 0.2].
    """
    if not 0.0 <= margin <= 0.2:
        raise ValueError(f"margin: must be in [0, 0.2], got {margin}")
    return sum(max(0.0, min(1.0, bar + margin) - float(figures[key])) for key, bar in BARS.items())


def pooled(runs: list[dict]) -> dict[str, float]:
    """Each bar's figure over several eval runs, weighted by their number of prompts (``videos``).

    Args:
        runs: ``metrics.json`` contents, each with ``videos`` >= 1 and every key of ``BARS``.

    Returns:
        ``{key: mean}`` over the keys of ``BARS``, values in [0, 1].

    Raises:
        ValueError: ``runs`` is empty, or the runs were sampled at different guidance scales.
    """
    if not runs:
        raise ValueError("runs: give at least one eval folder to pool")
    scales = {r.get("settings", {}).get("guidance_scale") for r in runs}
    if len(scales) > 1:
        raise ValueError(f"runs: pooled folders must share one guidance_scale, got {sorted(map(str, scales))}")
    total = sum(int(r["videos"]) for r in runs)
    return {key: sum(int(r["videos"]) * float(r[key]) for r in runs) / total for key in BARS}


def row(figures: dict[str, float]) -> str:
    """The bars' figures as ``name=value`` pairs, three decimals."""
    return " ".join(f"{key}={figures[key]:.3f}" for key in BARS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="--out folders of launch.py eval runs")
    parser.add_argument("--pool", action="store_true", help="add a row for all folders pooled by prompt count")
    parser.add_argument("--margin", type=float, default=0.0, help="raise every bar by this much, in [0, 0.2] (default 0)")
    args = parser.parse_args()
    if not 0.0 <= args.margin <= 0.2:
        print(f"error: --margin: must be in [0, 0.2], got {args.margin}", file=sys.stderr)
        return 2
    runs = []
    for folder in args.folders:
        try:
            runs.append(json.loads((folder / "metrics.json").read_text()))
        except FileNotFoundError:
            print(f"error: folders: {folder} has no metrics.json (give the --out folder of a launch.py eval run)", file=sys.stderr)
            return 2
    for folder, metrics in zip(args.folders, runs):
        guidance = metrics.get("settings", {}).get("guidance_scale")
        print(f"{folder} ({metrics['videos']} prompts, guidance {guidance}): {row(metrics)} shortfall={shortfall(metrics, args.margin):.3f}")
    if args.pool:
        try:
            figures = pooled(runs)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        prompts = sum(int(r["videos"]) for r in runs)
        print(f"pooled ({prompts} prompts): {row(figures)} shortfall={shortfall(figures, args.margin):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
