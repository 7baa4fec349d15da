"""Panel 4: the frame's dynamic scene graph and the scene's events as an editable timeline."""

from types import SimpleNamespace

import gradio as gr


def render() -> SimpleNamespace:
    graph = gr.Plot(label="Scene graph of the selected frame", elem_id="scene-graph")
    events = gr.Dataframe(
        headers=["agent", "predicate", "target", "start", "end"],
        datatype=["str", "str", "str", "number", "number"],
        interactive=True,
        label="Events (agent, predicate, target, start-end frames)",
        elem_id="events-table",
    )
    message = gr.Markdown(elem_id="events-message")
    timeline = gr.Plot(label="Timeline", elem_id="timeline")
    return SimpleNamespace(**locals())
