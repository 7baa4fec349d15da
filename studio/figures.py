"""Pictures of a plan for the studio: layout sketches, scene-graph networks and event timelines.

Plain functions returning numpy images or plotly figures; no UI code.
"""

from __future__ import annotations

import html

import networkx as nx
import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw

from core.plan import VideoPlan, interpolate_boxes
from core.scene_graph import build_scene_graphs, display_names
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


def scene_graph_figure(plan: VideoPlan, scene_index: int, frame: int) -> go.Figure:
    """The scene graph of one frame as a network (networkx spring layout, fixed seed)."""
    graph = build_scene_graphs(plan, plan.scenes[scene_index]).frames[frame]
    # Lay out the union of all frames' nodes so positions stay put while the slider moves.
    positions = nx.spring_layout(graph, seed=0) if graph.number_of_nodes() else {}
    edge_x, edge_y = [], []
    for a, b in graph.edges():
        edge_x += [positions[a][0], positions[b][0], None]
        edge_y += [positions[a][1], positions[b][1], None]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=edge_x, y=edge_y, mode="lines", line=dict(color="#aaa", width=1.5), hoverinfo="skip", showlegend=False))
    for node_type, color in NODE_COLORS.items():
        nodes = [n for n, d in graph.nodes(data=True) if d["type"] == node_type]
        if not nodes:
            continue
        fig.add_trace(
            go.Scatter(
                x=[positions[n][0] for n in nodes],
                y=[positions[n][1] for n in nodes],
                mode="markers+text",
                text=[html.escape(graph.nodes[n]["label"]) for n in nodes],  # plotly renders a subset of HTML in text
                textposition="top center",
                marker=dict(size=18 if node_type == "object" else 12, color=color),
                name=node_type,
            )
        )
    fig.update_layout(
        title=f"Scene graph, scene {plan.scenes[scene_index].id}, frame {frame}",
        # spring_layout puts nodes in [-1, 1]; the margins keep the labels above the top nodes in view
        xaxis=dict(visible=False, range=[-1.3, 1.3]),
        yaxis=dict(visible=False, range=[-1.2, 1.35]),
        height=300,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h"),
    )
    return fig


def events_timeline(plan: VideoPlan, scene_index: int, frame: int | None = None) -> go.Figure:
    """The scene's events as a Gantt chart: one bar per (agent, predicate, target) over [start, end]."""
    scene = plan.scenes[scene_index]
    names = display_names(plan)
    labels, starts, lengths, colors = [], [], [], []
    for i, event in enumerate(scene.events):
        target = names.get(event.target, event.target) if event.target else ""
        labels.append(html.escape(f"{i}: {names.get(event.agent, event.agent)} {event.predicate} {target}".strip()))
        starts.append(event.start)
        lengths.append(event.end - event.start + 1)
        colors.append("#%02x%02x%02x" % entity_rgb(plan, event.agent) if event.agent in names else "#999")
    fig = go.Figure(go.Bar(y=labels, x=lengths, base=starts, orientation="h", marker_color=colors, marker_line=dict(color="#333", width=1)))
    if frame is not None:
        fig.add_vline(x=frame + 0.5, line_dash="dash", line_color="#d62728")
    fig.update_layout(
        title=f"Events, scene {scene.id}",
        xaxis=dict(title="frame", range=[0, scene.num_frames]),
        yaxis=dict(autorange="reversed"),
        height=120 + 30 * max(1, len(labels)),
        margin=dict(l=10, r=10, t=40, b=30),
    )
    return fig
