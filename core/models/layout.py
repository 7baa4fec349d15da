"""Layout2Vid's layout adapter: GLIGEN-style grounding tokens and gated self-attention for a UNet3D.

VideoDirectorGPT (arXiv 2309.15091, section 3.2) adds GLIGEN's gated self-attention (Li et al.,
arXiv 2301.07093, equation 8) to every spatial transformer block of ModelScope's UNet3D. Each frame
gets its own grounding tokens: for entity ``n`` in frame ``f``

    h_{f,n} = MLP([Fourier(box_{f,n}), phrase_embedding_{f,n}])           (GLIGEN eq. 7)

and each spatial block ``v`` (visual tokens of that frame) is updated by

    v = v + tanh(gamma_attn) * TS(SelfAttn([v + p, h]))                   (GLIGEN eq. 8)
    v = v + tanh(gamma_dense) * FF(v)

where TS keeps the visual tokens and ``p`` is a projection of the Fourier features of each visual
token's own cell (an addition of ours: a miniature UNet at an 8x8 latent has too little implicit
position information to match tokens to boxes).

The adapter owns the weights and is saved on its own (``layout_adapter/`` in a pipeline folder, or a
safetensors file for real backbones); :meth:`LayoutAdapter.attach` hooks it into a UNet3D without
adding keys to the UNet's state dict.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.activations import GEGLU
from diffusers.models.attention import BasicTransformerBlock, FeedForward, GatedSelfAttentionDense
from diffusers.models.embeddings import GLIGENTextBoundingboxProjection, get_fourier_embeds_from_boundingbox
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from einops import rearrange
from torch import nn


def spatial_transformer_blocks(unet: nn.Module) -> list[BasicTransformerBlock]:
    """The BasicTransformerBlocks of a UNet3D's spatial ``Transformer2DModel`` s, in module order.

    Temporal transformers (``TransformerTemporalModel``) are excluded: grounding is per frame.
    """
    blocks: list[BasicTransformerBlock] = []
    for module in unet.modules():
        if isinstance(module, Transformer2DModel):
            blocks.extend(b for b in module.transformer_blocks if isinstance(b, BasicTransformerBlock))
    return blocks


def cell_boxes(height: int, width: int, *, device=None) -> torch.Tensor:
    """xyxy boxes in [0, 1] of the cells of a ``height`` x ``width`` token grid.

    Returns:
        torch.Tensor of shape (height * width, 4), float32, in row-major token order.
    """
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    boxes = torch.stack([gx / width, gy / height, (gx + 1) / width, (gy + 1) / height], dim=-1)
    return rearrange(boxes, "h w c -> (h w) c")


def box_masks_on_grid(boxes: torch.Tensor, masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Fraction of each token cell of a ``height`` x ``width`` grid covered by each box.

    Args:
        boxes: (rows, entities, 4) xyxy in [0, 1] (rows: frames, or batch * frames).
        masks: (rows, entities), 1 where the entity is on screen.

    Returns:
        torch.Tensor (rows, entities, height * width) in [0, 1], zero for off-screen entities.
    """
    cells = cell_boxes(height, width, device=boxes.device).to(boxes.dtype)  # (Q, 4)
    b = boxes[..., None, :]  # (R, N, 1, 4)
    c = cells[None, None]  # (1, 1, Q, 4)
    overlap_x = (torch.minimum(b[..., 2], c[..., 2]) - torch.maximum(b[..., 0], c[..., 0])).clamp(min=0)
    overlap_y = (torch.minimum(b[..., 3], c[..., 3]) - torch.maximum(b[..., 1], c[..., 1])).clamp(min=0)
    coverage = overlap_x * overlap_y * (height * width)  # divided by the cell area
    return coverage.clamp(0, 1) * masks[..., None].to(boxes.dtype)


