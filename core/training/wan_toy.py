"""The ``wan-toy`` stage: model v2, a miniature Wan 2.x with a layout adapter, at 128x128.

    python -m core.training wan-toy --out runs/wan-toy            # repeat until it says "done"

1. ``vae``: the frame autoencoder (:func:`core.models.toy_wan.build_toy_wan_vae`) on random
   ``vae_crop``-pixel windows of random 128x128 toy frames: L1 + MSE with shape pixels weighted, plus
   a small KL term; saved to ``run/vae`` with the latents' per-channel mean and std in its config
   (``latents_mean`` / ``latents_std``, which ``WanPipeline`` normalises with);
   checkpoints in ``run/vae_ckpt.pt``, loss in ``run/vae_loss.csv``.
2. ``refine``: encoder and decoder together on whole 128x128 frames (:func:`tune_autoencoder`), with
   pixels near shapes' outlines weighted ``boundary_weight`` times more and an L1 between the
   images' horizontal and vertical differences: the thin parts that tell a star from a ball and a
   ring from a disc; saved to ``run/refine`` with the latents' statistics measured again. Its
   encoder is the one a run ships.
3. ``decoder``: the decoder alone, the encoder frozen, with ``refine``'s loss (:func:`tune_autoencoder`);
   saved to ``run/decoder``: the autoencoder a run exports and encodes its clips with.
4. ``data``: ``clips`` random 16-frame clips, encoded by ``run/decoder`` (``refine``'s encoder) and
   normalised as ``WanPipeline`` sees latents, with their captions and per-frame phrases encoded by
   the pipeline's own ``_get_t5_prompt_embeds`` and ``encode_phrases`` (the MiniLM text encoder),
   cached in ``run/data.pt``. ``data_from`` instead joins the clips that earlier runs cached (runs
   with other seeds draw other clips; :func:`merge_wan_datasets`), without encoding any.
5. ``transformer``: ``WanTransformer3DModel`` + ``WanLayoutAdapter`` by flow matching (Wan 2.1's
   objective: ``x_t = (1 - sigma) x_0 + sigma * noise``, the model predicts ``noise - x_0`` at
   timestep ``1000 sigma``, with ``sigma`` drawn uniformly and shifted by ``timestep_shift``,
   by default :data:`core.models.toy_wan.FLOW_SHIFT` as at inference), latent cells inside entity boxes weighted
   ``box_loss_weight``, the prompt and the grounding dropped per clip for classifier-free guidance,
   and an EMA of the weights. With ``image_batch`` > 0 each step also trains on that many single
   frames of random clips (one-frame videos with their own boxes and phrases), as Wan trains on
   images and videos together: many more independent shapes a step than a few 16-frame clips give.
   ``oversample`` (e.g. ``star,ring``) draws the clips that show those kinds ``oversample_weight``
   times as often, for both the videos and the images.
   The adapter's grounding tokens carry each entity's place in the
   clip's order (``depth_slots``): later entities are drawn on top, as a plan's later entities are.
   Checkpoints in ``run/transformer_ckpt.pt``, loss in ``run/loss.csv``.

The autoencoder (parts 1-3) is finished before any clip is encoded, so a trained one can stand in
for them: ``--autoencoder DIR`` (e.g. the shipped ``assets/wan-toy/vae``) becomes ``run/decoder`` and
the run starts at the data part. ``--init-from DIR`` (an exported ``wan-toy`` pipeline, e.g. the
shipped ``assets/wan-toy``) starts the transformer part from that pipeline's transformer and layout
adapter instead of random weights, on a new schedule: a shipped model trains on in a later run.

Every part resumes from its checkpoint and a finished part is skipped, so a command that stops at
its ``--max-minutes`` limit (150 at most) is simply run again.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.toyworld.world import sample_clip
from core.training.config import WanExportConfig, WanRefineConfig, WanSoupConfig, WanToyTrainConfig
from core.training.loop import CosineSchedule, StepLoss, TrainingLoop, TrainingState, atomic_save
from core.training.losses import box_loss_weights
from core.training.toy_data import MAX_TRAIN_ENTITIES, clip_sampler, foreground_weights, frames_to_tensor, phrase_vocabulary

if TYPE_CHECKING:
    from diffusers import WanTransformer3DModel

EMA_DECAY = 0.999
DATA_MINUTES = 30  # what encoding 2,000 clips may take on a 2-core CPU: the data part starts only with this much time left


def random_frame_clips(
    rng: np.random.Generator, clips: int, frames: int, crop: int | None = None, min_side: float = 0.18
) -> tuple[np.ndarray, list[str]]:
    """``clips`` runs of ``frames`` consecutive random toy frames at 128x128, each run optionally
    cut to one random ``crop`` x ``crop`` window (the autoencoder is convolutional: it trains on
    crops at a quarter of the cost and encodes whole frames). Shapes' sides start at ``min_side``
    of the frame (:func:`core.toyworld.world.sample_clip`).

    Returns:
        (frames (clips, frames, side, side, 3) uint8 with side ``crop`` or 128, the clips' background names).
    """
    from core.models.toy_wan import FRAME_SIZE

    runs, backgrounds = [], []
    for _ in range(clips):
        clip = sample_clip(rng, num_frames=2 * frames, size=FRAME_SIZE, min_side=min_side)
        start = int(rng.integers(0, frames + 1))
        run = clip.frames[start : start + frames]
        if crop is not None and crop < FRAME_SIZE:
            y, x = (int(v) for v in rng.integers(0, FRAME_SIZE - crop + 1, size=2))
            run = run[:, y : y + crop, x : x + crop]
        runs.append(run)
        backgrounds.append(clip.background)
    return np.stack(runs), backgrounds


SHEET_SIDES = (0.1, 0.22)
"""Box sides, as shares of the frame, of :func:`small_shape_frames`' shapes: the small end of what
plans draw (0.13 and up), where the autoencoder loses stars and rings."""


FAINT_OUTLINE = 64.0
"""RGB distance (0-255 a channel) below which a colour's outline (the colour times the toy world's
``OUTLINE_SCALE``) counts as faint on a background: at most 24 units above the detector's
``FOREGROUND_DISTANCE`` of 40, so a decoder that blurs it by a little drops it out of the silhouette.
Five of the 48 colour/background pairs: blue on the night (48) and the ocean (51), purple on the
night (52), yellow (56) and white (60) on the grass."""

FAINT_SIDES = (0.12, 0.3)
"""Box sides, as shares of the frame, of faint sheets' shapes (:func:`faint_pairs`): the sizes plans
draw, where a star's points are outline only."""


def faint_pairs(limit: float = FAINT_OUTLINE) -> list[tuple[str, str]]:
    """The (colour, background) pairs of the toy palette whose outline colour lies less than ``limit``
    RGB units (Euclidean, 0-255 a channel) from the background: where a star's points, a ring's rim
    and a cross's arms, drawn mostly in outline, barely stand out.

    Returns:
        A list of (key of ``COLORS``, key of ``BACKGROUNDS``), in the palette's order; empty when ``limit`` is
        below every pair's distance (48 at the closest).
    """
    from core.toyworld.world import BACKGROUNDS, COLORS, OUTLINE_SCALE

    return [
        (color, background)
        for color, rgb in COLORS.items()
        for background, behind in BACKGROUNDS.items()
        if np.linalg.norm(np.array(rgb, dtype=np.float64) * OUTLINE_SCALE - np.array(behind, dtype=np.float64)) < limit
    ]


def small_shape_frames(
    rng: np.random.Generator, count: int, sides: tuple[float, float] = SHEET_SIDES, pairs: list[tuple[str, str]] | None = None,
    cells: tuple[int, int] = (3, 4),
) -> tuple[np.ndarray, list[str]]:
    """``count`` 128x128 frames each holding a sheet of small exact shapes.

    Random training clips (:func:`random_frame_clips`) hold one to three shapes a frame with sides
    up to 0.42, so a star or ring as small as a plan may draw it (0.13-0.2 of the frame, 16-26 px)
    is rare in them, and the decoder draws such shapes as blobs although the latents still tell
    the kinds apart (``benchmarks/latent_probe.py``). Here each frame has a random background and a
    3x3 or 4x4 grid of cells; each cell holds, with probability 0.8, one shape of a random kind and
    colour whose box side is drawn from ``sides`` (stretched 0.8-1.25 per axis, kept inside the
    cell) at a random place in the cell, so shapes never overlap.

    Args:
        count: frames, >= 0. sides: (smallest, largest) box side, shares of the frame in (0, 1 / cells[1]].
        pairs: (colour, background) pairs the sheets are limited to (e.g. :func:`faint_pairs`): each
            frame's background is that of a random pair, and each shape's colour one of the colours paired
            with it; None: any colour on any background (the random stream of earlier versions).
        cells: (fewest, most) cells a side of the grid, drawn per frame.

    Returns:
        (frames (count, 128, 128, 3) uint8, the frames' background names).
    """
    from core.models.toy_wan import FRAME_SIZE
    from core.toyworld.world import BACKGROUNDS, COLORS, KINDS, ToyObject, render_frame

    frames, backgrounds = [], []
    for _ in range(count):
        background = str(rng.choice(list(BACKGROUNDS))) if pairs is None else pairs[int(rng.integers(len(pairs)))][1]
        colors = list(COLORS) if pairs is None else [c for c, b in pairs if b == background]
        grid = int(rng.integers(cells[0], cells[1] + 1))
        cell = 1.0 / grid
        objects = []
        for row in range(grid):
            for col in range(grid):
                if rng.random() >= 0.8:
                    continue
                side = rng.uniform(*sides)
                w, h = (min(side * rng.uniform(0.8, 1.25), cell) for _ in range(2))
                x0, y0 = col * cell + rng.uniform(0.0, cell - w), row * cell + rng.uniform(0.0, cell - h)
                objects.append(ToyObject(str(rng.choice(KINDS)), str(rng.choice(colors)), (x0, y0, x0 + w, y0 + h)))
        frames.append(render_frame(background, objects, FRAME_SIZE))
        backgrounds.append(background)
    return np.stack(frames) if frames else np.zeros((0, FRAME_SIZE, FRAME_SIZE, 3), np.uint8), backgrounds


