"""Denoising-step cost of a ModelScope-class backbone: the stock pipeline against ours, in one run.

    .venv/bin/python benchmarks/bench_backbone.py                       # reduced config on the CPU
    python benchmarks/bench_backbone.py --device cuda --dtype fp16       # full ModelScope UNet3D on a GPU

Builds ModelScope text-to-video's UNet3D (``UNet3DConditionModel()``'s default config, 1.4 B parameters,
random weights: they time the same as trained ones) or, with ``--config reduced``, a narrower one that
a laptop CPU can run; a random VAE and a one-layer CLIP text encoder of the right width (they are
outside the loop). Then, on the same device, the same latents and scheduler (DPM-Solver++):

1. the stock diffusers ``TextToVideoSDPipeline``;
2. our ``Layout2VidPipeline`` with a layout adapter and three boxed entities, gated attention on for
   every step (``layout_alpha=1``, the worst case): GLIGEN's adapter (gated self-attention plus a
   gated feed-forward, ``ff_mult=4``) and the light one that ``python -m core.training adapter`` trains by
   default (``ff_mult=0``, no feed-forward);
3. ours without an adapter, with training-free box guidance on its default first 20 % of steps.

It prints seconds per denoising step (median over the steps after the first, then over ``--repeats``
round-robin repeats), the ratios against the
stock pipeline (goals: adapter <= 1.10 per step, guidance <= 1.5 per render), peak GPU memory, the
achieved TFLOP/s of the stock step (FLOPs counted by ``FlopCounterMode``) against this device's own
dense matmul TFLOP/s measured in the same run, and the FLOP ratios of both adapters on the full
ModelScope UNet at 16 x 256 x 256 (counted on the ``meta`` device, so also on a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REDUCED = dict(block_out_channels=(32, 64, 128, 128), cross_attention_dim=256, attention_head_dim=32, layers_per_block=1)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_tflops(device: str, dtype: torch.dtype) -> float:
    n = 8192 if device.startswith("cuda") else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    repeats = 20
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def build(config: str, device: str, dtype: torch.dtype):
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.core.pipelines.tiny_modelscope import build_tokenizer

    torch.manual_seed(0)
    unet = UNet3DConditionModel() if config == "full" else UNet3DConditionModel(**REDUCED)
    width = unet.config.cross_attention_dim
    tokenizer = build_tokenizer(Path("/tmp/director-studio-bench-tokenizer"))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=width, intermediate_size=width, num_hidden_layers=1, num_attention_heads=8,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae = AutoencoderKL(block_out_channels=(32, 64, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4)
    scheduler = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, algorithm_type="dpmsolver++")
    parts = {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "unet": unet, "scheduler": scheduler}
    for name in ("vae", "text_encoder", "unet"):
        parts[name].to(device=device, dtype=dtype).eval()
    return parts


def full_size_flop_ratios(frames: int = 16, size: int = 256) -> dict[int, float]:
    """FLOPs of one CFG step of the full ModelScope UNet3D with each adapter / without, on ``meta``."""
    from diffusers import UNet3DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from core.models.layout import LayoutAdapter

    with torch.device("meta"):
        unet = UNet3DConditionModel()
        adapters = {mult: LayoutAdapter.for_unet(unet, phrase_dim=1024, ff_mult=mult) for mult in (4, 0)}
    x = torch.empty(2, 4, frames, size // 8, size // 8, device="meta")
    embeds = torch.empty(2, 77, 1024, device="meta")
    t = torch.tensor(500, device="meta")

    def count(adapter=None) -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            if adapter is None:
                unet(x, t, encoder_hidden_states=embeds)
            else:
                adapter.attach(unet)
                with adapter.grounding(torch.empty(2 * frames, 3, 1024, device="meta")):
                    unet(x, t, encoder_hidden_states=embeds)
                adapter.detach(unet)
        return counter.get_total_flops()

    base = count()
    return {mult: count(adapter) / base for mult, adapter in adapters.items()}


def step_times(run, device: str) -> tuple[list[float], float]:
    """Run ``run(callback)`` once; returns (seconds of each step after the first, whole-call seconds)."""
    stamps: list[float] = []

    def mark(*_args):
        sync(device)
        stamps.append(time.perf_counter())
        return _args[-1] if _args and isinstance(_args[-1], dict) else None

    sync(device)
    start = time.perf_counter()
    run(mark)
    sync(device)
    total = time.perf_counter() - start
    return [b - a for a, b in zip(stamps, stamps[1:])], total


def main() -> None:
    from diffusers import TextToVideoSDPipeline
    from diffusers.utils import logging as diffusers_logging
    from torch.utils.flop_counter import FlopCounterMode

    from core.pipelines.backbones import adapter_for
    from core.pipelines.guidance import BoxGuidance
    from core.pipelines.layout2vid import Layout2VidPipeline, LayoutConditioning

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--config", default=None, choices=["full", "reduced"], help="default: full on a GPU, reduced on the CPU")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps per call (default 25 on a GPU, 6 on the CPU)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="round-robin repeats; medians are printed")
    parser.add_argument("--size", type=int, default=None, help="frame side in pixels (default 256 on a GPU, 128 on the CPU)")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    config = args.config or ("full" if gpu else "reduced")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype or ("fp16" if gpu else "fp32")]
    steps = args.steps or (25 if gpu else 6)
    size = args.size or (256 if gpu else 128)
    diffusers_logging.set_verbosity_error()

    parts = build(config, args.device, dtype)
    params = sum(p.numel() for p in parts["unet"].parameters())
    print(f"device {args.device} ({torch.cuda.get_device_name() if gpu else 'cpu, %d threads' % torch.get_num_threads()}), {dtype}, "
          f"config {config} ({params / 1e9:.2f} B UNet parameters), {args.frames} frames {size}x{size}, {steps} DPM-Solver++ steps, guidance 9")
    stock = TextToVideoSDPipeline(**parts)
    stock.set_progress_bar_config(disable=True)
    adapters = {mult: adapter_for(parts["unet"], parts["text_encoder"], gate_init=0.5, ff_mult=mult).to(device=args.device, dtype=dtype) for mult in (4, 0)}
    ours = Layout2VidPipeline(**parts, layout_adapter=adapters[4], max_prompt_tokens=77)
    ours.set_progress_bar_config(disable=True)
    prompt = "a red ball rolls left of a blue star under a green tree"
    boxes = torch.tensor([[0.05, 0.4, 0.35, 0.7], [0.5, 0.1, 0.8, 0.4], [0.6, 0.5, 0.95, 0.95]])
    layout = LayoutConditioning(
        phrases=[["red ball", "blue star", "green tree"]] * args.frames, boxes=boxes[None].repeat(args.frames, 1, 1), masks=torch.ones(args.frames, 3),
    )
    common = dict(num_frames=args.frames, height=size, width=size, num_inference_steps=steps, guidance_scale=9.0, output_type="latent")

    def run_stock(cb):
        stock(prompt, generator=torch.Generator().manual_seed(0), callback=cb, callback_steps=1, **common)

    def use_adapter(mult):
        ours.layout_adapter.detach(ours.unet)
        adapters[mult].attach(ours.unet)
        ours.register_modules(layout_adapter=adapters[mult])

    def run_adapter(cb):
        use_adapter(4)
        ours(prompt, layout, layout_alpha=1.0, generator=torch.Generator().manual_seed(0), callback_on_step_end=cb, **common)

    def run_light(cb):
        use_adapter(0)
        ours(prompt, layout, layout_alpha=1.0, generator=torch.Generator().manual_seed(0), callback_on_step_end=cb, **common)

    def run_guidance(cb):
        ours.layout_adapter.detach(ours.unet)
        try:
            ours(prompt, layout, layout_alpha=0.0, box_guidance=BoxGuidance(), generator=torch.Generator().manual_seed(0), callback_on_step_end=cb, **common)
        finally:
            ours.layout_adapter.attach(ours.unet)

    runs = [("stock", run_stock), ("adapter", run_adapter), ("light", run_light), ("guidance", run_guidance)]
    for _, run in runs:
        run(lambda *a: a[-1] if isinstance(a[-1], dict) else None)  # warm-up
    samples = {name: [] for name, _ in runs}
    for _ in range(args.repeats):  # round-robin, so machine noise hits every variant alike
        for name, run in runs:
            if gpu:
                torch.cuda.reset_peak_memory_stats()
            per_step, total = step_times(run, args.device)
            peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if gpu else "n/a on the cpu"
            samples[name].append((statistics.median(per_step), total, peak))
    results = {name: (statistics.median(s[0] for s in runs_), statistics.median(s[1] for s in runs_), runs_[-1][2]) for name, runs_ in samples.items()}

    latents = torch.randn(2, 4, args.frames, size // 8, size // 8, device=args.device, dtype=dtype)
    embeds = torch.randn(2, 77, parts["unet"].config.cross_attention_dim, device=args.device, dtype=dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        parts["unet"](latents, torch.tensor(500, device=args.device), encoder_hidden_states=embeds)
    flops = counter.get_total_flops()
    peak_tflops = matmul_tflops(args.device, dtype)

    labels = {
        "stock": "stock TextToVideoSDPipeline",
        "adapter": "Layout2Vid + GLIGEN adapter, ff_mult 4 (alpha 1)",
        "light": "Layout2Vid + light adapter, ff_mult 0, the default (alpha 1)",
        "guidance": "Layout2Vid + training-free guidance (alpha 0.2)",
    }
    for name, (per_step, total, peak) in results.items():
        print(f"{labels[name]}: {per_step:.3f} s/step, {total:.2f} s per call, peak {peak}")
    s_stock, t_stock = results["stock"][:2]
    print(f"ratio GLIGEN adapter / stock per step: {results['adapter'][0] / s_stock:.3f} (goal <= 1.10)")
    print(f"ratio light adapter / stock per step: {results['light'][0] / s_stock:.3f} (goal <= 1.10)")
    print(f"ratio guidance / stock per call: {results['guidance'][1] / t_stock:.3f} (goal <= 1.5)")
    ratios = full_size_flop_ratios()
    print(f"FLOPs of a CFG step, full ModelScope UNet3D at 16x256x256: GLIGEN adapter {ratios[4]:.3f}x, light adapter {ratios[0]:.3f}x the stock step")
    achieved = flops / s_stock / 1e12
    print(f"stock step: {flops / 1e12:.2f} TFLOP -> {achieved:.2f} TFLOP/s achieved vs {peak_tflops:.2f} TFLOP/s dense matmul on this device ({achieved / peak_tflops:.2f})")


if __name__ == "__main__":
    main()
