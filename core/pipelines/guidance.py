"""Training-free box guidance: cross-attention energy minimised in the denoising loop, or
cross-attention masking.

For backbones without a trained layout adapter (LLM-grounded Video Diffusion, Lian et al.,
arXiv 2309.17444, section 4; the energy follows BoxDiff/LMD's backward guidance). At a guided step
the conditional branch of the UNet is run with gradients, the cross-attention maps of each entity's
prompt tokens are read, and the latents take one gradient step on

    E = mean over layers, frames, on-screen entities n of (1 - sum_{q in box_n} A_n[q] / sum_q A_n[q])^2

where ``A_n[q]`` is the attention of visual token ``q`` to entity ``n``'s prompt tokens (averaged over
heads and the entity's tokens). Lowering ``E`` moves each entity's attention mass into its box.

The second method, ``method="mask"``, needs no gradient: attention masking as in Peekaboo (Jain et
al., arXiv 2312.07509, sec. 3; TrailBlazer, arXiv 2401.00896, edits the same maps). For the first
``alpha`` fraction of the steps the cross-attention logits get ``-penalty`` where an entity's prompt
tokens meet a visual token outside its box, and where a visual token inside a box meets any token
but its entity's (:func:`box_attention_bias`): the entity's words are read only inside its box, and
its box reads only its words. The latents themselves are never pushed.

Everything here is a plain function over tensors except the attention processors
(:class:`CrossAttentionRecorder`, :class:`BoxMaskedAttention`; diffusers' processor protocol).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import rearrange

from core.models.layout import box_masks_on_grid

METHODS = ("energy", "mask")


@dataclass(frozen=True)
class BoxGuidance:
    """Settings of the training-free box guidance.

    Attributes:
        alpha: fraction of the denoising steps (from the first) that are guided, in [0, 1].
        scale: ``energy``: size of one guidance step in units of the latents' RMS gradient
            direction, >= 0; the step is ``scale * E * grad / rms(grad)`` so it fades as the
            energy falls. ``mask``: unused.
        method: ``energy`` (a gradient step on the latents) or ``mask`` (attention masking).
    """

    alpha: float = 0.2
    scale: float = 1.0
    method: str = "energy"


def box_attention_energy(attention: torch.Tensor, token_weights: torch.Tensor, box_masks: torch.Tensor) -> torch.Tensor:
    """The box energy of one layer's cross-attention (see the module docstring).

    Args:
        attention: (frames, queries, tokens) attention probabilities of one layer's conditional
            branch, averaged over heads; rows sum to 1.
        token_weights: (frames, entities, tokens), each entity's prompt tokens (rows sum to 1, or
            all zero when the entity has no token in that frame's prompt).
        box_masks: (frames, entities, queries) in [0, 1], from :func:`box_masks_on_grid`.

    Returns:
        A scalar tensor in [0, 1]; 0 when no entity is both on screen and named in the prompt.
    """
    entity_maps = torch.einsum("fqk,fnk->fnq", attention, token_weights)  # (F, N, Q)
    inside = (entity_maps * box_masks).sum(-1)
    total = entity_maps.sum(-1)
    active = (token_weights.sum(-1) > 0) & (box_masks.sum(-1) > 0)  # (F, N)
    if not active.any():
        return attention.new_zeros(())
    energy = (1 - inside / total.clamp(min=1e-8)) ** 2
    return energy[active].mean()


def phrase_token_weights(tokenizer, prompts: list[str], phrases: list[list[str]], *, max_length: int) -> torch.Tensor:
    """Which prompt tokens name each entity, frame by frame.

    A phrase's words are tokenised on their own and matched as token subsequences of the frame's
    tokenised prompt (CLIP BPE and BERT WordPiece both tokenise word by word, so a word's tokens
    are the same inside the prompt).

    Args:
        prompts: one prompt per frame (F). phrases: ``phrases[f][n]``, entity n's phrase in frame f.
        max_length: the prompt length the text encoder uses.

    Returns:
        torch.Tensor (F, N, max_length) float32; each row sums to 1 over the entity's matched
        tokens, or is all zero when none of its words is in the prompt.
    """
    frames, entities = len(prompts), len(phrases[0]) if phrases else 0
    weights = torch.zeros(frames, entities, max_length)
    cache: dict[tuple[str, str], torch.Tensor] = {}
    for f, prompt in enumerate(prompts):
        for n, phrase in enumerate(phrases[f]):
            key = (prompt, phrase)
            if key not in cache:
                ids = tokenizer(prompt, truncation=True, max_length=max_length)["input_ids"]
                row = torch.zeros(max_length)
                for word in phrase.lower().split():
                    word_ids = tokenizer(word, add_special_tokens=False)["input_ids"]
                    for start in range(len(ids) - len(word_ids) + 1):
                        if word_ids and ids[start : start + len(word_ids)] == word_ids:
                            row[start : start + len(word_ids)] = 1
                cache[key] = row / row.sum() if row.sum() > 0 else row
            weights[f, n] = cache[key]
    return weights


class CrossAttentionRecorder:
    """An attention processor for cross-attention layers that can record their probabilities.

    While ``recording`` is False it runs PyTorch SDPA (diffusers' ``AttnProcessor2_0``); while True it
    computes the probabilities explicitly (so gradients flow through them) and appends
    ``(probs, height, width)`` to ``maps``, with probs (batch * frames, queries, tokens) averaged
    over heads. One recorder instance is shared by all the layers it is installed on.
    """

    def __init__(self):
        self.recording = False
        self.maps: list[torch.Tensor] = []
        self._sdpa = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if not self.recording or encoder_hidden_states is None:
            return self._sdpa(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        context = encoder_hidden_states
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))  # (B * heads, Q, d)
        key = attn.head_to_batch_dim(attn.to_k(context))  # (B * heads, K, d)
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, None)  # (B * heads, Q, K)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        self.maps.append(rearrange(probs, "(b h) q k -> b h q k", h=attn.heads).mean(1))
        return out / attn.rescale_output_factor


def box_attention_bias(token_weights: torch.Tensor, box_masks: torch.Tensor, *, penalty: float = 1e4) -> torch.Tensor:
    """The additive cross-attention bias of attention masking (Peekaboo's masked cross-attention).

    Two rules, per frame: a token that names entity n is not read by visual tokens outside n's box;
    a visual token inside the box of a named entity reads only the tokens of the entities whose boxes
    cover it, plus the first token (BOS / [CLS], so no row is masked entirely). Visual tokens inside
    no box read every token but the entities'.

    Args:
        token_weights: (frames, entities, tokens); a token names entity n where its weight is > 0.
        box_masks: (frames, entities, queries) in [0, 1] from :func:`box_masks_on_grid`; a query is
            inside entity n's box where its coverage is > 0 (an off-screen entity covers nothing).
        penalty: the logit subtracted, > 0 (1e4 makes the masked probabilities exactly 0 in fp32).

    Returns:
        torch.Tensor (frames, queries, tokens) with ``-penalty`` where a rule masks the pair, else 0.
    """
    names = token_weights > 0  # (F, N, K)
    named = names.any(-1, keepdim=True)  # (F, N, 1): entities with a token in the prompt
    inside = (box_masks > 0) & named  # (F, N, Q)
    as_float = lambda x: x.to(box_masks.dtype)  # noqa: E731
    outside_reader = torch.einsum("fnq,fnk->fqk", as_float(box_masks <= 0), as_float(names)) > 0
    own_reader = torch.einsum("fnq,fnk->fqk", as_float(inside), as_float(names)) > 0
    in_a_box = inside.any(1)  # (F, Q)
    foreign = in_a_box[..., None] & ~own_reader
    foreign[..., 0] = False
    return as_float(outside_reader | foreign) * -penalty


class BoxMaskedAttention:
    """A cross-attention processor that adds a bias to the logits while ``bias_fn`` is set.

    ``bias_fn(batch, queries)`` returns (batch, queries, tokens) or None for no bias (then PyTorch
    SDPA runs, as diffusers' ``AttnProcessor2_0``). The same instance serves every layer it is
    installed on; the layers differ in their number of queries.
    """

    def __init__(self):
        self.bias_fn = None
        self._sdpa = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        bias = None
        if self.bias_fn is not None and encoder_hidden_states is not None:
            bias = self.bias_fn(hidden_states.shape[0], hidden_states.shape[1])
        if bias is None:
            return self._sdpa(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        bias = bias.to(query.dtype).repeat_interleave(attn.heads, dim=0)  # (B * heads, Q, K), batch-major like head_to_batch_dim
        probs = attn.get_attention_scores(query, key, bias)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor


def install_cross_attention(unet, processor) -> dict:
    """Put ``processor`` on every spatial cross-attention (``attn2`` of the spatial transformers).

    Returns:
        The previous processors, so that ``unet.set_attn_processor(previous)`` restores them.
    """
    previous = dict(unet.attn_processors)
    processors = {name: (processor if ".attentions." in name and name.endswith("attn2.processor") else proc) for name, proc in previous.items()}
    unet.set_attn_processor(processors)
    return previous


def install_recorder(unet) -> tuple[CrossAttentionRecorder, dict]:
    """Put one :class:`CrossAttentionRecorder` on every spatial cross-attention.

    Returns:
        (recorder, previous processors) so that ``unet.set_attn_processor(previous)`` restores them.
    """
    recorder = CrossAttentionRecorder()
    return recorder, install_cross_attention(unet, recorder)


def guided_latents(
    latents: torch.Tensor,
    energy_fn,
    *,
    scale: float,
) -> tuple[torch.Tensor, float]:
    """One guidance step: ``latents - scale * E * grad E / rms(grad E)``.

    Args:
        latents: (1, C, F, h, w). energy_fn: latents -> scalar energy (differentiable).
        scale: step size, >= 0.

    Returns:
        (new latents, detached, same shape and dtype; the energy before the step as a float).
    """
    with torch.enable_grad():
        x = latents.detach().float().requires_grad_(True)
        energy = energy_fn(x.to(latents.dtype))
        if not energy.requires_grad:
            return latents, float(energy.detach())
        (grad,) = torch.autograd.grad(energy, x)
    rms = grad.pow(2).mean().sqrt()
    if not torch.isfinite(rms) or rms == 0:
        return latents, float(energy.detach())
    step = scale * energy.detach() * grad / rms
    return (x.detach() - step).to(latents.dtype), float(energy.detach())


def grid_of(queries: int, aspect: float) -> tuple[int, int]:
    """(height, width) of a layer's token grid from its number of queries and height / width."""
    height = max(1, round(math.sqrt(queries * aspect)))
    return height, queries // height


def layer_energy(maps: list[torch.Tensor], token_weights: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor, *, aspect: float) -> torch.Tensor:
    """Mean :func:`box_attention_energy` over recorded layers of the conditional branch.

    Args:
        maps: recorded (frames, queries, tokens) probabilities, one per layer, any resolution.
        token_weights: (frames, entities, tokens). boxes: (frames, entities, 4). masks: (frames, entities).
        aspect: latent height / width, to recover each layer's grid from its number of queries.
    """
    energies = []
    for probs in maps:
        height, width = grid_of(probs.shape[1], aspect)
        grid = box_masks_on_grid(boxes, masks, height, width).to(probs.dtype)
        energies.append(box_attention_energy(probs, token_weights.to(probs.dtype), grid))
    return torch.stack(energies).mean() if energies else boxes.new_zeros(())


class BoxGuidanceHooks:
    """Training-free box guidance over one render, as the hooks a denoising loop calls.

    On ``__enter__`` it installs its cross-attention processors on the UNet (a
    :class:`BoxMaskedAttention` for ``mask``, a :class:`CrossAttentionRecorder` for ``energy``) and
    on ``__exit__`` restores the previous ones, also when the loop raises or is interrupted. Before
    each of the first ``guided_steps`` steps, :meth:`before_step` sets the masking bias or takes the
    energy step on the latents (see the module docstring); after them it does nothing.

    Args:
        unet: the UNet3D whose spatial cross-attention is hooked.
        guidance: the settings (method, scale).
        guided_steps: how many of the first steps are guided (``round(alpha * steps)``).
        token_weights: (frames, entities, tokens) from :func:`phrase_token_weights`.
        boxes: (frames, entities, 4) xyxy in [0, 1]. masks: (frames, entities), 1 on screen.
        aspect: latent height / width. num_frames: F. dtype: the UNet's dtype.
        conditional_pass: ``f(x, t)`` that runs the UNet's conditional branch on latents ``x``
            (1, C, F, h, w) at timestep ``t`` (the energy method reads its recorded attention).
    """

    def __init__(self, unet, guidance: BoxGuidance, *, guided_steps: int, token_weights, boxes, masks, aspect: float, num_frames: int, dtype, conditional_pass):
        self.unet, self.guidance, self.guided_steps = unet, guidance, guided_steps
        self.token_weights, self.boxes, self.masks = token_weights, boxes, masks
        self.aspect, self.num_frames, self.dtype = aspect, num_frames, dtype
        self.conditional_pass = conditional_pass
        self._biases: dict[tuple[int, int], torch.Tensor] = {}
        self._processor = BoxMaskedAttention() if guidance.method == "mask" else CrossAttentionRecorder()
        self._previous: dict | None = None

    def __enter__(self) -> "BoxGuidanceHooks":
        self._previous = install_cross_attention(self.unet, self._processor)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            self.unet.set_attn_processor(self._previous)
            self._previous = None

    def attention_bias(self, batch: int, queries: int) -> torch.Tensor:
        """(batch, queries, tokens) masking bias: :func:`box_attention_bias` on the conditional
        frames (the last ``num_frames`` of the batch), 0 on the unconditional ones; cached per shape."""
        if (batch, queries) not in self._biases:
            grid = box_masks_on_grid(self.boxes, self.masks, *grid_of(queries, self.aspect))
            bias = box_attention_bias(self.token_weights, grid)
            self._biases[batch, queries] = torch.cat([torch.zeros_like(bias)] * (batch // self.num_frames - 1) + [bias]).to(self.dtype)
        return self._biases[batch, queries]

    def energy(self, x: torch.Tensor, t) -> torch.Tensor:
        """The box energy (scalar) of latents ``x`` at timestep ``t``: one conditional UNet pass, recorded."""
        recorder = self._processor
        recorder.maps.clear()
        recorder.recording = True
        try:
            self.conditional_pass(x, t)
        finally:
            recorder.recording = False
        return layer_energy(recorder.maps, self.token_weights, self.boxes, self.masks, aspect=self.aspect)

    def before_step(self, step: int, t, latents: torch.Tensor) -> torch.Tensor:
        """Hook run before denoising step ``step``: returns the (possibly guided) latents."""
        guided = step < self.guided_steps
        if isinstance(self._processor, BoxMaskedAttention):
            self._processor.bias_fn = self.attention_bias if guided else None
            return latents
        if guided:
            latents, _ = guided_latents(latents, lambda x: self.energy(x, t), scale=self.guidance.scale)
        return latents


__all__ = [
    "BoxGuidanceHooks",
    "METHODS",
    "BoxGuidance",
    "BoxMaskedAttention",
    "CrossAttentionRecorder",
    "box_attention_bias",
    "box_attention_energy",
    "box_masks_on_grid",
    "grid_of",
    "guided_latents",
    "install_cross_attention",
    "install_recorder",
    "layer_energy",
    "phrase_token_weights",
]
