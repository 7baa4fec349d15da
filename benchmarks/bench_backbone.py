"""Denoising-step cost of a backbone (ModelScope's UNet3D or Wan's DiT): the stock pipeline against ours, in one run.

    .venv/bin/python benchmarks/bench_backbone.py                       # reduced config on the CPU
    python benchmarks/bench_backbone.py --device cuda --dtype fp16       # full ModelScope UNet3D on a GPU
    .venv/bin/python benchmarks/bench_backbone.py --family wan          # Wan: FLOPs at 81x480x832, CPU timings on a tiny DiT
    python benchmarks/bench_backbone.py --family wan --device cuda      # Wan 2.1 1.3B (random weights), bf16, 81x480x832

With ``--family wan`` (see :func:`main_wan`): the stock ``WanPipeline`` against our
``WanLayoutPipeline`` with layout off, with the training-free box mask on every step (three entities),
with the box mask plus per-frame prompts, and with a layout adapter (``ff_mult=0``) on every step; FLOPs of the Wan 2.1 1.3B transformer counted on the
``meta`` device at 81 x 480 x 832 (goals: training-free control <= 1.3x, adapter <= 1.10x the stock step).

With ``--family modelscope`` (the default):

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
    family = "wan" if "--family" in sys.argv and sys.argv[sys.argv.index("--family") + 1:][:1] == ["wan"] else "modelscope"
    if family == "wan":
        main_wan()
    else:
        main_modelscope()


def main_modelscope() -> None:
    from diffusers import TextToVideoSDPipeline
    from diffusers.utils import logging as diffusers_logging
    from torch.utils.flop_counter import FlopCounterMode

    from core.pipelines.backbones import adapter_for
    from core.pipelines.guidance import BoxGuidance
    from core.pipelines.layout2vid import Layout2VidPipeline, LayoutConditioning

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="modelscope", choices=["modelscope", "wan"])
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



# ---------------------------------------------------------------------------------------------
# Wan 2.x
# ---------------------------------------------------------------------------------------------

# Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json.
WAN_1_3B = dict(
    patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16, text_dim=4096, freq_dim=256,
    ffn_dim=8960, num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
)
WAN_TINY = dict(
    patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32, in_channels=16, out_channels=16, text_dim=128, freq_dim=32,
    ffn_dim=512, num_layers=4, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
)
WAN_PROMPT = "a red ball rolls left of a blue star under a green tree"
WAN_PHRASES = ["red ball", "blue star", "green tree"]
WAN_BOXES = torch.tensor([[0.05, 0.4, 0.35, 0.7], [0.5, 0.1, 0.8, 0.4], [0.6, 0.5, 0.95, 0.95]])


def wan_layout(frames: int, *, frame_prompts: bool):
    from core.pipelines.layout2vid import LayoutConditioning

    return LayoutConditioning(
        phrases=[WAN_PHRASES] * frames, boxes=WAN_BOXES[None].repeat(frames, 1, 1), masks=torch.ones(frames, 3),
        frame_prompts=[WAN_PROMPT if f < frames // 2 else WAN_PROMPT + ", at dusk" for f in range(frames)] if frame_prompts else None,
    )


def build_wan(config: str, device: str, dtype: torch.dtype):
    """Random Wan components: the 1.3B transformer (``full``) or a tiny one, Wan 2.1's VAE (``full``) or a
    tiny one, a one-layer UMT5 of the transformer's text width (outside the loop), MiniLM's tokenizer."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    from core.text import minilm_path

    torch.manual_seed(0)
    full = config == "full"
    transformer = WanTransformer3DModel(**(WAN_1_3B if full else WAN_TINY))
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    width = transformer.config.text_dim
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=width, d_kv=64, d_ff=width, num_layers=1, num_heads=width // 64))
    vae = AutoencoderKLWan() if full else AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    parts = {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "transformer": transformer, "scheduler": scheduler}
    for name in ("text_encoder", "transformer"):
        parts[name].to(device=device, dtype=dtype).eval()
    vae.to(device=device).eval()  # float32, as Wan's model card loads it
    return parts


