"""The inspector's Render tab: sampling settings, render with progress and a preview, cancel, play and download."""

from types import SimpleNamespace

import gradio as gr

from core.settings import GUIDANCE_SCALE, LAYOUT_ALPHA, SEED, STEPS


def render(guidance_scale: float, layout_alpha: float) -> SimpleNamespace:
    """The panel; the guidance and layout-alpha sliders start at the loaded model's own defaults,
    and every range comes from core.settings (the same as the command line's)."""
    with gr.Row(elem_classes="tight"):
        steps = gr.Slider(STEPS.low, STEPS.high, value=STEPS.default, step=1, label="Steps", elem_id="steps")
        guidance = gr.Slider(GUIDANCE_SCALE.low, GUIDANCE_SCALE.high, value=guidance_scale, step=0.5, label="Guidance scale", elem_id="guidance")
        alpha = gr.Slider(LAYOUT_ALPHA.low, LAYOUT_ALPHA.high, value=layout_alpha, step=0.05, label="Layout alpha", elem_id="layout-alpha")
        seed = gr.Number(value=SEED.default, precision=0, label="Seed", minimum=SEED.low, maximum=SEED.high)
    with gr.Row():
        run = gr.Button("Render", variant="primary", elem_id="render")
        cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
    render_status = gr.Markdown(elem_id="render-status")
    preview = gr.Image(label="Preview (the middle frame, every few steps)", visible=False, interactive=False, height=220, elem_id="render-preview")
    video = gr.Video(label="Video", elem_id="video", autoplay=True, loop=True, height=220)
    downloads = gr.File(label="Downloads (MP4 and plan JSON)", file_count="multiple", elem_id="downloads")
    gallery = gr.Gallery(label="Renders of this project (kept across reloads and restarts)", columns=4, height=130, elem_id="renders", allow_preview=False)
    return SimpleNamespace(**locals())
