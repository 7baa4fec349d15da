"""The ``graph`` stage: Dysen's scene-graph encoder trained jointly with the UNet and its layout adapter.

    python -m core.training graph --run runs/toy --steps 3600

The stage starts from the ``toy`` stage's UNet checkpoint (or, for a run without one, from
``init_from``'s pipeline), adds a :class:`~core.models.graph_encoder.SceneGraphEncoder`, and trains
all three together with the same v-prediction loss and condition dropout (the graph is dropped
with the layout) on the cached clips and their scene graphs
(:func:`core.training.graph_data.graph_dataset`, cached in ``run/graphs.pt``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from core.training.config import GraphTrainConfig, ToyTrainConfig
from core.training.graph_data import graph_dataset
from core.training.loop import CosineSchedule, StepRecord, TrainingLoop, TrainingState, atomic_save
from core.training.losses import unet_batch_loss
from core.training.palette import near_colour_directions
from core.training.pruning import narrowed_adapter, narrowed_unet, transformer_in_widths
from core.training.toy_data import clip_sampler
from core.training.weights import load_matching, pipeline_weights


def trained_parameters(unet: torch.nn.Module, adapter: torch.nn.Module, encoder: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The graph stage's trained parameters in one fixed order (UNet, adapter, graph encoder): the
    order of the checkpoint's EMA ``shadow_params``."""
    return list(unet.parameters()) + list(adapter.parameters()) + list(encoder.parameters())


def _graphs(run: Path, data: dict, seed: int) -> dict:
    """The clips' graph tensors, cached in ``run/graphs.pt``."""
    path = run / "graphs.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    graphs = graph_dataset(data, seed=seed)
    atomic_save(graphs, path)
    return graphs


def _start_from_pipeline(unet, adapter, encoder, scheduler, data: dict, graphs: dict, cfg: ToyTrainConfig) -> None:
    """Load ``cfg.init_from``'s UNet, adapter and graph encoder into the (attached) modules: every
    tensor whose shape fits, or pruned to the run's narrower widths (:mod:`core.training.pruning`)."""
    from core.models.layout import LayoutAdapter
    from core.models.unet import TRANSFORMER_IN_HEADS, PrunedUNet3DConditionModel

    heads, units = transformer_in_widths(cfg)
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


def _start_from_unet_stage(run: Path, unet, adapter, encoder, gate_init: float) -> None:
    """Load ``run/unet_ckpt.pt``'s UNet and adapter; open the fresh encoder's fusion gates to ``gate_init``."""
    state = torch.load(run / "unet_ckpt.pt", weights_only=False)
    unet.load_state_dict(state["unet"])
    adapter.load_state_dict(state["adapter"])
    with torch.no_grad():  # slightly open, so the encoder gets gradients from the first step
        for fuser in encoder.fusers:
            fuser.gate.fill_(gate_init)
    print(f"graph stage: starting from the UNet stage at step {state['step']}", flush=True)


def _models(cfg: ToyTrainConfig):
    """A fresh (UNet, adapter, graph encoder) at the run's widths, the adapter and encoder attached."""
    from core.models.graph_encoder import SceneGraphEncoder
    from core.models.layout import LayoutAdapter
    from core.models.toy import build_toy_unet

    heads, units = transformer_in_widths(cfg)
    unet = build_toy_unet(cfg.latent_channels, transformer_in_heads=heads, transformer_in_ff_inner_dim=units)
    adapter = LayoutAdapter.for_unet(unet, gate_init=0.5, ff_mult=cfg.adapter_ff_mult, box_masked=cfg.box_masked_grounding)
    adapter.attach(unet)
    encoder = SceneGraphEncoder.for_unet(unet)
    encoder.attach(unet)
    return unet, adapter, encoder


def _graph_row(record: StepRecord) -> list:
    return [record.step, f"{record.loss:.5f}", f"{record.lr:.2e}", f"{record.terms['gate']:.4f}", f"{record.elapsed:.1f}"]


