"""The toy world as training data: frames as tensors, the cached dataset of encoded clips, and
which clips a stage draws.

``build_dataset`` is stage 2 of the ``toy`` command: random clips from :mod:`core.toyworld.world`,
encoded by the stage-1 autoencoder, cached in ``run/data.pt`` with their captions' token
embeddings and per-frame grounding.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from tqdm import tqdm

from core.toyworld.world import BACKGROUNDS, COLORS, KINDS, sample_clip
from core.training.config import OVERLAP_TERM, ToyTrainConfig, parse_oversample_term
from core.training.loop import atomic_save

MAX_TRAIN_ENTITIES = 3  # entity slots per cached clip
OVERLAP_SHARE = 0.2  # the ``overlap`` oversample term: two boxes sharing this much of the smaller one's area


def phrase_vocabulary() -> list[str]:
    """The toy world's entity phrases, ``"<colour> <kind>"``, in a fixed order (64 of them)."""
    return [f"{color} {kind}" for color in COLORS for kind in KINDS]


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """Frames as the autoencoder's input.

    Args:
        frames: (N, H, W, 3) uint8.

    Returns:
        torch.Tensor of shape (N, 3, H, W), float32 in [-1, 1].
    """
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def foreground_weights(frames: np.ndarray, backgrounds: list[str], foreground_weight: float) -> torch.Tensor:
    """Per-pixel loss weights: ``foreground_weight`` on shape pixels, 1 on background pixels.

    Shapes cover a few percent of a frame; without the weight an autoencoder learns backgrounds
    long before it learns the shapes' colours. A pixel is a shape pixel when its colour is more
    than 24 (summed over RGB) from its frame's background colour.

    Args:
        frames: (N, H, W, 3) uint8.
        backgrounds: the N frames' background names (keys of ``core.toyworld.world.BACKGROUNDS``).
        foreground_weight: the weight of shape pixels (>= 1 in practice).

    Returns:
        torch.Tensor of shape (N, 1, H, W), float32.
    """
    palette = np.array([BACKGROUNDS[b] for b in backgrounds], dtype=np.int16)[:, None, None]
    mask = torch.from_numpy(np.abs(frames.astype(np.int16) - palette).sum(-1) > 24).float()[:, None]
    return 1.0 + (foreground_weight - 1.0) * mask


def build_dataset(run: Path, cfg: ToyTrainConfig) -> dict:
    """Generate ``cfg.clips`` clips, encode them, and cache the tensors in ``run/data.pt``.

    Needs the stage-1 autoencoder in ``run/vae``; an existing ``run/data.pt`` is loaded instead.

    Returns:
        A dict with
        ``latents``: (clips, latent_channels, frames, 8, 8) float16, already multiplied by ``scaling_factor``;
        ``prompt_embeds``: (clips, PROMPT_TOKENS, 384) float16 caption token embeddings;
        ``boxes``: (clips, frames, 3, 4) float32 xyxy in [0, 1]; ``masks``: (clips, frames, 3) float32 0/1;
        ``phrase_ids``: (clips, frames, 3) int64 into ``phrase_embeds`` (the order of :func:`phrase_vocabulary`);
        ``phrase_embeds``: (64, 384) float32; ``empty_prompt``: (PROMPT_TOKENS, 384) float32;
        ``scaling_factor``: float (1 / the latents' std); ``captions``: list of clips str.
    """
    from diffusers import AutoencoderKL

    from core.models.toy import PROMPT_TOKENS
    from core.text import load_minilm, sentence_embeddings, token_embeddings

    path = run / "data.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    vae = AutoencoderKL.from_pretrained(run / "vae").eval()
    text_encoder, tokenizer = load_minilm()
    vocab = phrase_vocabulary()
    index = {p: i for i, p in enumerate(vocab)}
    rng = np.random.default_rng(cfg.seed + 1)
    n, f, e = cfg.clips, cfg.clip_frames, MAX_TRAIN_ENTITIES
    latents = torch.zeros(n, vae.config.latent_channels, f, 8, 8, dtype=torch.float16)
    boxes = torch.zeros(n, f, e, 4)
    masks = torch.zeros(n, f, e)
    phrase_ids = torch.zeros(n, f, e, dtype=torch.long)
    captions = []
    chunk = 16
    for start in tqdm(range(0, n, chunk), desc="data", file=sys.stdout, mininterval=10):
        clips = [sample_clip(rng, num_frames=f) for _ in range(min(chunk, n - start))]
        frames = frames_to_tensor(np.concatenate([c.frames for c in clips]))
        with torch.no_grad():
            z = vae.encode(frames).latent_dist.mean
        latents[start : start + len(clips)] = rearrange(z, "(b f) c h w -> b c f h w", f=f).half()
        for i, clip in enumerate(clips):
            captions.append(clip.caption)
            for j, track in enumerate(clip.tracks):
                for t in range(f):
                    phrase_ids[start + i, t, j] = index[f"{track.colors[t]} {track.kind}"]
                    if track.boxes[t] is not None:
                        boxes[start + i, t, j] = torch.tensor(track.boxes[t])
                        masks[start + i, t, j] = 1.0
    scaling_factor = float(1.0 / latents.float().std())
    latents = (latents.float() * scaling_factor).half()
    prompt_embeds = torch.cat(
        [token_embeddings(text_encoder, tokenizer, captions[i : i + 256], max_length=PROMPT_TOKENS) for i in range(0, n, 256)]
    ).half()
    data = {
        "latents": latents,
        "prompt_embeds": prompt_embeds,
        "boxes": boxes,
        "masks": masks,
        "phrase_ids": phrase_ids,
        "phrase_embeds": sentence_embeddings(text_encoder, tokenizer, vocab),
        "empty_prompt": token_embeddings(text_encoder, tokenizer, [""], max_length=PROMPT_TOKENS)[0],
        "scaling_factor": scaling_factor,
        "captions": captions,
    }
    atomic_save(data, path)
    return data


