"""Render settings, each defined once: default, allowed range and help.

``core.render.RenderSettings`` (the validated settings object), the command line (``launch.py render``
and ``eval``), the studio's sliders and ``Layout2VidPipeline.check_inputs`` all read their defaults and
ranges from here, so a range can never differ between them. A default of ``None`` means "the model's
own": :func:`model_guidance_scale` and :func:`model_layout_alpha` resolve it from a model's config
(``model_index.json``) in the one place that does. The model options (``--model``, ``--device``,
...) live here too, shared by the command line and the studio.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    """One numeric render setting.

    Attributes:
        name: the keyword in RenderSettings and the pipeline (``num_inference_steps``).
        flag: the command-line option (``--steps``).
        default: the value when none is given; None: the model's own (see the module docstring).
        low, high: the closed range of allowed values.
        help: what it does, in a few words (the CLI adds the range and the default).
        integer: whether values are integers.
    """

    name: str
    flag: str
    default: float | int | None
    low: float | int
    high: float | int
    help: str
    integer: bool = False

    def _text(self, value: float | int) -> str:
        return str(value) if self.integer else f"{value:g}"

    def range_text(self) -> str:
        """``"1-200"``, as the CLI help writes the range."""
        return f"{self._text(self.low)}-{self._text(self.high)}"

    def check(self, value: float | int) -> None:
        """Raise ValueError ``"<name>: must be in [low, high] (got value)"`` if out of range."""
        if not self.low <= value <= self.high:
            raise ValueError(f"{self.name}: must be in [{self._text(self.low)}, {self._text(self.high)}] (got {value})")


DEFAULT_GUIDANCE_SCALE = 4.0  # classifier-free guidance of a model whose config names none
OPEN_WORLD_LAYOUT_ALPHA = 0.3  # GLIGEN's scheduled sampling: layout early, the backbone's prior late
CLOSED_WORLD_LAYOUT_ALPHA = 1.0  # a model trained with its adapter always on (the shipped toy models)

STEPS = Setting("num_inference_steps", "--steps", 25, 1, 200, "denoising steps", integer=True)
GUIDANCE_SCALE = Setting("guidance_scale", "--guidance-scale", None, 0.0, 30.0, "classifier-free guidance weight (default: the model's own, 2.0 for model v2, 2.5 for layout2vid-toy)")
LAYOUT_ALPHA = Setting(
    "layout_alpha", "--layout-alpha", None, 0.0, 1.0,
    "fraction of steps with the adapter's gated attention (default: the model's own, 1 for the shipped toy models, 0.3 for backbones)",
)
GUIDANCE_RESCALE = Setting(
    "guidance_rescale", "--guidance-rescale", 0.0, 0.0, 1.0,
    "share of the guided prediction rescaled to the conditional one's standard deviation "
    "(Lin et al. 2024; 0: plain classifier-free guidance)",
)
AUTOGUIDANCE_SCALE = Setting(
    "autoguidance_scale", "--autoguidance-scale", None, 1.0, 10.0,
    "autoguidance weight: push away from the model's weaker guiding model "
    "(Karras et al. 2024; default: the model's own, 1 = off; Wan models with a guidance_model/ only)",
)
BOX_GUIDANCE_ALPHA = Setting("box_guidance_alpha", "--box-guidance-alpha", 0.2, 0.0, 1.0, "fraction of steps with training-free box guidance")
BOX_GUIDANCE_SCALE = Setting("box_guidance_scale", "--box-guidance-scale", 1.0, 0.0, 10.0, "step size of the training-free box guidance (energy method)")
SEED = Setting("seed", "--seed", 0, 0, 2**31 - 1, "base seed (scene i uses seed + i unless the plan sets its own)", integer=True)
RENDER_SETTINGS = (STEPS, GUIDANCE_SCALE, LAYOUT_ALPHA, BOX_GUIDANCE_ALPHA, BOX_GUIDANCE_SCALE, SEED, GUIDANCE_RESCALE, AUTOGUIDANCE_SCALE)


def _get(config: Mapping | object, key: str):
    return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)


def model_guidance_scale(config: Mapping | object) -> float:
    """The guidance weight a model asks for: its config's ``default_guidance_scale`` (the value the
    toy model was selected with, see its model card), else :data:`DEFAULT_GUIDANCE_SCALE`.

    Args:
        config: a pipeline's ``config`` or the dict of its ``model_index.json``.
    """
    value = _get(config, "default_guidance_scale")
    return float(value) if value is not None else DEFAULT_GUIDANCE_SCALE


def model_layout_alpha(config: Mapping | object) -> float:
    """The layout alpha a model asks for: 1.0 for a closed-world model (its config lists the
    ``backgrounds`` it was trained on, like the toy model, whose adapter was always on in training),
    else 0.3 (VideoDirectorGPT / GLIGEN on open-domain backbones).

    Args:
        config: a pipeline's ``config`` or the dict of its ``model_index.json``.
    """
    return CLOSED_WORLD_LAYOUT_ALPHA if _get(config, "backgrounds") else OPEN_WORLD_LAYOUT_ALPHA


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose and place the rendering model, shared by the command line and the
    studio (``launch.py`` with no command)."""
    parser.add_argument("--model", default=None, help="diffusers pipeline folder or hub id (default: model v2, assets/wan-toy; the VideoDirectorGPT reference: assets/layout2vid-toy)")
    parser.add_argument("--adapter", type=Path, default=None, help="layout adapter .safetensors for a backbone")
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or mps")
    parser.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="default: fp32 on the cpu, fp16 on a GPU")
    parser.add_argument("--scheduler", default=None, choices=["ddim", "dpm++"], help="UNet models only: default DDIM for layout2vid-toy, DPM-Solver++ for ModelScope; Wan models, model v2 included, keep their UniPC flow scheduler")
    parser.add_argument(
        "--cpu-offload", nargs="?", const="model", default=None, choices=["model", "group"],
        help="for small GPUs: 'model' (the default when given bare) keeps only the running model on the GPU, 'group' streams one block at a time",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet")


def model_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for ``core.render.load_pipeline`` from :func:`add_model_options`' options."""
    dtype = args.dtype or ("fp32" if args.device == "cpu" else "fp16")
    return {
        "model": args.model, "adapter": args.adapter, "device": args.device, "dtype": dtype,
        "scheduler": args.scheduler, "cpu_offload": args.cpu_offload, "compile_unet": args.compile,
    }
