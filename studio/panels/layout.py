"""The centre: the frame's boxes over a preview (drag or resize a box to make that frame a
keyframe; :mod:`studio.panels.box_editor`), shown without smoothing, and the filmstrip."""

from types import SimpleNamespace

import gradio as gr

from studio.panels.box_editor import box_editor
from studio.panels.timeline import filmstrip


def render() -> SimpleNamespace:
    status = gr.Markdown(elem_id="frame-status")
    boxes = box_editor()
    strip = filmstrip()
    with gr.Row(elem_classes="tight", equal_height=True):
        remove_keyframe = gr.Button("Remove this keyframe", size="sm", elem_id="remove-keyframe")
        entity = gr.Dropdown(show_label=False, container=False, choices=[], elem_id="entity-picker")
        absent = gr.Button("Off screen at this frame", size="sm", elem_id="make-absent")
    return SimpleNamespace(**locals())