def grounding_attention_bias(boxes: torch.Tensor, masks: torch.Tensor, height: int, width: int, *, penalty: float = 1e4) -> torch.Tensor:
    """The additive bias of box-masked gated self-attention over ``[visual tokens, grounding tokens]``.

    A visual token does not read the grounding token of an on-screen entity whose box misses its
    cell, so one entity's phrase (its colour, its kind) cannot reach its neighbour's pixels
    (instance-masked attention, as in MIGC, Zhou et al., and InstanceDiffusion, Wang et al., both
    CVPR 2024; GLIGEN's eq. 8 lets every visual token read every grounding token). Visual tokens
    read each other freely, grounding-token queries read everything, and off-screen entities'
    tokens (GLIGEN's null features, the unconditional branch included) stay readable everywhere,
    as in training without the mask.

    Args:
        boxes: (rows, entities, 4) xyxy in [0, 1]. masks: (rows, entities), 1 where on screen.
        height, width: the visual token grid (height * width tokens, row-major).
        penalty: the logit subtracted, > 0 (1e4 zeroes the masked probabilities in fp32 and bf16).

    Returns:
        torch.Tensor (rows, height * width + entities, height * width + entities) of
        ``boxes.dtype``, ``-penalty`` where a visual token meets a grounding token it may not read, else 0.
    """
    rows, entities = masks.shape
    visual = height * width
    outside = (box_masks_on_grid(boxes, torch.ones_like(masks), height, width) <= 0) & (masks[..., None] > 0)  # (R, N, Q)
    bias = boxes.new_zeros(rows, visual + entities, visual + entities)
    bias[:, :visual, visual:] = outside.transpose(1, 2).to(boxes.dtype) * -penalty
    return bias


class ContiguousGEGLU(GEGLU):
    """diffusers' GEGLU, ``h * GELU(g)`` with ``[h, g] = proj(x)``, computed as two matmuls.

    Same weights (``proj``, out features ``2 * dim_out``) and the same result as the parent up to
    float rounding; the parent's ``chunk`` hands GELU and the product strided halves, which a CPU
    handles more slowly than the two contiguous outputs here (the toy model's seven gated blocks:
    28.2 -> 24.6 ms per UNet call on a 2-core CPU).

    Args:
        dim_in, dim_out: channels in and out (x: (..., dim_in) -> (..., dim_out)).
    """

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        inner = self.proj.out_features // 2
        weight, bias = self.proj.weight, self.proj.bias
        hidden = F.linear(hidden_states, weight[:inner], None if bias is None else bias[:inner])
        gate = F.linear(hidden_states, weight[inner:], None if bias is None else bias[inner:])
        return hidden * self.gelu(gate)


class GroundedSelfAttention(GatedSelfAttentionDense):
    """GLIGEN's gated self-attention (eq. 8) whose visual tokens also carry their cell's position.

    Args:
        query_dim: channels of the visual tokens.
        context_dim: channels of the grounding tokens.
        n_heads, d_head: attention heads and channels per head.
        fourier_freqs: frequencies of the cell-position Fourier features.
        gate_init: initial value of both gates (GLIGEN uses 0 to keep a pretrained backbone intact).
        ff_mult: width multiplier of the gated dense feed-forward (GLIGEN: 4); 0 drops that branch,
            which removes about two thirds of the adapter's FLOPs on a ModelScope UNet.
    """

    def __init__(
        self, query_dim: int, context_dim: int, n_heads: int, d_head: int, *, fourier_freqs: int = 8, gate_init: float = 0.0, ff_mult: int = 4
    ):
        super().__init__(query_dim, context_dim, n_heads, d_head)
        if ff_mult == 0:
            del self.ff, self.norm2, self.alpha_dense
        else:
            if ff_mult != 4:
                self.ff = FeedForward(query_dim, mult=ff_mult, activation_fn="geglu")
            self.ff.net[0] = ContiguousGEGLU(query_dim, ff_mult * query_dim)
        self.ff_mult = ff_mult
        self.fourier_freqs = fourier_freqs
        self.position = nn.Linear(fourier_freqs * 2 * 4, query_dim)
        with torch.no_grad():
            self.alpha_attn.fill_(gate_init)
            if ff_mult:
                self.alpha_dense.fill_(gate_init)
        self.aspect = 1.0  # latent height / width, set by the adapter before each call
        self.region: tuple[torch.Tensor, torch.Tensor] | None = None  # (boxes, masks) rows of objs, when box-masked

    def _cell_features(self, height: int, width: int, device, dtype) -> torch.Tensor:
        """Fourier features (1, height * width, fourier_freqs * 8) of the token cells, cached per grid."""
        key = (height, width, device, dtype)
        cache = self.__dict__.setdefault("_cell_cache", {})
        if key not in cache:
            cells = cell_boxes(height, width, device=device)[None]  # (1, tokens, 4)
            cache[key] = get_fourier_embeds_from_boundingbox(self.fourier_freqs, cells).to(dtype)
        return cache[key]

    def forward(self, x: torch.Tensor, objs: torch.Tensor) -> torch.Tensor:
        """x: (rows, tokens, query_dim); objs: (grounded, entities, context_dim) with grounded <= rows.

        The grounding tokens belong to the last ``grounded`` rows of ``x`` (the conditional half of a
        classifier-free-guidance batch when the unconditional half gets none); the other rows pass
        through unchanged.
        """
        if not self.enabled:
            return x
        if objs.shape[0] < x.shape[0]:
            skipped = x.shape[0] - objs.shape[0]
            return torch.cat([x[:skipped], self.forward(x[skipped:], objs)])
        n_visual = x.shape[1]
        height = max(1, round(math.sqrt(n_visual * self.aspect)))
        width = n_visual // height
        position = self.position(self._cell_features(height, width, x.device, x.dtype))  # (1, tokens, query_dim)
        bias = None
        if self.region is not None:
            bias = grounding_attention_bias(*self.region, height, width).to(x.dtype)
        objs = self.linear(objs)
        attended = self.attn(self.norm1(torch.cat([x + position, objs], dim=1)), attention_mask=bias)[:, :n_visual, :]
        x = x + self.alpha_attn.tanh() * attended
        if self.ff_mult:
            x = x + self.alpha_dense.tanh() * self.ff(self.norm2(x))
        return x


