"""Tiny random components with ModelScope text-to-video's architecture, saved in the diffusers layout.

UNet3DConditionModel + AutoencoderKL + CLIPTextModel + a CLIPTokenizer built from a small byte-level
vocabulary (no merges, so every word is spelled out in characters; enough to tokenise any prompt).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer


def _bytes_to_unicode() -> list[str]:
    # GPT-2/CLIP's reversible byte -> printable character table.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def build_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIPTokenizer over single characters (and word-final characters), 77 tokens long."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = {token: i for i, token in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def tiny_components(tmp: Path) -> dict:
    """vae, text_encoder, tokenizer, unet, scheduler: ModelScope's classes at toy size (16x16 frames)."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer(tmp / "tokenizer-src")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, projection_dim=32,
        )
    ).eval()
    unet = UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=8,
    )
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    return {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "unet": unet, "scheduler": scheduler}


def save_stock(folder: Path, components: dict) -> Path:
    """Save with the stock diffusers ``TextToVideoSDPipeline`` (ModelScope's own layout)."""
    TextToVideoSDPipeline(**components).save_pretrained(folder)
    return folder
