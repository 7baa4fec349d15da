"""Scene-graph building time against the number of attributes, printed as figures (not a timed test).

    .venv/bin/python benchmarks/bench_graph.py [--repeat 3]

A plan may give an entity at most 16 attributes (core.plan.MAX_ATTRIBUTES), so a plan file with 2,000
is refused with one line before any work. To show that building the dynamic scene graphs
(core.scene_graph.build_dsg) is linear in the plan's size all the same, this script builds the graphs of a
2-entity, 16-frame scene whose first entity carries 1x, 10x and 100x the limit (16, 160, 1,600
attributes, the larger two past the schema through ``model_construct``) plus the enrichment limit of
64 triplets, and prints the best-of time and the time per attribute-frame (flat when linear), and the
time of the whole page-load path the studio runs on a valid plan (graphs plus the two plotly figures).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def plan_with_attributes(count: int):
    """A valid 16-frame plan, then its first entity given ``count`` attributes without validation."""
    from core.plan import Entity, parse_plan

    plan = parse_plan(
        {
            "prompt": "A red ball rolls past a blue star on the grass.",
            "entities": [
                {"id": "ball", "name": "ball", "kind": "ball", "attributes": {"color": "red"}},
                {"id": "star", "name": "star", "kind": "star", "attributes": {"color": "blue"}},
            ],
            "scenes": [
                {
                    "id": "s1", "description": "A red ball rolls past a blue star.", "background": "grass", "num_frames": 16,
                    "keyframes": [
                        {"frame": 0, "boxes": {"ball": [0.05, 0.5, 0.3, 0.75], "star": [0.6, 0.1, 0.8, 0.3]}},
                        {"frame": 15, "boxes": {"ball": [0.65, 0.5, 0.9, 0.75], "star": [0.6, 0.1, 0.8, 0.3]}},
                    ],
                    "events": [{"agent": "ball", "predicate": "rolls", "target": "grass", "start": 0, "end": 15}],
                    "enrichment": [{"subject": "ball", "predicate": f"has mark{i}", "object": "dot", "start": 0, "end": 15} for i in range(64)],
                }
            ],
        }
    )
    ball = plan.entities[0]
    attributes = {"color": "red", **{f"a{i}": f"v{i}" for i in range(count - 1)}}
    plan.entities[0] = Entity.model_construct(id=ball.id, name=ball.name, kind=ball.kind, attributes=attributes)
    return plan


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from core.plan import MAX_ATTRIBUTES
    from core.scene_graph import build_dsg
    from studio.figures import scene_graph_svg

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"{'attributes':>10} {'graph s':>9} {'us per attribute-frame':>23}")
    rows = []
    for factor in (1, 10, 100):
        count = MAX_ATTRIBUTES * factor
        plan = plan_with_attributes(count)
        seconds = best_of(lambda: build_dsg(plan), args.repeat)
        per = seconds / (count * plan.scenes[0].num_frames) * 1e6
        rows.append((count, seconds, per))
        print(f"{count:>10} {seconds:>9.4f} {per:>23.2f}")
    print(f"time ratio 100x/1x: {rows[2][1] / rows[0][1]:.1f} (linear: about 100; quadratic: about 10,000)")

    plan = plan_with_attributes(MAX_ATTRIBUTES)
    seconds = best_of(lambda: (build_dsg(plan), scene_graph_svg(plan, 0, 0)), args.repeat)
    print(f"graphs and the studio's scene-graph drawing of a plan at the limits: {seconds:.3f} s")


if __name__ == "__main__":
    main()
