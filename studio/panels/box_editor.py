"""The box editor: one frame's picture with its entities' boxes over it, as a gr.HTML component
with its own JavaScript (an SVG layer over the picture).

Drag a box to move it, or one of its corner handles to resize it; on release the component's value
holds the new boxes and it fires ``input`` (only then: a value set by Python fires nothing that
writes). The value is :func:`studio.views.box_editor_value`'s dict::

    {"image": "/path/s0-f3-<key>.png",                  # served through gradio_api/file=
     "boxes": [{"xmin": 12, "ymin": 40, "xmax": 80, "ymax": 96,   # pixels of the SKETCH_SIZE picture
                "label": "red ball", "color": [214, 39, 40]}, ...]}

The picture's file name says which scene and frame the boxes belong to (:func:`studio.views.frame_of`),
so a release is applied to the frame the user saw. A drag that outlives its frame (the picture
changed under the pointer) is dropped. Boxes keep at least ``box_min_size`` pixels a side and stay
inside the picture.
"""

import gradio as gr

from studio.views import SKETCH_SIZE

DISPLAY_SIZE = 320  # CSS pixels: five per pixel of a 64 px video, 2.5 per pixel of a 128 px one

# Rendered from the value by Gradio on every change (a JS template string); labels are escaped.
TEMPLATE = f"""
<div class="be-stage">
${{value && value.image ? `<img class="be-img" alt="frame" draggable="false" src="gradio_api/file=${{encodeURI(value.image)}}">` : `<div class="be-empty">Generate or open a plan to edit its boxes.</div>`}}
<svg class="be-svg" viewBox="0 0 {SKETCH_SIZE} {SKETCH_SIZE}" data-size="{SKETCH_SIZE}">
${{((value && value.boxes) || []).map((b, i) => {{
  const c = `rgb(${{(b.color || [230, 230, 230]).join(',')}})`;
  const label = String(b.label).replace(/[&<>"']/g, (ch) => '&#' + ch.charCodeAt(0) + ';');
  const handles = ['nw', 'ne', 'sw', 'se'].map((h) => `<rect class="be-h be-${{h}}" data-h="${{h}}" width="8" height="8"
     x="${{(h[1] === 'w' ? b.xmin : b.xmax) - 4}}" y="${{(h[0] === 'n' ? b.ymin : b.ymax) - 4}}" fill="${{c}}"></rect>`).join('');
  return `<g class="be-box" data-i="${{i}}" data-label="${{label}}">
    <rect class="be-r" x="${{b.xmin}}" y="${{b.ymin}}" width="${{b.xmax - b.xmin}}" height="${{b.ymax - b.ymin}}" stroke="${{c}}" fill="${{c}}"></rect>
    <text x="${{b.xmin + 2}}" y="${{b.ymin > 12 ? b.ymin - 3 : b.ymin + 11}}" fill="${{c}}">${{label}}</text>${{handles}}</g>`;
}}).join('')}}
</svg>
</div>
"""

CSS = f"""
.be-stage {{ position: relative; width: {DISPLAY_SIZE}px; height: {DISPLAY_SIZE}px; margin: 0 auto; background: #eee; touch-action: none; }}
.be-img, .be-svg {{ position: absolute; inset: 0; width: 100%; height: 100%; }}
.be-img {{ image-rendering: pixelated; user-select: none; }}
.be-empty {{ position: absolute; inset: 0; display: flex; align-items: center; justify-content: center; color: #777; font-size: 13px; }}
.be-r {{ fill-opacity: .12; stroke-width: 2; cursor: move; }}
.be-box text {{ font: 600 11px sans-serif; paint-order: stroke; stroke: #fff; stroke-width: 3px; pointer-events: none; }}
.be-h {{ stroke: #fff; stroke-width: 1; }}
.be-nw, .be-se {{ cursor: nwse-resize; }}
.be-ne, .be-sw {{ cursor: nesw-resize; }}
.be-box.dragging .be-r {{ fill-opacity: .25; stroke-dasharray: 4 2; }}
"""

