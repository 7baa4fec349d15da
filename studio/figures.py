"""Pictures of a plan for the studio: layout sketches, filmstrip thumbnails and scene-graph drawings.

Plain functions returning numpy images or SVG markup; no UI code.
"""

from __future__ import annotations

import html

import networkx as nx
import numpy as np
from PIL import Image, ImageDraw

from core.plan import VideoPlan, interpolate_boxes
from core.scene_graph import build_scene_graphs
from core.toyworld.world import BACKGROUNDS, COLORS

NEUTRAL_BACKGROUND = (128, 128, 136)
NODE_COLORS = {"object": "#1f77b4", "attribute": "#2ca02c", "relation": "#ff7f0e", "value": "#7f7f7f"}


def background_rgb(background: str) -> tuple[int, int, int]:
    """The toy palette's colour for a background named in the text, else a neutral grey."""
    for word in background.lower().split():
        if word in BACKGROUNDS:
            return BACKGROUNDS[word]
    return NEUTRAL_BACKGROUND


def entity_rgb(plan: VideoPlan, entity_id: str) -> tuple[int, int, int]:
    color = plan.entity(entity_id).color
    return COLORS.get(color or "", (230, 230, 230))


def layout_sketch(plan: VideoPlan, scene_index: int, frame: int, *, size: int = 256, base: np.ndarray | None = None) -> np.ndarray:
    """A quick picture of one frame: the background colour (or ``base``, a rendered frame, scaled up)
    with each entity's trajectory of box centres over the scene drawn as a line with dots.

    Boxes themselves are drawn by the box editor on top of this picture.

    Returns:
        np.ndarray (size, size, 3) uint8.
    """
    scene = plan.scenes[scene_index]
    if base is not None:
        image = Image.fromarray(base).resize((size, size), Image.Resampling.NEAREST)
    else:
        image = Image.new("RGB", (size, size), background_rgb(scene.background))
    draw = ImageDraw.Draw(image)
    ids = scene.entity_ids()
    boxes, masks = interpolate_boxes(scene, ids)
    for n, entity_id in enumerate(ids):
        rgb = entity_rgb(plan, entity_id)
        points = [((b[0] + b[2]) / 2 * size, (b[1] + b[3]) / 2 * size) for b, m in zip(boxes[:, n], masks[:, n]) if m]
        if len(points) > 1:
            draw.line(points, fill=rgb, width=2)
        for f, (b, m) in enumerate(zip(boxes[:, n], masks[:, n])):
            if m:
                x, y = (b[0] + b[2]) / 2 * size, (b[1] + b[3]) / 2 * size
                r = 4 if f == frame else 2
                draw.ellipse([x - r, y - r, x + r, y + r], fill=rgb if f == frame else None, outline=rgb)
    return np.asarray(image)


def frame_thumbnail(plan: VideoPlan, scene_index: int, frame: int, *, size: int = 64, base: np.ndarray | None = None) -> np.ndarray:
    """One frame as a small picture for the filmstrip: ``base`` (a rendered frame) or the background
    colour, with each on-screen entity's box filled in its colour.

    Returns:
        np.ndarray (size, size, 3) uint8.
    """
    scene = plan.scenes[scene_index]
    if base is not None:
        return np.asarray(Image.fromarray(base).resize((size, size), Image.Resampling.NEAREST))
    image = Image.new("RGB", (size, size), background_rgb(scene.background))
    draw = ImageDraw.Draw(image)
    ids = scene.entity_ids()
    boxes, masks = interpolate_boxes(scene, ids)
    for n, entity_id in enumerate(ids):
        if masks[frame, n]:
            x0, y0, x1, y1 = (float(v) * size for v in boxes[frame, n])
            draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], fill=entity_rgb(plan, entity_id), outline=(20, 20, 20))
    return np.asarray(image)


GRAPH_WIDTH, GRAPH_HEIGHT = 480, 260  # the SVG's user units (it scales to its box)


def scene_graph_svg(plan: VideoPlan, scene_index: int, frame: int) -> str:
    """The scene graph of one frame as an SVG drawing: networkx's spring layout (fixed seed), edges
    as lines, nodes as dots coloured by type (:data:`NODE_COLORS`) with their labels above, a legend
    and a title. Markup rather than a plotly figure: plotly's first render blocked the browser for
    about a second after every page load.

    Returns:
        str: an ``<svg>`` element (viewBox ``GRAPH_WIDTH`` x ``GRAPH_HEIGHT``); every label is escaped.
    """
    graph = build_scene_graphs(plan, plan.scenes[scene_index]).frames[frame]
    positions = nx.spring_layout(graph, seed=0) if graph.number_of_nodes() else {}
    top, bottom, side = 44, 30, 40  # room for the title, the legend, and labels at the edges

    def xy(node) -> tuple[float, float]:
        x, y = positions[node]  # spring_layout puts nodes in [-1, 1]
        return side + (x + 1) / 2 * (GRAPH_WIDTH - 2 * side), top + (1 - y) / 2 * (GRAPH_HEIGHT - top - bottom)

    parts = [
        f'<svg class="scene-graph" viewBox="0 0 {GRAPH_WIDTH} {GRAPH_HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">',
        f'<text class="title" x="8" y="18">Scene graph, scene {html.escape(plan.scenes[scene_index].id)}, frame {frame}</text>',
    ]
    for a, b in graph.edges():
        (x0, y0), (x1, y1) = xy(a), xy(b)
        parts.append(f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#aaa" stroke-width="1.5"/>')
    for node, data in graph.nodes(data=True):
        x, y = xy(node)
        radius = 8 if data["type"] == "object" else 5
        label = html.escape(str(data["label"]))
        parts.append(
            f'<g class="node {data["type"]}"><title>{data["type"]}: {label}</title>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{NODE_COLORS[data["type"]]}"/>'
            f'<text x="{x:.1f}" y="{y - radius - 3:.1f}" text-anchor="middle">{label}</text></g>'
        )
    for i, (node_type, color) in enumerate(NODE_COLORS.items()):
        x = 8 + i * 90
        parts.append(f'<circle cx="{x + 5}" cy="{GRAPH_HEIGHT - 10}" r="5" fill="{color}"/><text x="{x + 14}" y="{GRAPH_HEIGHT - 6}">{node_type}</text>')
    parts.append("</svg>")
    return "".join(parts)
