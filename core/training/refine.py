"""The ``refine`` stage: teach the decoder the denoiser's own samples.

    python -m core.training refine --run runs/toy --model assets/layout2vid-toy --clips 240 --steps 1500

The denoiser's samples are never exactly an encoding: after 25 sampling steps an object's latent can
sit between two palette colours (decoded as a two-tone blob that the detector splits in two) and
the corner cells carry faint residue (decoded as a speck). But in the toy world the correct frame of
any layout is known exactly, since the renderer is deterministic. :func:`sample_pairs` samples a
pipeline on fresh random training clips (their captions, boxes, phrases and scene graphs; never the
evaluation prompts) and keeps each sample's latents beside the clip's drawn frames;
:func:`train_refine` then goes on from ``run/vae_decoder`` (the ``decoder`` stage's output, else
``run/vae``) giving ``sample_share`` of every batch to decoding those latents into the drawn
frames, the rest to the ``decoder`` stage's objective so that encodings still decode.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.toyworld.world import ToyClip, ToyObject, render_frame, sample_clip
from core.training.config import RefineConfig
from core.training.decoder import train_decoder
from core.training.graph_data import clip_graphs
from core.training.loop import atomic_save


def clip_conditioning(clip, rng: np.random.Generator):
    """A training clip as the pipeline's inputs.

    The prompt is the clip's caption; phrases are ``"<colour> <kind>"`` per frame, boxes and masks
    the clip's tracks, scene graphs :func:`core.training.graph_data.clip_graphs` (what the graph
    stage trained the encoder on) and every entity gets a random noise seed drawn from ``rng``.

    Returns:
        ``(prompt, LayoutConditioning)`` with boxes (F, N, 4) and masks (F, N) float32.
    """
    from core.pipelines.layout2vid import LayoutConditioning

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


def decoder_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """A pipeline's sampled latents (B, C, F, h, w) as ``vae.decode`` takes them, float32: divided by
    the ``scaling_factor`` (Stable Diffusion's convention, the UNet3D model), or un-normalised with the
    per-channel ``latents_mean`` / ``latents_std`` when the config has them (Wan's, model v2)."""
    latents = latents.float()
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, -1) + (1,) * (latents.ndim - 2)
        return latents * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    return latents / vae.config.scaling_factor


def training_clips(seed: int, *, num_frames: int, size: int, group_share: float = 0.0) -> Iterator[tuple[ToyClip, np.random.Generator]]:
    """The endless, replayable sequence of random training clips that :func:`sample_pairs` samples
    with ``seed``: each clip (``num_frames`` frames of ``size`` pixels) with the generator that draws
    its entities' noise seeds (:func:`clip_conditioning`). ``group_share`` (in [0, 1]) of the clips
    are groups of two or three of a kind side by side (:func:`core.toyworld.world.sample_clip`); at 0
    the stream is that of earlier versions."""
    rng = np.random.default_rng([seed, 6])
    while True:
        clip = sample_clip(rng, num_frames=num_frames, size=size, group_share=group_share)
        yield clip, np.random.default_rng(rng.integers(0, 2**31 - 1, size=3))


DENOISER_PARTS = ("transformer", "transformer_2", "unet", "layout_adapter", "graph_encoder", "text_encoder")
"""The pipeline components whose weights decide a sample's latents (everything but the autoencoder)."""


def denoiser_fingerprint(pipe) -> str:
    """A SHA-256 hex digest (16 characters) of the weights that decide ``pipe``'s latents.

    Hashes, in name order, every parameter and buffer of the components in :data:`DENOISER_PARTS`
    that ``pipe`` has, as float32 bytes, so the digest does not depend on the device, the dtype a
    pipeline was loaded in, or the folder it came from; the autoencoder is left out, so a pipeline
    with a refined decoder samples the same latents and has the same fingerprint.
    """
    import hashlib

    digest = hashlib.sha256()
    for part in DENOISER_PARTS:
        module = getattr(pipe, part, None)
        if not isinstance(module, torch.nn.Module):
            continue
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{part}.{name}".encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _stacked_pairs(pairs: dict, guidance_scale: float, group_share: float, denoiser: str) -> dict:
    """The cache's lists stacked into tensors (backgrounds stay a list), with the guidance scale, group share and denoiser."""
    stacked = {k: (torch.stack(v) if k != "backgrounds" else v) for k, v in pairs.items()}
    return {**stacked, "guidance_scale": float(guidance_scale), "group_share": float(group_share), "denoiser": denoiser}


def sample_pairs(
    pipe,
    path: Path,
    *,
    clips: int,
    num_frames: int = 16,
    num_inference_steps: int = 25,
    guidance_scale: float | None = None,
    seed: int = 0,
    group_share: float = 0.0,
    save_every: int = 10,
) -> dict:
    """Sample ``pipe`` on random toy clips and cache (sampled latents, drawn frames) at ``path``.

    Resumable: an existing file's clips are kept and sampling goes on until ``clips``.

    Args:
        pipe: a toy-world pipeline whose samples the decoder will learn: a Layout2VidPipeline (the
            UNet, 64x64 clips, its pipeline defaults) or a WanLayoutPipeline (model v2, 128x128 clips,
            the layout controls a render gives it: :func:`core.render.resolve_controls`).
        path: the ``.pt`` cache, written atomically every ``save_every`` clips.
        clips: total clips. num_frames: frames per clip (16, a scene's length).
        num_inference_steps, guidance_scale: the sampler settings of a render (25 steps; guidance
            None: the model's own, as a render uses: :func:`core.settings.model_guidance_scale`).
        seed, group_share: the clip stream (:func:`training_clips`); the cache records the share.

    Returns:
        dict with ``latents`` (clips, C, F, h, w) float16 as ``vae.decode`` takes them
        (:func:`decoder_latents`), ``frames`` (clips, F, S, S, 3) uint8 drawn exactly (S 64 or 128), ``backgrounds`` (clips names) and
        ``guidance_scale`` (float), ``group_share`` (float) and ``denoiser``
        (:func:`denoiser_fingerprint` of ``pipe``).

    Raises:
        ValueError: ``path`` holds clips sampled at another guidance scale or group share, or from
            another denoiser.
    """
    from core.settings import model_guidance_scale

    if guidance_scale is None:
        guidance_scale = model_guidance_scale(pipe.config)
    pairs = torch.load(path, weights_only=False) if path.exists() else {"latents": [], "frames": [], "backgrounds": []}
    cached_scale = pairs.pop("guidance_scale", guidance_scale)
    cached_share = pairs.pop("group_share", 0.0)  # caches written before the share existed hold the plain stream
    denoiser = denoiser_fingerprint(pipe)
    cached_denoiser = pairs.pop("denoiser", None)  # caches written before the fingerprint existed are not checked
    if len(pairs["latents"]) and cached_scale != guidance_scale:
        raise ValueError(f"{path}: its clips were sampled at guidance_scale {cached_scale}, not {guidance_scale}; use another file")
    if len(pairs["latents"]) and cached_share != group_share:
        raise ValueError(f"{path}: its clips were drawn with group_share {cached_share}, not {group_share}; use another file")
    if len(pairs["latents"]) and cached_denoiser not in (None, denoiser):
        raise ValueError(f"{path}: its clips were sampled from another denoiser ({cached_denoiser}, not {denoiser}); use another file")
    pairs = {k: list(v) for k, v in pairs.items()}
    wan = getattr(pipe, "family", None) == "wan"
    size, controls = 64, {}
    if wan:  # model v2: 128x128 clips, and the adapter, layout mode and guidance a render gives this model
        from core.models.toy_wan import FRAME_SIZE
        from core.render import RenderSettings, resolve_controls

        size = FRAME_SIZE
        render = RenderSettings(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale)
        controls = {k: v for k, v in resolve_controls(pipe, render).items() if k in ("layout_alpha", "layout_mode", "box_guidance")}
        controls["unconditional_layout"] = render.unconditional_layout
    drawn = training_clips(seed, num_frames=num_frames, size=size, group_share=group_share)
    for _ in range(len(pairs["latents"])):  # skip the clips already sampled, so resuming draws new ones
        next(drawn)
    bar = tqdm(total=clips, initial=len(pairs["latents"]), desc="sample pairs", file=sys.stdout, mininterval=10)
    while len(pairs["latents"]) < clips:
        clip, entity_rng = next(drawn)
        prompt, layout = clip_conditioning(clip, entity_rng)
        generator = torch.Generator().manual_seed(len(pairs["latents"]) + seed * 100_003)
        latents = pipe(
            prompt, layout, num_frames=num_frames, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            generator=generator, output_type="latent", **controls,
        ).frames
        pairs["latents"].append(decoder_latents(pipe.vae, latents)[0].half().cpu())
        pairs["frames"].append(torch.from_numpy(clip.frames))
        pairs["backgrounds"].append(clip.background)
        bar.update(1)
        if len(pairs["latents"]) % save_every == 0 or len(pairs["latents"]) == clips:
            atomic_save(_stacked_pairs(pairs, guidance_scale, group_share, denoiser), path)
    bar.close()
    return _stacked_pairs(pairs, guidance_scale, group_share, denoiser)


def cached_pairs(run: Path, *, aligned: bool) -> dict:
    """An earlier refine run's sampled pairs, to train on beside a new run's own (``wan-refine --pairs-from``).

    Args:
        run: a ``wan-refine`` (or ``refine``) run folder holding ``sample_pairs.pt`` (:func:`sample_pairs`).
        aligned: use the run's aligned targets, ``aligned_frames.pt`` (:func:`aligned_frames`), as the frames.

    Returns:
        :func:`sample_pairs`'s dict: ``latents`` (clips, C, F, h, w) float16, ``frames`` (clips, F, S, S, 3) uint8, ``backgrounds``, ``guidance_scale``.

    Raises:
        ValueError: ``run`` has no ``sample_pairs.pt``, or (``aligned``) no ``aligned_frames.pt`` for
            all its clips; the message names ``--pairs-from``.
    """
    if not (run / "sample_pairs.pt").is_file():
        raise ValueError(f"--pairs-from: {run} has no sample_pairs.pt; name a wan-refine run whose sampling has finished")
    pairs = torch.load(run / "sample_pairs.pt", weights_only=False)
    if aligned:
        cache = run / "aligned_frames.pt"
        frames = torch.load(cache) if cache.is_file() else None
        if frames is None or frames.shape != pairs["frames"].shape:
            raise ValueError(f"--pairs-from: {run} has no aligned_frames.pt for its {len(pairs['latents'])} clips; run it with --pair-targets aligned first")
        pairs = {**pairs, "frames": frames}
    return pairs


def join_pairs(parts: list[dict]) -> dict:
    """Several :func:`sample_pairs` caches (e.g. random clips and group clips) as one training set.

    Args:
        parts: caches of latents of one shape, sampled at one guidance scale from one denoiser
            (caches without a ``denoiser`` fingerprint, written before it existed, are not checked).

    Returns:
        dict with ``latents`` and ``frames`` concatenated along clips, ``backgrounds`` joined, the shared
        ``guidance_scale`` and ``denoiser`` (None where no part records one).

    Raises:
        ValueError: the parts were sampled at different guidance scales or from different denoisers,
            or hold latents or frames of different shapes (names ``--pairs-from``).
    """
    scales = {float(part["guidance_scale"]) for part in parts}
    denoisers = {part["denoiser"] for part in parts if part.get("denoiser")}
    shapes = {(tuple(part["latents"].shape[1:]), tuple(part["frames"].shape[1:])) for part in parts}
    if len(scales) > 1:
        raise ValueError(f"--pairs-from: the runs' clips were sampled at different guidance scales ({', '.join(map(str, sorted(scales)))}); join runs of one scale")
    if len(denoisers) > 1:
        raise ValueError(f"--pairs-from: the runs' clips were sampled from different denoisers ({', '.join(sorted(denoisers))}); join runs of one model")
    if len(shapes) > 1:
        raise ValueError("--pairs-from: the runs hold latents or frames of different shapes; join runs of one model")
    return {
        "latents": torch.cat([part["latents"] for part in parts]),
        "frames": torch.cat([part["frames"] for part in parts]),
        "backgrounds": [name for part in parts for name in part["backgrounds"]],
        "guidance_scale": scales.pop(),
        "denoiser": denoisers.pop() if denoisers else None,
    }


def _area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


@torch.no_grad()
def aligned_frames(pairs: dict, vae, *, seed: int = 0, min_iou: float = 0.3, area_range: tuple[float, float] = (0.6, 1.6)) -> torch.Tensor:
    """The cached pairs' drawn frames redrawn with each object where the denoiser put it.

    A sampled object is rarely exactly in its planned box: its edge may sit a pixel or two away. A
    decoder taught to draw the planned outline there learns to soften edges. Here each sample is
    decoded by ``vae`` and the palette detector (:func:`core.toyworld.detect.detect`) finds each
    planned object twice, in the decoded sample and in the exact drawing: the detection of the plan's
    colour with the largest IoU with the planned box. The detector's box is not the planned box even
    on an exact drawing (a star's points span 0.95 of it, a heart's less), so the object is moved by
    the difference of the two detections: its box becomes ``planned + (sampled - drawn)`` (xyxy, clipped to [0, 1]),
    and the frame is drawn again by :func:`core.toyworld.world.render_frame` with the same kinds,
    colours and depth order. The planned box is kept where the detections are unsure: IoU of the two
    below ``min_iou``, the sampled area outside ``area_range`` times the drawn one (a fill split in
    two colours gives a part, not the object), or an object whose planned box overlaps another's
    (the detector cannot tell their parts apart).

    Args:
        pairs: :func:`sample_pairs`'s cache: ``latents`` (clips, C, F, h, w) as ``vae.decode`` takes
            them, ``frames`` (clips, F, S, S, 3) uint8.
        vae: the autoencoder whose decoder draws the samples (the model's own), any dtype.
        seed: the seed the pairs were sampled with; the clips are replayed (:func:`training_clips`,
            with the cache's ``group_share``).

    Returns:
        torch.Tensor (clips, F, S, S, 3) uint8.

    Raises:
        ValueError: the replayed clips do not draw the cached frames (another ``seed``).
    """
    from core.toyworld.detect import box_iou, detect

    clips, _, num_frames = pairs["latents"].shape[:3]
    size = pairs["frames"].shape[2]
    aligned = pairs["frames"].clone()
    drawn = training_clips(seed, num_frames=num_frames, size=size, group_share=float(pairs.get("group_share", 0.0)))
    parameter = next(vae.parameters())
    for index in tqdm(range(clips), desc="align targets", file=sys.stdout, mininterval=10):
        clip, _ = next(drawn)
        if not np.array_equal(clip.frames, pairs["frames"][index].numpy()):
            raise ValueError(f"seed: clip {index} of the pairs was not sampled with seed {seed}")
        video = vae.decode(pairs["latents"][index : index + 1].to(parameter)).sample[0].float()  # (3, F, S, S) in [-1, 1]
        decoded = ((video.permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        for f in range(num_frames):
            present = [track for track in clip.tracks if track.boxes[f] is not None]
            found = [detect(frame, background=clip.background) for frame in (decoded[f], clip.frames[f])]
            objects = []
            for track in present:
                box = track.boxes[f]
                sampled, exact = (
                    max((d.box for d in detections if d.color == track.colors[f]), key=lambda b: box_iou(b, box), default=None)
                    for detections in found
                )
                overlapped = any(box_iou(box, other.boxes[f]) > 0 for other in present if other is not track)
                if sampled is not None and exact is not None and not overlapped and box_iou(sampled, exact) >= min_iou:
                    if area_range[0] <= _area(sampled) / max(_area(exact), 1e-6) <= area_range[1]:
                        box = tuple(float(np.clip(p + s - e, 0.0, 1.0)) for p, s, e in zip(box, sampled, exact))
                objects.append(ToyObject(track.kind, track.colors[f], tuple(box)))
            aligned[index, f] = torch.from_numpy(np.array(render_frame(clip.background, objects, size)))
    return aligned


def train_refine(run: Path, model: str | Path, cfg: RefineConfig) -> Path:
    """Sample ``model`` into ``run/sample_pairs.pt`` (resumable) and train the decoder on the pairs.

    Starts from ``run/vae_decoder`` when the ``decoder`` stage has run, else ``run/vae``; writes
    ``run/vae_refine`` (checkpoints ``run/refine_ckpt.pt``, loss ``run/refine_loss.csv``).

    Args:
        model: the pipeline folder (or hub id) whose samples the decoder learns.

    Returns:
        The saved autoencoder folder.

    Raises:
        ValueError: the cache holds clips sampled at another guidance scale.
        FileNotFoundError: the run has no autoencoder.
    """
    from core.render import load_pipeline

    pipe = load_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    pairs = sample_pairs(pipe, run / "sample_pairs.pt", clips=cfg.clips, guidance_scale=cfg.guidance_scale)
    source = "vae_decoder" if (run / "vae_decoder" / "config.json").exists() else "vae"  # the decoder stage is optional
    return train_decoder(run, cfg.decoder_config(source), pairs=pairs)
