"""The inspector's scene graph (of the frame shown) and the scene's events table."""

import gradio as gr


def scene_graph() -> gr.Plot:
    return gr.Plot(show_label=False, elem_id="scene-graph")


def events_table() -> gr.Dataframe:
    return gr.Dataframe(
        headers=["agent", "predicate", "target", "start", "end"],
        datatype=["str", "str", "str", "number", "number"],
        interactive=True,
        label="Events of the scene (agent, predicate, target, start-end frames)",
        elem_id="events-table",
        max_height=300,
    )
