"""Draw a procedural dev prompt set for `launch.py eval`: toy-world prompts from fixed templates, uniform over the world.

    .venv/bin/python benchmarks/dev_prompts.py --count 40 --seed 0 --out assets/eval/toyworld_dev2.jsonl

The hand-written dev (12) and held-out (8) sets are small, and a choice made on 20 prompts can miss
what a larger set shows. This script draws a larger dev set without a person choosing its prompts:
each prompt takes one of :data:`TEMPLATES` in turn (one entity moving on either axis, growing or
shrinking, two or three of a kind sitting still, two entities moving toward each other, one
changing colour while it moves) and draws its kinds, colours and background uniformly from
:mod:`core.toyworld.world` with ``--seed``. Every prompt carries the plan checks its template
implies, is planned with the rules planner, and is kept only if that plan passes its checks (a
planner limit, not the model's); prompts of the hand-written sets (:data:`HAND_WRITTEN`) are skipped,
so the set never repeats the sealed test's prompts. It reads the other files' prompt strings only for
that: nothing about how a model does on them.

Writes JSON lines (``prompt``, ``checks``) atomically; prints how many prompts were drawn, kept and
skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Where an object is on each background, as the hand-written sets say it.
ON = {"sky": "in the sky", "grass": "on the grass", "desert": "in the desert", "night": "in the night sky", "ocean": "in the ocean", "snow": "on the snow"}
ACROSS = {"sky": "across the sky", "grass": "across the grass", "desert": "across the desert", "night": "across the night sky", "ocean": "across the ocean", "snow": "across the snow"}
OF = {"sky": "the sky", "grass": "the grass", "desert": "the desert", "night": "the night sky", "ocean": "the ocean", "snow": "the snow"}
PLURAL = {"cross": "crosses"}
NUMBER = {2: "Two", 3: "Three"}
HAND_WRITTEN = ("toyworld_dev.jsonl", "toyworld_heldout.jsonl", "toyworld_test.jsonl")  # under assets/eval/


def _article(word: str) -> str:
    return "An" if word[0] in "aeiou" else "A"


def _plural(kind: str) -> str:
    return PLURAL.get(kind, kind + "s")


def _move(rng, kind, color, bg):
    axis, sign = rng.choice([("x", 1), ("x", -1), ("y", 1), ("y", -1)])
    path = {("x", 1): f"moves from left to right {ACROSS[bg]}", ("x", -1): f"moves from right to left {ACROSS[bg]}",
            ("y", 1): f"falls from the top of {OF[bg]} to the bottom", ("y", -1): f"rises from the bottom of {OF[bg]} to the top"}[(axis, sign)]
    return (f"{_article(color)} {color} {kind} {path}.",
            [{"type": "entity", "kind": kind, "color": color}, {"type": "direction", "kind": kind, "axis": axis, "sign": sign}, {"type": "background", "value": bg}])


def _size(rng, kind, color, bg):
    grow = rng.random() < 0.5
    return (f"{_article(color)} {color} {kind} {'grows' if grow else 'shrinks'} in the center of {OF[bg]}.",
            [{"type": "entity", "kind": kind, "color": color}, {"type": "grow" if grow else "shrink", "kind": kind}, {"type": "background", "value": bg}])


def _count(rng, kind, color, bg):
    n = rng.choice([2, 3])
    return f"{NUMBER[n]} {color} {_plural(kind)} sit {ON[bg]}.", [{"type": "count", "kind": kind, "n": n}, {"type": "background", "value": bg}]


def _toward(rng, kind, color, bg, kinds, colors):
    other = rng.choice([k for k in kinds if k != kind])
    other_color = rng.choice(colors)
    return (f"{_article(color)} {color} {kind} on the left and {_article(other_color).lower()} {other_color} {other} on the right move toward each other {ON[bg]}.",
            [{"type": "left_of", "a": kind, "b": other}, {"type": "direction", "kind": kind, "axis": "x", "sign": 1},
             {"type": "direction", "kind": other, "axis": "x", "sign": -1}])


def _recolour(rng, kind, color, bg, colors):
    to = rng.choice([c for c in colors if c != color])
    sign = rng.choice([1, -1])
    return (f"{_article(color)} {color} {kind} turns {to} while it drifts to the {'right' if sign > 0 else 'left'} {ACROSS[bg]}.",
            [{"type": "color_change", "kind": kind, "from": color, "to": to}, {"type": "direction", "kind": kind, "axis": "x", "sign": sign}])


TEMPLATES = ("move", "size", "count", "toward", "recolour")


def draw_prompts(count: int, seed: int, exclude: set[str]) -> tuple[list[dict], int]:
    """Draw ``count`` prompts whose rules-planner plans pass their checks.

    Args:
        count: prompts to keep, >= 1. seed: the draw's seed. exclude: prompts never to emit.

    Returns:
        (items, rejected): ``items`` are ``{"prompt", "checks"}`` dicts in draw order, templates in
        turn; ``rejected`` counts draws skipped as repeats, because the rules planner could not plan
        them, or because their plan failed a check.

    Raises:
        RuntimeError: ``50 * count`` draws did not yield ``count`` prompts.
    """
    from core.evaluation.checks import check_plan
    from core.plan.schema import PlanValidationError
    from core.planner.rules import plan_with_rules
    from core.toyworld.world import BACKGROUNDS, COLORS, KINDS

    rng = random.Random(seed)
    kinds, colors, backgrounds = list(KINDS), list(COLORS), list(BACKGROUNDS)
    items, seen, rejected = [], set(exclude), 0
    for draw in range(50 * count):
        if len(items) == count:
            break
        template = TEMPLATES[len(items) % len(TEMPLATES)]
        kind, color, bg = rng.choice(kinds), rng.choice(colors), rng.choice(backgrounds)
        if template == "toward":
            prompt, checks = _toward(rng, kind, color, bg, kinds, colors)
        elif template == "recolour":
            prompt, checks = _recolour(rng, kind, color, bg, colors)
        else:
            prompt, checks = {"move": _move, "size": _size, "count": _count}[template](rng, kind, color, bg)
        try:
            passed = prompt not in seen and all(ok for _, ok in check_plan(plan_with_rules(prompt), checks))
        except PlanValidationError:  # the rules planner cannot read it
            passed = False
        if not passed:
            rejected += 1
            continue
        seen.add(prompt)
        items.append({"prompt": prompt, "checks": checks})
    if len(items) < count:
        raise RuntimeError(f"count: only {len(items)} of {count} prompts passed their checks in {50 * count} draws")
    return items, rejected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=40, help="prompts to write, 1-500")
    parser.add_argument("--seed", type=int, default=0, help="the draw's seed")
    parser.add_argument("--out", type=Path, required=True, help="the JSON-lines file to write")
    args = parser.parse_args()
    if not 1 <= args.count <= 500:
        print(f"error: --count: must be in [1, 500] (got {args.count})", file=sys.stderr)
        return 2
    from core.evaluation.run import read_prompts

    exclude = {item["prompt"] for name in HAND_WRITTEN for item in read_prompts(ROOT / "assets" / "eval" / name)}
    items, rejected = draw_prompts(args.count, args.seed, exclude)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.writelines(json.dumps(item) + "\n" for item in items)
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(items)} prompts (seed {args.seed}); {rejected} draws skipped (repeats, unplannable, or failing their plan checks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