class LayoutAdapter(ModelMixin, ConfigMixin):
    """Grounding-token position net plus one gated self-attention per spatial transformer block.

    Args:
        block_dims: channels of each spatial BasicTransformerBlock of the target UNet, in the order
            of :func:`spatial_transformer_blocks`.
        block_heads: attention heads of each of those blocks.
        grounding_dim: channels of the grounding tokens (the UNet's ``cross_attention_dim``).
        phrase_dim: channels of a phrase embedding from the text encoder (384 for MiniLM).
        fourier_freqs: GLIGEN's Fourier frequencies for xyxy boxes.
        gate_init: initial gate value (0 for adapters on pretrained backbones, GLIGEN's choice).
        ff_mult: the gated dense feed-forward's width multiplier (GLIGEN 4; 0 for none).
        box_masked: each visual token reads only the grounding tokens of the entities whose box
            covers it (:func:`grounding_attention_bias`); train and render with the same setting.
    """

    @register_to_config
    def __init__(
        self,
        block_dims: list[int],
        block_heads: list[int],
        grounding_dim: int,
        phrase_dim: int = 384,
        fourier_freqs: int = 8,
        gate_init: float = 0.0,
        ff_mult: int = 4,
        box_masked: bool = False,
    ):
        super().__init__()
        if len(block_dims) != len(block_heads):
            raise ValueError(f"block_heads: must have one entry per block ({len(block_dims)}), got {len(block_heads)}")
        self.position_net = GLIGENTextBoundingboxProjection(
            positive_len=phrase_dim, out_dim=grounding_dim, feature_type="text-only", fourier_freqs=fourier_freqs
        )
        self.fusers = nn.ModuleList(
            GroundedSelfAttention(dim, grounding_dim, heads, dim // heads, fourier_freqs=fourier_freqs, gate_init=gate_init, ff_mult=ff_mult)
            for dim, heads in zip(block_dims, block_heads)
        )
        self._objs: torch.Tensor | None = None
        self._hooks: list = []

    @classmethod
    def for_unet(
        cls, unet: nn.Module, *, phrase_dim: int = 384, gate_init: float = 0.0, fourier_freqs: int = 8, ff_mult: int = 4, box_masked: bool = False
    ) -> "LayoutAdapter":
        """Build an adapter shaped for ``unet`` (a ``UNet3DConditionModel``)."""
        blocks = spatial_transformer_blocks(unet)
        if not blocks:
            raise ValueError("unet: has no spatial transformer blocks to ground")
        return cls(
            block_dims=[b.norm1.normalized_shape[0] for b in blocks],
            block_heads=[b.attn1.heads for b in blocks],
            grounding_dim=unet.config.cross_attention_dim,
            phrase_dim=phrase_dim,
            fourier_freqs=fourier_freqs,
            gate_init=gate_init,
            ff_mult=ff_mult,
            box_masked=box_masked,
        )

    def narrowed(self, ff_mult: int, importance: list[torch.Tensor]) -> "LayoutAdapter":
        """A copy whose gated feed-forwards keep only their most important hidden units.

        Structured pruning of GLIGEN's gated dense feed-forward (``ff``, a GEGLU of width
        ``self.config.ff_mult * dim``): block i keeps the ``ff_mult * dim`` hidden units with the
        largest ``importance[i]`` (see :func:`feed_forward_importance`), their rows of the GEGLU
        projection (value and gate halves) and their columns of the output projection. Every other
        weight, gates included, is copied unchanged; fine-tune the result to recover what the
        dropped units did (``python -m core.training graph`` does, for a run whose
        ``adapter_ff_mult`` is below its ``init_from`` model's).

        Args:
            ff_mult: the new width multiplier, 1 <= ff_mult <= ``self.config.ff_mult``.
            importance: one (ff_mult_old * dim,) float tensor per block, larger = keep.

        Raises:
            ValueError: ``ff_mult`` outside that range, or ``importance`` of the wrong shape.
        """
        old = self.config.ff_mult
        if not 1 <= ff_mult <= old:
            raise ValueError(f"ff_mult: must be in [1, {old}] for an adapter with ff_mult {old} (got {ff_mult})")
        dims = list(self.config.block_dims)
        if [tuple(t.shape) for t in importance] != [(old * d,) for d in dims]:
            raise ValueError(f"importance: needs one ({old} * dim,) tensor per block for dims {dims}")
        narrow = type(self)(
            block_dims=dims, block_heads=list(self.config.block_heads), grounding_dim=self.config.grounding_dim,
            phrase_dim=self.config.phrase_dim, fourier_freqs=self.config.fourier_freqs, gate_init=self.config.gate_init, ff_mult=ff_mult,
            box_masked=self.config.box_masked,
        )
        state = self.state_dict()
        for i, (dim, score) in enumerate(zip(dims, importance)):
            keep = score.topk(ff_mult * dim).indices.sort().values
            rows = torch.cat([keep, keep + old * dim])  # value half, then gate half of the GEGLU projection
            prefix = f"fusers.{i}.ff.net."
            state[prefix + "0.proj.weight"] = state[prefix + "0.proj.weight"][rows]
            state[prefix + "0.proj.bias"] = state[prefix + "0.proj.bias"][rows]
            state[prefix + "2.weight"] = state[prefix + "2.weight"][:, keep]
        narrow.load_state_dict(state)
        return narrow.to(self.device) if narrow.dtype == self.dtype else narrow.to(device=self.device, dtype=self.dtype)

    def grounding_tokens(self, boxes: torch.Tensor, masks: torch.Tensor, phrase_embeddings: torch.Tensor) -> torch.Tensor:
        """Grounding tokens (GLIGEN eq. 7).

        Args:
            boxes: (batch * frames, entities, 4) xyxy in [0, 1].
            masks: (batch * frames, entities), 1 where the entity is on screen, else 0.
            phrase_embeddings: (batch * frames, entities, phrase_dim).

        Returns:
            torch.Tensor of shape (batch * frames, entities, grounding_dim).
        """
        return self.position_net(boxes=boxes, masks=masks.to(boxes.dtype), positive_embeddings=phrase_embeddings)

    def attach(self, unet: nn.Module) -> None:
        """Hook the fusers into ``unet``'s spatial blocks; calling it again is a no-op.

        Raises:
            ValueError: the UNet's spatial blocks do not match ``block_dims``.
        """
        if self._hooks:
            return
        blocks = spatial_transformer_blocks(unet)
        dims = [b.norm1.normalized_shape[0] for b in blocks]
        if dims != list(self.config.block_dims):
            raise ValueError(f"unet: spatial block channels {dims} do not match the adapter's {list(self.config.block_dims)}")
        for block, fuser in zip(blocks, self.fusers):
            # Stored outside ``_modules`` so the UNet's state dict stays the stock one; the adapter
            # owns and saves these weights.
            block.__dict__["fuser"] = fuser
        for module in unet.modules():
            if isinstance(module, Transformer2DModel):
                self._hooks.append(module.register_forward_pre_hook(self._inject, with_kwargs=True))

    def detach(self, unet: nn.Module) -> None:
        """Undo :meth:`attach`."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        for block in spatial_transformer_blocks(unet):
            block.__dict__.pop("fuser", None)

    def _inject(self, module, args, kwargs):
        if self._objs is None:
            return None
        extra = dict(kwargs.get("cross_attention_kwargs") or {})
        extra["gligen"] = {"objs": self._objs}
        kwargs["cross_attention_kwargs"] = extra
        return args, kwargs

    @contextmanager
    def grounding(self, objs: torch.Tensor | None, *, aspect: float = 1.0, boxes: torch.Tensor | None = None, masks: torch.Tensor | None = None):
        """Within the block, UNet calls use ``objs`` (batch * frames, entities, grounding_dim).

        ``None`` turns grounding off (the steps after VideoDirectorGPT's alpha fraction).
        ``boxes`` (same rows and entities as ``objs``, 4) and ``masks`` (rows, entities) are where
        the tokens' entities are; a ``box_masked`` adapter needs them and masks its attention with
        them, any other ignores them.

        Raises:
            ValueError: a ``box_masked`` adapter given ``objs`` without boxes and masks of its rows.
        """
        region = None
        if self.config.box_masked and objs is not None:
            if boxes is None or masks is None or boxes.shape[:2] != objs.shape[:2] or masks.shape != objs.shape[:2]:
                raise ValueError(f"boxes, masks: a box-masked adapter needs ({objs.shape[0]}, {objs.shape[1]}, 4) boxes and ({objs.shape[0]}, {objs.shape[1]}) masks")
            region = (boxes.to(objs.dtype), masks.to(objs.dtype))
        self._objs = objs
        for fuser in self.fusers:
            fuser.aspect = aspect
            fuser.region = region
        try:
            yield
        finally:
            self._objs = None
            for fuser in self.fusers:
                fuser.region = None


@contextmanager
def feed_forward_importance(adapter: LayoutAdapter):
    """Measure how much each hidden unit of the adapter's gated feed-forwards contributes.

    Within the block, every call of a fuser's feed-forward adds, per hidden unit j of its GEGLU,
    the mean |h_j| over the call's tokens; on exit each block's list entry holds
    ``mean |h_j| * ||W_out[:, j]||_2``, the typical size of unit j's contribution to the block's
    output (the score :meth:`LayoutAdapter.narrowed` keeps the largest of). Run the UNet on
    representative inputs with grounding on inside the block.

    Yields:
        list of (ff_mult * dim,) float32 tensors, one per block, filled on exit.

    Raises:
        ValueError: the adapter has no feed-forward (``ff_mult`` 0).
    """
    if not adapter.config.ff_mult:
        raise ValueError("adapter: has no gated feed-forward to measure (ff_mult 0)")
    sums = [torch.zeros(f.ff.net[2].in_features) for f in adapter.fusers]
    calls = [0] * len(sums)

    def hook(index):
        def record(module, args, output):
            sums[index] += output.detach().abs().float().flatten(0, -2).mean(0).cpu()
            calls[index] += 1

        return record

    handles = [f.ff.net[0].register_forward_hook(hook(i)) for i, f in enumerate(adapter.fusers)]
    importance: list[torch.Tensor] = []
    try:
        yield importance
    finally:
        for handle in handles:
            handle.remove()
    for fuser, total, count in zip(adapter.fusers, sums, calls):
        norms = fuser.ff.net[2].weight.detach().float().norm(dim=0).cpu()
        importance.append(total / max(count, 1) * norms)
