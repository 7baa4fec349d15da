"""Dysen-VDM's recurrent graph Transformer over per-frame scene graphs, fused into a UNet3D.

Dysen-VDM (Fei et al., arXiv 2308.13812, section 4.2) encodes each frame's enriched scene graph with
a recurrent graph Transformer (RGTrm) and feeds the node features to the denoiser through an added
cross-attention after the text cross-attention. Our reading of its equations 2-6:

- eq. 2-3, graph attention with edge features: for nodes i, j joined by an edge of type e_ij,
  ``a_ij = softmax_j( (W_Q h_i . W_K h_j) / sqrt(d) * W_E e_ij )`` per head (non-edges masked), and
  ``h_i' = LN(h_i + W_O concat_heads(sum_j a_ij W_V h_j))``, then ``LN(h' + FFN(h'))``;
- eq. 4-5, recurrence over frames: the queries of frame t mix those of frame t-1 through a gate,
  ``z = sigmoid(W_z [Q_t; Q_{t-1}])``, ``Q_t <- z * Q_t + (1 - z) * Q_{t-1}``, so a node's features
  carry over time (a node is the same graph node across frames: same entity, same attribute value,
  same relation);
- eq. 6, fusion: in every spatial transformer block, after the text cross-attention,
  ``v = v + tanh(gamma) * CrossAttn(v, [null; G_f])`` with the frame's node features ``G_f`` and one
  learned null token (so a frame with an empty graph, or the unconditional branch of classifier-free
  guidance, still attends to something). ``gamma`` starts at 0, so adding the encoder to a trained
  UNet leaves it unchanged at first.

Graphs reach the encoder as :class:`GraphTensors`, built by :func:`graph_tensors` from the networkx
graphs of :mod:`core.scene_graph` (node types object / attribute / relation / value; edges object ->
attribute, subject -> relation -> object or value).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import networkx as nx
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from core.models.layout import spatial_transformer_blocks

NODE_TYPES = ("object", "attribute", "relation", "value")
# Edge types: 0 none, 1-3 forward (object->attribute, subject->relation, relation->target), 4-6 the
# same edges reversed, 7 self.
EDGE_TYPES = 8


@dataclass
class GraphTensors:
    """A scene's per-frame graphs as padded tensors, node slots aligned across frames.

    Attributes:
        node_embeds: (F, N, P) float, text embedding of each node's label.
        node_types: (F, N) int64 index into ``NODE_TYPES``.
        edges: (F, N, N) int64 edge type from node i (row) to node j (column), 0 for none.
        node_mask: (F, N) float, 1 where the slot's node is in that frame's graph.
    """

    node_embeds: torch.Tensor
    node_types: torch.Tensor
    edges: torch.Tensor
    node_mask: torch.Tensor

    def to(self, device=None, dtype=None) -> "GraphTensors":
        return GraphTensors(self.node_embeds.to(device=device, dtype=dtype), self.node_types.to(device), self.edges.to(device), self.node_mask.to(device=device, dtype=dtype))


def node_text(data: dict) -> str:
    """The text embedded for a node: an object's kind (or name), an attribute's value, a relation's predicate."""
    if data["type"] == "object":
        return data.get("kind") or data["label"]
    return data["label"]


