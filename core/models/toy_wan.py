"""Configurations of model v2: a miniature Wan 2.x trained on the toy world at 128x128.

The same classes as Wan 2.1 (arXiv 2503.20314) in diffusers, made small:

- autoencoder: ``AutoencoderKLWan`` (causal 3D convolutions) with 8x spatial and no temporal
  compression: (B, 3, F, 128, 128) in [-1, 1] <-> latents (B, 16, F, 16, 16). A 16x16 latent keeps
  the toy world's smallest shapes (a 20-pixel star covers 2-3 latent cells per side), which an 8x8
  latent at 64x64 could not (see the model card's autoencoder ceiling);
- denoiser: ``WanTransformer3DModel`` (a DiT with 3D RoPE, cross-attention to the prompt, flow
  matching), patch 1x2x2, so a 16-frame scene is 16 x 8 x 8 = 1,024 video tokens;
- text encoder: the project's MiniLM (384-d token states) in place of UMT5;
- box control: :class:`core.models.wan_adapter.WanLayoutAdapter`, GLIGEN gated self-attention after
  every block, the path real Wan weights take with a trained adapter;
- scheduler: ``UniPCMultistepScheduler`` with flow matching, as Wan ships.
"""

from __future__ import annotations

from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel

from core.text import MINILM_DIM

FRAME_SIZE = 128
LATENT_CHANNELS = 16
SPATIAL_FACTOR = 8
PROMPT_TOKENS = 32  # max_sequence_length of the miniature's prompts
FLOW_SHIFT = 3.0  # timestep shift of the flow-matching schedule (Wan 2.1 480p uses 3.0)


def build_toy_wan_vae() -> AutoencoderKLWan:
    """``AutoencoderKLWan``: (B, 3, F, 128, 128) in [-1, 1] <-> (B, 16, F, 16, 16), 4.4 M parameters.

    Encoder widths 16-32-64-64, decoder 24-48-96-96; no temporal downsampling
    (``scale_factor_temporal=1``), so every frame has its own latent frame.
    """
    return AutoencoderKLWan(
        base_dim=16,
        decoder_base_dim=24,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, False, False],
        latents_mean=[0.0] * LATENT_CHANNELS,
        latents_std=[1.0] * LATENT_CHANNELS,
        scale_factor_temporal=1,
        scale_factor_spatial=SPATIAL_FACTOR,
    )


def build_toy_wan_transformer(num_layers: int = 4, heads: int = 4, head_dim: int = 64) -> WanTransformer3DModel:
    """``WanTransformer3DModel`` over latents (B, 16, F, 16, 16), prompts of MiniLM states (B, 32, 384).

    Args:
        num_layers: transformer blocks.
        heads, head_dim: attention heads and their width (model width ``heads * head_dim``).
    """
    dim = heads * head_dim
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        text_dim=MINILM_DIM,
        freq_dim=256,
        ffn_dim=4 * dim,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=1024,
    )


def build_toy_wan_scheduler() -> UniPCMultistepScheduler:
    """UniPC over the flow-matching schedule with shift :data:`FLOW_SHIFT` (Wan's sampler)."""
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=FLOW_SHIFT
    )
