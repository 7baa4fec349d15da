"""The inspector's scene graph (of the frame shown) and the scene's events table."""

import gradio as gr

GRAPH_CSS = """
.scene-graph { width: 100%; height: auto; display: block; background: #f4f6fb; border-radius: 6px; }
.scene-graph text { font: 11px sans-serif; fill: #333; }
.scene-graph .title { font-size: 13px; font-weight: 600; }
"""


def scene_graph() -> gr.HTML:
    """The scene graph of the frame shown, as SVG markup (:func:`studio.figures.scene_graph_svg`)."""
    return gr.HTML("", css_template=GRAPH_CSS, elem_id="scene-graph", apply_default_css=False)


def events_table() -> gr.Dataframe:
    return gr.Dataframe(
        headers=["agent", "predicate", "target", "start", "end"],
        datatype=["str", "str", "str", "number", "number"],
        interactive=True,
        label="Events of the scene (agent, predicate, target, start-end frames)",
        elem_id="events-table",
        max_height=300,
    )