def train_graph(run: Path, cfg: ToyTrainConfig, data: dict, graph_cfg: GraphTrainConfig) -> None:
    """Fine-tune UNet + adapter together with a new SceneGraphEncoder.

    A run with ``run/unet_ckpt.pt`` starts from it. A run without one but with ``cfg.init_from`` (a
    pipeline folder) starts from that pipeline's UNet, adapter and graph encoder, every tensor whose
    shape matches (a run with another ``latent_channels`` re-initialises only the UNet's
    ``conv_in`` and ``conv_out``); a ``cfg.adapter_ff_mult``, ``cfg.transformer_in_heads`` or
    ``cfg.transformer_in_ff_inner_dim`` below ``init_from``'s prunes that layer
    (:mod:`core.training.pruning`).

    The fusion gates start at ``graph_cfg.gate_init`` (not GLIGEN's 0: the UNet is trained too, and
    a closed gate would give the encoder no gradient until the gate has moved).

    ``graph_cfg.ema_decay`` in (0, 1) also keeps an exponential moving average of the trained
    weights (``diffusers.training_utils.EMAModel``; its decay ramps as (1 + n) / (10 + n) over its
    own n updates up to ``ema_decay``), saved in the checkpoint as ``ema`` and written by
    ``export`` with ``ema=True``. A run resumed without one starts its average from the resumed
    weights. ``graph_cfg.oversample`` (terms of :func:`core.training.toy_data.mixture_weights`)
    draws the matching clips ``oversample_weight`` times as often as the others.

    Checkpoints (resumable) in ``run/graph_ckpt.pt``; the loss goes to ``run/graph_loss.csv`` (step,
    loss, learning rate, mean fusion-gate opening, seconds). Learning rates: ``graph_cfg.lr`` for
    the UNet and adapter, ``graph_cfg.graph_lr`` for the encoder, 50 warm-up steps, cosine to 10 %
    (a resumed run keeps the peak rates its checkpoint was saved with).

    Args:
        run: the run folder (``config.json``, ``data.pt``, ``vae/``).
        cfg: the run's toy config (``graph_cfg.box_loss_weight``, when set, replaces its own).
        data: :func:`core.training.toy_data.build_dataset`'s cache.

    Raises:
        ValueError: a bad oversampling term or weight, or a pruning width out of range.
    """
    from core.models.toy import build_toy_scheduler

    if graph_cfg.box_loss_weight is not None:
        cfg = replace(cfg, box_loss_weight=graph_cfg.box_loss_weight)
    graphs = _graphs(run, data, cfg.seed)
    torch.manual_seed(cfg.seed)
    unet, adapter, encoder = _models(cfg)
    scheduler = build_toy_scheduler()
    backbone_params = list(unet.parameters()) + list(adapter.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": backbone_params, "base_lr": graph_cfg.lr}, {"params": list(encoder.parameters()), "base_lr": graph_cfg.graph_lr}],
        lr=graph_cfg.lr, weight_decay=0.01,
    )
    generator = torch.Generator().manual_seed(cfg.seed + 7)
    loop = TrainingLoop(
        "graph", TrainingState({"unet": unet, "adapter": adapter, "graph_encoder": encoder}, optimizer, generator=generator),
        trained_parameters(unet, adapter, encoder), CosineSchedule(graph_cfg.steps, warmup=50, floor=0.1),
        checkpoint=run / "graph_ckpt.pt", checkpoint_every=cfg.checkpoint_every, ema_decay=graph_cfg.ema_decay, log=run / "graph_loss.csv",
    )
    if not loop.resume():
        if not (run / "unet_ckpt.pt").exists() and cfg.init_from:
            _start_from_pipeline(unet, adapter, encoder, scheduler, data, graphs, cfg)
        else:
            _start_from_unet_stage(run, unet, adapter, encoder, graph_cfg.gate_init)
    if loop.finished:
        return
    unet.train()
    adapter.train()
    encoder.train()
    if cfg.colour_direction_weight > 0:
        from diffusers import AutoencoderKL

        data = {**data, "colour_directions": near_colour_directions(AutoencoderKL.from_pretrained(run / "vae").float().eval(), data["scaling_factor"])}
    draw = clip_sampler(data, graph_cfg.oversample, graph_cfg.oversample_weight, generator, "graph stage")

    def batch_loss(step: int) -> torch.Tensor:
        return unet_batch_loss(unet, adapter, scheduler, data, draw(cfg.unet_batch), cfg, generator, graph_encoder=encoder, graphs=graphs)

    def gate() -> dict[str, float]:
        return {"gate": float(torch.stack([f.gate.detach().tanh().abs() for f in encoder.fusers]).mean())}

    loop.run(batch_loss, row=_graph_row, after_step=gate)
