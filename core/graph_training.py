"""Stage 4 of the toy model: train Dysen's scene-graph encoder with the UNet and its layout adapter.

    python -m core.train graph --run runs/toy --steps 3600

Each cached training clip gets per-frame scene graphs in :mod:`core.dsg`'s schema, derived from the
clip's own layout: an object node per entity (its kind), a ``has color`` attribute node with the
frame's colour (so a colour change is a different node from its frame on), and a relation node for
its motion (``moves right``, ``moves left``, ``falls``, ``rises``, ``grows``, ``shrinks`` or
``stays``, from the boxes), linked to a value node with the background half of the time (as the
rules planner's events often are). The stage starts from the UNet stage's checkpoint, adds a
:class:`SceneGraphEncoder`, and trains all three together with the
same v-prediction loss and condition dropout (the graph is dropped with the layout). The fusion
gates start slightly open (0.1) since the UNet is trained too.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from tqdm import tqdm

from core.dsg import HAS_COLOR
from core.models.graph_encoder import GraphTensors, graph_tensors
from core.toyworld import BACKGROUNDS

MAX_GRAPH_NODES = 16
MOTION_THRESHOLD = 0.1


def track_predicate(boxes: np.ndarray, present: np.ndarray) -> str:
    """The motion word of one entity's track: boxes (F, 4) xyxy, present (F,) bool."""
    frames = np.flatnonzero(present)
    if len(frames) < 2:
        return "stays"
    first, last = boxes[frames[0]], boxes[frames[-1]]
    delta = (last[:2] + last[2:] - first[:2] - first[2:]) / 2
    axis = int(np.argmax(np.abs(delta)))
    if abs(delta[axis]) >= MOTION_THRESHOLD:
        if axis == 0:
            return "moves right" if delta[0] > 0 else "moves left"
        return "falls" if delta[1] > 0 else "rises"
    area = lambda b: max(1e-6, (b[2] - b[0]) * (b[3] - b[1]))  # noqa: E731
    ratio = area(last) / area(first)
    if ratio > 1.5:
        return "grows"
    if ratio < 1 / 1.5:
        return "shrinks"
    return "stays"


def clip_graphs(phrases: list[list[str]], masks: np.ndarray, boxes: np.ndarray, background: str | None) -> list[nx.DiGraph]:
    """Per-frame scene graphs of one training clip.

    Args:
        phrases: ``phrases[f][n]`` = ``"<colour> <kind>"`` of entity slot n in frame f.
        masks: (F, N) 1 where the entity is on screen. boxes: (F, N, 4).
        background: the value node of the motion relation, or None for none.
    """
    frames, slots = masks.shape
    predicates = [track_predicate(boxes[:, n], masks[:, n] > 0) for n in range(slots)]
    graphs = []
    for f in range(frames):
        graph = nx.DiGraph(frame=f)
        for n in range(slots):
            if masks[f, n] <= 0:
                continue
            color, kind = phrases[f][n].split(" ", 1)
            entity = f"e{n}"
            graph.add_node(entity, type="object", label=kind, kind=kind)
            attribute = f"{entity}|{HAS_COLOR}|{color}"
            graph.add_node(attribute, type="attribute", predicate=HAS_COLOR, label=color)
            graph.add_edge(entity, attribute)
            relation = f"{entity}|{predicates[n]}|{background}"
            graph.add_node(relation, type="relation", label=predicates[n])
            graph.add_edge(entity, relation)
            if background is not None:
                graph.add_node(f"value|{background}", type="value", label=background)
                graph.add_edge(relation, f"value|{background}")
        graphs.append(graph)
    return graphs


def _pad(tensors: GraphTensors, nodes: int) -> GraphTensors:
    f, n = tensors.node_mask.shape
    pad = nodes - n
    if pad <= 0:
        return GraphTensors(tensors.node_embeds[:, :nodes], tensors.node_types[:, :nodes], tensors.edges[:, :nodes, :nodes], tensors.node_mask[:, :nodes])
    return GraphTensors(
        torch.nn.functional.pad(tensors.node_embeds, (0, 0, 0, pad)),
        torch.nn.functional.pad(tensors.node_types, (0, pad)),
        torch.nn.functional.pad(tensors.edges, (0, pad, 0, pad)),
        torch.nn.functional.pad(tensors.node_mask, (0, pad)),
    )