def graph_tensors(graphs: list[nx.DiGraph], embed: Callable[[list[str]], torch.Tensor], *, max_nodes: int = 32) -> GraphTensors:
    """Tensors for ``graphs`` (one per frame, :func:`core.scene_graph.build_scene_graphs`' schema).

    Each distinct node key of the scene gets one slot (objects first, then attributes, relations,
    values, in order of first appearance); slots past ``max_nodes`` are dropped.

    Args:
        embed: texts -> (len(texts), P) embeddings (the pipeline's phrase encoder).
    """
    order = {t: i for i, t in enumerate(NODE_TYPES)}
    first_seen: dict[str, tuple[int, int]] = {}
    texts: dict[str, str] = {}
    types: dict[str, int] = {}
    for f, graph in enumerate(graphs):
        for node, data in graph.nodes(data=True):
            if node not in first_seen:
                first_seen[node] = (order[data["type"]], len(first_seen))
                texts[node] = node_text(data)
                types[node] = order[data["type"]]
    keys = sorted(first_seen, key=lambda k: first_seen[k])[:max_nodes]
    slot = {k: i for i, k in enumerate(keys)}
    frames, n = len(graphs), max(1, len(keys))
    unique = sorted(set(texts[k] for k in keys))
    table = embed(unique) if unique else torch.zeros(0, 1)
    dim = table.shape[1]
    node_embeds = torch.zeros(frames, n, dim)
    node_types = torch.zeros(frames, n, dtype=torch.long)
    edges = torch.zeros(frames, n, n, dtype=torch.long)
    node_mask = torch.zeros(frames, n)
    text_index = {t: i for i, t in enumerate(unique)}
    for f, graph in enumerate(graphs):
        for node in graph.nodes:
            if node not in slot:
                continue
            i = slot[node]
            node_embeds[f, i] = table[text_index[texts[node]]]
            node_types[f, i] = types[node]
            node_mask[f, i] = 1
            edges[f, i, i] = 7
        for a, b in graph.edges:
            if a not in slot or b not in slot:
                continue
            kind = {("object", "attribute"): 1, ("object", "relation"): 2}.get((graph.nodes[a]["type"], graph.nodes[b]["type"]), 3)
            edges[f, slot[a], slot[b]] = kind
            edges[f, slot[b], slot[a]] = kind + 3
    return GraphTensors(node_embeds, node_types, edges, node_mask)


