"""Panel 5: sampling settings, render with progress, cancel, play and download."""

from types import SimpleNamespace

import gradio as gr


def render(guidance_scale: float) -> SimpleNamespace:
    """The panel; the guidance slider starts at ``guidance_scale`` (the loaded model's default)."""
    with gr.Row():
        steps = gr.Slider(1, 100, value=25, step=1, label="Steps", elem_id="steps")
        guidance = gr.Slider(0, 15, value=guidance_scale, step=0.5, label="Guidance scale", elem_id="guidance")
        alpha = gr.Slider(0, 1, value=1.0, step=0.05, label="Layout alpha")
        seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
    with gr.Row():
        run = gr.Button("Render", variant="primary", elem_id="render")
        cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
    render_status = gr.Markdown(elem_id="render-status")
    video = gr.Video(label="Video", elem_id="video", autoplay=True, loop=True)
    downloads = gr.File(label="Downloads (MP4 and plan JSON)", file_count="multiple", elem_id="downloads")
    return SimpleNamespace(**locals())