PATCH_MIX = (0.2, 0.7)
"""How far, as a share of the way, :func:`patch_mixed_frames`' patches move toward a neighbouring
palette colour: past half way, a patch alone would decode as the other colour."""


def patch_mixed_frames(
    rng: np.random.Generator, count: int, neighbours: dict[str, dict[str, list[str]]], min_side: float = 0.12, latent_factor: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``count`` one-frame random clips, each drawn twice, for teaching the decoder that an object is one colour.

    The denoiser's latents sometimes give part of an object the code of a neighbouring palette
    colour (a pink ball with a red patch, an orange diamond with a yellow one); the decoder draws
    the patch, and the detector counts it as a second object. Here the frontmost object of each frame (frame
    ``a``) is redrawn in one of its colour's ``neighbours`` on that background (frame ``b``), and a
    patch of the latent cells its box touches is chosen: a rectangle of 0.3-0.7 of them a side (at
    least one cell, never all of them), at a random place among them, as an (h, w) mask of the latent grid. The caller mixes the latents,
    ``z_a + t * mask * (z_b - z_a)`` with ``t`` in :data:`PATCH_MIX`, and asks for frame ``a``.

    Args:
        count: frames, >= 0. neighbours: :func:`core.training.palette.palette_neighbours`' table.
        min_side: smallest shape side, a share of the frame (:func:`core.toyworld.world.sample_clip`).
        latent_factor: pixels per latent cell (the autoencoder's ``scale_factor_spatial``), 4 or 8.

    Returns:
        (frames ``a`` (count, 128, 128, 3) uint8, frames ``b`` (count, 128, 128, 3) uint8,
        masks (count, 1, 128 / latent_factor, 128 / latent_factor) float32 in {0, 1}, background names).
    """
    from dataclasses import replace

    from core.models.toy_wan import FRAME_SIZE
    from core.toyworld.world import ToyObject, render_frame

    cells = FRAME_SIZE // latent_factor
    drawn, recoloured, masks, backgrounds = [], [], np.zeros((count, 1, cells, cells), np.float32), []
    for i in range(count):
        clip = sample_clip(rng, num_frames=1, size=FRAME_SIZE, min_side=min_side)
        objects = [ToyObject(track.kind, track.colors[0], track.boxes[0]) for track in clip.tracks]
        n = len(objects) - 1  # the frontmost (drawn last), so no other object hides the patch
        swapped = list(objects)
        swapped[n] = replace(objects[n], color=str(rng.choice(neighbours[clip.background][objects[n].color])))
        (r0, r1), (c0, c1) = ((int(lo * cells), int(np.ceil(hi * cells))) for lo, hi in (objects[n].box[1::2], objects[n].box[0::2]))
        h, w = (max(1, min(span - 1, round(span * rng.uniform(0.3, 0.7)))) for span in (r1 - r0, c1 - c0))  # never all of it
        top, left = r0 + int(rng.integers(0, r1 - r0 - h + 1)), c0 + int(rng.integers(0, c1 - c0 - w + 1))
        masks[i, 0, top : top + h, left : left + w] = 1.0
        drawn.append(clip.frames[0])
        recoloured.append(render_frame(clip.background, swapped, FRAME_SIZE))
        backgrounds.append(clip.background)
    empty = np.zeros((0, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    return (np.stack(drawn) if count else empty), (np.stack(recoloured) if count else empty), masks, backgrounds


def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """(B, F, H, W, 3) uint8 -> (B, 3, F, H, W) float32 in [-1, 1], a video as FrameAutoencoderKL.encode takes it."""
    b, f = frames.shape[:2]
    images = frames_to_tensor(frames.reshape(b * f, *frames.shape[2:]))  # (B * F, 3, H, W)
    return images.reshape(b, f, *images.shape[1:]).permute(0, 2, 1, 3, 4)


def train_wan_vae(run: Path, cfg: WanToyTrainConfig, time_limit_s: float) -> bool:
    """Train the autoencoder (part 1); returns whether ``run/vae`` is complete.

    AdamW at ``cfg.vae_lr`` with a cosine decay to 0; stops early (checkpointed) after
    ``time_limit_s`` seconds.
    """
    from core.models.toy_wan import build_toy_wan_vae

    if (run / "vae" / "config.json").exists():
        return True
    torch.manual_seed(cfg.seed)
    vae = build_toy_wan_vae(cfg.latent_factor)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    loop = TrainingLoop(
        "vae", TrainingState({"model": vae}, optimizer, generator=generator, rng=rng), list(vae.parameters()), CosineSchedule(cfg.vae_steps),
        checkpoint=run / "vae_ckpt.pt", checkpoint_every=cfg.checkpoint_every, clip_grad_norm=1.0, log=run / "vae_loss.csv",
        time_limit_s=time_limit_s,
    )
    loop.resume()
    vae.train()

    def batch_loss(step: int) -> StepLoss:
        frames, backgrounds = random_frame_clips(rng, cfg.vae_batch, 1, cfg.vae_crop, cfg.min_side)
        frames = frames[:, 0]  # (B, crop, crop, 3): one frame of each clip
        images = frames_to_tensor(frames)
        weight = foreground_weights(frames, backgrounds, cfg.vae_foreground_weight)
        posterior = vae.encode(images).latent_dist
        latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        recon = vae.decode(latents).sample
        l1 = (weight * (recon - images).abs()).mean()
        mse = (weight * (recon - images) ** 2).mean()
        kl = 0.5 * (posterior.mean**2 + posterior.var - 1.0 - posterior.logvar).mean()
        return StepLoss(l1 + mse + 1e-5 * kl, {"l1": l1, "mse": mse, "kl": kl})

    loop.run(batch_loss)
    if not loop.finished:
        return False
    vae.eval()
    mean, std = latent_statistics(vae, np.random.default_rng(cfg.seed + 1), cfg.stats_frames, cfg.min_side)
    vae.register_to_config(latents_mean=mean, latents_std=std)
    vae.save_pretrained(run / "vae")
    return True


def image_differences(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical neighbour differences of (N, C, H, W) images: (N, C, H, W - 1) and (N, C, H - 1, W)."""
    return images[..., :, 1:] - images[..., :, :-1], images[..., 1:, :] - images[..., :-1, :]


def outline_weights(frames: np.ndarray, backgrounds: list[str], foreground_weight: float, boundary_weight: float, width: int = 3) -> torch.Tensor:
    """Per-pixel loss weights: ``foreground_weight`` on shape pixels (:func:`foreground_weights`), 1 on
    the background, and ``foreground_weight * boundary_weight`` on every pixel within ``width`` pixels of
    a shape's outline, inside or outside. The outside counts as much as the inside: a haze of the
    shape's colour on the background around it fills a star's notches and a ring's hole.

    Args:
        frames: (N, H, W, 3) uint8; backgrounds: their background names.

    Returns:
        torch.Tensor of shape (N, 1, H, W), float32.
    """
    from scipy import ndimage

    weights = foreground_weights(frames, backgrounds, foreground_weight)
    shape = weights[:, 0].numpy() > 1.0  # (N, H, W) shape pixels
    structure = np.ones((1, 2 * width + 1, 2 * width + 1), dtype=bool)
    band = torch.from_numpy(ndimage.binary_dilation(shape, structure) & ~ndimage.binary_erosion(shape, structure))[:, None]
    return torch.where(band, foreground_weight * boundary_weight, weights)


SHIFT_PATCH = 32  # pixels: side of the patches that each pick their own shift in shift_tolerant_terms


def shift_tolerant_terms(
    recon: torch.Tensor, images: torch.Tensor, weight: torch.Tensor, edge_weight: float, tolerance: int, patch: int = SHIFT_PATCH,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The decoder's weighted L1, MSE and edge terms, each ``patch`` x ``patch`` patch scored against
    the drawn frame moved by whichever shift of at most ``tolerance`` pixels per axis fits it best.

    A decoder unsure by a pixel where a small star's points lie draws, under per-pixel losses, the
    mean of the star's possible positions: points faded below the detector's threshold and notches
    filled (at side 0.15, about 14 of a star's 131 foreground pixels lost and 15 gained). Scored
    against its best-fitting shift, a sharp star a pixel off costs little and the blur costs more,
    so the decoder can commit to one position. The shifts are ``torch.roll``s (the frame wraps by at
    most ``tolerance`` pixels at its border, where the toy world's backgrounds are flat).

    Args:
        recon, images: (N, 3, H, W) in [-1, 1], H and W multiples of ``patch``.
        weight: (N, 1, H, W) per-pixel loss weights of ``images`` (:func:`outline_weights`), moved with them.
        edge_weight: the edge term's weight in the sum each patch minimises.
        tolerance: the largest shift in pixels per axis, >= 0 (0: the plain terms).

    Returns:
        ``(l1, mse, edge)`` scalars; at ``tolerance`` 0 the means of :func:`tune_autoencoder`'s plain terms.
    """
    shifts = [(dy, dx) for dy in range(-tolerance, tolerance + 1) for dx in range(-tolerance, tolerance + 1)]
    height, width = images.shape[-2:]
    rx, ry = image_differences(recon)
    per_shift = []  # per shift: (3, N, h, w) patch means of the L1, MSE and edge maps
    for dy, dx in shifts:
        target, w = (torch.roll(t, (dy, dx), dims=(2, 3)) for t in (images, weight))
        ix, iy = image_differences(target)
        wx, wy = torch.maximum(w[..., :, 1:], w[..., :, :-1]), torch.maximum(w[..., 1:, :], w[..., :-1, :])
        edge = 0.5 * (  # (N, 1, H, W), scaled so that its mean is the plain term's
            torch.nn.functional.pad((wx * (rx - ix).abs()).mean(1, keepdim=True), (0, 1)) * width / (width - 1)
            + torch.nn.functional.pad((wy * (ry - iy).abs()).mean(1, keepdim=True), (0, 0, 0, 1)) * height / (height - 1)
        )
        maps = torch.cat([(w * (recon - target).abs()).mean(1, keepdim=True), (w * (recon - target) ** 2).mean(1, keepdim=True), edge], 1)
        per_shift.append(torch.nn.functional.avg_pool2d(maps, patch).transpose(0, 1))  # (3, N, h, w)
    terms = torch.stack(per_shift, 2)  # (3, N, shifts, h, w)
    best = (terms[0] + terms[1] + edge_weight * terms[2]).argmin(1, keepdim=True)  # (N, 1, h, w): each patch's shift
    chosen = terms.gather(2, best.unsqueeze(0).expand(3, -1, -1, -1, -1)).squeeze(2)  # (3, N, h, w)
    l1, mse, edge = chosen.mean(dim=(1, 2, 3))
    return l1, mse, edge


def lost_contrast(recon: torch.Tensor, images: torch.Tensor, backgrounds: list[str], shape: torch.Tensor) -> torch.Tensor:
    """Mean share of their contrast that shape pixels lose in the reconstruction: over the pixels of
    ``shape``, ``relu(1 - |recon - b| / |image - b|)`` with ``b`` the frame's background colour and
    ``|.|`` the RGB Euclidean norm (the distance the detector thresholds). Relative, so a star's
    points, drawn in an outline colour a few RGB units from a dark background, weigh as much as its
    bright fill; one-sided, so a shape may stand out more than drawn but not fade into the background.

    Args:
        recon, images: (N, 3, H, W) in [-1, 1]; backgrounds: the N frames' background names;
        shape: (N, 1, H, W) bool, the pixels that belong to a shape.

    Returns:
        A scalar tensor in [0, 1] (0 when no pixel fades or ``shape`` is empty).
    """
    from core.toyworld.world import BACKGROUNDS

    background = torch.tensor([BACKGROUNDS[b] for b in backgrounds], dtype=images.dtype).view(-1, 3, 1, 1) / 127.5 - 1.0
    drawn = (images - background).norm(dim=1, keepdim=True).clamp(min=1e-3)
    kept = (recon - background).norm(dim=1, keepdim=True)
    faded = torch.relu(1.0 - kept / drawn)
    return (faded * shape).sum() / shape.sum().clamp(min=1)


def silhouette_margin(
    recon: torch.Tensor, images: torch.Tensor, backgrounds: list[str], margin: float = 8.0, frames: torch.Tensor | None = None,
) -> torch.Tensor:
    """How far the reconstruction's silhouette is from crossing the detector's foreground test the
    wrong way, per drawn foreground pixel: a hinge on each pixel's RGB distance from the background
    (0-255 a channel) around :data:`core.toyworld.detect.FOREGROUND_DISTANCE` (``T``, 40).

    With ``d`` a pixel's distance as drawn and ``k`` as reconstructed: a foreground pixel (``d > T``)
    costs ``relu(min(d, T + margin) - k) / margin``, a background one (``d <= T``)
    ``relu(k - max(d, T - margin)) / margin``. For a foreground pixel ``k`` is measured along the
    drawn colour's direction from the background (the reconstruction's offset projected on the
    drawing's), so a point cannot stay clear of the threshold by turning another colour, a pale
    halo on the sky say; for a background pixel it is the whole distance, as the detector sees it.
    So a star's point drawn 48 units from the night sky (a blue outline) costs nothing while it stays
    48 away and a full unit when it fades to 40, where the L1 and MSE terms see a difference of 8 of
    510 a channel; a haze in a notch costs once it rises within ``margin`` of the threshold. Pixels
    well clear of the threshold both ways cost nothing.

    Args:
        recon, images: (N, 3, H, W) in [-1, 1]; backgrounds: the N frames' background names.
        margin: RGB units, > 0, a pixel should stay clear of the threshold on its drawn side.
        frames: (N,) bool, the frames whose pixels cost (None: all). The count divided by is still
            that of every frame's drawn foreground pixels, so a pixel of a chosen frame costs what it
            would cost with every frame chosen.

    Returns:
        A scalar tensor >= 0: the summed hinge over the drawn foreground pixels' count (0 when none).
    """
    from core.toyworld.detect import FOREGROUND_DISTANCE
    from core.toyworld.world import BACKGROUNDS

    background = torch.tensor([BACKGROUNDS[b] for b in backgrounds], dtype=images.dtype).view(-1, 3, 1, 1) / 127.5 - 1.0
    offset = (images - background) * 127.5  # (N, 3, H, W) RGB units
    drawn = offset.norm(dim=1)  # (N, H, W)
    along = ((recon - background) * 127.5 * offset).sum(1) / drawn.clamp(min=1e-3)  # the reconstruction's contrast along the drawn colour
    foreground = drawn > FOREGROUND_DISTANCE
    lost = torch.relu(drawn.clamp(max=FOREGROUND_DISTANCE + margin) - along)
    gained = torch.relu((recon - background).norm(dim=1) * 127.5 - drawn.clamp(min=FOREGROUND_DISTANCE - margin))
    cost = torch.where(foreground, lost, gained)  # (N, H, W)
    if frames is not None:
        cost = cost * frames.view(-1, 1, 1)
    return cost.sum() / margin / foreground.sum().clamp(min=1)


def tune_autoencoder(
    run: Path, cfg: WanToyTrainConfig, time_limit_s: float, *, part: str, source: str, steps: int, lr: float, encoder: bool,
    pairs: dict | None = None, sample_share: float = 0.0, pair_outline_weight: float | None = None, small_share: float = 0.0,
    patch_mix_share: float = 0.0, adversarial_weight: float = 0.0, adversarial_start: int = 0, shift_tolerance: int = 0,
    faint_share: float = 0.0, silhouette_weight: float = 0.0, faint_outline: float = 64.0, silhouette_frames: str = "all",
) -> bool:
    """Fine-tune the frame autoencoder of ``run/source`` on whole 128x128 frames (parts 2 and 3);
    returns whether ``run/part`` is complete.

    Each step reconstructs posterior samples of ``cfg.tune_batch`` random frames; the loss is the
    autoencoder part's L1 + MSE, weighted by :func:`outline_weights` (``cfg.vae_foreground_weight``,
    ``cfg.boundary_weight``), plus ``cfg.edge_weight`` times the weighted L1
    between the reconstruction's and the frame's neighbour differences (:func:`image_differences`)
    and the small KL term; decoder-only, plus ``cfg.visibility_weight`` times :func:`lost_contrast`.
    AdamW at ``lr``, cosine to 0, over ``steps``; stops early (checkpointed) after ``time_limit_s``
    seconds; checkpoints in ``run/<part>_ckpt.pt``, loss in ``run/<part>_loss.csv``.

    Args:
        encoder: train the encoder too (the latents change: their statistics are measured again
            for the saved config); else only the decoder, so latents cached from ``run/source`` stay valid.
            A decoder-only part first deepens the decoder to ``cfg.decoder_layers`` layers a level
            (:func:`core.models.toy_wan.deepen_decoder`) when that is above the source's, and widens its
            full-resolution level to ``cfg.decoder_width`` channels (:func:`core.models.toy_wan.widen_decoder`)
            when that is above the source's.
        pairs: decoder-only: the denoiser's sampled latents beside the frames drawn for the same
            layouts (:func:`core.training.refine.sample_pairs`); ``round(cfg.tune_batch * sample_share)``
            frames of every step decode one of those latents and are scored against the drawn frame,
            the rest are random frames' encodings as without ``pairs``.
        pair_outline_weight: the loss weight, in sampled frames, of the pixels within 3 px of a
            drawn outline (where the denoiser may have put the edge a pixel or two away, so the
            drawn edge is no exact target); None: weighted as in encodings. Shape pixels there also
            leave the lost-contrast term.
        small_share: decoder-only: the share, in [0, 1], of every step's encoded frames (those not
            taken by ``pairs``) that are sheets of small exact shapes (:func:`small_shape_frames`)
            instead of random clips' frames; 0 keeps the random stream of earlier versions.
        patch_mix_share: decoder-only: the share, in [0, 1 - ``small_share``], of those frames whose
            latents have a patch of one object moved toward a neighbouring palette colour
            (:func:`patch_mixed_frames`, neighbours by :func:`core.training.palette.palette_neighbours`),
            to be decoded as drawn, one colour.
        adversarial_weight: decoder-only: above 0, a patch discriminator
            (:class:`core.training.adversarial.PatchDiscriminator`) trains beside the decoder, one hinge
            step a step on the batch's frames against its decodings (AdamW at ``lr``, betas 0.5/0.9, constant),
            and from step ``adversarial_start`` on the decoder's loss adds ``adversarial_weight`` times
            the adaptive weight (:func:`core.training.adversarial.adaptive_weight`) times its adversarial
            loss; the discriminator and its optimizer are in the checkpoint. 0: none (earlier versions).
        adversarial_start: the steps, >= 0, the discriminator trains alone first.
        shift_tolerance: decoder-only: above 0, the L1, MSE and edge terms score each 32-pixel patch
            against the drawn frame moved by its best-fitting shift of up to this many pixels per axis
            (:func:`shift_tolerant_terms`); 0: as drawn (earlier versions).
        faint_share: decoder-only: the share, in [0, 1 - ``small_share`` - ``patch_mix_share``], of the
            encoded frames that are faint sheets: 2x2 or 3x3 grids of shapes (sides :data:`FAINT_SIDES`)
            in the colour/background pairs of :func:`faint_pairs`, where outlines barely clear the
            detector's threshold; 0: none (earlier versions). Rounded, and never more than the frames
            the sheets and patch-mixed frames leave.
        faint_outline: the RGB distance below which a pair counts as faint (:func:`faint_pairs`' ``limit``).
        silhouette_weight: decoder-only: the weight of :func:`silhouette_margin` in the loss (0: off).
        silhouette_frames: the frames the hinge acts on: ``"all"`` (every frame of the step), or
            ``"faint"`` (the faint sheets alone: exact drawings, so no sampled pair's misplaced
            target or random frame is pushed by it). Per pixel, a faint sheet costs the same either way.
    """
    from core.models.toy_wan import FrameAutoencoderKL, deepen_decoder, widen_decoder
    from core.training.adversarial import PatchDiscriminator, adaptive_weight, generator_loss, hinge_discriminator_loss

    if (run / part / "config.json").exists():
        return True
    torch.manual_seed(cfg.seed)
    vae = FrameAutoencoderKL.from_pretrained(run / source)
    if not encoder and cfg.decoder_layers > (vae.config.decoder_layers_per_block or vae.config.layers_per_block):
        vae = deepen_decoder(vae, cfg.decoder_layers)
    if not encoder and cfg.decoder_width > (vae.config.decoder_block_out_channels or vae.config.block_out_channels)[0]:
        vae = widen_decoder(vae, cfg.decoder_width)
    vae.requires_grad_(encoder)
    tuned = list(vae.parameters()) if encoder else [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for param in tuned:
        param.requires_grad_(True)
    vae.train()
    if not encoder:
        vae.encoder.eval()
    optimizer = torch.optim.AdamW(tuned, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed + 3)
    generator = torch.Generator().manual_seed(cfg.seed + 3)
    modules, aux = {"model": vae}, {}
    adversarial = adversarial_weight > 0 and not encoder
    if adversarial:
        discriminator = PatchDiscriminator()
        modules["discriminator"] = discriminator
        aux["discriminator"] = torch.optim.AdamW(discriminator.parameters(), lr=lr, betas=(0.5, 0.9), weight_decay=0.0)
    loop = TrainingLoop(
        part, TrainingState(modules, optimizer, generator=generator, rng=rng, aux_optimizers=aux), tuned, CosineSchedule(steps),
        checkpoint=run / f"{part}_ckpt.pt", checkpoint_every=cfg.checkpoint_every, clip_grad_norm=1.0, log=run / f"{part}_loss.csv",
        time_limit_s=time_limit_s,
    )
    loop.resume()

    sampled = round(cfg.tune_batch * sample_share) if pairs is not None and not encoder else 0
    sheets = round((cfg.tune_batch - sampled) * small_share) if not encoder else 0
    mixed = round((cfg.tune_batch - sampled) * patch_mix_share) if not encoder else 0
    faint = min(round((cfg.tune_batch - sampled) * faint_share), cfg.tune_batch - sampled - sheets - mixed) if not encoder else 0
    plain = cfg.tune_batch - sampled - sheets - mixed - faint
    if mixed:
        from core.training.palette import palette_neighbours

        with torch.no_grad():
            neighbours = palette_neighbours(vae)

    def batch_loss(step: int) -> StepLoss:
        frames, backgrounds = small_shape_frames(rng, 0)  # (0, 128, 128, 3): no random clips when the other items fill the batch
        if plain:
            frames, backgrounds = random_frame_clips(rng, plain, 1, min_side=cfg.min_side)
            frames = frames[:, 0]  # (plain, 128, 128, 3)
        if sheets:
            small, small_backgrounds = small_shape_frames(rng, sheets)
            frames, backgrounds = np.concatenate([frames, small]), [*backgrounds, *small_backgrounds]
        if faint:
            sheet, sheet_backgrounds = small_shape_frames(rng, faint, FAINT_SIDES, faint_pairs(faint_outline), cells=(2, 3))
            frames, backgrounds = np.concatenate([frames, sheet]), [*backgrounds, *sheet_backgrounds]
        if mixed:
            drawn, recoloured, masks, mixed_backgrounds = patch_mixed_frames(rng, mixed, neighbours, cfg.min_side, vae.config.scale_factor_spatial)
            frames, backgrounds = np.concatenate([frames, drawn]), [*backgrounds, *mixed_backgrounds]
        images = frames_to_tensor(frames)
        with torch.set_grad_enabled(encoder):
            posterior = vae.encode(images).latent_dist
            latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        if mixed:  # a patch of one object's cells part of the way toward its recoloured twin's
            with torch.no_grad():
                other = vae.encode(frames_to_tensor(recoloured)).latent_dist.mean
            t = torch.from_numpy(rng.uniform(*PATCH_MIX, size=(mixed, 1, 1, 1))).float()
            latents = torch.cat([latents[:-mixed], latents[-mixed:] + t * torch.from_numpy(masks) * (other - posterior.mean[-mixed:])])
        if sampled:  # the denoiser's latents, to be decoded into the frames drawn for their layouts
            clips = torch.from_numpy(rng.integers(0, len(pairs["latents"]), size=sampled))
            at = torch.from_numpy(rng.integers(0, pairs["latents"].shape[2], size=sampled))
            latents = torch.cat([latents, pairs["latents"][clips, :, at].float()])
            frames = np.concatenate([frames, pairs["frames"][clips, at].numpy()])
            backgrounds = [*backgrounds, *(pairs["backgrounds"][int(c)] for c in clips)]
            images = torch.cat([images, frames_to_tensor(frames[len(images):])])
        weight = outline_weights(frames, backgrounds, cfg.vae_foreground_weight, cfg.boundary_weight)
        shape = foreground_weights(frames, backgrounds, 2.0) > 1.0
        if sampled and pair_outline_weight is not None:
            band = torch.zeros_like(shape)
            band[-sampled:] = weight[-sampled:] == cfg.vae_foreground_weight * cfg.boundary_weight
            weight, shape = torch.where(band, pair_outline_weight, weight), shape & ~band
        recon = vae.decode(latents).sample
        if shift_tolerance and not encoder:
            l1, mse, edge = shift_tolerant_terms(recon, images, weight, cfg.edge_weight, shift_tolerance)
        else:
            l1 = (weight * (recon - images).abs()).mean()
            mse = (weight * (recon - images) ** 2).mean()
            (rx, ry), (ix, iy) = image_differences(recon), image_differences(images)
            wx, wy = torch.maximum(weight[..., :, 1:], weight[..., :, :-1]), torch.maximum(weight[..., 1:, :], weight[..., :-1, :])
            edge = 0.5 * ((wx * (rx - ix).abs()).mean() + (wy * (ry - iy).abs()).mean())
        kl = 0.5 * (posterior.mean**2 + posterior.var - 1.0 - posterior.logvar).mean() if encoder else torch.zeros(())
        faded = torch.zeros(()) if encoder else lost_contrast(recon, images, backgrounds, shape)
        loss = l1 + mse + cfg.edge_weight * edge + cfg.visibility_weight * faded + 1e-5 * kl
        terms = {"l1": l1, "mse": mse, "edge": edge, "faded": faded}
        if silhouette_weight and not encoder:
            chosen = None
            if silhouette_frames == "faint":
                chosen = torch.zeros(len(images), dtype=torch.bool)
                chosen[plain + sheets:plain + sheets + faint] = True
            margin = silhouette_margin(recon, images, backgrounds, frames=chosen)
            loss, terms = loss + silhouette_weight * margin, {**terms, "silhouette": margin}
        if not adversarial:
            return StepLoss(loss, terms)
        discriminator.requires_grad_(True)  # one hinge step on drawn frames against this batch's decodings
        critic = hinge_discriminator_loss(discriminator(images), discriminator(recon.detach()))
        aux["discriminator"].zero_grad(set_to_none=True)
        critic.backward()
        aux["discriminator"].step()
        discriminator.requires_grad_(False)  # the decoder's term reaches the decoder alone
        fooled, balance = torch.zeros(()), torch.zeros(())
        if step >= adversarial_start:
            fooled = generator_loss(discriminator(recon))
            balance = adversarial_weight * adaptive_weight(loss, fooled, vae.decoder.conv_out.weight)
            loss = loss + balance * fooled
        return StepLoss(loss, {**terms, "discriminator": critic.detach(), "adversarial": fooled.detach(), "adaptive": balance})

    loop.run(batch_loss)
    if not loop.finished:
        return False
    vae.eval()
    if encoder:
        mean, std = latent_statistics(vae, np.random.default_rng(cfg.seed + 1), cfg.stats_frames, cfg.min_side)
        vae.register_to_config(latents_mean=mean, latents_std=std)
    vae.save_pretrained(run / part)
    return True


@torch.no_grad()
def latent_statistics(vae, rng: np.random.Generator, count: int = 512, min_side: float = 0.18) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means of about ``count`` random 128x128 frames
    (``latents_mean`` and ``latents_std`` of the autoencoder's config)."""
    frames, _ = random_frame_clips(rng, max(1, count // 5), 5, min_side=min_side)
    latents = torch.cat([vae.encode(video_tensor(frames[i : i + 8])).latent_dist.mean for i in range(0, len(frames), 8)])
    channels = latents.transpose(0, 1).flatten(1)  # (C, everything else)
    return channels.mean(1).tolist(), channels.std(1).tolist()


def encoding_pipeline(vae, transformer=None):
    """A :class:`core.pipelines.wan.WanLayoutPipeline` of the miniature's parts, whose text encoding
    (MiniLM in place of UMT5) the data part and inference share."""
    from core.models.toy_wan import build_toy_wan_scheduler, build_toy_wan_transformer
    from core.pipelines.wan import WanLayoutPipeline
    from core.text import load_minilm

    text_encoder, tokenizer = load_minilm()
    return WanLayoutPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=build_toy_wan_scheduler(),
        transformer=transformer if transformer is not None else build_toy_wan_transformer(),
    )


def merge_wan_datasets(run: Path, sources: list[Path]) -> dict:
    """Join the clips cached by earlier ``wan-toy`` runs ``sources`` into ``run/data.pt`` (part 4
    without encoding): e.g. the 6,000 clips of a ``--seed 0`` run and the 6,000 other clips of a
    ``--seed 1`` run make one set of 12,000. Written atomically; an existing ``run/data.pt`` is loaded
    instead.

    Every source must have been encoded by the run's own autoencoder: its ``decoder/config.json``
    holds the same ``latents_mean`` / ``latents_std`` as ``run/decoder``'s (cached latents are
    normalised with them), and its phrase and empty-prompt embeddings are the same (the same text
    encoder and phrase vocabulary).

    Returns:
        The joined dict, as :func:`build_wan_dataset` returns it: ``latents`` (sum of clips, 16, F, 16,
        16) float16 and the other per-clip fields concatenated in the order of ``sources``.

    Raises:
        FileNotFoundError: a source lacks ``data.pt`` or ``decoder/config.json``.
        ValueError: fewer than one source, or a source encoded with another autoencoder or text
            encoder, or with another clip length (the message names ``--data-from`` and the source).
    """
    path = run / "data.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    check_data_sources(sources)
    ours = json.loads((run / "decoder" / "config.json").read_text())
    parts = []
    for source in sources:
        theirs = json.loads((source / "decoder" / "config.json").read_text())
        if any(theirs.get(key) != ours.get(key) for key in ("latents_mean", "latents_std")):
            raise ValueError(f"--data-from: {source} was encoded by another autoencoder (its latents_mean / latents_std differ from {run / 'decoder'}'s)")
        part = torch.load(source / "data.pt", weights_only=False)
        if parts and not (torch.equal(part["phrase_embeds"], parts[0]["phrase_embeds"]) and torch.equal(part["empty_prompt"], parts[0]["empty_prompt"])):
            raise ValueError(f"--data-from: {source} was encoded with another text encoder or phrase vocabulary than {sources[0]}")
        if parts and part["latents"].shape[1:] != parts[0]["latents"].shape[1:]:
            raise ValueError(
                f"--data-from: {source} holds clips of shape {tuple(part['latents'].shape[1:])}, {sources[0]} of {tuple(parts[0]['latents'].shape[1:])}"
            )
        parts.append(part)
    data = {key: torch.cat([part[key] for part in parts]) for key in ("latents", "prompt_embeds", "boxes", "masks", "phrase_ids")}
    data |= {"empty_prompt": parts[0]["empty_prompt"], "phrase_embeds": parts[0]["phrase_embeds"]}
    data["captions"] = [caption for part in parts for caption in part["captions"]]
    atomic_save(data, path)
    return data


def check_data_sources(sources: list[Path]) -> None:
    """Check that each of ``sources`` is a ``wan-toy`` run with cached clips (``data.pt``) and the
    autoencoder that encoded them (``decoder/config.json``).

    Raises:
        ValueError: ``sources`` is empty.
        FileNotFoundError: a source lacks one of the two files (its path is the error's ``filename``).
    """
    if not sources:
        raise ValueError("--data-from: name at least one run folder whose data.pt to join")
    for source in sources:
        for needed in (source / "data.pt", source / "decoder" / "config.json"):
            if not needed.is_file():
                raise FileNotFoundError(2, "no such file", str(needed))


@torch.no_grad()
def build_wan_dataset(run: Path, cfg: WanToyTrainConfig) -> dict:
    """Generate, encode and cache the transformer's clips (part 4); an existing ``run/data.pt`` is loaded.

    Returns:
        A dict with
        ``latents``: (clips, 16, F, 16, 16) float16, normalised with the autoencoder's ``latents_mean`` / ``latents_std``;
        ``prompt_embeds``: (clips, PROMPT_TOKENS, 384) float16; ``empty_prompt``: (PROMPT_TOKENS, 384) float32;
        ``boxes``: (clips, F, 3, 4) float32 xyxy in [0, 1]; ``masks``: (clips, F, 3) float32 0/1;
        ``phrase_ids``: (clips, F, 3) int64 into ``phrase_embeds`` (64, 384) float32 (:func:`phrase_vocabulary`);
        ``captions``: list of clips str.
    """
    from tqdm import tqdm

    from core.models.toy_wan import FRAME_SIZE, LATENT_CHANNELS, PROMPT_TOKENS, FrameAutoencoderKL

    path = run / "data.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    vae = FrameAutoencoderKL.from_pretrained(run / "decoder").eval()  # the shipped autoencoder; its encoder and latent statistics are refine's
    pipe = encoding_pipeline(vae)
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    vocab = phrase_vocabulary()
    index = {p: i for i, p in enumerate(vocab)}
    rng = np.random.default_rng(cfg.seed + 2)
    n, f, e, side = cfg.clips, cfg.clip_frames, MAX_TRAIN_ENTITIES, FRAME_SIZE // vae.config.scale_factor_spatial
    latents = torch.zeros(n, LATENT_CHANNELS, f, side, side, dtype=torch.float16)
    boxes, masks = torch.zeros(n, f, e, 4), torch.zeros(n, f, e)
    phrase_ids = torch.zeros(n, f, e, dtype=torch.long)
    captions: list[str] = []
    chunk = 4
    for start in tqdm(range(0, n, chunk), desc="data", file=sys.stdout, mininterval=10):
        clips = [
            sample_clip(rng, num_frames=f, size=FRAME_SIZE, min_side=cfg.min_side, group_share=cfg.group_share)
            for _ in range(min(chunk, n - start))
        ]
        z = vae.encode(video_tensor(np.stack([c.frames for c in clips]))).latent_dist.mean  # (B, C, F, h, w)
        latents[start : start + len(clips)] = ((z - mean) / std).half()
        for i, clip in enumerate(clips):
            captions.append(clip.caption)
            for j, track in enumerate(clip.tracks):
                for t in range(f):
                    phrase_ids[start + i, t, j] = index[f"{track.colors[t]} {track.kind}"]
                    if track.boxes[t] is not None:
                        boxes[start + i, t, j] = torch.tensor(track.boxes[t])
                        masks[start + i, t, j] = 1.0
    prompt_embeds = torch.cat(
        [pipe._get_t5_prompt_embeds(prompt=captions[i : i + 256], max_sequence_length=PROMPT_TOKENS) for i in range(0, n, 256)]
    )
    data = {
        "latents": latents,
        "prompt_embeds": prompt_embeds.half(),
        "empty_prompt": pipe._get_t5_prompt_embeds(prompt=[""], max_sequence_length=PROMPT_TOKENS)[0].float(),
        "boxes": boxes,
        "masks": masks,
        "phrase_ids": phrase_ids,
        "phrase_embeds": pipe.encode_phrases(vocab, max_sequence_length=PROMPT_TOKENS).float(),
        "captions": captions,
    }
    atomic_save(data, path)
    return data


def flow_matching_loss(
    transformer, adapter, data: dict, idx: torch.Tensor, cfg: WanToyTrainConfig, generator: torch.Generator, frame: torch.Tensor | None = None
) -> StepLoss:
    """Wan's flow-matching loss on the cached clips ``idx`` (B,), with per-clip condition dropout.

    ``frame`` (B,) int picks one frame of each clip: the batch is then B one-frame videos (images,
    latents (B, C, 1, h, w)) with that frame's boxes and phrases and the clip's caption, as Wan trains
    on images and videos together.

    Clips without grounding go first in the batch: the adapter's fusers pass leading rows through
    unchanged (:class:`core.models.layout.GroundedSelfAttention`), as at inference after
    ``layout_alpha`` of the steps and in the unconditional pass.

    The batch is moved to the transformer's device (``data`` stays where it is, the CPU); with
    ``cfg.bf16`` the forward pass runs under that device's bf16 autocast (matmuls in bfloat16;
    weights, gradients, optimizer state and the loss stay float32).

    ``sigma`` is ``s u / (1 + (s - 1) u)`` with ``u`` uniform on [0, 1) and ``s = cfg.timestep_shift``
    (Wan's and SD3's shifted schedule; ``s`` 1: uniform noise levels, above 1: more of them near pure noise).

    Returns:
        StepLoss: the box-weighted MSE between the prediction and ``noise - x_0``; its ``sigma`` is the
        batch's mean noise level, in [0, 1).
    """
    b = len(idx)
    keep_layout = torch.rand(b, generator=generator) >= cfg.drop_layout
    keep_prompt = torch.rand(b, generator=generator) >= cfg.drop_prompt
    order = torch.argsort(keep_layout.int(), stable=True)
    idx, keep_layout, keep_prompt = idx[order], keep_layout[order], keep_prompt[order]
    device = next(transformer.parameters()).device
    x0 = data["latents"][idx].float()  # (B, C, F, h, w)
    boxes, masks, phrase_ids = data["boxes"][idx], data["masks"][idx], data["phrase_ids"][idx]  # (B, F, N, ...)
    if frame is not None:
        rows, frame = torch.arange(b), frame[order]
        x0 = x0[rows, :, frame][:, :, None]  # (B, C, 1, h, w)
        boxes, masks, phrase_ids = boxes[rows, frame][:, None], masks[rows, frame][:, None], phrase_ids[rows, frame][:, None]
    frames, side = x0.shape[2], x0.shape[-1]
    prompts = torch.where(keep_prompt[:, None, None], data["prompt_embeds"][idx].float(), data["empty_prompt"][None])
    noise = torch.randn(x0.shape, generator=generator)  # drawn on the CPU: the same noise on every device
    u = torch.rand(b, generator=generator)
    shift = cfg.timestep_shift
    sigma = shift * u / (1 + (shift - 1) * u)
    x0, noise, sigma, prompts, boxes, masks = (t.to(device) for t in (x0, noise, sigma, prompts, boxes, masks))
    s = sigma.view(b, 1, 1, 1, 1)
    x_t = (1 - s) * x0 + s * noise
    objs = None
    if keep_layout.any():
        phrases = data["phrase_embeds"][phrase_ids[keep_layout]].to(device)  # (G, F, N, 384)
        keep = keep_layout.to(device)
        objs = adapter.grounding_tokens(boxes[keep].flatten(0, 1), masks[keep].flatten(0, 1), phrases.flatten(0, 1))
    with adapter.grounding(objs, frames=frames, aspect=1.0), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        prediction = transformer(hidden_states=x_t, timestep=sigma * 1000, encoder_hidden_states=prompts, return_dict=False)[0]
    prediction = prediction.float()
    weights = box_loss_weights(boxes, masks, side, cfg.box_loss_weight)  # (B, 1, F, h, w)
    mse = (weights * (prediction - (noise - x0)) ** 2).mean()
    return StepLoss(mse, {"sigma": sigma.mean()})


def train_wan_transformer(run: Path, cfg: WanToyTrainConfig, data: dict, time_limit_s: float, init_from: Path | None = None) -> bool:
    """Train transformer + layout adapter (part 5); returns whether the run has done all its steps.

    AdamW (weight decay 0.01) at ``cfg.transformer_lr``, ``cfg.warmup`` warm-up steps, cosine to 10 %,
    gradients clipped at norm 1, EMA decay :data:`EMA_DECAY`, on ``cfg.device``; stops early
    (checkpointed) after ``time_limit_s`` seconds. ``init_from`` (an exported pipeline folder, :func:`initial_weights`)
    gives the starting weights of a run without a checkpoint; a checkpoint wins over it.
    """
    from core.models.wan_adapter import WanLayoutAdapter
    from core.text import MINILM_DIM

    torch.manual_seed(cfg.seed)
    transformer = run_transformer(**asdict(cfg))
    adapter = WanLayoutAdapter.for_transformer(transformer, phrase_dim=MINILM_DIM, gate_init=0.1, depth_slots=MAX_TRAIN_ENTITIES)
    if init_from is not None and not (run / "transformer_ckpt.pt").exists():
        weights = initial_weights(init_from, cfg)
        transformer.load_state_dict(weights["transformer"])
        adapter.load_state_dict(weights["adapter"])
    adapter.attach(transformer)
    transformer.to(cfg.device)
    adapter.to(cfg.device)
    params = list(transformer.parameters()) + list(adapter.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.transformer_lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(cfg.seed)  # on the CPU: batches and noise are drawn there
    loop = TrainingLoop(
        "transformer", TrainingState({"transformer": transformer, "adapter": adapter}, optimizer, generator=generator), params,
        CosineSchedule(cfg.transformer_steps, warmup=cfg.warmup, floor=0.1), checkpoint=run / "transformer_ckpt.pt",
        checkpoint_every=cfg.checkpoint_every, ema_decay=EMA_DECAY, log=run / "loss.csv", time_limit_s=time_limit_s,
    )
    loop.resume()
    transformer.train()
    adapter.train()
    n, f = data["latents"].shape[0], data["latents"].shape[2]
    draw = clip_sampler(data, cfg.oversample, cfg.oversample_weight, generator, "transformer part")

    def batch_loss(step: int) -> StepLoss:
        video = flow_matching_loss(transformer, adapter, data, draw(cfg.transformer_batch), cfg, generator)
        if not cfg.image_batch:
            return video
        clips = draw(cfg.image_batch)
        image = flow_matching_loss(transformer, adapter, data, clips, cfg, generator, frame=torch.randint(0, f, (cfg.image_batch,), generator=generator))
        return StepLoss(video.loss + image.loss, {"sigma": video.terms["sigma"], "video": video.loss, "image": image.loss})

    loop.run(batch_loss)
    return loop.finished


def export_wan_toy(run: Path, target: Path, cfg: WanExportConfig | None = None) -> Path:
    """Write a ``wan-toy`` run as a :class:`core.pipelines.wan.WanLayoutPipeline` folder at ``target``.

    The folder is a diffusers pipeline folder (``model_index.json``, ``vae/``, ``transformer/``,
    ``scheduler/``) plus ``layout_adapter/``; its text encoder and tokenizer are ``null`` (the
    loader supplies the installed MiniLM). Weights are written in float16; the config names the
    toy world's backgrounds (a closed-world model), 128x128 renders and 32-token prompts.

    Args:
        run: the run folder; its ``transformer_ckpt.pt`` may be mid-run (any checkpoint exports). The
            autoencoder is ``run/decoder``: the encoder the cached clips were encoded with (``refine``'s)
            and the tuned decoder.
        cfg: ``ema`` writes the moving average of the weights (default), else the last ones;
            ``guidance_scale`` becomes the model's default; ``autoencoder_only`` writes just
            ``target/vae`` (float16), which a later run takes as ``--autoencoder``.

    Returns:
        ``target``.

    Raises:
        FileNotFoundError: the run lacks ``decoder/`` or ``transformer_ckpt.pt``.
        ValueError: ``cfg.ema`` and the checkpoint keeps no average.
    """
    from core.models.toy_wan import FRAME_SIZE, PROMPT_TOKENS, FrameAutoencoderKL, build_toy_wan_scheduler
    from core.models.wan_adapter import WanLayoutAdapter
    from core.pipelines.wan import WanLayoutPipeline
    from core.text import MINILM_DIM
    from core.toyworld.world import BACKGROUNDS

    cfg = cfg or WanExportConfig()
    vae_dir = run / "decoder"
    if not (vae_dir / "config.json").exists():
        raise FileNotFoundError(f"run: {vae_dir} is missing; finish the run's decoder part first")
    if cfg.autoencoder_only:
        FrameAutoencoderKL.from_pretrained(vae_dir).to(torch.float16).save_pretrained(Path(target) / "vae", safe_serialization=True)
        return Path(target)
    state = torch.load(run / "transformer_ckpt.pt", map_location="cpu", weights_only=False)
    config_path = run / "config.json"
    transformer = run_transformer(**(json.loads(config_path.read_text()) if config_path.exists() else {}))
    transformer.load_state_dict(state["transformer"])
    adapter = WanLayoutAdapter.for_transformer(transformer, phrase_dim=MINILM_DIM, gate_init=0.1, depth_slots=MAX_TRAIN_ENTITIES)
    adapter.load_state_dict(state["adapter"])
    if cfg.ema:
        if "ema" not in state:
            raise ValueError(f"ema: {run / 'transformer_ckpt.pt'} keeps no moving average")
        with torch.no_grad():
            params = list(transformer.parameters()) + list(adapter.parameters())
            for param, shadow in zip(params, state["ema"]["shadow_params"], strict=True):
                param.copy_(shadow)
    pipe = WanLayoutPipeline(
        tokenizer=None, text_encoder=None, vae=FrameAutoencoderKL.from_pretrained(vae_dir), scheduler=build_toy_wan_scheduler(),
        transformer=transformer, default_guidance_scale=cfg.guidance_scale, default_height=FRAME_SIZE, default_width=FRAME_SIZE,
        max_sequence_length=PROMPT_TOKENS, backgrounds=list(BACKGROUNDS),
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(target, safe_serialization=True)
    adapter.to(torch.float16).save_pretrained(Path(target) / "layout_adapter", safe_serialization=True)
    return Path(target)


def run_transformer(layers: int = 4, heads: int = 4, patch: int = 2, **_) -> WanTransformer3DModel:
    """The miniature transformer a run's settings ask for (:func:`core.models.toy_wan.build_toy_wan_transformer`).

    Takes a :class:`WanToyTrainConfig` as a dict (``asdict(cfg)``, or a run's ``config.json``; other
    keys are ignored, missing ones take the defaults of runs made before they existed).
    """
    from core.models.toy_wan import build_toy_wan_transformer

    return build_toy_wan_transformer(num_layers=layers, heads=heads, patch=patch)


def initial_weights(pipeline: Path, cfg: WanToyTrainConfig | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """The float32 state dicts (``"transformer"``, ``"adapter"``) of an exported ``wan-toy`` pipeline
    folder (:func:`export_wan_toy`), checked against the architecture ``cfg`` asks for (default: the
    shipped one: 4 layers, 4 heads, patch 2). Where ``cfg.layers`` exceeds the folder's blocks, the
    weights are deepened first (:func:`core.models.toy_wan.deepen_transformer`): the deeper run starts
    out denoising exactly as the folder's model does.

    Raises:
        ValueError: ``pipeline`` lacks ``transformer/`` or ``layout_adapter/`` weights, or they do not fit
            that architecture (the message names ``--init-from``).
    """
    from safetensors.torch import load_file

    from core.models.toy_wan import deepen_transformer
    from core.models.wan_adapter import WanLayoutAdapter
    from core.text import MINILM_DIM

    files = {"transformer": Path(pipeline) / "transformer" / "diffusion_pytorch_model.safetensors",
             "adapter": Path(pipeline) / "layout_adapter" / "diffusion_pytorch_model.safetensors"}
    if not all(f.is_file() for f in files.values()):
        raise ValueError(f"--init-from: {pipeline} is not an exported wan-toy pipeline (transformer/ and layout_adapter/ weights), e.g. assets/wan-toy")
    weights = {name: {k: v.float() for k, v in load_file(f).items()} for name, f in files.items()}
    cfg = cfg or WanToyTrainConfig()
    blocks = 1 + max((int(key.split(".")[1]) for key in weights["transformer"] if key.startswith("blocks.")), default=-1)
    if 0 < blocks < cfg.layers:  # a deeper run starts from the same function (new blocks as the identity)
        weights["transformer"], weights["adapter"] = deepen_transformer(weights["transformer"], weights["adapter"], cfg.layers)
    transformer = run_transformer(**asdict(cfg))
    adapter = WanLayoutAdapter.for_transformer(transformer, phrase_dim=MINILM_DIM, gate_init=0.1, depth_slots=MAX_TRAIN_ENTITIES)
    for name, module in (("transformer", transformer), ("adapter", adapter)):
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        if {k: tuple(v.shape) for k, v in weights[name].items()} != expected:
            raise ValueError(f"--init-from: {files[name]} does not fit this run's {name} (other names or shapes; --patch and --heads must match it, --layers match or exceed it)")
    return weights


SOUP_PARTS = ("transformer", "layout_adapter")
SOUP_WEIGHTS = "diffusion_pytorch_model.safetensors"


def soup_wan_toy(models: list[Path], target: Path, cfg: WanSoupConfig | None = None) -> Path:
    """Write the uniform model soup of exported ``wan-toy`` pipelines (Wortsman et al. 2022, "Model
    soups", arXiv 2203.05482: theta = (1/N) * sum_i theta_i over N fine-tunes of one start) to ``target``.

    Each float tensor of ``transformer/`` and ``layout_adapter/`` is averaged in float32 over the N
    models and stored as float16, as :func:`export_wan_toy` stores it; ``vae/``, ``scheduler/`` and
    the configs are those of the first model with the most blocks, and ``model_index.json`` gets
    ``guidance_scale`` as the default. A model with fewer blocks is first deepened to that count by
    :func:`core.models.toy_wan.deepen_transformer` (exactly its own function), so a fine-tune grown
    with ``--layers`` can be averaged with the model it started from (WiSE-FT, Wortsman et al. 2022,
    arXiv 2109.01903: a point between the start and the fine-tune).
    Every file is written through a temporary file and a rename; files already in ``target`` that
    the soup does not write (a model card, loss logs) are left as they are.

    Args:
        models: N >= 2 folders written by ``wan-export`` with one architecture (the block count may
            differ) and byte-identical autoencoder weights (the latents the denoisers learned are that
            autoencoder's).
        target: the folder to write (created if missing; may be one of ``models``).
        cfg: ``guidance_scale`` (0-30) becomes the model's default.

    Returns:
        ``target``.

    Raises:
        ValueError: fewer than 2 models, a folder that is not an exported ``wan-toy`` pipeline, or
            models whose weight names, shapes or autoencoders differ (each message names ``--models``).
    """
    from safetensors.torch import load_file, save

    from core.models.toy_wan import deepen_transformer
    from core.outputs import atomic_write_bytes

    cfg = cfg or WanSoupConfig()
    models = [Path(m) for m in models]
    if len(models) < 2:
        raise ValueError(f"--models: a soup averages at least 2 exported models (got {len(models)})")
    for model in models:
        needed = [model / "model_index.json", model / "vae" / SOUP_WEIGHTS] + [model / part / SOUP_WEIGHTS for part in SOUP_PARTS]
        if not all(path.is_file() for path in needed):
            raise ValueError(f"--models: {model} is not an exported wan-toy pipeline (model_index.json, vae/, transformer/ and layout_adapter/ weights)")
    vae_bytes = (models[0] / "vae" / SOUP_WEIGHTS).read_bytes()
    for model in models[1:]:
        if (model / "vae" / SOUP_WEIGHTS).read_bytes() != vae_bytes:
            raise ValueError(f"--models: {model}'s autoencoder differs from {models[0]}'s; only fine-tunes on one autoencoder can be averaged")
    loaded = [{part: load_file(model / part / SOUP_WEIGHTS) for part in SOUP_PARTS} for model in models]
    blocks = [1 + max((int(k.split(".")[1]) for k in state["transformer"] if k.startswith("blocks.")), default=-1) for state in loaded]
    deepest = blocks.index(max(blocks))
    first = models[deepest]  # the configs written are the deepest model's
    for state, count in zip(loaded, blocks):
        if 0 < count < max(blocks):
            state["transformer"], state["layout_adapter"] = deepen_transformer(state["transformer"], state["layout_adapter"], max(blocks))
    souped = {}
    for part in SOUP_PARTS:
        states = [state[part] for state in loaded]
        shapes = {k: tuple(v.shape) for k, v in states[deepest].items()}
        for model, state in zip(models, states):
            if {k: tuple(v.shape) for k, v in state.items()} != shapes:
                raise ValueError(f"--models: {model / part} does not fit {first / part} (other weight names or shapes)")
        souped[part] = {
            k: (torch.stack([state[k].float() for state in states]).sum(0) / len(states)).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[deepest].items()
        }
    index = json.loads((first / "model_index.json").read_text())
    index["default_guidance_scale"] = cfg.guidance_scale
    target = Path(target)
    for part in ("vae", "scheduler", *SOUP_PARTS):
        for source in sorted((first / part).iterdir()):
            if source.is_file() and not (part in SOUP_PARTS and source.name == SOUP_WEIGHTS):
                atomic_write_bytes(target / part / source.name, source.read_bytes())
    for part in SOUP_PARTS:
        atomic_write_bytes(target / part / SOUP_WEIGHTS, save(souped[part], metadata={"format": "pt"}))
    atomic_write_bytes(target / "model_index.json", (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())
    return target


def use_autoencoder(run: Path, autoencoder: Path) -> None:
    """Make the trained frame autoencoder folder ``autoencoder`` the run's ``decoder`` part (checked,
    copied whole, then renamed into place), so the run starts at the data part; a run that has a
    ``decoder`` part keeps it. Creates ``run``.

    Raises:
        ValueError: ``autoencoder`` is not a :class:`core.models.toy_wan.FrameAutoencoderKL` folder
            with measured ``latents_mean`` / ``latents_std`` (the message names ``--autoencoder``);
            raised before anything is written.
    """
    import shutil

    from core.models.toy_wan import FrameAutoencoderKL

    if (run / "decoder" / "config.json").exists():
        return
    config_path = autoencoder / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if config.get("_class_name") != FrameAutoencoderKL.__name__ or set(config.get("latents_std") or [1.0]) == {1.0}:
        raise ValueError(
            f"--autoencoder: {autoencoder} is not a trained FrameAutoencoderKL folder (config.json with measured latents_std), e.g. assets/wan-toy/vae"
        )
    run.mkdir(parents=True, exist_ok=True)
    staging = run / "decoder.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(autoencoder, staging)
    staging.rename(run / "decoder")


def refine_wan_decoder(run: Path, model: Path, target: Path, cfg: WanRefineConfig, pairs_from: list[Path] | None = None) -> str:
    """Teach model v2's decoder the denoiser's own samples (the ``wan-refine`` stage), as the
    ``refine`` stage does for the UNet3D model (:mod:`core.training.refine`).

    The denoiser's latents are never exactly an encoding: an object's cells can sit between two
    palette colours and decode as a two-tone shape that the detector splits in two. In the toy world
    the frames a layout should give are known exactly, so :func:`core.training.refine.sample_pairs`
    renders ``model`` (25 steps, the model's own guidance and layout controls) on ``cfg.clips``
    random training clips into ``run/sample_pairs.pt`` (resumable), keeping each sample's latents
    beside the clip's drawn frames. Then the decoder of ``model/vae`` (encoder frozen, so the latents
    and the denoiser stay valid) trains for ``cfg.steps`` with ``cfg.sample_share`` of every batch
    decoding those latents into the drawn frames and the rest on encodings, the loss of the
    autoencoder's decoder part (:func:`tune_autoencoder`). With ``cfg.pair_targets == "aligned"`` the
    drawn frames are first redrawn with each object where the sample put it
    (:func:`core.training.refine.aligned_frames`, cached in ``run/aligned_frames.pt``), so that the
    decoder learns clean colours and edges without learning to move them. ``target`` gets ``model``
    with the refined autoencoder as ``vae/`` (written beside, then renamed into place).
    With ``cfg.decoder_layers`` above the model's decoder depth, the decoder is first deepened
    (:func:`core.models.toy_wan.deepen_decoder`: new layers start as the identity, so training starts
    from the model's decoding); with ``cfg.decoder_width`` above the width of its full-resolution
    level, that level is widened (:func:`core.models.toy_wan.widen_decoder`, also decoding as before).
    ``cfg.small_share`` of the encoded frames are sheets of small exact
    shapes (:func:`small_shape_frames`), ``cfg.patch_mix_share`` have a patch of one object moved toward
    a neighbouring colour in latent space (:func:`patch_mixed_frames`). With ``cfg.adversarial_weight``
    above 0 a patch discriminator trains beside the decoder and its loss joins the decoder's after
    ``cfg.adversarial_start`` steps (:mod:`core.training.adversarial`); with ``cfg.shift_tolerance`` above 0
    each 32-pixel patch is scored against its best-fitting shift of the drawn frame (:func:`shift_tolerant_terms`);
    ``cfg.faint_share`` of the encoded frames are sheets in the colours whose outline lies within
    ``cfg.faint_outline`` RGB units of their background (:func:`faint_pairs`), and ``cfg.silhouette_weight`` weighs :func:`silhouette_margin` on the frames ``cfg.silhouette_frames``
    names. ``cfg.group_share`` of the sampled clips are groups of two or three of a kind side by side; the
    pairs of earlier runs of the same model (``pairs_from``, e.g. random clips beside this run's
    groups) are joined to this run's own (:func:`core.training.refine.join_pairs`).

    Returns:
        A one-line summary: the written folder, or where the time limit stopped it (the same
        command resumes).

    Raises:
        ValueError: ``target`` is ``model`` or ``run`` (names ``--to``), ``model`` is not a
            ``wan-toy`` pipeline folder (names ``--model``), a ``pairs_from`` run has no finished
            cache (names ``--pairs-from``), or a cache holds clips sampled at another guidance scale
            or group share, or from another denoiser (:func:`core.training.refine.denoiser_fingerprint`).
    """
    import shutil

    from core.models.toy_wan import FrameAutoencoderKL
    from core.render import load_pipeline
    from core.training.refine import aligned_frames, cached_pairs, join_pairs, sample_pairs

    started = time.time()
    torch.set_num_threads(cfg.threads)
    if target.resolve() in (model.resolve(), run.resolve()):
        raise ValueError(f"--to: {target} must be a new folder, not --model or --run")
    if not (model / "vae" / "config.json").is_file() or not (model / "transformer").is_dir():
        raise ValueError(f"--model: {model} is not a wan-toy pipeline folder (vae/ and transformer/), e.g. assets/wan-toy")
    earlier = [cached_pairs(other, aligned=cfg.pair_targets == "aligned") for other in pairs_from or []]  # a bad run fails before sampling
    use_autoencoder(run, model / "vae")
    if not (run / "vae_refine" / "config.json").exists():
        pipe = load_pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        pairs = sample_pairs(
            pipe, run / "sample_pairs.pt", clips=cfg.clips, guidance_scale=cfg.guidance_scale, seed=cfg.seed, group_share=cfg.group_share,
        )
        if cfg.pair_targets == "aligned":
            cache = run / "aligned_frames.pt"
            if not cache.exists() or torch.load(cache).shape != pairs["frames"].shape:
                atomic_save(aligned_frames(pairs, pipe.vae.to(torch.float32), seed=cfg.seed), cache)
            pairs = {**pairs, "frames": torch.load(cache)}
        if earlier:
            pairs = join_pairs([*earlier, pairs])
        del pipe
        depth = FrameAutoencoderKL.load_config(model / "vae")
        layers = cfg.decoder_layers or depth.get("decoder_layers_per_block") or depth["layers_per_block"]
        width = cfg.decoder_width or (depth.get("decoder_block_out_channels") or depth["block_out_channels"])[0]
        tune = WanToyTrainConfig(
            seed=cfg.seed, threads=cfg.threads, tune_batch=cfg.batch, max_minutes=cfg.max_minutes, decoder_layers=layers, decoder_width=width,
        )
        left = cfg.max_minutes * 60 - (time.time() - started)
        if not tune_autoencoder(
            run, tune, left, part="vae_refine", source="decoder", steps=cfg.steps, lr=cfg.lr, encoder=False, pairs=pairs,
            sample_share=cfg.sample_share, pair_outline_weight=cfg.pair_outline_weight, small_share=cfg.small_share,
            patch_mix_share=cfg.patch_mix_share, adversarial_weight=cfg.adversarial_weight, adversarial_start=cfg.adversarial_start,
            shift_tolerance=cfg.shift_tolerance, faint_share=cfg.faint_share, silhouette_weight=cfg.silhouette_weight,
            faint_outline=cfg.faint_outline, silhouette_frames=cfg.silhouette_frames,
        ):
            return "vae_refine: stopped at the time limit; run the same command to resume"
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model, staging, ignore=shutil.ignore_patterns("vae"))
    FrameAutoencoderKL.from_pretrained(run / "vae_refine").to(torch.float16).save_pretrained(staging / "vae", safe_serialization=True)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return str(target)


def train_wan_toy(
    out: Path, cfg: WanToyTrainConfig, autoencoder: Path | None = None, init_from: Path | None = None, data_from: list[Path] | None = None
) -> str:
    """Run the stage's parts in ``out`` (created) until done or ``cfg.max_minutes`` pass.

    Args:
        autoencoder: a trained autoencoder folder that stands in for parts 1-3 (:func:`use_autoencoder`).
        init_from: an exported ``wan-toy`` pipeline whose transformer and layout adapter start part 5
            (:func:`initial_weights`); checked before anything is written.
        data_from: earlier runs whose cached clips, joined, are this run's data part instead of
            ``cfg.clips`` newly encoded ones (:func:`merge_wan_datasets`); checked before anything is
            written.

    Returns:
        A one-line summary: ``"done"`` or which part stopped where.
    """
    started = time.time()
    torch.set_num_threads(cfg.threads)
    if init_from is not None:
        initial_weights(init_from, cfg)  # a bad folder fails now, not after the data part
    if data_from is not None and not (out / "data.pt").exists():
        check_data_sources(data_from)
    if autoencoder is not None:
        use_autoencoder(out, autoencoder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    def left() -> float:
        return cfg.max_minutes * 60 - (time.time() - started)

    if not (out / "decoder" / "config.json").exists():
        if not train_wan_vae(out, cfg, left()):
            return "vae: stopped at the time limit; run the same command to resume"
        if not tune_autoencoder(out, cfg, left(), part="refine", source="vae", steps=cfg.refine_steps, lr=cfg.refine_lr, encoder=True):
            return "refine: stopped at the time limit; run the same command to resume"
        if not tune_autoencoder(out, cfg, left(), part="decoder", source="refine", steps=cfg.decoder_steps, lr=cfg.decoder_lr, encoder=False):
            return "decoder: stopped at the time limit; run the same command to resume"
    if data_from is not None:
        data = merge_wan_datasets(out, data_from)
    elif not (out / "data.pt").exists() and left() < DATA_MINUTES * 60 * cfg.clips / 2000:
        return "data: not started, too little of the time limit left; run the same command to go on"
    else:
        data = build_wan_dataset(out, cfg)
    if not train_wan_transformer(out, cfg, data, left(), init_from):
        return "transformer: stopped at the time limit; run the same command to resume"
    return "done"
