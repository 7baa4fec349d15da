"""The top bar (prompt, planner, generate, undo/redo, projects) and the inspector's Project tab
(frames per scene, the LLM endpoint, import/export, the plan JSON)."""

import os
from types import SimpleNamespace

import gradio as gr

from core.plan import MAX_FRAMES, MIN_FRAMES
from core.planner import PLANNERS
from core.planner.llm import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, MAX_RETRIES, TIMEOUT_RANGE_S


def toolbar() -> SimpleNamespace:
    """The bar across the top of the page."""
    with gr.Row(elem_id="topbar", equal_height=True):
        gr.HTML("<div class='brand'>Director<br>Studio</div>", elem_id="brand", scale=0, min_width=70)
        prompt = gr.Textbox(
            show_label=False, lines=1, max_lines=2, scale=6, container=False, elem_id="prompt",
            placeholder="Prompt: a red ball rolls across the grass, then a blue star falls from the sky.",
        )
        planner = gr.Radio(list(PLANNERS), value=PLANNERS[0], show_label=False, container=False, elem_id="planner", scale=0, min_width=190)
        generate = gr.Button("Generate plan", variant="primary", elem_id="generate", scale=0, min_width=120)
        undo = gr.Button("Undo", elem_id="undo", scale=0, min_width=60)
        redo = gr.Button("Redo", elem_id="redo", scale=0, min_width=60)
        projects = gr.Dropdown(show_label=False, container=False, choices=[], elem_id="projects", scale=3, min_width=200)
        open_project = gr.Button("Open", elem_id="open-project", scale=0, min_width=60)
    return SimpleNamespace(**locals())


def project_tab(*, llm_fields: bool = True) -> SimpleNamespace:
    """The inspector's Project tab. ``llm_fields=False`` (a server others log in to) hides the LLM
    endpoint fields: the openai planner then uses the server's own ``OPENAI_BASE_URL`` and
    ``OPENAI_API_KEY``."""
    frames = gr.Slider(MIN_FRAMES, MAX_FRAMES, value=16, step=1, label="Frames per scene (new plans)", elem_id="frames")
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
        import_file = gr.File(label="Import plan (JSON, max 1 MB)", file_types=[".json"], type="filepath", elem_id="import", height=90)
        with gr.Column():
            export = gr.Button("Export plan JSON", elem_id="export")
            export_file = gr.File(label="Exported plan", interactive=False, elem_id="export-file", height=60)
    with gr.Accordion("Plan JSON", open=False):
        plan_json = gr.Code(language="json", interactive=False, elem_id="plan-json", max_lines=20)
    return SimpleNamespace(**locals())
