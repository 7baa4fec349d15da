"""Panel 1: prompt and plan: generate with a planner, open projects, undo/redo, import/export."""

import os
from types import SimpleNamespace

import gradio as gr

from core.plan import MAX_FRAMES, MIN_FRAMES
from core.planner import PLANNERS
from core.planner.llm import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, MAX_RETRIES, TIMEOUT_RANGE_S


def render(*, llm_fields: bool = True) -> SimpleNamespace:
    """The panel. ``llm_fields=False`` (a server others log in to) hides the LLM endpoint fields:
    the openai planner then uses the server's own ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``."""
    with gr.Group():
        prompt = gr.Textbox(label="Prompt", lines=2, placeholder="A red ball rolls across the grass, then a blue star falls from the sky.", elem_id="prompt")
        with gr.Row():
            planner = gr.Radio(list(PLANNERS), value=PLANNERS[0], label="Planner", elem_id="planner")
            frames = gr.Slider(MIN_FRAMES, MAX_FRAMES, value=16, step=1, label="Frames per scene")
        with gr.Accordion("LLM endpoint (openai planner)", open=False, visible=llm_fields, elem_id="llm-endpoint"):
            base_url = gr.Textbox(label="Base URL", value=os.environ.get("OPENAI_BASE_URL", ""), placeholder="http://127.0.0.1:11434/v1", elem_id="base-url")
            llm_model = gr.Textbox(label="Model", value=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
            # The key is only ever read from the environment or typed here; it is never sent back.
            api_key = gr.Textbox(label="API key (blank: the server's $OPENAI_API_KEY, sent only to the server's endpoint)", type="password", value="", elem_id="api-key")
            with gr.Row():
                llm_timeout = gr.Number(
                    label=f"Timeout per request (s, {TIMEOUT_RANGE_S[0]:g}-{TIMEOUT_RANGE_S[1]:g})", value=DEFAULT_TIMEOUT_S,
                    minimum=TIMEOUT_RANGE_S[0], maximum=TIMEOUT_RANGE_S[1], elem_id="llm-timeout",
                )
                llm_retries = gr.Number(label=f"Retries (0-{MAX_RETRIES})", value=DEFAULT_RETRIES, minimum=0, maximum=MAX_RETRIES, precision=0, elem_id="llm-retries")
        with gr.Row():
            generate = gr.Button("Generate plan", variant="primary", elem_id="generate")
            undo = gr.Button("Undo", elem_id="undo")
            redo = gr.Button("Redo", elem_id="redo")
    with gr.Row():
        projects = gr.Dropdown(label="Projects", choices=[], elem_id="projects", scale=3)
        open_project = gr.Button("Open", elem_id="open-project", scale=1)
    with gr.Row():
        import_file = gr.File(label="Import plan (JSON, max 1 MB)", file_types=[".json"], type="filepath", elem_id="import")
        with gr.Column():
            export = gr.Button("Export plan JSON", elem_id="export")
            export_file = gr.File(label="Exported plan", interactive=False, elem_id="export-file")
    with gr.Accordion("Plan JSON", open=False):
        plan_json = gr.Code(language="json", interactive=False, elem_id="plan-json")
    return SimpleNamespace(**locals())
