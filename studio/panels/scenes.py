"""Panel 2: the scene list and the entities (with the scenes each appears in: consistency groups)."""

from types import SimpleNamespace

import gradio as gr


def render() -> SimpleNamespace:
    scenes = gr.Dataframe(
        headers=["id", "description", "background", "num_frames", "seed"],
        datatype=["str", "str", "str", "number", "str"],
        interactive=True,
        label="Scenes (edit cells; press Enter to save)",
        elem_id="scenes-table",
    )
    with gr.Row():
        add_scene = gr.Button("Add scene", elem_id="add-scene")
        delete_scene = gr.Button("Delete selected scene", elem_id="delete-scene")
        move_up = gr.Button("Move up", elem_id="move-up")
        move_down = gr.Button("Move down", elem_id="move-down")
    message = gr.Markdown(elem_id="scenes-message")
    entities = gr.Dataframe(
        headers=["id", "name", "kind", "color", "scenes"],
        datatype=["str", "str", "str", "str", "str"],
        interactive=True,
        label="Entities (one id = one look in every scene it appears in)",
        elem_id="entities-table",
    )
    return SimpleNamespace(**locals())