def graph_dataset(data: dict, *, seed: int = 0) -> dict:
    """Graph tensors of every cached clip, stacked: node_embeds (clips, F, 16, 384) float16, node_types,
    edges, node_mask. Node labels are embedded once with MiniLM (normalised mean pooling, as the
    pipeline's phrases are)."""
    from core.text import load_minilm, sentence_embeddings
    from core.train import phrase_vocabulary

    text_encoder, tokenizer = load_minilm()
    vocab = phrase_vocabulary()
    cache: dict[str, torch.Tensor] = {}

    def embed(texts: list[str]) -> torch.Tensor:
        missing = [t for t in texts if t not in cache]
        if missing:
            for text, vector in zip(missing, sentence_embeddings(text_encoder, tokenizer, missing)):
                cache[text] = vector
        return torch.stack([cache[t] for t in texts])

    rng = np.random.default_rng(seed)
    phrase_ids = data["phrase_ids"].numpy()
    masks = data["masks"].numpy()
    boxes = data["boxes"].numpy()
    out = {"node_embeds": [], "node_types": [], "edges": [], "node_mask": []}
    for i in tqdm(range(len(phrase_ids)), desc="graphs", file=sys.stdout, mininterval=10):
        words = data["captions"][i].replace(":", " ").replace(".", " ").split()
        background = next((w for w in words if w in BACKGROUNDS), None) if rng.random() < 0.5 else None
        phrases = [[vocab[j] for j in row] for row in phrase_ids[i]]
        tensors = _pad(graph_tensors(clip_graphs(phrases, masks[i], boxes[i], background), embed, max_nodes=MAX_GRAPH_NODES), MAX_GRAPH_NODES)
        out["node_embeds"].append(tensors.node_embeds.half())
        out["node_types"].append(tensors.node_types)
        out["edges"].append(tensors.edges.to(torch.int8))
        out["node_mask"].append(tensors.node_mask)
    return {k: torch.stack(v) for k, v in out.items()}


def batch_graphs(graphs: dict, idx: torch.Tensor) -> GraphTensors:
    """The (B, F, N, ...) GraphTensors of clips ``idx``."""
    return GraphTensors(
        graphs["node_embeds"][idx].float(), graphs["node_types"][idx], graphs["edges"][idx].long(), graphs["node_mask"][idx],
    )


def clip_backgrounds(captions: list[str]) -> list[str]:
    """The background of each toy clip, read from its caption (every caption template names it once).

    Raises:
        ValueError: a caption names no background or more than one.
    """
    out = []
    for i, caption in enumerate(captions):
        words = set(caption.replace(":", " ").replace(".", " ").split())
        found = [b for b in BACKGROUNDS if b in words]
        if len(found) != 1:
            raise ValueError(f"captions[{i}]: must name exactly one background of {', '.join(BACKGROUNDS)} (got {caption!r})")
        out.append(found[0])
    return out


def mixture_weights(data: dict, terms: list[str], weight: float) -> torch.Tensor:
    """Per-clip sampling weights that over-sample clips matching any of ``terms``.

    A term is ``colour@background`` (an on-screen entity of that colour, in any frame, on that
    background) or ``colour+colour`` (two on-screen entities with these colours in the same frame;
    ``white+white`` needs two white entities). Colours and backgrounds are those of
    :mod:`core.toyworld`.

    Args:
        data: the cached clips of :func:`core.train.build_dataset` (``phrase_ids``, ``masks``, ``captions``).
        terms: the terms; empty gives uniform weights.
        weight: sampling weight of a matching clip relative to 1 for the others, >= 1.

    Returns:
        torch.Tensor of shape (clips,), float64, for ``torch.multinomial``.

    Raises:
        ValueError: a malformed term, an unknown colour or background, or ``weight`` < 1.
    """
    from core.toyworld import COLORS
    from core.train import phrase_vocabulary

    if weight < 1:
        raise ValueError(f"--oversample-weight: must be >= 1 (got {weight})")
    colour_of = torch.tensor([list(COLORS).index(p.split()[0]) for p in phrase_vocabulary()])
    colours = colour_of[data["phrase_ids"]]  # (clips, frames, entities) palette index
    on = data["masks"] > 0
    match = torch.zeros(colours.shape[0], dtype=torch.bool)
    backgrounds = None
    for term in terms:
        if "@" in term:
            colour, background = term.split("@", 1)
            if background not in BACKGROUNDS:
                raise ValueError(f"--oversample: {term!r}: background must be one of {', '.join(BACKGROUNDS)}")
            pair = [colour]
        elif "+" in term:
            pair, background = term.split("+", 1), None
        else:
            raise ValueError(f"--oversample: {term!r}: must be colour@background or colour+colour")
        for c in pair:
            if c not in COLORS:
                raise ValueError(f"--oversample: {term!r}: colour must be one of {', '.join(COLORS)}")
        counts = [((colours == list(COLORS).index(c)) & on).sum(-1) for c in pair]  # (clips, frames)
        if background is not None:
            if backgrounds is None:
                backgrounds = clip_backgrounds(data["captions"])
            hit = (counts[0] > 0).any(-1) & torch.tensor([b == background for b in backgrounds])
        elif pair[0] == pair[1]:
            hit = (counts[0] >= 2).any(-1)
        else:
            hit = ((counts[0] > 0) & (counts[1] > 0)).any(-1)
        match |= hit
    return torch.where(match, torch.tensor(float(weight)), torch.tensor(1.0)).double()


