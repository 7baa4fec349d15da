"""Configurations of model v2: a miniature Wan 2.x trained on the toy world at 128x128.

The denoiser and its box control are Wan 2.1's classes (arXiv 2503.20314) in diffusers, made small:

- denoiser: ``WanTransformer3DModel`` (a DiT with 3D RoPE, cross-attention to the prompt, flow
  matching), patch 1x2x2, so a 16-frame scene is 16 x 8 x 8 = 1,024 video tokens;
- box control: :class:`core.models.wan_adapter.WanLayoutAdapter`, GLIGEN gated self-attention after
  every block, the path real Wan weights take with a trained adapter;
- text encoder: the project's MiniLM (384-d token states) in place of UMT5;
- scheduler: ``UniPCMultistepScheduler`` with flow matching, as Wan ships.

The autoencoder is :class:`FrameAutoencoderKL`: an ``AutoencoderKL`` run frame by frame with the
configuration fields ``WanPipeline`` reads from ``AutoencoderKLWan`` (no temporal compression),
(B, 3, F, 128, 128) in [-1, 1] <-> latents (B, 16, F, 16, 16). A 16x16 latent keeps the toy world's
smallest shapes (a 20-pixel star covers 2-3 latent cells per side), which the shipped model's 8x8
latent at 64x64 could not. A miniature ``AutoencoderKLWan`` (causal 3D convolutions) was tried
first: from scratch on this CPU it learned about half as fast per step at twice the cost (plain L1
0.51 against 0.33 after 80 steps of 20 random 64x64 crops, 1.28 against 0.67 s a step).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, ModelMixin, UniPCMultistepScheduler, WanTransformer3DModel  # noqa: F401  (the pipeline loader looks ModelMixin up here)
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.autoencoder_kl import DecoderOutput
from diffusers.models.autoencoders.vae import Decoder, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from einops import rearrange

from core.text import MINILM_DIM

FRAME_SIZE = 128
LATENT_CHANNELS = 16
SPATIAL_FACTOR = 8
PROMPT_TOKENS = 32  # max_sequence_length of the miniature's prompts
FLOW_SHIFT = 3.0  # timestep shift of the flow-matching schedule (Wan 2.1 480p uses 3.0)


class FrameAutoencoderKL(AutoencoderKL):
    """diffusers' ``AutoencoderKL`` applied to each frame of a video, shaped like ``AutoencoderKLWan``
    for ``WanPipeline``: ``encode`` takes (B, 3, F, H, W) and its posterior is over (B, 2C, F, h, w);
    ``decode`` takes (B, C, F, h, w) and returns (B, 3, F, H, W) in about [-1, 1] (not clamped). Images
    (B, 3, H, W) pass through as in ``AutoencoderKL``.

    Args (beyond ``AutoencoderKL``'s):
        latents_mean, latents_std: per-channel statistics of the latents (``WanPipeline`` decodes
            ``latents * std + mean``).
        scale_factor_temporal, scale_factor_spatial: frames and pixels per latent cell (1 and 8).
        decoder_layers_per_block: ResNet layers per decoder level beyond the first, when the decoder
            is deeper than the encoder (None: ``layers_per_block``, diffusers' symmetric autoencoder).
        decoder_block_out_channels: the decoder's widths, full resolution first as in
            ``block_out_channels``, when the decoder is wider than the encoder (None: ``block_out_channels``). The
            full-resolution level's first ResNet layer keeps a 1x1 shortcut convolution even where its
            input is as wide, as in the narrow decoder it was widened from (:func:`widen_decoder`).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4,
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 4,
        block_out_channels: tuple[int, ...] = (32, 64, 64, 128),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = LATENT_CHANNELS,
        norm_num_groups: int = 16,
        sample_size: int = FRAME_SIZE,
        scaling_factor: float = 1.0,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
        scale_factor_temporal: int = 1,
        scale_factor_spatial: int = SPATIAL_FACTOR,
        shift_factor: float | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
        decoder_layers_per_block: int | None = None,
        decoder_block_out_channels: tuple[int, ...] | None = None,
    ):
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types, up_block_types=up_block_types,
            block_out_channels=block_out_channels, layers_per_block=layers_per_block, act_fn=act_fn, latent_channels=latent_channels,
            norm_num_groups=norm_num_groups, sample_size=sample_size, scaling_factor=scaling_factor, latents_mean=latents_mean,
            latents_std=latents_std, shift_factor=shift_factor, force_upcast=force_upcast, use_quant_conv=use_quant_conv,
            use_post_quant_conv=use_post_quant_conv, mid_block_add_attention=mid_block_add_attention,
        )
        decoder_layers = decoder_layers_per_block or layers_per_block
        decoder_widths = tuple(decoder_block_out_channels or block_out_channels)
        if decoder_layers != layers_per_block or decoder_widths != tuple(block_out_channels):
            self.decoder = Decoder(
                in_channels=latent_channels, out_channels=out_channels, up_block_types=up_block_types, block_out_channels=decoder_widths,
                layers_per_block=decoder_layers, norm_num_groups=norm_num_groups, act_fn=act_fn,
                mid_block_add_attention=mid_block_add_attention,
            )
        first = self.decoder.up_blocks[-1].resnets[0]
        if decoder_block_out_channels is not None and first.conv_shortcut is None:  # as wide as its input: keep the 1x1 shortcut
            first.conv_shortcut = torch.nn.Conv2d(first.in_channels, first.out_channels, kernel_size=1)  # of the narrow decoder

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """``AutoencoderKL.encode`` of every frame of ``x`` (B, 3, F, H, W) or of images (B, 3, H, W)."""
        if x.ndim == 4:
            return super().encode(x, return_dict=return_dict)
        frames = x.shape[2]
        moments = super().encode(rearrange(x, "b c f h w -> (b f) c h w")).latent_dist.parameters  # (B * F, 2C, h, w)
        posterior = DiagonalGaussianDistribution(rearrange(moments, "(b f) c h w -> b c f h w", f=frames))
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        """``AutoencoderKL.decode`` of every latent frame of ``z`` (B, C, F, h, w) or of image latents (B, C, h, w)."""
        if z.ndim == 4:
            return super().decode(z, return_dict=return_dict, generator=generator)
        frames = z.shape[2]
        images = super().decode(rearrange(z, "b c f h w -> (b f) c h w")).sample
        video = rearrange(images, "(b f) c h w -> b c f h w", f=frames)
        return DecoderOutput(sample=video) if return_dict else (video,)