def clip_backgrounds(captions: list[str]) -> list[str]:
    """The background of each toy clip, read from its caption (every caption template names it once).

    Raises:
        ValueError: a caption names no background or more than one.
    """
    out = []
    for i, caption in enumerate(captions):
        words = set(caption.replace(":", " ").replace(".", " ").split())
        found = [b for b in BACKGROUNDS if b in words]
        if len(found) != 1:
            raise ValueError(f"captions[{i}]: must name exactly one background of {', '.join(BACKGROUNDS)} (got {caption!r})")
        out.append(found[0])
    return out


def box_overlap(boxes: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """How much of the smaller of two boxes the pair shares, for every pair of on-screen entities.

    Args:
        boxes: (..., entities, 4) xyxy in [0, 1]. on: (..., entities) bool, the on-screen entities.

    Returns:
        torch.Tensor (..., entities, entities), float in [0, 1]: intersection area over the smaller
        box's area; 0 on the diagonal and for any pair with an off-screen entity.
    """
    lo = torch.maximum(boxes[..., :, None, :2], boxes[..., None, :, :2])
    hi = torch.minimum(boxes[..., :, None, 2:], boxes[..., None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(-1)
    smaller = torch.minimum(area[..., :, None], area[..., None, :]).clamp(min=1e-8)
    pair = on[..., :, None] & on[..., None, :] & ~torch.eye(on.shape[-1], dtype=torch.bool, device=on.device)
    return torch.where(pair, (inter / smaller).clamp(max=1.0), torch.zeros((), dtype=boxes.dtype))


def mixture_weights(data: dict, terms: list[str], weight: float) -> torch.Tensor:
    """Per-clip sampling weights that over-sample clips matching any of ``terms``.

    A term is a kind (``star``: an on-screen entity of that kind, in any frame),
    ``colour@background`` (an on-screen entity of that colour, in any frame, on that background) or
    ``colour+colour`` (two on-screen entities with these colours in the same frame; ``white+white``
    needs two white entities) or ``overlap`` (two on-screen entities whose boxes, in the same frame,
    share at least :data:`OVERLAP_SHARE` of the smaller box's area: the frames where the toy world
    draws the later entity in front, and a model must keep the two apart). Kinds, colours and
    backgrounds are those of :mod:`core.toyworld.world`.

    Args:
        data: the cached clips of :func:`build_dataset` (``phrase_ids``, ``masks``, ``captions``;
            ``boxes`` for ``overlap``).
        terms: the terms; empty gives uniform weights.
        weight: sampling weight of a matching clip relative to 1 for the others, >= 1.

    Returns:
        torch.Tensor of shape (clips,), float64, for ``torch.multinomial``.

    Raises:
        ValueError: a malformed term, an unknown colour or background, or ``weight`` < 1.
    """
    if weight < 1:
        raise ValueError(f"--oversample-weight: must be >= 1 (got {weight})")
    colour_of = torch.tensor([list(COLORS).index(p.split()[0]) for p in phrase_vocabulary()])
    colours = colour_of[data["phrase_ids"]]  # (clips, frames, entities) palette index
    on = data["masks"] > 0
    match = torch.zeros(colours.shape[0], dtype=torch.bool)
    backgrounds = None
    for term in terms:
        if term == OVERLAP_TERM:
            match |= (box_overlap(data["boxes"], on) >= OVERLAP_SHARE).flatten(1).any(-1)
            continue
        if term in KINDS:
            kind_of = torch.tensor([list(KINDS).index(p.split()[1]) for p in phrase_vocabulary()])
            match |= ((kind_of[data["phrase_ids"]] == list(KINDS).index(term)) & on).flatten(1).any(-1)
            continue
        pair, background = parse_oversample_term(term)
        counts = [((colours == list(COLORS).index(c)) & on).sum(-1) for c in pair]  # (clips, frames)
        if background is not None:
            if backgrounds is None:
                backgrounds = clip_backgrounds(data["captions"])
            hit = (counts[0] > 0).any(-1) & torch.tensor([b == background for b in backgrounds])
        elif pair[0] == pair[1]:
            hit = (counts[0] >= 2).any(-1)
        else:
            hit = ((counts[0] > 0) & (counts[1] > 0)).any(-1)
        match |= hit
    return torch.where(match, torch.tensor(float(weight)), torch.tensor(1.0)).double()


def clip_sampler(data: dict, terms: list[str] | tuple[str, ...], weight: float, generator: torch.Generator, stage: str) -> Callable[[int], torch.Tensor]:
    """A function drawing ``k`` cached-clip indices, (k,) int64, per call from ``generator``: uniformly
    without ``terms``, else with the clips matching them ``weight`` times as likely
    (:func:`mixture_weights`; prints, under ``stage``'s name, how many clips match and their share of draws).

    Raises:
        ValueError: a malformed term or ``weight`` < 1, as :func:`mixture_weights`.
    """
    n = data["latents"].shape[0]
    if not terms:
        return lambda k: torch.randint(0, n, (k,), generator=generator)
    weights = mixture_weights(data, list(terms), weight)
    share = float(weights[weights > 1].sum() / weights.sum())
    print(f"{stage}: {int((weights > 1).sum())} of {n} clips match {', '.join(terms)}; {share:.0%} of draws", flush=True)
    return lambda k: torch.multinomial(weights, k, replacement=True, generator=generator)