def wan_flop_ratios(frames: int = 81, height: int = 480, width: int = 832) -> dict[str, float]:
    """FLOPs of one transformer call of Wan 2.1 1.3B with our control over the stock call, on ``meta``.

    Returns:
        ``{"boxes": ..., "boxes+frame prompts": ..., "adapter ff_mult 0": ..., "adapter ff_mult 4": ...}``
        per conditional call, and the same for a CFG
        step (``"... cfg"``: the controlled conditional call plus a stock unconditional one, over two
        stock calls).
    """
    from diffusers import WanTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    from core.models.wan_attention import ControlState, install
    from core.pipelines.wan import WanLayoutPipeline, latent_frame_sources

    with torch.device("meta"):
        transformer = WanTransformer3DModel(**WAN_1_3B)
    state = ControlState()
    install(transformer, state)
    sources = latent_frame_sources(frames)
    grid = (len(sources), height // 16, width // 16)
    x = torch.empty(1, 16, len(sources), height // 8, width // 8, device="meta")
    t = torch.tensor([500.0], device="meta")
    tokenizer = build_wan_tokenizer()
    helper = WanLayoutPipeline.__new__(WanLayoutPipeline)  # only box_control's tokenizer is used
    helper.__dict__["tokenizer"] = tokenizer

    def count(control, groups: int) -> int:
        text = torch.empty(1, groups * 512, 4096, device="meta")
        with torch.no_grad(), FlopCounterMode(display=False) as counter, state.use(control):
            transformer(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)
        return counter.get_total_flops()

    base = count(None, 1)
    boxes = helper.box_control(wan_layout(frames, frame_prompts=False), [WAN_PROMPT] * len(sources), sources, grid, groups=1, max_sequence_length=512)
    layout = wan_layout(frames, frame_prompts=True)
    prompts = [layout.frame_prompts[group[len(group) // 2]] for group in sources]
    per_frame = helper.box_control(layout, prompts, sources, grid, groups=len(sources), max_sequence_length=512)
    ratios = {"boxes": count(boxes, 1) / base, "boxes+frame prompts": count(per_frame, len(sources)) / base}
    from core.models.wan_adapter import WanLayoutAdapter

    for mult in (0, 4):  # the layout adapter (grounding tokens of 3 entities per latent frame), GLIGEN's feed-forward or none
        with torch.device("meta"):
            adapter = WanLayoutAdapter.for_transformer(transformer, phrase_dim=4096, ff_mult=mult)
        adapter.attach(transformer)
        with adapter.grounding(torch.empty(len(sources), 3, adapter.config.dim, device="meta"), frames=len(sources), aspect=grid[1] / grid[2]):
            ratios[f"adapter ff_mult {mult}"] = count(None, 1) / base
        adapter.detach()
    ratios.update({f"{name} cfg": (value + 1) / 2 for name, value in list(ratios.items())})
    ratios["stock TFLOP per call"] = base / 1e12
    return ratios


def build_wan_tokenizer():
    from transformers import AutoTokenizer

    from core.text import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


def main_wan() -> None:
    """Stock WanPipeline vs WanLayoutPipeline (layout off, box mask, box mask + per-frame prompts)."""
    from diffusers import WanPipeline
    from diffusers.utils import logging as diffusers_logging

    from core.pipelines.wan import WanLayoutPipeline

    parser = argparse.ArgumentParser(description="Wan: " + __doc__.split("\n\n")[0])
    parser.add_argument("--family", default="wan", choices=["modelscope", "wan"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--config", default=None, choices=["full", "tiny"], help="default: full (Wan 2.1 1.3B) on a GPU, tiny on the CPU")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps per call (default 10 on a GPU, 6 on the CPU)")
    parser.add_argument("--frames", type=int, default=None, help="video frames, 4k+1 (default 81 on a GPU, 17 on the CPU)")
    parser.add_argument("--height", type=int, default=None, help="default 480 on a GPU, 128 on the CPU")
    parser.add_argument("--width", type=int, default=None, help="default 832 on a GPU, 128 on the CPU")
    parser.add_argument("--repeats", type=int, default=3, help="round-robin repeats; medians are printed")
    parser.add_argument("--skip-flops", action="store_true", help="skip the FLOP count at 81x480x832 on the meta device")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    config = args.config or ("full" if gpu else "tiny")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype or ("bf16" if gpu else "fp32")]
    steps = args.steps or (10 if gpu else 6)
    frames = args.frames or (81 if gpu else 17)
    height, width = args.height or (480 if gpu else 128), args.width or (832 if gpu else 128)
    diffusers_logging.set_verbosity_error()

    parts = build_wan(config, args.device, dtype)
    params = sum(p.numel() for p in parts["transformer"].parameters())
    print(f"device {args.device} ({torch.cuda.get_device_name() if gpu else 'cpu, %d threads' % torch.get_num_threads()}), {dtype}, "
          f"config {config} ({params / 1e6:.1f} M transformer parameters), {frames} frames {height}x{width}, {steps} UniPC steps, guidance 5")
    stock = WanPipeline(**parts)
    ours = WanLayoutPipeline(**parts)  # installs its processors on the shared transformer; with no control they call the stock one
    for pipe in (stock, ours):
        pipe.set_progress_bar_config(disable=True)
    common = dict(num_frames=frames, height=height, width=width, num_inference_steps=steps, guidance_scale=5.0, output_type="latent")

    def run_stock(cb):
        stock(WAN_PROMPT, generator=torch.Generator().manual_seed(0), callback_on_step_end=cb, **common)

    from core.pipelines.backbones import wan_adapter_for

    adapter = wan_adapter_for(ours, gate_init=0.5).to(device=args.device, dtype=dtype)

    def run_ours(layout, alpha, with_adapter=False, box_guidance=None):
        def run(cb):
            ours.set_layout_adapter(adapter if with_adapter else None)
            ours(WAN_PROMPT, layout, layout_alpha=alpha, box_guidance=box_guidance, generator=torch.Generator().manual_seed(0), callback_on_step_end=cb, **common)
        return run

    from core.pipelines.guidance import BoxGuidance

    runs = [
        ("stock", run_stock),
        ("off", run_ours(None, 0.0)),
        ("boxes", run_ours(wan_layout(frames, frame_prompts=False), 1.0)),
        ("boxes+frame prompts", run_ours(wan_layout(frames, frame_prompts=True), 1.0)),
        ("adapter", run_ours(wan_layout(frames, frame_prompts=False), 1.0, with_adapter=True)),
        ("energy", run_ours(wan_layout(frames, frame_prompts=False), 0.0, box_guidance=BoxGuidance(alpha=0.2, scale=1.0))),
    ]
    for _, run in runs:
        run(lambda *a: a[-1] if isinstance(a[-1], dict) else None)  # warm-up
    samples = {name: [] for name, _ in runs}
    for _ in range(args.repeats):
        for name, run in runs:
            if gpu:
                torch.cuda.reset_peak_memory_stats()
            per_step, total = step_times(run, args.device)
            peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if gpu else "n/a on the cpu"
            samples[name].append((statistics.median(per_step), total, peak))
    results = {name: (statistics.median(s[0] for s in runs_), statistics.median(s[1] for s in runs_), runs_[-1][2]) for name, runs_ in samples.items()}
    labels = {
        "stock": "stock WanPipeline",
        "off": "WanLayoutPipeline, layout off",
        "boxes": "WanLayoutPipeline, box mask on every step (3 entities)",
        "boxes+frame prompts": "WanLayoutPipeline, box mask + per-frame prompts",
        "adapter": "WanLayoutPipeline, layout adapter (ff_mult 0) on every step",
        "energy": "WanLayoutPipeline, energy guidance on 20 % of the steps (the median step is unguided: compare the calls)",
    }
    s_stock = results["stock"][0]
    for name, (per_step, total, peak) in results.items():
        print(f"{labels[name]}: {per_step:.4f} s/step ({per_step / s_stock:.3f}x stock), {total:.2f} s per call, peak {peak}")

    from torch.utils.flop_counter import FlopCounterMode

    latent_frames = (frames - 1) // 4 + 1
    x = torch.randn(1, 16, latent_frames, height // 8, width // 8, device=args.device, dtype=dtype)
    text = torch.randn(1, 512, parts["transformer"].config.text_dim, device=args.device, dtype=dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        parts["transformer"](hidden_states=x, timestep=torch.tensor([500.0], device=args.device), encoder_hidden_states=text, return_dict=False)
    step_flops = 2 * counter.get_total_flops()  # a CFG step: two transformer calls
    peak_tflops = matmul_tflops(args.device, dtype)
    achieved = step_flops / s_stock / 1e12
    print(f"stock step: {step_flops / 1e9:.2f} GFLOP -> {achieved:.3f} TFLOP/s achieved vs {peak_tflops:.2f} TFLOP/s dense matmul on this device ({achieved / peak_tflops:.2f})")
    if not args.skip_flops:
        ratios = wan_flop_ratios()
        print(
            f"FLOPs, Wan 2.1 1.3B transformer at 81x480x832 (meta device): stock {ratios['stock TFLOP per call']:.1f} TFLOP per call; "
            f"box mask {ratios['boxes']:.3f}x per conditional call ({ratios['boxes cfg']:.3f}x per CFG step), "
            f"box mask + per-frame prompts {ratios['boxes+frame prompts']:.3f}x ({ratios['boxes+frame prompts cfg']:.3f}x per CFG step) (goal <= 1.3); "
            f"layout adapter, ff_mult 0 {ratios['adapter ff_mult 0']:.3f}x ({ratios['adapter ff_mult 0 cfg']:.3f}x per CFG step), "
            f"ff_mult 4 {ratios['adapter ff_mult 4']:.3f}x ({ratios['adapter ff_mult 4 cfg']:.3f}x) (goal <= 1.10)"
        )


if __name__ == "__main__":
    main()
