"""The denoiser's training loss on cached toy clips (the ``toy`` stage's UNet, the ``graph`` stage,
and the calibration batches that pruning scores units on)."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from einops import rearrange

from core.training.config import ToyTrainConfig
from core.training.graph_data import batch_graphs


def box_loss_weights(boxes: torch.Tensor, masks: torch.Tensor, size: int, weight: float) -> torch.Tensor:
    """Per-cell loss weights: ``weight`` on latent cells that overlap an on-screen entity's box, 1 elsewhere.

    Objects cover a few percent of a toy frame, so a plain MSE is mostly about backgrounds; this
    spends more of the loss on the entities the metrics are about. A box smaller than a cell still
    marks the cell it lies in.

    Args:
        boxes: (B, F, N, 4) xyxy in [0, 1].
        masks: (B, F, N), 1 where the entity is on screen.
        size: the latent's side in cells (8 for the toy model).
        weight: the weight of covered cells.

    Returns:
        torch.Tensor of shape (B, 1, F, size, size), float32, on ``boxes``' device.
    """
    low = torch.arange(size, dtype=torch.float32, device=boxes.device) / size
    high = low + 1.0 / size
    b = boxes.float()[..., None, None]  # (B, F, N, 4, 1, 1)
    overlap_x = (high[None, None, None, None, :] > b[..., 0, :, :]) & (low[None, None, None, None, :] < b[..., 2, :, :])
    overlap_y = (high[None, None, None, :, None] > b[..., 1, :, :]) & (low[None, None, None, :, None] < b[..., 3, :, :])
    inside = overlap_x & overlap_y  # (B, F, N, size, size)
    covered = (inside & (masks[..., None, None] > 0)).any(dim=2)  # (B, F, size, size)
    return (1.0 + (weight - 1.0) * covered.float())[:, None]


def unet_batch_loss(
    unet, adapter, scheduler, data: dict, idx: torch.Tensor, cfg: ToyTrainConfig, generator: torch.Generator, *,
    graph_encoder=None, graphs: dict | None = None,
) -> torch.Tensor:
    """v-prediction MSE of one batch of cached clips, with the condition dropout of ``cfg``.

    Latent cells in an entity's box weigh ``cfg.box_loss_weight``. With ``cfg.colour_direction_weight``
    w > 0 the loss adds ``w * sigma_t^2 * sum_k ((v_pred - v) . d_k)^2`` (same cell weights), the
    squared x0 error along each unit direction d_k of ``data["colour_directions"]`` (K, C) (see
    :func:`core.training.palette.near_colour_directions`).

    Args:
        unet, adapter: the toy UNet with the layout adapter attached.
        scheduler: the training noise schedule (v-prediction).
        data: :func:`core.training.toy_data.build_dataset`'s cache.
        idx: (B,) int64 clip indices into ``data``.
        generator: draws the dropout, noise and timesteps (in that order).
        graph_encoder, graphs: the scene-graph encoder (attached) and
            :func:`core.training.graph_data.graph_dataset`'s output, when it is trained too (the
            graph is dropped together with the layout).

    Returns:
        The scalar float32 loss, with gradients.
    """
    batch = len(idx)
    f = data["latents"].shape[2]
    latents = data["latents"][idx].float()  # (B, C, F, 8, 8)
    prompt = data["prompt_embeds"][idx].float()  # (B, T, 384)
    boxes = rearrange(data["boxes"][idx], "b f n c -> (b f) n c")
    masks = rearrange(data["masks"][idx], "b f n -> (b f) n")
    phrases = data["phrase_embeds"][rearrange(data["phrase_ids"][idx], "b f n -> (b f) n")]  # (B*F, N, 384)
    # Condition dropout for classifier-free guidance.
    u = torch.rand(batch, generator=generator)
    drop_prompt = u < cfg.drop_both + cfg.drop_prompt
    drop_layout = (u < cfg.drop_both) | ((u >= cfg.drop_both + cfg.drop_prompt) & (u < cfg.drop_both + cfg.drop_prompt + cfg.drop_layout))
    prompt[drop_prompt] = data["empty_prompt"]
    masks = masks * (~drop_layout).float().repeat_interleave(f)[:, None]

    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps)
    objs = adapter.grounding_tokens(boxes, masks, phrases)
    if torch.rand((), generator=generator) < cfg.drop_adapter:
        objs = None
    tokens = None
    if graph_encoder is not None:
        tokens, token_mask = graph_encoder.encode(batch_graphs(graphs, idx))
        token_mask = token_mask * (~drop_layout).float().repeat_interleave(f)[:, None]
        token_mask[:, 0] = 1  # the null token stays
        tokens = (tokens, token_mask)
    with adapter.grounding(objs, boxes=boxes.float(), masks=masks), (graph_encoder.conditioning(tokens) if graph_encoder is not None else nullcontext()):
        pred = unet(noisy, timesteps, encoder_hidden_states=prompt).sample
    weight = box_loss_weights(data["boxes"][idx], data["masks"][idx], latents.shape[-1], cfg.box_loss_weight)
    loss = (weight * (pred - target) ** 2).mean() / weight.mean()
    if cfg.colour_direction_weight > 0:
        # The x0 error is -sigma_t times the v error; its component along each near-colour
        # direction (unit, (K, C)) is what tells orange from red.
        sigma2 = (1.0 - scheduler.alphas_cumprod[timesteps]).float()[:, None, None, None, None]  # (B, 1, 1, 1, 1)
        along = torch.einsum("bcfhw,kc->bkfhw", pred - target, data["colour_directions"])
        loss = loss + cfg.colour_direction_weight * (weight * sigma2 * along**2).sum(1, keepdim=True).mean() / weight.mean()
    return loss
