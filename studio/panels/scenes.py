"""The scene list (left: click a scene to open it; add, delete, reorder) and the inspector's Scene
and Entities tables (one entity id = one look in every scene it appears in: consistency groups)."""

from types import SimpleNamespace

import gradio as gr

SCENE_LIST_JS = """
element.addEventListener('click', (e) => {
  const item = e.target.closest('[data-scene]');
  if (!item) return;
  element.querySelectorAll('[data-scene]').forEach((li) => li.classList.toggle('selected', li === item));
  trigger('select', {index: +item.dataset.scene, value: +item.dataset.scene});
});
"""

SCENE_LIST_CSS = """
.scene-items { list-style: none; margin: 0; padding: 0; }
.scene-item { padding: 5px 7px; margin-bottom: 4px; border: 1px solid #ddd; border-radius: 6px; cursor: pointer; font-size: 13px; }
.scene-item.selected { border-color: #6366f1; background: #eef2ff; }
.scene-item .bg { color: #666; font-size: 12px; }
.scene-item .desc { color: #333; font-size: 12px; max-height: 3.6em; overflow: hidden; }
"""


def scene_list() -> SimpleNamespace:
    """The left column: the scenes of the plan and the buttons that act on the selected one."""
    items = gr.HTML("", js_on_load=SCENE_LIST_JS, css_template=SCENE_LIST_CSS, elem_id="scene-list", max_height=440)
    with gr.Row(elem_classes="tight"):
        add_scene = gr.Button("Add", size="sm", elem_id="add-scene", min_width=40)
        delete_scene = gr.Button("Delete", size="sm", elem_id="delete-scene", min_width=40)
        move_up = gr.Button("Up", size="sm", elem_id="move-up", min_width=40)
        move_down = gr.Button("Down", size="sm", elem_id="move-down", min_width=40)
    return SimpleNamespace(**locals())


def scenes_table() -> gr.Dataframe:
    return gr.Dataframe(
        headers=["id", "description", "background", "num_frames", "seed"],
        datatype=["str", "str", "str", "number", "str"],
        interactive=True,
        label="Scenes (edit cells; press Enter to save)",
        elem_id="scenes-table",
        max_height=200,
        wrap=True,
        column_widths=["9%", "43%", "20%", "16%", "12%"],
    )


def entities_table() -> gr.Dataframe:
    return gr.Dataframe(
        headers=["id", "name", "kind", "color", "scenes"],
        datatype=["str", "str", "str", "str", "str"],
        interactive=True,
        label="Entities (one id = one look in every scene it appears in)",
        elem_id="entities-table",
        max_height=260,
    )
