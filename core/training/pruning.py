"""Starting the ``graph`` stage from a wider model: prune ``init_from``'s layers to the run's widths.

The importance of each hidden unit or head is measured on a few training batches (drawn from their
own seeded generator, so the training stream is the same as without pruning), and the best are
kept (:meth:`core.models.layout.LayoutAdapter.narrowed`,
:meth:`core.models.unet.PrunedUNet3DConditionModel.narrowed_from`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from core.training.config import ToyTrainConfig
from core.training.losses import unet_batch_loss
from core.training.weights import pipeline_weights


def run_calibration_batches(unet, adapter, encoder, scheduler, data: dict, graphs: dict, cfg: ToyTrainConfig, *, seed: int, batches: int) -> None:
    """Run ``unet`` (``adapter`` and ``encoder`` attached) without gradients on ``batches`` training
    batches of ``cfg.unet_batch`` clips, condition dropout off, drawn from their own generator seeded
    ``seed`` (so the training stream is untouched): the inputs that pruning scores are measured on."""
    generator = torch.Generator().manual_seed(seed)
    calibration = replace(cfg, drop_both=0.0, drop_prompt=0.0, drop_layout=0.0, drop_adapter=0.0)
    with torch.no_grad():
        for _ in range(batches):
            idx = torch.randint(0, data["latents"].shape[0], (cfg.unet_batch,), generator=generator)
            unet_batch_loss(unet, adapter, scheduler, data, idx, calibration, generator, graph_encoder=encoder, graphs=graphs)


def narrowed_adapter(unet, encoder, scheduler, data: dict, graphs: dict, cfg: ToyTrainConfig, wide_mult: int, *, batches: int = 16):
    """``cfg.init_from``'s layout adapter, its gated feed-forwards pruned to ``cfg.adapter_ff_mult``.

    Loads the adapter at its own width ``wide_mult``, runs the UNet (with ``encoder``) on
    ``batches`` training batches to score each hidden unit
    (:func:`core.models.layout.feed_forward_importance`), and keeps the best
    ``cfg.adapter_ff_mult * dim`` units per block.

    Returns:
        A ``LayoutAdapter`` of width ``cfg.adapter_ff_mult``, detached.

    Raises:
        ValueError: ``cfg.adapter_ff_mult`` not in [1, ``wide_mult``] (named ``adapter_ff_mult``).
    """
    from core.models.layout import LayoutAdapter, feed_forward_importance

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


def transformer_in_widths(cfg: ToyTrainConfig) -> tuple[int, int | None]:
    """The (heads, feed-forward units) of the run's input temporal transformer.

    ``cfg.transformer_in_heads`` / ``cfg.transformer_in_ff_inner_dim`` where set; 0 takes
    ``cfg.init_from``'s UNet's (a pruned model stays pruned), or diffusers' 8 heads and 4x-wide
    feed-forward (None) without one.
    """
    from core.models.unet import TRANSFORMER_IN_HEADS, PrunedUNet3DConditionModel

    init = PrunedUNet3DConditionModel.load_config(Path(cfg.init_from) / "unet") if cfg.init_from else {}
    heads = cfg.transformer_in_heads or init.get("transformer_in_heads") or TRANSFORMER_IN_HEADS
    return heads, cfg.transformer_in_ff_inner_dim or init.get("transformer_in_ff_inner_dim")


def narrowed_unet(encoder, scheduler, data: dict, graphs: dict, cfg: ToyTrainConfig, *, batches: int = 16):
    """``cfg.init_from``'s UNet, its input temporal transformer pruned to the widths of
    :func:`transformer_in_widths`.

    Loads that UNet and its layout adapter at their own widths, runs them (with ``encoder``,
    detached from any other UNet) on ``batches`` training batches to score each head and unit
    (:func:`core.models.unet.transformer_in_importance`), and keeps the best.

    Returns:
        A ``PrunedUNet3DConditionModel``.

    Raises:
        ValueError: a width above ``init_from``'s (named after the config field).
    """
    from core.models.layout import LayoutAdapter
    from core.models.unet import PrunedUNet3DConditionModel, transformer_in_importance

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
