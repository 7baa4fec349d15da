"""Per-frame text conditioning for a UNet3D without retraining.

``UNet3DConditionModel`` repeats one prompt embedding for every frame before its spatial
transformers. Dysen-VDM (arXiv 2308.13812) conditions each frame on its own scene graph; without
training its graph encoder, the closest thing a stock backbone accepts is a different prompt per
frame. :class:`FrameText` swaps the repeated embedding for per-frame ones at the spatial
``Transformer2DModel`` s (temporal transformers take no text), through forward pre-hooks, so the
UNet's weights and state dict are untouched.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn


class FrameText:
    """Forward pre-hooks that give each frame its own ``encoder_hidden_states``.

    Args:
        unet: a UNet3DConditionModel (or any model whose spatial transformers are
            ``Transformer2DModel`` called with ``encoder_hidden_states=`` of batch ``batch * frames``).
    """

    def __init__(self, unet: nn.Module):
        self._embeds: torch.Tensor | None = None
        self._hooks = [m.register_forward_pre_hook(self._swap, with_kwargs=True) for m in unet.modules() if isinstance(m, Transformer2DModel)]

    def _swap(self, module, args, kwargs):
        if self._embeds is None:
            return None
        current = kwargs.get("encoder_hidden_states")
        if current is None or current.shape[0] != self._embeds.shape[0]:
            raise ValueError(
                f"frame_prompts: {self._embeds.shape[0]} per-frame embeddings do not match the UNet's batch * frames = "
                f"{None if current is None else current.shape[0]}"
            )
        kwargs["encoder_hidden_states"] = self._embeds.to(current.dtype)
        return args, kwargs

    @contextmanager
    def use(self, embeds: torch.Tensor | None):
        """Within the block, spatial cross-attention reads ``embeds`` (batch * frames, tokens, dim).

        ``None`` leaves the UNet's own repeated prompt in place.
        """
        self._embeds = embeds
        try:
            yield
        finally:
            self._embeds = None

    def remove(self) -> None:
        """Remove the hooks."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
