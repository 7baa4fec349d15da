"""Where a model v2 denoiser loses the kind: teacher-forced kind accuracy at each noise level.

    .venv/bin/python benchmarks/kind_by_noise.py --model assets/wan-toy [--model DIR ...] [--clips 48]

Fresh random toy clips with one entity (seed 1234; the training data uses other seeds) are encoded
by each model's autoencoder, noised to ``x_t = (1 - sigma) x_0 + sigma * noise`` (Wan's flow
matching), and denoised in one conditional step (prompt and grounding tokens, no guidance):
``x_0_hat = x_t - sigma * v_hat``. The middle frame of ``x_0_hat`` is decoded, the detection that
best overlaps the true box is classified by ``launch.py eval``'s shape classifier, and the table
gives the share of clips whose kind comes back, by sigma. The row ``x_0`` decodes the clean latents
(the autoencoder's own ceiling).

In the toy world the prompt and boxes fix the frame exactly, so an ideal denoiser draws the named
kind from any sigma; a denoiser that reads the kind off ``x_t`` but cannot draw it from the
condition scores high at low sigma and low at high sigma, where sampling decides the shape.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIGMAS = (0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.2)


def single_entity_clips(count: int, seed: int = 1234):
    """``count`` random 16-frame 128x128 toy clips with exactly one entity on screen in frame 8."""
    import numpy as np

    from core.toyworld.world import sample_clip

    rng = np.random.default_rng(seed)
    clips = []
    while len(clips) < count:
        clip = sample_clip(rng, num_frames=16, size=128, min_side=0.13)
        if len(clip.tracks) == 1 and clip.tracks[0].boxes[8] is not None:
            clips.append(clip)
    return clips


def kind_accuracy_by_sigma(model: str, clips) -> dict[str, float]:
    """{"x_0": ceiling, "0.95": ..., ...}: the share of ``clips`` whose kind the one-step denoised middle frame keeps."""
    import torch

    from core.render import load_pipeline
    from core.toyworld.detect import box_iou, detect
    from core.toyworld.shapes import classify
    from core.training.wan_toy import video_tensor

    pipe = load_pipeline(model)
    vae, transformer, adapter = pipe.vae, pipe.transformer, pipe.layout_adapter
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)

    def kind_kept(latent: torch.Tensor, clip) -> bool:
        with torch.no_grad():
            image = vae.decode((latent * std + mean).float()).sample[0, :, 0]  # (3, H, W)
        frame = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        detections = detect(frame)
        if not detections:
            return False
        box = clip.tracks[0].boxes[8]
        return classify(frame, max(detections, key=lambda d: box_iou(d.box, box))).kind == clip.tracks[0].kind

    kept = {"x_0": 0, **{f"{s:.2f}": 0 for s in SIGMAS}}
    for i, clip in enumerate(clips):
        track = clip.tracks[0]
        with torch.no_grad():
            x0 = (vae.encode(video_tensor(clip.frames[None])).latent_dist.mean - mean) / std  # (1, C, 16, h, w)
            prompt = pipe._get_t5_prompt_embeds(prompt=[clip.caption], max_sequence_length=32)
            phrases = pipe.encode_phrases([f"{c} {track.kind}" for c in track.colors], max_sequence_length=32)  # (16, D)
        boxes = torch.tensor([b if b is not None else (0.0, 0.0, 0.0, 0.0) for b in track.boxes], dtype=torch.float32)[:, None]
        masks = torch.tensor([b is not None for b in track.boxes], dtype=torch.float32)[:, None]
        objs = adapter.grounding_tokens(boxes, masks, phrases[:, None])
        kept["x_0"] += kind_kept(x0[:, :, 8:9], clip)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(i))
        for sigma in SIGMAS:
            x_t = (1 - sigma) * x0 + sigma * noise
            with torch.no_grad(), adapter.grounding(objs, frames=16, aspect=1.0):
                v = transformer(hidden_states=x_t, timestep=torch.tensor([sigma * 1000.0]), encoder_hidden_states=prompt, return_dict=False)[0]
            kept[f"{sigma:.2f}"] += kind_kept((x_t - sigma * v)[:, :, 8:9], clip)
    return {k: v / len(clips) for k, v in kept.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="an exported wan-toy pipeline folder (repeatable)")
    parser.add_argument("--clips", type=int, default=48)
    args = parser.parse_args()
    clips = single_entity_clips(args.clips)
    header = ["model", "x_0", *(f"{s:.2f}" for s in SIGMAS)]
    print(f"kind kept after one conditional step from sigma, {args.clips} fresh one-entity clips (seed 1234)")
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for model in args.model:
        row = kind_accuracy_by_sigma(model, clips)
        print("| " + " | ".join([model, *(f"{v:.2f}" for v in row.values())]) + " |", flush=True)


if __name__ == "__main__":
    main()
