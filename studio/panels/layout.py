"""Panel 3: the frame's boxes over a preview; drag or resize a box to make a keyframe."""

from types import SimpleNamespace

import gradio as gr
from gradio_image_annotation import image_annotator


def render() -> SimpleNamespace:
    with gr.Row():
        scene = gr.Dropdown(label="Scene", choices=[], value=None, elem_id="scene-picker", scale=2)
        frame = gr.Slider(0, 15, value=0, step=1, label="Frame", elem_id="frame-slider", scale=3)
    status = gr.Markdown(elem_id="frame-status")
    boxes = image_annotator(
        value=None,
        label="Layout: drag or resize a box (a trajectory line shows each box centre over the scene)",
        sources=[],
        show_clear_button=False,
        show_remove_button=False,
        show_download_button=False,
        box_min_size=6,
        elem_id="box-editor",
        height=300,
    )
    with gr.Row():
        remove_keyframe = gr.Button("Remove this keyframe", elem_id="remove-keyframe")
        entity = gr.Dropdown(label="Entity", choices=[], elem_id="entity-picker")
        absent = gr.Button("Off screen at this frame", elem_id="make-absent")
    message = gr.Markdown(elem_id="layout-message")
    return SimpleNamespace(**locals())