JS = """
const MIN = props.box_min_size || 6;
let drag = null;
const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
const point = (svg, e) => {
  const r = svg.getBoundingClientRect(), s = +svg.dataset.size;
  return [(e.clientX - r.left) * s / r.width, (e.clientY - r.top) * s / r.height];
};
// Move a drawn box (rectangle, label, handles) to b = [x0, y0, x1, y1] without re-rendering.
const place = (g, [x0, y0, x1, y1]) => {
  const r = g.querySelector('.be-r');
  r.setAttribute('x', x0); r.setAttribute('y', y0); r.setAttribute('width', x1 - x0); r.setAttribute('height', y1 - y0);
  const t = g.querySelector('text');
  t.setAttribute('x', x0 + 2); t.setAttribute('y', y0 > 12 ? y0 - 3 : y0 + 11);
  g.querySelectorAll('.be-h').forEach((h) => {
    h.setAttribute('x', (h.dataset.h[1] === 'w' ? x0 : x1) - 4);
    h.setAttribute('y', (h.dataset.h[0] === 'n' ? y0 : y1) - 4);
  });
};
element.addEventListener('pointerdown', (e) => {
  const g = e.target.closest('.be-box');
  const v = props.value;
  if (!g || e.button !== 0 || !v || !v.boxes) return;
  const b = v.boxes[+g.dataset.i];
  if (!b) return;
  const svg = g.ownerSVGElement;
  drag = {g, svg, i: +g.dataset.i, image: v.image, handle: e.target.dataset.h || null, start: point(svg, e),
          box: [b.xmin, b.ymin, b.xmax, b.ymax], now: null, size: +svg.dataset.size};
  g.classList.add('dragging');
  svg.setPointerCapture(e.pointerId);
  e.preventDefault();
});
element.addEventListener('pointermove', (e) => {
  if (!drag) return;
  const [px, py] = point(drag.svg, e), dx = px - drag.start[0], dy = py - drag.start[1], S = drag.size;
  let [x0, y0, x1, y1] = drag.box;
  const h = drag.handle;
  if (!h) {
    const w = x1 - x0, ht = y1 - y0;
    x0 = clamp(x0 + dx, 0, S - w); y0 = clamp(y0 + dy, 0, S - ht); x1 = x0 + w; y1 = y0 + ht;
  } else {
    if (h[1] === 'w') x0 = clamp(x0 + dx, 0, x1 - MIN); else x1 = clamp(x1 + dx, x0 + MIN, S);
    if (h[0] === 'n') y0 = clamp(y0 + dy, 0, y1 - MIN); else y1 = clamp(y1 + dy, y0 + MIN, S);
  }
  drag.now = [x0, y0, x1, y1].map(Math.round);
  place(drag.g, drag.now);
});
const finish = (commit) => {
  if (!drag) return;
  const d = drag;
  drag = null;
  d.g.classList.remove('dragging');
  const v = props.value;
  const moved = d.now && d.now.some((x, k) => x !== d.box[k]);
  if (!commit || !moved || !v || v.image !== d.image) {  // cancelled, a click, or the frame changed under the pointer
    if (d.g.isConnected) place(d.g, d.box);
    return;
  }
  const [xmin, ymin, xmax, ymax] = d.now;
  props.value = {...v, boxes: v.boxes.map((b, k) => (k === d.i ? {...b, xmin, ymin, xmax, ymax} : b))};
  trigger('input');
};
element.addEventListener('pointerup', () => finish(true));
element.addEventListener('pointercancel', () => finish(false));
"""


def box_editor() -> gr.HTML:
    """The box editor component (see the module docstring); ``elem_id`` ``box-editor``."""
    return gr.HTML(None, html_template=TEMPLATE, css_template=CSS, js_on_load=JS, elem_id="box-editor", box_min_size=6, apply_default_css=False)
