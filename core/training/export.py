"""The ``export`` stage: a trained run written as a ``Layout2VidPipeline`` folder.

    python -m core.training export --run runs/toy --to assets/layout2vid-toy
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from core.training.config import ExportConfig
from core.training.graph import trained_parameters


def _toy_unet(state: dict, latent_channels: int):
    """The toy UNet at the widths of the checkpoint's input temporal transformer (pruned runs are narrower), loaded."""
    from core.models.toy import build_toy_unet
    from core.models.unet import TRANSFORMER_IN_HEADS

    block = "transformer_in.transformer_blocks.0."
    width = state["unet"][block + "attn1.to_q.weight"].shape[1]  # TRANSFORMER_IN_HEADS * head dim
    heads = state["unet"][block + "attn1.to_q.weight"].shape[0] * TRANSFORMER_IN_HEADS // width
    units = state["unet"][block + "ff.net.2.weight"].shape[1]
    unet = build_toy_unet(latent_channels, transformer_in_heads=heads, transformer_in_ff_inner_dim=None if units == 4 * width else units)
    unet.load_state_dict(state["unet"])
    return unet


def export(run: Path, target: Path, cfg: ExportConfig | None = None) -> Path:
    """Assemble the trained parts into a ``Layout2VidPipeline`` folder at ``target`` (fp16 weights).

    ``cfg`` (default ``ExportConfig()``): ``cfg.stage``: ``"graph"`` exports ``graph_ckpt.pt`` with its scene-graph encoder, ``"unet"``
    the toy stage's ``unet_ckpt.pt``; None takes the graph stage when it exists. ``cfg.ema``: write
    the graph stage's exponential moving average of the weights instead of the last ones. The
    autoencoder is the last of ``run/vae_refine``, ``run/vae_decoder``, ``run/vae`` that exists (the
    decoder stages keep the encoder, so all of them fit the cached latents). ``cfg.guidance_scale``
    and ``cfg.guidance_interval`` become the model's ``default_guidance_scale`` and
    ``default_guidance_interval`` in ``model_index.json`` (None: the library default).

    Returns:
        ``target``.

    Raises:
        ValueError: ``cfg.ema`` for a checkpoint that keeps no average (named ``ema``).
        FileNotFoundError: the run lacks the checkpoint or ``data.pt``.
    """
    from diffusers import AutoencoderKL

    from core.models.layout import LayoutAdapter
    from core.models.toy import PROMPT_TOKENS, build_toy_scheduler
    from core.pipelines.layout2vid import Layout2VidPipeline
    from core.toyworld.world import BACKGROUNDS

    cfg = cfg or ExportConfig()
    stage = cfg.stage or ("graph" if (run / "graph_ckpt.pt").exists() else "unet")
    state = torch.load(run / f"{stage}_ckpt.pt", weights_only=False)
    data = torch.load(run / "data.pt", weights_only=False)
    vae = AutoencoderKL.from_pretrained(run / next(n for n in ("vae_refine", "vae_decoder", "vae") if (run / n / "config.json").exists()))
    vae.register_to_config(scaling_factor=data["scaling_factor"])
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    unet = _toy_unet(state, data["latents"].shape[1])
    adapter = LayoutAdapter.for_unet(unet, gate_init=0.5, ff_mult=config.get("adapter_ff_mult", 4), box_masked=config.get("box_masked_grounding", False))
    adapter.load_state_dict(state["adapter"])
    graph_encoder = None
    if "graph_encoder" in state:
        from core.models.graph_encoder import SceneGraphEncoder

        graph_encoder = SceneGraphEncoder.for_unet(unet)
        graph_encoder.load_state_dict(state["graph_encoder"])
    if cfg.ema:
        if "ema" not in state or graph_encoder is None:
            raise ValueError(f"ema: {run / f'{stage}_ckpt.pt'} keeps no moving average (train the graph stage with --ema-decay)")
        with torch.no_grad():
            for param, shadow in zip(trained_parameters(unet, adapter, graph_encoder), state["ema"]["shadow_params"], strict=True):
                param.copy_(shadow)
    interval = cfg.guidance_interval
    pipe = Layout2VidPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=build_toy_scheduler(), layout_adapter=adapter,
        graph_encoder=graph_encoder, max_prompt_tokens=PROMPT_TOKENS, backgrounds=list(BACKGROUNDS), default_guidance_scale=cfg.guidance_scale,
        default_guidance_interval=list(interval) if interval is not None else None,
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(target, safe_serialization=True)
    return target
