"""Stages 5 and 6 of the toy model: fine-tune the autoencoder's decoder with its encoder frozen.

    python -m core.train decoder --run runs/toy --steps 3000
    python -m core.train refine --run runs/toy --model assets/layout2vid-toy --clips 240 --steps 1500

Why: the first autoencoder capped every layout metric. Drawing the dev plans exactly and passing
them through its encode -> decode alone took AP50 from 0.96 to 0.70 and count accuracy from 0.99 to
0.63 (``benchmarks/vae_ceiling.py``): blank backgrounds decoded with a coloured blob in a corner,
edges got a light frame, shapes got halos of a neighbouring palette colour. The encoder and its latent space stay as they are, so the
cached training latents and the trained UNet, adapter and graph encoder remain valid; only
``post_quant_conv`` and the decoder learn.

Each step draws fresh toy clips (two frames each, as the first stage did), replaces a share of the
frames with empty backgrounds (frames between an entity's exit and the next entrance are common in
plans and rare in random clips), encodes them to the posterior mean (what the UNet was trained to
produce), perturbs the latents with Gaussian noise of a random scale up to ``latent_noise`` times
their standard deviation (the denoiser's outputs are never exactly on the encoder's manifold), and
minimises L1 + MSE weighted ``foreground_weight`` times on shape pixels. Checkpoints go to
``run/decoder_ckpt.pt`` (resumable); the finished autoencoder is saved to ``run/vae_decoder`` and
:func:`core.train.export` prefers it over ``run/vae``.

With ``colour_mix_share`` (``--colour-mix-share``) a share of each batch is mixed part of the way
toward a neighbouring palette colour (:func:`colour_mix_batch`): the latents of a clip whose shapes
are recoloured to their nearest colours in latent space (red <-> orange, white -> pink), blended
less than half way in, decode to the clip as drawn. The denoiser lands between near colours more
often than the isotropic noise above reaches, and a decoder that draws such latents as the
in-between colour leaves the detector to pick the wrong palette entry.

Stage 6 (``refine``) goes on from ``run/vae_decoder`` with a second kind of pair. The denoiser's
samples are never exactly an encoding: after 25 sampling steps an object's latent can sit between
two palette colours (decoded as a two-tone blob that the detector splits in two) and the corner
cells carry faint residue (decoded as a speck). But in the toy world the correct frame of any layout
is known exactly, since the renderer is deterministic. :func:`sample_pairs` samples the shipped
pipeline on fresh random training clips (their captions, boxes, phrases and scene graphs; never
the evaluation prompts) and keeps each sample's latents beside the clip's drawn frames;
:func:`train_decoder` with ``pairs`` then gives ``sample_share`` of every batch to decoding those
latents into the drawn frames, the rest to the stage-5 objective so that encodings still decode.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.toyworld import render_frame, sample_clip


def decoder_parameters(vae) -> list[torch.nn.Parameter]:
    """The parameters this stage trains: ``post_quant_conv`` and ``decoder`` (encoder side frozen)."""
    return [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]


def decoder_batch(rng: np.random.Generator, batch: int, empty_share: float) -> tuple[np.ndarray, list[str]]:
    """``batch`` toy frames (batch, 64, 64, 3) uint8 and each frame's background name.

    Frames come in pairs from :func:`core.toyworld.sample_clip`; each frame is replaced by its
    empty background with probability ``empty_share`` (0-1).
    """
    frames, backgrounds = [], []
    for _ in range((batch + 1) // 2):
        clip = sample_clip(rng, num_frames=2)
        for frame in clip.frames:
            empty = rng.random() < empty_share
            frames.append(render_frame(clip.background, []) if empty else frame)
            backgrounds.append(clip.background)
    return np.stack(frames[:batch]), backgrounds[:batch]


def clip_conditioning(clip, rng: np.random.Generator):
    """A training clip as the pipeline's inputs: ``(prompt, LayoutConditioning)``.

    The prompt is the clip's caption; phrases are ``"<colour> <kind>"`` per frame, boxes and masks
    the clip's tracks, scene graphs :func:`core.graph_training.clip_graphs` (what stage 4 trained
    the graph encoder on) and every entity gets a random noise seed.
    """
    from core.graph_training import clip_graphs
    from core.pipeline import LayoutConditioning

    frames, entities = len(clip.frames), len(clip.tracks)
    phrases = [[f"{track.colors[f]} {track.kind}" for track in clip.tracks] for f in range(frames)]
    boxes = np.zeros((frames, entities, 4), dtype=np.float32)
    masks = np.zeros((frames, entities), dtype=np.float32)
    for n, track in enumerate(clip.tracks):
        for f, box in enumerate(track.boxes):
            if box is not None:
                boxes[f, n], masks[f, n] = box, 1.0
    layout = LayoutConditioning(
        phrases=phrases,
        boxes=torch.from_numpy(boxes),
        masks=torch.from_numpy(masks),
        entity_seeds=[int(s) for s in rng.integers(0, 2**31 - 1, size=entities)],
        scene_graphs=clip_graphs(phrases, masks, boxes, clip.background),
    )
    return clip.caption, layout


def sample_pairs(
    pipe,
    path: Path,
    *,
    clips: int,
    num_frames: int = 16,
    num_inference_steps: int = 25,
    guidance_scale: float | None = None,
    seed: int = 0,
    save_every: int = 10,
) -> dict:
    """Sample ``pipe`` on random toy clips and cache (sampled latents, drawn frames) at ``path``.

    Resumable: an existing file's clips are kept and sampling goes on until ``clips``.

    Args:
        pipe: a toy-world Layout2VidPipeline (the UNet whose samples the decoder will learn).
        path: the ``.pt`` cache, written atomically every ``save_every`` clips.
        clips: total clips. num_frames: frames per clip (16, a scene's length).
        num_inference_steps, guidance_scale: the sampler settings of a render (25 steps; guidance
            None: the model's own ``default_guidance_scale``, as a render uses, else
            ``core.pipeline.DEFAULT_GUIDANCE_SCALE``).

    Returns:
        dict with ``latents`` (clips, C, F, h, w) float16 unscaled (what ``vae.decode`` takes),
        ``frames`` (clips, F, 64, 64, 3) uint8 drawn exactly, ``backgrounds`` (clips names) and
        ``guidance_scale`` (float).

    Raises:
        ValueError: ``path`` holds clips sampled at another guidance scale.
    """
    from core.pipeline import DEFAULT_GUIDANCE_SCALE
    from core.train import _atomic_save

    if guidance_scale is None:
        guidance_scale = getattr(pipe.config, "default_guidance_scale", None) or DEFAULT_GUIDANCE_SCALE
    pairs = torch.load(path, weights_only=False) if path.exists() else {"latents": [], "frames": [], "backgrounds": []}
    cached_scale = pairs.pop("guidance_scale", guidance_scale)
    if len(pairs["latents"]) and cached_scale != guidance_scale:
        raise ValueError(f"{path}: its clips were sampled at guidance_scale {cached_scale}, not {guidance_scale}; use another file")
    pairs = {k: list(v) for k, v in pairs.items()}
    rng = np.random.default_rng([seed, 6])
    for _ in range(len(pairs["latents"])):  # skip the clips already sampled, so resuming draws new ones
        sample_clip(rng, num_frames=num_frames), rng.integers(0, 2**31 - 1, size=3)
    scaling = pipe.vae.config.scaling_factor
    bar = tqdm(total=clips, initial=len(pairs["latents"]), desc="sample pairs", file=sys.stdout, mininterval=10)
    while len(pairs["latents"]) < clips:
        clip = sample_clip(rng, num_frames=num_frames)
        prompt, layout = clip_conditioning(clip, np.random.default_rng(rng.integers(0, 2**31 - 1, size=3)))
        generator = torch.Generator().manual_seed(len(pairs["latents"]) + seed * 100_003)
        latents = pipe(
            prompt, layout, num_frames=num_frames, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            generator=generator, output_type="latent",
        ).frames
        pairs["latents"].append((latents[0].float() / scaling).half().cpu())
        pairs["frames"].append(torch.from_numpy(clip.frames))
        pairs["backgrounds"].append(clip.background)
        bar.update(1)
        if len(pairs["latents"]) % save_every == 0 or len(pairs["latents"]) == clips:
            _atomic_save(_stacked_pairs(pairs, guidance_scale), path)
    bar.close()
    return _stacked_pairs(pairs, guidance_scale)


def _stacked_pairs(pairs: dict, guidance_scale: float) -> dict:
    stacked = {k: (torch.stack(v) if k != "backgrounds" else v) for k, v in pairs.items()}
    return {**stacked, "guidance_scale": float(guidance_scale)}


def pair_batch(pairs: dict, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """``batch`` random (clip, frame) items of :func:`sample_pairs`' cache.

    Returns:
        (latents (batch, C, h, w) float32, drawn frames (batch, 64, 64, 3) uint8, background names).
    """
    clips, frames = pairs["latents"].shape[0], pairs["latents"].shape[2]
    c = rng.integers(0, clips, size=batch)
    f = rng.integers(0, frames, size=batch)
    latents = pairs["latents"][c, :, f].float()
    return latents, pairs["frames"][c, f].numpy(), [pairs["backgrounds"][i] for i in c]


def palette_neighbours(vae, *, k: int = 2) -> dict[str, dict[str, list[str]]]:
    """For each background and palette colour, the ``k`` colours whose encodings lie nearest.

    Distances are the L2 distances of :func:`core.graph_training.palette_latents` (flat squares of
    each colour on each background, encoded by ``vae``), per background: on the ocean white's
    nearest is pink, orange's is red.

    Returns:
        ``{background: {colour: [nearest colour, ...]}}`` over ``core.toyworld`` names.

    Raises:
        ValueError: ``k`` not in [1, number of colours - 1].
    """
    from core.graph_training import palette_latents
    from core.toyworld import BACKGROUNDS, COLORS

    names = list(COLORS)
    if not 1 <= k < len(names):
        raise ValueError(f"k: must be in [1, {len(names) - 1}] (got {k})")
    codes = palette_latents(vae, 1.0)  # (backgrounds, colours, C)
    out = {}
    for b, background in enumerate(BACKGROUNDS):
        distance = torch.cdist(codes[b], codes[b]).fill_diagonal_(float("inf"))
        out[background] = {name: [names[j] for j in distance[i].argsort()[:k].tolist()] for i, name in enumerate(names)}
    return out


def colour_mix_batch(
    rng: np.random.Generator, vae, batch: int, neighbours: dict[str, dict[str, list[str]]], mix_max: float
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """``batch`` latents part of the way to a neighbouring colour, with the frame they should decode to.

    Each item is a one-frame toy clip drawn twice: as sampled (frame ``a``) and with every shape
    recoloured to one of its colour's :func:`palette_neighbours` on that background (frame ``b``;
    red -> orange, white -> pink). Its latents are ``z_a + t (z_b - z_a)`` with ``t ~ U(0,
    mix_max)`` and its target is ``a``: a latent nearer to ``a``'s encoding than to ``b``'s decodes
    to ``a``'s colours. The denoiser's samples often land between two near palette colours
    (projected on the orange -> red axis, the orange diamond of dev video 004 sits up to 0.46 of
    the way to red); a decoder trained only
    on encodings plus isotropic noise draws such latents as the in-between colour, which the
    detector then reads as the wrong one.

    Args:
        vae: the autoencoder (its encoder is used under ``no_grad``).
        mix_max: the largest ``t``, in [0, 0.5) so that the target stays the nearer colour.

    Returns:
        (latents (batch, C, h, w) float32 unscaled posterior means, frames ``a`` (batch, 64, 64, 3)
        uint8, background names).
    """
    from dataclasses import replace

    from core.toyworld import ToyObject
    from core.train import _frames_to_tensor

    frames, recoloured, backgrounds = [], [], []
    for _ in range(batch):
        clip = sample_clip(rng, num_frames=1)
        objects = [ToyObject(t.kind, t.colors[0], t.boxes[0]) for t in clip.tracks]
        swapped = [replace(o, color=str(rng.choice(neighbours[clip.background][o.color]))) for o in objects]
        frames.append(clip.frames[0])
        recoloured.append(render_frame(clip.background, swapped))
        backgrounds.append(clip.background)
    frames = np.stack(frames)
    with torch.no_grad():
        codes = vae.encode(_frames_to_tensor(np.concatenate([frames, np.stack(recoloured)]))).latent_dist.mean
    a, b = codes[:batch], codes[batch:]
    t = torch.from_numpy(rng.uniform(0.0, mix_max, size=(batch, 1, 1, 1))).float()
    return a + t * (b - a), frames, backgrounds


def train_decoder(
    run: Path,
    *,
    steps: int,
    lr: float = 3e-4,
    batch: int = 16,
    foreground_weight: float = 4.0,
    latent_noise: float = 0.1,
    empty_share: float = 0.1,
    seed: int = 0,
    checkpoint_every: int = 200,
    stage: str = "decoder",
    source: str = "vae",
    pairs: dict | None = None,
    sample_share: float = 0.5,
    colour_mix_share: float = 0.0,
    colour_mix_max: float = 0.45,
) -> Path:
    """Fine-tune the decoder of ``run/<source>`` and save the result to ``run/vae_<stage>``.

    Args:
        run: a toy run folder with ``vae/`` (stage 1).
        steps: total optimiser steps (resuming from ``run/decoder_ckpt.pt`` counts the steps done).
        lr: peak AdamW learning rate (cosine decay to 10 %, 50 warm-up steps).
        batch: frames per step.
        foreground_weight: loss weight of shape pixels relative to background pixels (>= 1).
        latent_noise: largest latent perturbation, as a multiple of the latents' std (0-1).
        empty_share: probability that a frame is replaced by its empty background (0-1).
        stage: names the checkpoint ``run/<stage>_ckpt.pt``, the log ``run/<stage>_loss.csv`` and
            the output ``run/vae_<stage>`` (``decoder`` for stage 5, ``refine`` for stage 6).
        source: the autoencoder folder under ``run`` to start from.
        pairs: :func:`sample_pairs`' cache; None trains on encodings only.
        sample_share: fraction (0-1) of each batch taken from ``pairs`` when given.
        colour_mix_share: fraction (0-1) of each batch taken from :func:`colour_mix_batch`
            (latents part of the way to a neighbouring palette colour); 0 turns it off.
        colour_mix_max: the largest mixing ``t`` of those items, in [0, 0.5).

    Returns:
        The saved autoencoder folder.

    Raises:
        FileNotFoundError: ``run/<source>`` does not exist.
        ValueError: a share or ``latent_noise`` outside [0, 1], the shares summing past 1, or
            ``colour_mix_max`` outside [0, 0.5) (the message names the argument).
    """
    from diffusers import AutoencoderKL

    from core.train import _atomic_save, _foreground_weight_frames, _frames_to_tensor

    problems = [
        f"empty_share: must be in [0, 1] (got {empty_share})" if not 0.0 <= empty_share <= 1.0 else "",
        f"latent_noise: must be in [0, 1] (got {latent_noise})" if not 0.0 <= latent_noise <= 1.0 else "",
        f"sample_share: must be in [0, 1] (got {sample_share})" if not 0.0 <= sample_share <= 1.0 else "",
        f"colour_mix_share: must be in [0, 1] (got {colour_mix_share})" if not 0.0 <= colour_mix_share <= 1.0 else "",
        f"colour_mix_max: must be in [0, 0.5) (got {colour_mix_max})" if not 0.0 <= colour_mix_max < 0.5 else "",
        f"colour_mix_share: with sample_share {sample_share} it must be <= {1 - sample_share:g} (got {colour_mix_share})"
        if pairs is not None and sample_share + colour_mix_share > 1.0 else "",
    ]
    if any(problems):
        raise ValueError(next(p for p in problems if p))
    if not (run / source / "config.json").exists():
        raise FileNotFoundError(f"{run / source}: train the earlier stages first (python -m core.train toy, then decoder)")
    vae = AutoencoderKL.from_pretrained(run / source)
    vae.requires_grad_(False)
    params = decoder_parameters(vae)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed + 5)
    generator = torch.Generator().manual_seed(seed + 5)
    step = 0
    ckpt = run / f"{stage}_ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        generator.set_state(state["generator"])
        step = state["step"]
    vae.encoder.eval()
    vae.decoder.train()
    log = open(run / f"{stage}_loss.csv", "a", newline="")
    writer = csv.writer(log)
    sampled = round(batch * sample_share) if pairs is not None else 0
    mixed = min(round(batch * colour_mix_share), batch - sampled)
    neighbours = palette_neighbours(vae) if mixed else None
    bar = tqdm(total=steps, initial=step, desc=stage, file=sys.stdout, mininterval=10)
    while step < steps:
        parts = []  # (latents, frames, backgrounds) per kind of item
        with torch.no_grad():
            if batch - sampled - mixed:
                frames, backgrounds = decoder_batch(rng, batch - sampled - mixed, empty_share)
                parts.append((vae.encode(_frames_to_tensor(frames)).latent_dist.mean, frames, backgrounds))
            if mixed:
                parts.append(colour_mix_batch(rng, vae, mixed, neighbours, colour_mix_max))
            latents = torch.cat([p[0] for p in parts])
            frames, backgrounds = np.concatenate([p[1] for p in parts]), [b for p in parts for b in p[2]]
            scale = torch.rand(latents.shape[0], 1, 1, 1, generator=generator) * latent_noise * latents.std()
            latents = latents + scale * torch.randn(latents.shape, generator=generator)
        if sampled:
            pair_latents, pair_frames, pair_backgrounds = pair_batch(pairs, rng, sampled)
            latents = torch.cat([latents, pair_latents])
            frames, backgrounds = np.concatenate([frames, pair_frames]), backgrounds + pair_backgrounds
        images = _frames_to_tensor(frames)
        weight = _foreground_weight_frames(frames, backgrounds, foreground_weight)
        recon = vae.decode(latents).sample
        l1 = (weight * (recon - images).abs()).mean()
        mse = (weight * (recon - images) ** 2).mean()
        loss = l1 + mse
        warm = min(1.0, (step + 1) / 50)
        for group in optimizer.param_groups:
            group["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        writer.writerow([step, f"{loss.item():.5f}", f"{l1.item():.5f}", f"{mse.item():.5f}"])
        bar.update(1)
        if step % checkpoint_every == 0 or step == steps:
            log.flush()
            state = {"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state, "generator": generator.get_state(), "step": step}
            _atomic_save(state, ckpt)
    log.close()
    vae.eval()
    out = run / f"vae_{stage}"
    vae.save_pretrained(out)
    return out
