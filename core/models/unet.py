"""A UNet3DConditionModel whose input temporal transformer can be pruned.

diffusers' ``UNet3DConditionModel`` (ModelScope T2V) opens with ``transformer_in``, a temporal
Transformer over frames with 8 heads of ``attention_head_dim`` and a GEGLU feed-forward 4x that
width, whatever the first block's channel count. In the toy model (64 channels, head dim 32) that
one block is 256 wide, 4x its input, and costs 30 % of a UNet pass (5.5 of 18.3 GFLOP for a
classifier-free-guided 16-frame batch). :class:`PrunedUNet3DConditionModel` lets its two attentions
keep fewer heads and its feed-forward fewer hidden units (structured pruning: the heads and units
with the largest measured contribution stay, see :func:`transformer_in_importance`), then the
model is fine-tuned. Every other layer is diffusers' own.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from diffusers import ModelMixin, UNet3DConditionModel  # noqa: F401  (diffusers' pipeline loader looks ModelMixin up in this module)
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import BasicTransformerBlock

#: The number of heads diffusers gives ``transformer_in`` (fixed in UNet3DConditionModel.__init__).
TRANSFORMER_IN_HEADS = 8


class PrunedUNet3DConditionModel(UNet3DConditionModel):
    """``UNet3DConditionModel`` with a narrower ``transformer_in`` block.

    Same inputs and outputs as ``UNet3DConditionModel`` (sample (B, C, F, H, W) float, timestep,
    encoder_hidden_states (B * F or B, tokens, cross_attention_dim)); with the defaults it is that
    model exactly and loads its checkpoints.

    Args (beyond ``UNet3DConditionModel``'s, which keep their meaning):
        transformer_in_heads: attention heads kept in each of ``transformer_in``'s two temporal
            self-attentions, 1-8 (diffusers: 8). The block's residual width stays
            ``8 * attention_head_dim``; each head keeps ``attention_head_dim`` channels.
        transformer_in_ff_inner_dim: hidden units of its GEGLU feed-forward, >= 1; None keeps
            diffusers' 4x the block width.

    Raises:
        ValueError: a value outside those ranges (named after the argument).
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = ("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types: tuple[str, ...] = ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        act_fn: str = "silu",
        norm_num_groups: int | None = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 1024,
        attention_head_dim: int | tuple[int] = 64,
        num_attention_heads: int | tuple[int] | None = None,
        time_cond_proj_dim: int | None = None,
        transformer_in_heads: int = TRANSFORMER_IN_HEADS,
        transformer_in_ff_inner_dim: int | None = None,
    ):
        if not 1 <= transformer_in_heads <= TRANSFORMER_IN_HEADS:
            raise ValueError(f"transformer_in_heads: must be in [1, {TRANSFORMER_IN_HEADS}] (got {transformer_in_heads})")
        if transformer_in_ff_inner_dim is not None and transformer_in_ff_inner_dim < 1:
            raise ValueError(f"transformer_in_ff_inner_dim: must be >= 1 or None (got {transformer_in_ff_inner_dim})")
        super().__init__(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types,
            up_block_types=up_block_types, block_out_channels=block_out_channels, layers_per_block=layers_per_block,
            downsample_padding=downsample_padding, mid_block_scale_factor=mid_block_scale_factor, act_fn=act_fn,
            norm_num_groups=norm_num_groups, norm_eps=norm_eps, cross_attention_dim=cross_attention_dim,
            attention_head_dim=attention_head_dim, num_attention_heads=num_attention_heads, time_cond_proj_dim=time_cond_proj_dim,
        )
        if transformer_in_heads != TRANSFORMER_IN_HEADS or transformer_in_ff_inner_dim is not None:
            blocks = self.transformer_in.transformer_blocks
            wide = blocks[0]
            blocks[0] = BasicTransformerBlock(
                wide.dim, transformer_in_heads, wide.attn1.inner_dim // wide.attn1.heads, activation_fn=wide.activation_fn,
                attention_bias=wide.attn1.to_q.bias is not None, double_self_attention=True,
                norm_elementwise_affine=wide.norm_elementwise_affine, ff_inner_dim=transformer_in_ff_inner_dim,
            )

    @classmethod
    def narrowed_from(
        cls, unet: UNet3DConditionModel, heads: int, ff_inner_dim: int | None, importance: dict[str, torch.Tensor]
    ) -> "PrunedUNet3DConditionModel":
        """A copy of ``unet`` whose ``transformer_in`` keeps its most important heads and units.

        Block ``transformer_in.transformer_blocks[0]``: each self-attention keeps the ``heads``
        heads with the largest ``importance["attn1"]`` / ``importance["attn2"]`` (their rows of
        ``to_q``, ``to_k``, ``to_v`` and columns of ``to_out``); the GEGLU feed-forward keeps the
        ``ff_inner_dim`` hidden units with the largest ``importance["ff"]`` (value and gate rows
        of its projection, columns of its output). Every other weight is copied unchanged; the
        result is exact when nothing is dropped. Fine-tune it to recover what was dropped
        (``python -m core.training graph`` does for a run with ``transformer_in_heads`` /
        ``transformer_in_ff_inner_dim`` set).

        Args:
            unet: a ``UNet3DConditionModel`` (or this class, at least as wide).
            heads: heads to keep, 1 to the block's heads.
            ff_inner_dim: units to keep, 1 to the block's units; None keeps them all.
            importance: from :func:`transformer_in_importance` on ``unet``: "attn1" and "attn2"
                (heads,) and "ff" (units,) float tensors, larger = keep.

        Raises:
            ValueError: ``heads`` or ``ff_inner_dim`` out of range, or ``importance`` misshaped.
        """
        wide = unet.transformer_in.transformer_blocks[0]
        old_heads, old_units = wide.attn1.heads, wide.ff.net[2].in_features
        if not 1 <= heads <= old_heads:
            raise ValueError(f"transformer_in_heads: must be in [1, {old_heads}] to prune this UNet (got {heads})")
        units = old_units if ff_inner_dim is None else ff_inner_dim
        if not 1 <= units <= old_units:
            raise ValueError(f"transformer_in_ff_inner_dim: must be in [1, {old_units}] to prune this UNet (got {ff_inner_dim})")
        shapes = {name: tuple(t.shape) for name, t in importance.items()}
        if shapes != {"attn1": (old_heads,), "attn2": (old_heads,), "ff": (old_units,)}:
            raise ValueError(f"importance: needs attn1 ({old_heads},), attn2 ({old_heads},), ff ({old_units},) (got {shapes})")
        # Private keys dropped: a loaded config's ``_use_default_values`` would override the new widths.
        config = {key: value for key, value in unet.config.items() if not key.startswith("_")}
        narrow = cls.from_config({**config, "transformer_in_heads": heads, "transformer_in_ff_inner_dim": ff_inner_dim})
        state = unet.state_dict()
        prefix = "transformer_in.transformer_blocks.0."
        head_dim = wide.attn1.inner_dim // old_heads
        for name in ("attn1", "attn2"):
            keep = importance[name].topk(heads).indices.sort().values
            channels = (keep[:, None] * head_dim + torch.arange(head_dim)).flatten()
            for proj in ("to_q", "to_k", "to_v"):
                for kind in ("weight", "bias"):
                    key = f"{prefix}{name}.{proj}.{kind}"
                    if key in state:
                        state[key] = state[key][channels]
            state[f"{prefix}{name}.to_out.0.weight"] = state[f"{prefix}{name}.to_out.0.weight"][:, channels]
        keep = importance["ff"].topk(units).indices.sort().values
        rows = torch.cat([keep, keep + old_units])  # value half, then gate half of the GEGLU projection
        for kind in ("weight", "bias"):
            state[f"{prefix}ff.net.0.proj.{kind}"] = state[f"{prefix}ff.net.0.proj.{kind}"][rows]
        state[f"{prefix}ff.net.2.weight"] = state[f"{prefix}ff.net.2.weight"][:, keep]
        narrow.load_state_dict(state)
        narrow.train(unet.training).to(unet.device)
        return narrow if narrow.dtype == unet.dtype else narrow.to(dtype=unet.dtype)


@contextmanager
def transformer_in_importance(unet: UNet3DConditionModel):
    """Measure how much each head and feed-forward unit of ``transformer_in`` contributes.

    Inside the block, every UNet call adds, for each head h of the two self-attentions, the mean
    over tokens of ``||o_h W_out[:, h]^T||_2`` (the size of that head's share of the attention
    output) and, for each GEGLU hidden unit j, ``mean |g_j| * ||W_2[:, j]||_2``. On exit the
    yielded dict holds the means over calls: "attn1", "attn2" (heads,) and "ff" (units,) float32
    tensors, the scores :meth:`PrunedUNet3DConditionModel.narrowed_from` keeps the largest of. Run
    the UNet on representative inputs (training batches) inside the block.
    """
    block = unet.transformer_in.transformer_blocks[0]
    sums: dict[str, torch.Tensor] = {}
    calls = {"attn1": 0, "attn2": 0, "ff": 0}

    def attention_hook(name, attn):
        def record(module, args):
            heads = args[0].detach().float().unflatten(-1, (attn.heads, -1))  # (..., heads, head_dim)
            weight = module.weight.detach().float().unflatten(1, (attn.heads, -1))  # (out, heads, head_dim)
            share = torch.einsum("...hd,ohd->...ho", heads, weight).norm(dim=-1).flatten(0, -2).mean(0)
            sums[name] = sums.get(name, 0) + share.cpu()
            calls[name] += 1

        return record

    def ff_hook(module, args, output):
        sums["ff"] = sums.get("ff", 0) + output.detach().abs().float().flatten(0, -2).mean(0).cpu()
        calls["ff"] += 1

    handles = [
        block.attn1.to_out[0].register_forward_pre_hook(attention_hook("attn1", block.attn1)),
        block.attn2.to_out[0].register_forward_pre_hook(attention_hook("attn2", block.attn2)),
        block.ff.net[0].register_forward_hook(ff_hook),
    ]
    importance: dict[str, torch.Tensor] = {}
    try:
        yield importance
    finally:
        for handle in handles:
            handle.remove()
    if min(calls.values()) == 0:
        return
    for name in ("attn1", "attn2"):
        importance[name] = sums[name] / calls[name]
    importance["ff"] = sums["ff"] / calls["ff"] * block.ff.net[2].weight.detach().float().norm(dim=0).cpu()
