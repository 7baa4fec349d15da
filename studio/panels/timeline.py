"""The filmstrip (under the canvas, with play/pause) and the timeline (bottom of the page): gr.HTML
components with their own JavaScript.

Both send a picked frame to Python as a ``select`` event (``evt.index`` is the frame, ``evt.value``
the page's request number, counting up from 1, so that a request overtaken by a later one is skipped). The timeline
also owns the page's frame cursor (``window.studio``) and its keys: Left/Right step a frame, Space
plays and pauses, Ctrl+Z / Ctrl+Shift+Z undo and redo (none of them while typing in a field).
Playing shows the filmstrip's frames over the canvas in the browser; pausing opens that frame.
"""

from types import SimpleNamespace

import gradio as gr

FPS = 8

# The page's frame cursor, shared by both components (whichever loads first creates it).
CURSOR = f"""
const S = window.studio = window.studio || {{frame: 0, frames: 1, playing: null, fps: {FPS}}};
// The scene's length as the page shows it now: a key pressed right after a new plan appeared may
// come before the timeline's watch has run.
S.count = () => {{
  const tl = document.querySelector('#timeline .tl');
  if (tl) S.frames = +tl.dataset.frames;
  return S.frames;
}};
"""

TIMELINE_JS = CURSOR + """
const sync = () => {
  const tl = element.querySelector('.tl');
  if (tl) { S.frames = +tl.dataset.frames; S.frame = +tl.dataset.current; }
};
S.mark = (f) => {
  const tl = element.querySelector('.tl');
  if (tl) {
    tl.dataset.current = f;
    const head = tl.querySelector('.playhead');
    if (head) head.style.left = `calc(110px + (100% - 110px) * ${f / S.frames})`;
  }
  document.querySelectorAll('#filmstrip .thumb').forEach((t) => t.classList.toggle('current', +t.dataset.frame === f));
  const cur = document.querySelector(`#filmstrip .thumb[data-frame="${f}"]`);
  if (cur) cur.scrollIntoView({block: 'nearest', inline: 'nearest'});
  const label = document.querySelector('#filmstrip .frame-label');
  if (label) label.textContent = `frame ${f} / ${S.frames - 1}`;
};
S.go = (f) => {
  if (S.playing) S.stop(false);
  f = Math.max(0, Math.min(S.count() - 1, f));
  S.frame = f;
  S.mark(f);
  // Requests can reach the server out of order; the sequence number lets it skip a stale one.
  S.seq = (S.seq || 0) + 1;
  trigger('select', {index: f, value: S.seq});
};
sync();
watch('value', sync);
element.addEventListener('click', (e) => {
  const t = e.target.closest('[data-frame]');
  if (t) S.go(+t.dataset.frame);
});
if (!S.keys) {
  S.keys = true;
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.closest('input, textarea, select, [contenteditable="true"], table, [role="grid"], [role="listbox"]'))) return;
    const key = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && (key === 'z' || key === 'y')) {
      const redo = key === 'y' || e.shiftKey;
      const button = document.querySelector(redo ? '#redo' : '#undo');
      if (button) { e.preventDefault(); button.click(); }
    } else if (e.ctrlKey || e.metaKey || e.altKey) {
      return;
    } else if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
      e.preventDefault();
      S.go(S.frame + (e.key === 'ArrowRight' ? 1 : -1));
    } else if (e.key === ' ') {
      e.preventDefault();
      if (S.toggle) S.toggle();
    }
  });
}
"""

