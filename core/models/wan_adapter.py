"""A layout adapter for Wan's DiT: GLIGEN gated self-attention over video and grounding tokens in every block.

As in :mod:`core.models.layout` for ModelScope's UNet3D, but hooked after each ``WanTransformerBlock``
(3DTrajMaster's injector on a DiT, arXiv 2412.07759, has the same shape). Each latent frame ``j`` gets
grounding tokens ``h_{j,n} = MLP([Fourier(box_{j,n}), phrase_{j,n}])`` (GLIGEN, arXiv 2301.07093, eq. 7)
and the video tokens ``v`` of that frame (the frame's h x w token grid) are updated by

    v = v + tanh(gamma) * TS(SelfAttn([v + p, h]))                        (GLIGEN eq. 8)

(:class:`core.models.layout.GroundedSelfAttention`; ``ff_mult`` > 0 adds GLIGEN's gated feed-forward).
The default ``ff_mult=0`` keeps the adapter's cost near 1.1x a stock step on Wan 2.1 1.3B, where the
gated feed-forward alone would cost about as much as a block's own.

The adapter owns its weights and is saved on its own (a safetensors file, ``--adapter``);
:meth:`WanLayoutAdapter.attach` adds forward hooks and no keys to the transformer's state dict.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import GLIGENTextBoundingboxProjection
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from core.models.layout import GroundedSelfAttention


class WanLayoutAdapter(ModelMixin, ConfigMixin):
    """Grounding-token position net plus one gated self-attention per Wan transformer block.

    Args:
        dim: the transformer's width (heads x head_dim; 1536 for Wan 2.1 1.3B).
        heads: attention heads of the gated self-attention.
        num_blocks: transformer blocks (30 for Wan 2.1 1.3B).
        phrase_dim: width of a phrase embedding (the text encoder's ``d_model``; 4096 for UMT5-XXL).
        fourier_freqs: GLIGEN's Fourier frequencies for xyxy boxes.
        gate_init: initial gate (0 leaves the backbone's output unchanged, GLIGEN's choice).
        ff_mult: width multiplier of GLIGEN's gated feed-forward (0: none, the default).
        depth_slots: D > 0 adds a learned embedding of each entity's place in the layout's order to its
            grounding tokens (entity n gets slot ``min(n, D - 1)``), so that where boxes overlap the
            later entity can be drawn in front (the toy world draws later entities on top); 0: none.
            Zero-initialised.
    """

    @register_to_config
    def __init__(
        self, dim: int, heads: int, num_blocks: int, phrase_dim: int, fourier_freqs: int = 8, gate_init: float = 0.0, ff_mult: int = 0,
        depth_slots: int = 0,
    ):
        super().__init__()
        self.position_net = GLIGENTextBoundingboxProjection(positive_len=phrase_dim, out_dim=dim, feature_type="text-only", fourier_freqs=fourier_freqs)
        self.depth = nn.Embedding(depth_slots, dim) if depth_slots > 0 else None
        if self.depth is not None:
            nn.init.zeros_(self.depth.weight)
        self.fusers = nn.ModuleList(
            GroundedSelfAttention(dim, dim, heads, dim // heads, fourier_freqs=fourier_freqs, gate_init=gate_init, ff_mult=ff_mult) for _ in range(num_blocks)
        )
        self._objs: torch.Tensor | None = None
        self._frames = 1
        self._hooks: list = []

    @classmethod
    def for_transformer(
        cls, transformer, *, phrase_dim: int, gate_init: float = 0.0, fourier_freqs: int = 8, ff_mult: int = 0, depth_slots: int = 0
    ) -> WanLayoutAdapter:
        """An adapter shaped for ``transformer`` (a ``WanTransformer3DModel``)."""
        config = transformer.config
        return cls(
            dim=config.num_attention_heads * config.attention_head_dim, heads=config.num_attention_heads, num_blocks=len(transformer.blocks),
            phrase_dim=phrase_dim, fourier_freqs=fourier_freqs, gate_init=gate_init, ff_mult=ff_mult, depth_slots=depth_slots,
        )

    def grounding_tokens(self, boxes: torch.Tensor, masks: torch.Tensor, phrase_embeddings: torch.Tensor) -> torch.Tensor:
        """Grounding tokens (GLIGEN eq. 7).

        Args:
            boxes: (latent frames, entities, 4) xyxy in [0, 1]. masks: (latent frames, entities).
            phrase_embeddings: (latent frames, entities, phrase_dim).

        Returns:
            torch.Tensor (latent frames, entities, dim); with ``depth_slots`` each on-screen entity's
            token carries its order embedding.
        """
        tokens = self.position_net(boxes=boxes, masks=masks.to(boxes.dtype), positive_embeddings=phrase_embeddings)
        if self.depth is None:
            return tokens
        slots = torch.arange(tokens.shape[1], device=tokens.device).clamp(max=self.depth.num_embeddings - 1)
        return tokens + self.depth(slots).to(tokens.dtype)[None] * masks.to(tokens.dtype)[..., None]

    def attach(self, transformer) -> None:
        """Hook the fusers in after ``transformer``'s blocks; again is a no-op.

        Raises:
            ValueError: the transformer's width or block count does not match the adapter's.
        """
        if self._hooks:
            return
        config = transformer.config
        shape = (config.num_attention_heads * config.attention_head_dim, len(transformer.blocks))
        if shape != (self.config.dim, self.config.num_blocks):
            raise ValueError(f"transformer: width {shape[0]} and {shape[1]} blocks do not match the adapter's {self.config.dim} and {self.config.num_blocks}")
        for block, fuser in zip(transformer.blocks, self.fusers):
            self._hooks.append(block.register_forward_hook(partial(self._fuse, fuser)))

    def detach(self) -> None:
        """Undo :meth:`attach`."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _fuse(self, fuser, module, args, output):
        if self._objs is None:
            return None
        frames = rearrange(output, "b (f s) d -> (b f) s d", f=self._frames)  # (B * L, h * w, dim)
        fused = fuser(frames, self._objs.to(output.dtype))  # rows without objs (leading ones) pass through
        return rearrange(fused, "(b f) s d -> b (f s) d", f=self._frames)

    @contextmanager
    def grounding(self, objs: torch.Tensor | None, *, frames: int, aspect: float):
        """Transformer calls inside read grounding tokens ``objs`` (latent frames, entities, dim).

        Args:
            frames: latent frames L of the video tokens (they are split into L runs).
            aspect: token-grid rows / columns.
        """
        self._objs, self._frames = objs, frames
        for fuser in self.fusers:
            fuser.aspect = aspect
        try:
            yield
        finally:
            self._objs = None
