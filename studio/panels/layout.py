"""The centre: the frame's boxes over a preview (drag or resize a box to make that frame a
keyframe), shown at four times the video's 64 px without smoothing, and the filmstrip."""

from types import SimpleNamespace

import gradio as gr
from gradio_image_annotation import image_annotator

from studio.panels.timeline import filmstrip


def render() -> SimpleNamespace:
    status = gr.Markdown(elem_id="frame-status")
    boxes = image_annotator(
        value=None,
        show_label=False,
        sources=[],
        show_clear_button=False,
        show_remove_button=False,
        show_download_button=False,
        box_min_size=6,
        image_type="filepath",  # the handler reads only the file name (which frame the editor holds)
        elem_id="box-editor",
        height=340,
    )
    strip = filmstrip()
    with gr.Row(elem_classes="tight", equal_height=True):
        remove_keyframe = gr.Button("Remove this keyframe", size="sm", elem_id="remove-keyframe")
        entity = gr.Dropdown(show_label=False, container=False, choices=[], elem_id="entity-picker")
        absent = gr.Button("Off screen at this frame", size="sm", elem_id="make-absent")
    return SimpleNamespace(**locals())