PATCH = slice(20, 44)  # a 24x24 square in a 64x64 frame; latent cells 3-4 lie wholly inside it


def palette_latents(vae, scaling_factor: float) -> torch.Tensor:
    """Latents of flat palette-colour squares: (backgrounds, colours, C), float32.

    For each background of ``core.toyworld.BACKGROUNDS`` and each colour of ``COLORS`` (in their
    order), a 64x64 frame with a 24x24 square of the colour in the middle is encoded (posterior mean
    times ``scaling_factor``) and the 2x2 latent cells inside the square are averaged.
    """
    from core.toyworld import BACKGROUNDS, COLORS

    out = torch.zeros(len(BACKGROUNDS), len(COLORS), vae.config.latent_channels)
    for b, background in enumerate(BACKGROUNDS.values()):
        frames = np.empty((len(COLORS), 64, 64, 3), np.float32)
        frames[:] = background
        for c, colour in enumerate(COLORS.values()):
            frames[c, PATCH, PATCH] = colour
        pixels = torch.from_numpy(frames / 127.5 - 1.0).permute(0, 3, 1, 2)  # (colours, 3, 64, 64) in [-1, 1]
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mean * scaling_factor
        out[b] = latents[:, :, 3:5, 3:5].mean((-1, -2))
    return out


def near_colour_directions(vae, scaling_factor: float, *, pairs: int = 5) -> torch.Tensor:
    """Unit latent directions (pairs, C) between the ``pairs`` nearest palette colours.

    The distance of two colours is the L2 distance of their :func:`palette_latents`, averaged over
    the backgrounds; a pair's direction is the mean difference, normalised. The denoiser's MSE is
    least pushed to separate these pairs (red-orange is the nearest for the shipped autoencoder,
    ``benchmarks/colour_latents.py``), so ``ToyTrainConfig.colour_direction_weight`` adds a loss on
    the error along them.
    """
    codes = palette_latents(vae, scaling_factor)  # (B, K, C)
    colours = codes.shape[1]
    ranked = sorted(
        ((i, j) for i in range(colours) for j in range(i + 1, colours)), key=lambda p: float((codes[:, p[0]] - codes[:, p[1]]).norm(dim=-1).mean())
    )
    directions = torch.stack([(codes[:, i] - codes[:, j]).mean(0) for i, j in ranked[:pairs]])
    return torch.nn.functional.normalize(directions, dim=-1)