def build_toy_wan_vae(latent_factor: int = SPATIAL_FACTOR) -> FrameAutoencoderKL:
    """An untrained :class:`FrameAutoencoderKL` with placeholder latent statistics (0 and 1), one ResNet
    layer a level.

    Args:
        latent_factor: pixels per latent cell. 8: (B, 3, F, 128, 128) in [-1, 1] <-> (B, 16, F, 16, 16),
            widths 32-64-64-128, 3.0 M parameters (the shipped autoencoder's shape). 4: <-> (B, 16, F, 32, 32),
            widths 32-64-128 (one downsampling fewer), 2.7 M parameters: a latent cell per 4x4 pixels, so a
            20-pixel star spans 5 cells a side instead of 2-3.

    Raises:
        ValueError: ``latent_factor`` not 4 or 8.
    """
    levels = {8: (32, 64, 64, 128), 4: (32, 64, 128)}
    if latent_factor not in levels:
        raise ValueError(f"latent_factor: must be 4 or 8 (got {latent_factor})")
    widths = levels[latent_factor]
    return FrameAutoencoderKL(
        block_out_channels=widths, down_block_types=("DownEncoderBlock2D",) * len(widths), up_block_types=("UpDecoderBlock2D",) * len(widths),
        scale_factor_spatial=latent_factor, latents_mean=[0.0] * LATENT_CHANNELS, latents_std=[1.0] * LATENT_CHANNELS,
    )


