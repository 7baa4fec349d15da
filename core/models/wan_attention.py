"""Attention control for Wan's DiT (``WanTransformer3DModel``): per-latent-frame text and box masks.

A Wan transformer block runs 3D self-attention over the video tokens (``attn1``), then
cross-attention from the video tokens to the text tokens (``attn2``). The video tokens are the
patchified latent, flattened frame-major: token ``(j, r, c)`` of a latent grid (L, h, w) sits at
``j * h * w + r * w + c``. :class:`ControlledCrossAttention` replaces ``attn2``'s processor and
can, for the duration of one transformer call:

- split the text into ``groups`` equal runs of tokens, one per run of latent frames, so that each
  latent frame reads its own prompt (per-frame scene-graph prompts; the video tokens are split the
  same way, so the attention costs what the stock one does);
- forbid pairs of (video token, text token): an entity's phrase tokens are read only by the video
  tokens inside its box (Peekaboo-style masked cross-attention, Jain et al. 2024, arXiv 2312.07509;
  on a DiT as in DiTraj, arXiv 2509.21839);
- record the attention probabilities (averaged over heads), for tests and diagnostics, or with
  gradients for energy guidance.

:class:`RegionBiasedSelfAttention` on ``attn1`` optionally adds a regional bias to the 3D
self-attention (:func:`region_self_bias`), off unless a bias is set.

With no control set it calls the processor it replaced, so the stock output is unchanged bit for bit.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange


@dataclass
class CrossAttentionControl:
    """What the cross-attention of one transformer call does beyond the stock one.

    Attributes:
        groups: G; the text tokens are G runs of equal length and the video tokens G runs of
            equal length, run g of the video reading run g of the text only (1: stock).
        allowed: torch.Tensor (G, S / G, T) bool or None; False where video token s of run g may
            not read text token t (every row keeps at least one True: padding tokens are never
            forbidden).
    """

    groups: int = 1
    allowed: torch.Tensor | None = None


class ControlState:
    """Shared by every controlled layer of one transformer: the control of the current call, and
    the recorded probabilities (a list of (B * G, S / G, T) tensors, one per layer and call).

    ``self_bias``: an additive (1, 1, S, S) bias for the 3D self-attention of the current call, or None
    (see :func:`region_self_bias`)."""

    def __init__(self):
        self.control: CrossAttentionControl | None = None
        self.records: list[torch.Tensor] | None = None
        self.record_grad = False
        self.self_bias: torch.Tensor | None = None

    @contextmanager
    def use(self, control: CrossAttentionControl | None, *, self_bias: torch.Tensor | None = None):
        """Transformer calls inside run with ``control`` (None: stock) and ``self_bias`` (None: none)."""
        previous, self.control = self.control, control
        previous_bias, self.self_bias = self.self_bias, self_bias
        try:
            yield
        finally:
            self.control, self.self_bias = previous, previous_bias

    @contextmanager
    def recording(self, *, grad: bool = False):
        """Record the controlled cross-attention probabilities of the calls inside; yields the list.

        With ``grad`` the layers compute their output from the recorded probabilities, so that a
        loss on them (the box energy of :class:`core.pipelines.wan.WanBoxEnergy`) reaches the input.
        """
        previous, self.records = self.records, []
        previous_grad, self.record_grad = self.record_grad, grad
        try:
            yield self.records
        finally:
            self.records, self.record_grad = previous, previous_grad


class ControlledCrossAttention:
    """A processor for a ``WanAttention`` cross-attention layer (``attn2``) driven by a :class:`ControlState`.

    Args:
        state: the shared state. stock: the processor this one replaces, used while no control is set.
    """

    def __init__(self, state: ControlState, stock):
        self.state = state
        self.stock = stock

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        control = self.state.control
        if control is None or attn.add_k_proj is not None:  # image-conditioned Wan: stock path only
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if attn.fused_projections:
            query = attn.to_q(hidden_states)
            key, value = attn.to_kv(encoder_hidden_states).chunk(2, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        query, key = attn.norm_q(query), attn.norm_k(key)
        groups = control.groups
        if hidden_states.shape[1] % groups or encoder_hidden_states.shape[1] % groups:
            raise ValueError(f"groups: {groups} does not divide the video tokens ({hidden_states.shape[1]}) and text tokens ({encoder_hidden_states.shape[1]})")
        query = rearrange(query, "b (g s) (h d) -> (b g) h s d", g=groups, h=attn.heads)  # (B * G, heads, S / G, head_dim)
        key = rearrange(key, "b (g t) (h d) -> (b g) h t d", g=groups, h=attn.heads)  # (B * G, heads, T, head_dim)
        value = rearrange(value, "b (g t) (h d) -> (b g) h t d", g=groups, h=attn.heads)
        mask = None
        if control.allowed is not None:
            batch = hidden_states.shape[0]
            mask = control.allowed.to(query.device).repeat(batch, 1, 1)[:, None]  # (B * G, 1, S / G, T)
        if self.state.records is not None and self.state.record_grad:
            scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probs = scores.softmax(-1)  # (B * G, heads, S / G, T), with gradients
            self.state.records.append(probs.mean(1))
            out = rearrange(probs @ value, "(b g) h s d -> b (g s) (h d)", g=groups).type_as(query)
            return attn.to_out[1](attn.to_out[0](out))
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        if self.state.records is not None:
            scores = query.float() @ key.float().transpose(-1, -2) / math.sqrt(query.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            self.state.records.append(scores.softmax(-1).mean(1).detach())  # (B * G, S / G, T)
        out = rearrange(out, "(b g) h s d -> b (g s) (h d)", g=groups).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


class RegionBiasedSelfAttention:
    """A processor for a ``WanAttention`` self-attention layer (``attn1``): the stock one, given the
    state's ``self_bias`` as its additive attention mask while one is set (the stock processor
    passes it to SDPA unchanged)."""

    def __init__(self, state: ControlState, stock):
        self.state = state
        self.stock = stock

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        bias = self.state.self_bias
        if bias is not None and attention_mask is None and encoder_hidden_states is None:
            attention_mask = bias.to(device=hidden_states.device, dtype=hidden_states.dtype)
        return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)


def region_self_bias(regions: torch.Tensor, strength: float) -> torch.Tensor:
    """An additive self-attention bias that ties each entity's video tokens together across frames.

    A query token inside entity n's region gets ``+strength`` on the keys inside the same region
    (in every latent frame), so the tokens of an entity attend to one another more than to the
    rest (a regional bias in the spirit of DiTraj's, arXiv 2509.21839). Dense: S x S entries, so
    meant for short clips or small sizes (S = 32,760 tokens at 81x480x832 is 2 GB in bf16).

    Args:
        regions: (N, S) bool, entity n's video tokens (latent boxes on the token grid, frame-major).
        strength: the bias added to a logit (0: none).

    Returns:
        torch.Tensor (1, 1, S, S) float32.
    """
    member = regions.float()  # (N, S)
    same = (member.T @ member) > 0  # (S, S): query and key share an entity
    return (same.float() * strength)[None, None]


def install(transformer, state: ControlState) -> None:
    """Put a :class:`ControlledCrossAttention` on every block's ``attn2`` and a
    :class:`RegionBiasedSelfAttention` on every ``attn1`` of ``transformer`` (idempotent)."""
    for block in transformer.blocks:
        for layer, kind in ((block.attn2, ControlledCrossAttention), (block.attn1, RegionBiasedSelfAttention)):
            processor = layer.processor
            if isinstance(processor, kind):
                processor.state = state
            else:
                layer.set_processor(kind(state, processor))
