"""The ablation table of the model card: every evaluation variant on prompt files, in one run.

    .venv/bin/python benchmarks/ablation.py [--model DIR] [--out eval] [PROMPTS.jsonl ...]

The model is the VideoDirectorGPT reference ``assets/layout2vid-toy`` unless ``--model`` names another
(its ``no-graph`` variant drops that model's scene-graph encoder).

Runs ``launch.py eval``'s pipeline (core.evaluation.run.run_eval) for the variants full, no-graph,
no-layout and training-free on each prompt file (default: assets/eval/toyworld_dev.jsonl and
assets/eval/toyworld_heldout.jsonl), writes each run under ``--out/<file>/<variant>/`` and prints a
markdown table of the metrics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLUMNS = ["box_miou", "box_ap50", "centroid_error", "direction_accuracy", "color_accuracy", "color_change_accuracy", "count_accuracy", "consistency", "seconds_per_video"]


def main() -> None:
    from core.evaluation.run import VARIANTS, read_prompts, run_eval, variant_settings
    from core.render import REFERENCE_MODEL, load_pipeline, recommended_guidance_scale

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompts", nargs="*", type=Path, default=[ROOT / "assets" / "eval" / "toyworld_dev.jsonl", ROOT / "assets" / "eval" / "toyworld_heldout.jsonl"])
    parser.add_argument("--model", default=str(REFERENCE_MODEL))
    parser.add_argument("--out", type=Path, default=ROOT / "eval")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()

    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    print(f"{args.steps} steps, guidance_scale {recommended_guidance_scale(args.model)} (the model's default), seed 0\n")
    print("| prompts | variant | " + " | ".join(COLUMNS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |")
    for path in args.prompts:
        prompts = read_prompts(path)
        for variant in args.variants:
            metrics = run_eval(prompts, args.out / path.stem / variant, pipe=pipe, settings=variant_settings(variant, num_inference_steps=args.steps), variant=variant)
            cells = [f"{metrics[c]:.2f}" if c != "seconds_per_video" else f"{metrics[c]:.1f}" for c in COLUMNS]
            print(f"| {path.stem} ({len(prompts)}) | {variant} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