class RecurrentGraphLayer(nn.Module):
    """One RGTrm layer (eq. 2-5 of the module docstring).

    Args:
        dim: node feature channels. heads: attention heads (dim divisible by heads).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim: must be divisible by heads ({dim} % {heads} != 0)")
        self.heads, self.head_dim = heads, dim // heads
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.edge = nn.Embedding(EDGE_TYPES, heads)
        self.gate = nn.Linear(2 * dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor, edges: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        """h: (B, F, N, dim); edges: (B, F, N, N) int64; node_mask: (B, F, N). Returns (B, F, N, dim).

        Frames are processed in order (the recurrence); graphs of a batch in parallel.
        """
        queries = self.to_q(h)  # (B, F, N, dim)
        mixed = []
        previous = None
        for t in range(h.shape[1]):
            q = queries[:, t]
            if previous is not None:
                z = torch.sigmoid(self.gate(torch.cat([q, previous], dim=-1)))
                q = z * q + (1 - z) * previous
            mixed.append(q)
            previous = q * node_mask[:, t, :, None]  # an absent node hands nothing on
        q = rearrange(torch.stack(mixed, dim=1), "b f n (h d) -> b f h n d", h=self.heads)
        k = rearrange(self.to_k(h), "b f n (h d) -> b f h n d", h=self.heads)
        v = rearrange(self.to_v(h), "b f n (h d) -> b f h n d", h=self.heads)
        scores = torch.einsum("bfhid,bfhjd->bfhij", q, k) / math.sqrt(self.head_dim)
        scores = scores * rearrange(self.edge(edges), "b f i j h -> b f h i j")  # eq. 3: edge-modulated
        allowed = (edges > 0)[:, :, None]  # (B, F, 1, N, N)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        attention = scores.softmax(-1) * allowed  # rows of absent nodes are all zero
        out = rearrange(torch.einsum("bfhij,bfhjd->bfhid", attention, v), "b f h n d -> b f n (h d)")
        h = self.norm1(h + self.out(out))
        h = self.norm2(h + self.ff(h))
        return h * node_mask[..., None]


class GraphCrossAttention(nn.Module):
    """Eq. 6: gated cross-attention from visual tokens to graph tokens, added after text cross-attention."""

    def __init__(self, query_dim: int, context_dim: int, heads: int):
        super().__init__()
        self.attn = Attention(query_dim=query_dim, cross_attention_dim=context_dim, heads=heads, dim_head=query_dim // heads)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """x: (B * F, Q, query_dim) normalised visual tokens; tokens: (B * F, T, context_dim); mask (B * F, T)."""
        bias = torch.zeros_like(token_mask).masked_fill(token_mask <= 0, torch.finfo(x.dtype).min)[:, None, :]  # (B * F, 1, T)
        return self.gate.tanh() * self.attn(x, encoder_hidden_states=tokens, attention_mask=bias.to(x.dtype))


class SceneGraphEncoder(ModelMixin, ConfigMixin):
    """RGTrm encoder plus one :class:`GraphCrossAttention` per spatial transformer block of a UNet3D.

    Args:
        block_dims, block_heads: channels and heads of the UNet's spatial blocks, in the order of
            :func:`core.models.layout.spatial_transformer_blocks`.
        text_dim: channels of the node-label embeddings (384 for MiniLM).
        dim: node feature channels. num_layers: RGTrm layers. heads: graph attention heads.
    """

    @register_to_config
    def __init__(self, block_dims: list[int], block_heads: list[int], text_dim: int = 384, dim: int = 128, num_layers: int = 2, heads: int = 4):
        super().__init__()
        self.node_in = nn.Linear(text_dim, dim)
        self.type_embedding = nn.Embedding(len(NODE_TYPES), dim)
        self.graph_layers = nn.ModuleList(RecurrentGraphLayer(dim, heads) for _ in range(num_layers))
        self.null = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.fusers = nn.ModuleList(GraphCrossAttention(d, dim, h) for d, h in zip(block_dims, block_heads))
        self._tokens: tuple[torch.Tensor, torch.Tensor] | None = None
        self._hooks: list = []

    @classmethod
    def for_unet(cls, unet: nn.Module, **kwargs) -> "SceneGraphEncoder":
        """An encoder shaped for ``unet``'s spatial transformer blocks."""
        blocks = spatial_transformer_blocks(unet)
        return cls(block_dims=[b.norm1.normalized_shape[0] for b in blocks], block_heads=[b.attn1.heads for b in blocks], **kwargs)

    def encode(self, graphs: GraphTensors) -> tuple[torch.Tensor, torch.Tensor]:
        """Node features of a batch of scenes.

        Args:
            graphs: tensors with a leading batch axis, (B, F, N, ...), or a single scene (F, N, ...).

        Returns:
            (tokens (B * F, N + 1, dim) with the null token first, mask (B * F, N + 1)).
        """
        embeds, types, edges, mask = graphs.node_embeds, graphs.node_types, graphs.edges, graphs.node_mask
        if embeds.dim() == 3:
            embeds, types, edges, mask = embeds[None], types[None], edges[None], mask[None]
        h = (self.node_in(embeds) + self.type_embedding(types)) * mask[..., None]
        for layer in self.graph_layers:
            h = layer(h, edges, mask)
        h = rearrange(h, "b f n d -> (b f) n d")
        mask = rearrange(mask, "b f n -> (b f) n")
        null = self.null.expand(h.shape[0], 1, -1).to(h.dtype)
        return torch.cat([null, h], dim=1), torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)

    def null_tokens(self, frames: int, *, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of an empty graph for ``frames`` frames (the unconditional branch)."""
        tokens = torch.zeros(frames, like.shape[1], like.shape[2], device=like.device, dtype=like.dtype)
        tokens[:, :1] = self.null.to(like.dtype)
        mask = torch.zeros(frames, like.shape[1], device=like.device, dtype=like.dtype)
        mask[:, 0] = 1
        return tokens, mask

    def attach(self, unet: nn.Module) -> None:
        """Add the fusion after each spatial block's text cross-attention (a forward hook on ``attn2``)."""
        if self._hooks:
            return
        blocks = spatial_transformer_blocks(unet)
        dims = [b.norm1.normalized_shape[0] for b in blocks]
        if dims != list(self.config.block_dims):
            raise ValueError(f"unet: spatial block channels {dims} do not match the graph encoder's {list(self.config.block_dims)}")
        for block, fuser in zip(blocks, self.fusers):
            self._hooks.append(block.attn2.register_forward_hook(self._fuse_hook(fuser), with_kwargs=True))

    def detach(self, unet: nn.Module) -> None:
        """Undo :meth:`attach`."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _fuse_hook(self, fuser: GraphCrossAttention):
        def hook(module, args, kwargs, output):
            if self._tokens is None:
                return None
            tokens, mask = self._tokens
            hidden = args[0] if args else kwargs["hidden_states"]
            if hidden.shape[0] != tokens.shape[0]:
                raise ValueError(f"graph tokens: {tokens.shape[0]} rows do not match the UNet's batch * frames = {hidden.shape[0]}")
            return output + fuser(hidden, tokens.to(hidden.dtype), mask.to(hidden.dtype))

        return hook

    @contextmanager
    def conditioning(self, tokens: tuple[torch.Tensor, torch.Tensor] | None):
        """Within the block, UNet calls attend to ``tokens`` = (tokens (B * F, T, dim), mask (B * F, T))."""
        self._tokens = tokens
        try:
            yield
        finally:
            self._tokens = None
