"""Configurations of the miniature Layout2Vid trained on the toy world (see assets/ MODEL_CARD.md).

64x64 RGB frames, an 8x downsampling AutoencoderKL to an 8x8 latent of ``latent_channels`` channels
(16 by default, the shipped model's; Stable Diffusion's 4 kept too little of a 64x64 frame, see the
model card), and a two-level UNet3DConditionModel (64, 128 channels) whose
spatial transformers carry the layout adapter.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler

from core.models.unet import PrunedUNet3DConditionModel
from core.text import MINILM_DIM

FRAME_SIZE = 64
LATENT_CHANNELS = 16
PROMPT_TOKENS = 24  # prompt token embeddings kept for cross-attention


def build_toy_vae(latent_channels: int = LATENT_CHANNELS) -> AutoencoderKL:
    """AutoencoderKL mapping (B, 3, 64, 64) in [-1, 1] to latents (B, latent_channels, 8, 8)."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 64, 64, 128),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=32,
        sample_size=FRAME_SIZE,
    )


def build_toy_unet(
    latent_channels: int = LATENT_CHANNELS, *, transformer_in_heads: int = 8, transformer_in_ff_inner_dim: int | None = None
) -> PrunedUNet3DConditionModel:
    """UNet3DConditionModel over latents (B, latent_channels, F, 8, 8) with MiniLM (384-d) cross-attention.

    ``transformer_in_heads`` (1-8) and ``transformer_in_ff_inner_dim`` (None: 1024) narrow the
    input temporal transformer (:class:`core.models.unet.PrunedUNet3DConditionModel`); the
    defaults build diffusers' ``UNet3DConditionModel`` exactly.
    """
    return PrunedUNet3DConditionModel(
        sample_size=FRAME_SIZE // 8,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D"),
        up_block_types=("CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(64, 128),
        layers_per_block=1,
        cross_attention_dim=MINILM_DIM,
        attention_head_dim=32,
        norm_num_groups=32,
        transformer_in_heads=transformer_in_heads,
        transformer_in_ff_inner_dim=transformer_in_ff_inner_dim,
    )


def build_toy_scheduler() -> DDIMScheduler:
    """DDIM with v-prediction and a zero-terminal-SNR schedule (Lin et al., arXiv 2305.08891).

    Flat toy backgrounds make the mean colour matter; a zero-SNR schedule stops the model from
    inheriting the mean of the initial noise.
    """
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
    )