def trained_parameters(unet: torch.nn.Module, adapter: torch.nn.Module, encoder: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The graph stage's trained parameters in one fixed order (UNet, adapter, graph encoder): the
    order of the checkpoint's EMA ``shadow_params``."""
    return list(unet.parameters()) + list(adapter.parameters()) + list(encoder.parameters())


def narrowed_adapter(unet, encoder, scheduler, data: dict, graphs: dict, cfg, wide_mult: int, *, batches: int = 16):
    """``cfg.init_from``'s layout adapter, its gated feed-forwards pruned to ``cfg.adapter_ff_mult``.

    Loads the adapter at its own width ``wide_mult``, runs the UNet (with ``encoder``) on
    ``batches`` training batches to score each hidden unit (:func:`core.models.layout.feed_forward_importance`),
    and keeps the best ``cfg.adapter_ff_mult * dim`` units per block
    (:meth:`~core.models.layout.LayoutAdapter.narrowed`). The batches come from their own seeded
    generator, so the training stream is the same as without pruning.

    Raises:
        ValueError: ``cfg.adapter_ff_mult`` not in [1, ``wide_mult``] (named ``adapter_ff_mult``).
    """
    from core.models.layout import LayoutAdapter, feed_forward_importance
    from core.train import pipeline_weights

    if not 1 <= cfg.adapter_ff_mult <= wide_mult:
        raise ValueError(f"adapter_ff_mult: must be in [1, {wide_mult}] to start from {cfg.init_from} (got {cfg.adapter_ff_mult})")
    wide = LayoutAdapter.for_unet(unet, gate_init=0.5, ff_mult=wide_mult, box_masked=cfg.box_masked_grounding)
    wide.load_state_dict(pipeline_weights(cfg.init_from, "layout_adapter"))
    wide.attach(unet)
    try:
        with feed_forward_importance(wide) as importance:
            run_calibration_batches(unet, wide, encoder, scheduler, data, graphs, cfg, seed=cfg.seed + 11, batches=batches)
    finally:
        wide.detach(unet)
    return wide.narrowed(cfg.adapter_ff_mult, importance)


def run_calibration_batches(unet, adapter, encoder, scheduler, data: dict, graphs: dict, cfg, *, seed: int, batches: int) -> None:
    """Run ``unet`` (``adapter`` and ``encoder`` attached) without gradients on ``batches`` training
    batches of ``cfg.unet_batch`` clips, condition dropout off, drawn from their own generator seeded
    ``seed`` (so the training stream is untouched): the inputs that pruning scores are measured on."""
    from core.train import unet_batch_loss

    generator = torch.Generator().manual_seed(seed)
    calibration = replace(cfg, drop_both=0.0, drop_prompt=0.0, drop_layout=0.0, drop_adapter=0.0)
    with torch.no_grad():
        for _ in range(batches):
            idx = torch.randint(0, data["latents"].shape[0], (cfg.unet_batch,), generator=generator)
            unet_batch_loss(unet, adapter, scheduler, data, idx, calibration, generator, graph_encoder=encoder, graphs=graphs)


def transformer_in_widths(cfg) -> tuple[int, int | None]:
    """The (heads, feed-forward units) of the run's input temporal transformer.

    ``cfg.transformer_in_heads`` / ``cfg.transformer_in_ff_inner_dim`` where set; 0 takes
    ``cfg.init_from``'s UNet's (a pruned model stays pruned), or diffusers' 8 heads and 4x-wide
    feed-forward (None) without one.
    """
    from core.models.unet import TRANSFORMER_IN_HEADS, PrunedUNet3DConditionModel

    init = PrunedUNet3DConditionModel.load_config(Path(cfg.init_from) / "unet") if cfg.init_from else {}
    heads = cfg.transformer_in_heads or init.get("transformer_in_heads") or TRANSFORMER_IN_HEADS
    return heads, cfg.transformer_in_ff_inner_dim or init.get("transformer_in_ff_inner_dim")


def narrowed_unet(encoder, scheduler, data: dict, graphs: dict, cfg, *, batches: int = 16):
    """``cfg.init_from``'s UNet, its input temporal transformer pruned to ``cfg.transformer_in_heads``
    heads and ``cfg.transformer_in_ff_inner_dim`` feed-forward units (0: ``init_from``'s, see
    :func:`transformer_in_widths`).

    Loads that UNet and its layout adapter at their own widths, runs them (with ``encoder``,
    detached from any other UNet) on ``batches`` training batches to score each head and unit
    (:func:`core.models.unet.transformer_in_importance`), and keeps the best
    (:meth:`~core.models.unet.PrunedUNet3DConditionModel.narrowed_from`). The batches come from
    their own seeded generator, so the training stream is the same as without pruning.

    Raises:
        ValueError: a width above ``init_from``'s (named after the config field).
    """
    from core.models.layout import LayoutAdapter
    from core.models.unet import PrunedUNet3DConditionModel, transformer_in_importance
    from core.train import pipeline_weights

    folder = Path(cfg.init_from)
    wide = PrunedUNet3DConditionModel.from_config(PrunedUNet3DConditionModel.load_config(folder / "unet")).eval()
    wide.load_state_dict(pipeline_weights(folder, "unet"))
    adapter_config = LayoutAdapter.load_config(folder / "layout_adapter")
    adapter = LayoutAdapter.for_unet(wide, gate_init=0.5, ff_mult=adapter_config.get("ff_mult", 4), box_masked=adapter_config.get("box_masked", False))
    adapter.load_state_dict(pipeline_weights(folder, "layout_adapter"))
    adapter.attach(wide)
    encoder.attach(wide)
    try:
        with transformer_in_importance(wide) as importance:
            run_calibration_batches(wide, adapter, encoder, scheduler, data, graphs, cfg, seed=cfg.seed + 13, batches=batches)
    finally:
        adapter.detach(wide)
        encoder.detach(wide)
    return PrunedUNet3DConditionModel.narrowed_from(wide, *transformer_in_widths(cfg), importance)


def train_graph(
    run: Path,
    cfg,
    data: dict,
    *,
    steps: int,
    lr: float = 1e-4,
    graph_lr: float = 3e-4,
    gate_init: float = 0.1,
    ema_decay: float = 0.0,
    oversample: list[str] | None = None,
    oversample_weight: float = 3.0,
) -> None:
    """Fine-tune UNet + adapter from ``run/unet_ckpt.pt`` together with a new SceneGraphEncoder.

    A run without a UNet stage but with ``cfg.init_from`` (a pipeline folder) starts instead from that
    pipeline's UNet, adapter and graph encoder, every tensor whose shape matches (a run with another
    ``latent_channels`` re-initialises only the UNet's ``conv_in`` and ``conv_out``).

    A run whose ``cfg.adapter_ff_mult`` is below the ``init_from`` adapter's starts from that
    adapter with its gated feed-forwards pruned to the narrower width (:func:`narrowed_adapter`);
    one whose ``cfg.transformer_in_heads`` or ``cfg.transformer_in_ff_inner_dim`` is below the
    ``init_from`` UNet's starts from that UNet with its input temporal transformer pruned
    (:func:`narrowed_unet`).

    The fusion gates start at ``gate_init`` (not GLIGEN's 0: the UNet is trained too, and a closed
    gate would give the encoder no gradient until the gate has moved).

    ``ema_decay`` in (0, 1) also keeps an exponential moving average of the trained weights
    (``diffusers.training_utils.EMAModel``; its decay ramps as (1 + n) / (10 + n) over its own n
    updates up to ``ema_decay``); it is saved in the checkpoint as ``ema`` and written by
    ``export(..., ema=True)``. A run resumed without one starts its average from the resumed
    weights. 0 keeps no average.

    ``oversample`` (terms of :func:`mixture_weights`) draws the clips that match them
    ``oversample_weight`` times as often as the others; None or empty draws uniformly.

    Checkpoints (resumable) in ``run/graph_ckpt.pt``; the loss goes to ``run/graph_loss.csv``.
    Learning rates: ``lr`` for the UNet and adapter, ``graph_lr`` for the encoder, 50 warm-up steps,
    cosine to 10 %.
    """
    from core.models.graph_encoder import SceneGraphEncoder
    from core.models.layout import LayoutAdapter
    from core.models.toy import build_toy_scheduler, build_toy_unet
    from core.train import _atomic_save, unet_batch_loss

    graphs_path = run / "graphs.pt"
    if graphs_path.exists():
        graphs = torch.load(graphs_path, weights_only=False)
    else:
        graphs = graph_dataset(data, seed=cfg.seed)
        _atomic_save(graphs, graphs_path)
    torch.manual_seed(cfg.seed)
    heads, units = transformer_in_widths(cfg)
    unet = build_toy_unet(cfg.latent_channels, transformer_in_heads=heads, transformer_in_ff_inner_dim=units)
    adapter = LayoutAdapter.for_unet(unet, gate_init=0.5, ff_mult=cfg.adapter_ff_mult, box_masked=cfg.box_masked_grounding)
    adapter.attach(unet)
    encoder = SceneGraphEncoder.for_unet(unet)
    encoder.attach(unet)
    scheduler = build_toy_scheduler()
    backbone_params = list(unet.parameters()) + list(adapter.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": backbone_params, "base_lr": lr}, {"params": list(encoder.parameters()), "base_lr": graph_lr}], lr=lr, weight_decay=0.01
    )
    generator = torch.Generator().manual_seed(cfg.seed + 7)
    ckpt = run / "graph_ckpt.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(state["unet"])
        adapter.load_state_dict(state["adapter"])
        encoder.load_state_dict(state["graph_encoder"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step = state["step"]
    elif not (run / "unet_ckpt.pt").exists() and cfg.init_from:
        from core.models.unet import TRANSFORMER_IN_HEADS, PrunedUNet3DConditionModel
        from core.train import load_matching, pipeline_weights

        fresh = load_matching(encoder, pipeline_weights(cfg.init_from, "graph_encoder"))
        init_unet = PrunedUNet3DConditionModel.load_config(Path(cfg.init_from) / "unet")
        full_units = 4 * TRANSFORMER_IN_HEADS * init_unet["attention_head_dim"]  # diffusers' 4x the block width
        wide_heads, wide_units = init_unet.get("transformer_in_heads", TRANSFORMER_IN_HEADS), init_unet.get("transformer_in_ff_inner_dim") or full_units
        if (heads, units or full_units) != (wide_heads, wide_units):
            encoder.detach(unet)
            unet.load_state_dict(narrowed_unet(encoder, scheduler, data, graphs, cfg).state_dict())
            encoder.attach(unet)
            print(
                f"graph stage: input temporal transformer pruned from {wide_heads} heads, {wide_units} feed-forward units "
                f"to {heads}, {units or full_units}", flush=True,
            )
        else:
            fresh += load_matching(unet, pipeline_weights(cfg.init_from, "unet"))
        wide_mult = LayoutAdapter.load_config(Path(cfg.init_from) / "layout_adapter").get("ff_mult", 4)
        if cfg.adapter_ff_mult < wide_mult:
            adapter.detach(unet)
            adapter.load_state_dict(narrowed_adapter(unet, encoder, scheduler, data, graphs, cfg, wide_mult).state_dict())
            adapter.attach(unet)
            print(f"graph stage: adapter feed-forward pruned from {wide_mult}x to {cfg.adapter_ff_mult}x the block width", flush=True)
        else:
            fresh += load_matching(adapter, pipeline_weights(cfg.init_from, "layout_adapter"))
        print(f"graph stage: starting from {cfg.init_from}; fresh: {', '.join(fresh) or 'none'}", flush=True)
    else:
        state = torch.load(run / "unet_ckpt.pt", weights_only=False)
        unet.load_state_dict(state["unet"])
        adapter.load_state_dict(state["adapter"])
        with torch.no_grad():  # slightly open, so the encoder gets gradients from the first step
            for fuser in encoder.fusers:
                fuser.gate.fill_(gate_init)
        print(f"graph stage: starting from the UNet stage at step {state['step']}", flush=True)
    ema = None
    if ema_decay > 0:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(trained_parameters(unet, adapter, encoder), decay=ema_decay)
        if ckpt.exists() and "ema" in state:
            ema.load_state_dict(state["ema"])
        else:
            print(f"graph stage: EMA (decay {ema_decay}) starts from the weights at step {step}", flush=True)
    if step >= steps:
        return
    unet.train()
    adapter.train()
    encoder.train()
    n = data["latents"].shape[0]
    if cfg.colour_direction_weight > 0:
        from diffusers import AutoencoderKL

        data = {**data, "colour_directions": near_colour_directions(AutoencoderKL.from_pretrained(run / "vae").float().eval(), data["scaling_factor"])}
    weights = mixture_weights(data, oversample or [], oversample_weight)
    if oversample:
        share = float(weights[weights > 1].sum() / weights.sum())
        print(f"graph stage: {int((weights > 1).sum())} of {n} clips match {', '.join(oversample)}; {share:.0%} of draws", flush=True)
    params = trained_parameters(unet, adapter, encoder)
    with open(run / "graph_loss.csv", "a", newline="") as log:
        writer = csv.writer(log)
        bar = tqdm(total=steps, initial=step, desc="graph", file=sys.stdout, mininterval=10)
        started = time.time()
        while step < steps:
            if oversample:
                idx = torch.multinomial(weights, cfg.unet_batch, replacement=True, generator=generator)
            else:
                idx = torch.randint(0, n, (cfg.unet_batch,), generator=generator)
            loss = unet_batch_loss(unet, adapter, scheduler, data, idx, cfg, generator, graph_encoder=encoder, graphs=graphs)
            scale = min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * scale
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            if ema is not None:
                ema.step(params)
            step += 1
            gate = float(torch.stack([f.gate.detach().tanh().abs() for f in encoder.fusers]).mean())
            writer.writerow([step, f"{loss.item():.5f}", f"{scale * lr:.2e}", f"{gate:.4f}", f"{time.time() - started:.1f}"])
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", gate=f"{gate:.3f}")
            if step % cfg.checkpoint_every == 0 or step == steps:
                log.flush()
                state = {
                    "unet": unet.state_dict(), "adapter": adapter.state_dict(), "graph_encoder": encoder.state_dict(),
                    "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "step": step,
                }
                if ema is not None:
                    state["ema"] = ema.state_dict()
                _atomic_save(state, ckpt)