def build_toy_wan_transformer(num_layers: int = 4, heads: int = 4, head_dim: int = 64, patch: int = 2) -> WanTransformer3DModel:
    """``WanTransformer3DModel`` over latents (B, 16, F, 16, 16), prompts of MiniLM states (B, 32, 384).

    Args:
        num_layers: transformer blocks.
        heads, head_dim: attention heads and their width (model width ``heads * head_dim``).
        patch: spatial side of a token in latent cells, patch size (1, patch, patch): 2 gives a
            16x16 latent frame 64 tokens (16 pixels of a 128x128 frame each), 1 gives it 256 (8 pixels).
    """
    dim = heads * head_dim
    return WanTransformer3DModel(
        patch_size=(1, patch, patch),
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


def deepen_decoder(vae: FrameAutoencoderKL, layers_per_block: int) -> FrameAutoencoderKL:
    """A copy of ``vae`` whose decoder has ``layers_per_block`` (+1) ResNet layers a level, that
    decodes exactly as ``vae`` does until trained: the encoder, the latent statistics and every
    existing layer are copied, and each new layer (appended at the end of its level, where input
    and output widths match) starts as the identity, its last convolution zeroed (a ResNet block
    returns ``x + conv2(...)``; Net2DeeperNet, arXiv 1511.05641).

    Raises:
        ValueError: ``layers_per_block`` not above the decoder's current depth.
    """
    current = vae.config.decoder_layers_per_block or vae.config.layers_per_block
    if layers_per_block <= current:
        raise ValueError(f"decoder_layers: must be above the decoder's {current} layers a level (got {layers_per_block})")
    deeper = FrameAutoencoderKL.from_config(vae.config, decoder_layers_per_block=layers_per_block)
    missing, unexpected = deeper.load_state_dict(vae.state_dict(), strict=False)
    assert not unexpected, unexpected
    new_blocks = {key.rsplit(".", 2)[0] for key in missing}  # e.g. decoder.up_blocks.0.resnets.2
    with torch.no_grad():
        for name in new_blocks:
            conv = deeper.get_submodule(name).conv2
            conv.weight.zero_()
            conv.bias.zero_()
    return deeper if deeper.dtype == vae.dtype else deeper.to(vae.dtype)


def deepen_transformer(
    transformer: dict[str, torch.Tensor], adapter: dict[str, torch.Tensor], layers: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """State dicts of a ``WanTransformer3DModel`` and its :class:`~core.models.wan_adapter.WanLayoutAdapter`
    with ``layers`` blocks, that denoise exactly as the given ones do until trained (Net2DeeperNet,
    arXiv 1511.05641).

    The new blocks are spread evenly among the old ones (4 -> 6: after the second and the fourth).
    Each copies the block before it with the output projections of its self-attention,
    cross-attention and feed-forward zeroed, so it returns its input (a Wan block adds each branch's
    output to the residual stream); its gated self-attention copies that block's fuser with the gate
    ``alpha_attn`` at 0 (GLIGEN's identity start).

    Args:
        transformer: the transformer's state dict (keys ``blocks.<i>.…``), any float dtype.
        adapter: the adapter's state dict (keys ``fusers.<i>.…``), as many fusers as blocks.
        layers: blocks wanted, above the current count.

    Raises:
        ValueError: ``layers`` not above the current block count, or the adapter's fusers do not
            match the blocks (the message names ``layers``).
    """
    current = 1 + max(int(key.split(".")[1]) for key in transformer if key.startswith("blocks."))
    fusers = 1 + max(int(key.split(".")[1]) for key in adapter if key.startswith("fusers."))
    if layers <= current or fusers != current:
        raise ValueError(f"layers: must be above the {current} blocks of the weights it deepens, with one fuser a block (got {layers}; {fusers} fusers)")
    added = layers - current
    after = [round((i + 1) * current / added) - 1 for i in range(added)]  # old block each new one follows
    order: list[tuple[int, bool]] = []  # (old block copied, is new)
    for old in range(current):
        order.append((old, False))
        order.extend((old, True) for _ in range(after.count(old)))
    zeroed = ("attn1.to_out.0.", "attn2.to_out.0.", "ffn.net.2.")

    def restack(state: dict[str, torch.Tensor], prefix: str, reset) -> dict[str, torch.Tensor]:
        out = {key: value for key, value in state.items() if not key.startswith(prefix)}
        for index, (old, is_new) in enumerate(order):
            for key, value in state.items():
                if key.startswith(f"{prefix}{old}."):
                    name = key[len(f"{prefix}{old}."):]
                    out[f"{prefix}{index}.{name}"] = torch.zeros_like(value) if is_new and reset(name) else value.clone()
        return out

    return (
        restack(transformer, "blocks.", lambda name: name.startswith(zeroed)),
        restack(adapter, "fusers.", lambda name: name == "alpha_attn"),
    )


def widen_decoder(vae: FrameAutoencoderKL, width: int) -> FrameAutoencoderKL:
    """A copy of ``vae`` whose decoder's full-resolution level (the last up block, its output norm and
    convolution) has ``width`` channels, that decodes exactly as ``vae`` does until trained.

    Net2WiderNet (arXiv 1511.05641) adapted to GroupNorm: with ``r = width / w`` (``w`` the current
    width), each old channel is copied ``r`` times *within its own norm group* (group g of the wide
    level holds r copies of the old group g's channels), so every group's mean and variance, and thus
    every normalised activation, are unchanged. A convolution reading the widened channels splits each
    old weight among the ``r`` copies in random shares that sum to 1 (exact in function, and unequal
    so that the copies' gradients differ and they can learn different features). Weights of the level's
    input (the 64x64 level's upsampler) and everything before are copied as they are.

    Args:
        vae: a :class:`FrameAutoencoderKL` (any dtype; the copy keeps it).
        width: the new full-resolution width, a multiple of the current one.

    Raises:
        ValueError: ``width`` not a multiple of the current full-resolution width above it (names
            ``decoder_width``).
    """
    widths = list(vae.config.decoder_block_out_channels or vae.config.block_out_channels)
    if width <= widths[0] or width % widths[0]:
        raise ValueError(f"decoder_width: must be a multiple of the decoder's {widths[0]} channels above it (got {width})")
    ratio, groups = width // widths[0], vae.config.norm_num_groups
    old_group = widths[0] // groups
    new = torch.arange(width)
    source = (new // (old_group * ratio)) * old_group + new % old_group  # (width,): the old channel each new one copies
    generator = torch.Generator().manual_seed(0)

    def split(weight: torch.Tensor) -> torch.Tensor:
        """(out, old_in, k, k) -> (out, width, k, k): each input's weight shared among its r copies."""
        shares = torch.rand((weight.shape[0], width, 1, 1), generator=generator) + 0.5  # (out, width, 1, 1) in [0.5, 1.5)
        totals = torch.zeros((weight.shape[0], widths[0], 1, 1)).index_add_(1, source, shares)
        return weight[:, source] * shares / totals[:, source]

    wide = FrameAutoencoderKL.from_config(vae.config, decoder_block_out_channels=[width, *widths[1:]])
    state = {key: value.float() for key, value in vae.state_dict().items()}
    level = f"decoder.up_blocks.{len(widths) - 1}."
    reads_below = {f"{level}resnets.0.conv1", f"{level}resnets.0.conv_shortcut"}  # convolutions of the 64x64 level's channels
    for key, value in list(state.items()):
        module = key.rsplit(".", 1)[0]
        if not (key.startswith(level) or module in ("decoder.conv_norm_out", "decoder.conv_out")) or module == f"{level}resnets.0.norm1":
            continue  # the 64x64 level and what it feeds in: unchanged
        if value.ndim == 4 and module not in reads_below:
            value = split(value)  # reads the widened channels
        if module != "decoder.conv_out":
            value = value[source]  # widened outputs: weights, biases, norms' affine parameters
        state[key] = value
    wide.load_state_dict(state)
    return wide.to(vae.dtype)