FILMSTRIP_JS = CURSOR + """
S.stop = (open = true) => {
  clearInterval(S.playing);
  S.playing = null;
  const overlay = document.getElementById('play-overlay');
  if (overlay) overlay.remove();
  const button = element.querySelector('[data-act="play"]');
  if (button) button.textContent = 'Play';
  if (open && S.go) S.go(S.frame);
};
S.toggle = () => {
  if (S.playing) { S.stop(true); return; }
  const editor = document.querySelector('#box-editor');
  const canvas = editor && editor.querySelector('.be-stage');
  if (!canvas) return;
  const r = canvas.getBoundingClientRect(), er = editor.getBoundingClientRect(), size = Math.min(r.width, r.height);
  const img = document.createElement('img');
  img.id = 'play-overlay';
  img.style.cssText = `position:absolute;left:${r.left - er.left + (r.width - size) / 2}px;top:${r.top - er.top + (r.height - size) / 2}px;`
    + `width:${size}px;height:${size}px;image-rendering:pixelated;z-index:50;pointer-events:none`;
  editor.style.position = 'relative';
  editor.appendChild(img);
  S.count();
  const tick = () => {
    S.frame = (S.frame + 1) % S.frames;
    const t = element.querySelector(`.thumb[data-frame="${S.frame}"]`);
    if (t) img.src = t.src;
    if (S.mark) S.mark(S.frame);
  };
  tick();
  S.playing = setInterval(tick, 1000 / S.fps);
  const button = element.querySelector('[data-act="play"]');
  if (button) button.textContent = 'Pause';
};
element.addEventListener('click', (e) => {
  const act = e.target.closest('[data-act]');
  if (act) {
    const a = act.dataset.act;
    if (a === 'play') S.toggle();
    else if (S.go) S.go(a === 'first' ? 0 : a === 'last' ? S.count() - 1 : S.frame + (a === 'next' ? 1 : -1));
    return;
  }
  const t = e.target.closest('.thumb');
  if (t && S.go) S.go(+t.dataset.frame);
});
"""

FILMSTRIP_TEMPLATE = """
<div class="transport">
  <button data-act="first" title="First frame">|&lt;</button><button data-act="prev" title="Previous frame (Left)">&lt;</button>
  <button data-act="play" title="Play / pause (Space)">Play</button><button data-act="next" title="Next frame (Right)">&gt;</button>
  <button data-act="last" title="Last frame">&gt;|</button><span class="frame-label"></span>
</div>
${value}
"""

FILMSTRIP_CSS = """
.transport { display: flex; gap: 4px; align-items: center; margin: 2px 0; }
.transport button { padding: 1px 8px; border: 1px solid #bbb; border-radius: 4px; background: #f6f6f8; cursor: pointer; }
.frame-label { font-size: 12px; color: #555; margin-left: 6px; }
.strip { display: flex; gap: 3px; overflow-x: auto; padding: 2px 0 4px; }
.thumb { width: 48px; height: 48px; image-rendering: pixelated; border: 2px solid transparent; cursor: pointer; flex: none; }
.thumb.keyframe { border-bottom-color: #f59e0b; }
.thumb.current { border-color: #d62728; }
"""

TIMELINE_CSS = """
.tl { position: relative; font-size: 11px; user-select: none; }
.ruler, .track { position: relative; height: 20px; border-bottom: 1px solid #e5e5e5; }
.tick { position: absolute; top: 0; text-align: center; color: #777; cursor: pointer; border-left: 1px solid #eee; box-sizing: border-box; }
.name { position: absolute; left: 0; width: 106px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; line-height: 20px; }
.name i { display: inline-block; width: 9px; height: 9px; margin-right: 4px; border: 1px solid #333; }
.event { position: absolute; top: 3px; height: 14px; opacity: .55; border-radius: 3px; overflow: hidden; white-space: nowrap;
         line-height: 14px; padding-left: 3px; box-sizing: border-box; border: 1px solid #333; color: #000; }
.key { position: absolute; top: 4px; width: 11px; height: 11px; margin-left: -6px; transform: rotate(45deg);
       background: #f59e0b; border: 1px solid #333; cursor: pointer; z-index: 2; }
.key.off { background: #fff; }
.key:hover { background: #d62728; }
.playhead { position: absolute; top: 0; bottom: 0; background: rgba(214, 39, 40, .18); border-left: 2px solid #d62728; pointer-events: none; }
"""


def filmstrip() -> gr.HTML:
    """Transport buttons and one thumbnail per frame of the scene (click: open that frame)."""
    return gr.HTML("", html_template=FILMSTRIP_TEMPLATE, css_template=FILMSTRIP_CSS, js_on_load=FILMSTRIP_JS, elem_id="filmstrip")


def timeline() -> gr.HTML:
    """One track per entity: keyframes (click: open that frame), event bars and the playhead."""
    return gr.HTML("", css_template=TIMELINE_CSS, js_on_load=TIMELINE_JS, elem_id="timeline", max_height=170)


def render() -> SimpleNamespace:
    return SimpleNamespace(timeline=timeline())
