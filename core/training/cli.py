"""``python -m core.training STAGE [options]``: the training stages as one command.

Each stage's options are the fields of its config dataclass (:mod:`core.training.config`) plus the
folders it reads and writes. A bad option or a missing file prints one line,
``error: <option or file>: <reason>``, and exits with status 2 before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import core.training
from core.training.config import (
    AdapterTrainConfig,
    DecoderTrainConfig,
    ExportConfig,
    GraphTrainConfig,
    RefineConfig,
    ToyTrainConfig,
    WanExportConfig,
    WanRefineConfig,
    WanSoupConfig,
    WanToyTrainConfig,
)


def add_config_options(parser: argparse.ArgumentParser, config: type) -> None:
    """Add ``--field-name`` for every field of the dataclass ``config`` that is not ``HIDDEN``.

    The option's default is the field's; its type that of the default unless the field's metadata
    names one (:func:`core.training.config.option`); a bool field without an ``action`` becomes
    ``--name`` / ``--no-name``.
    """
    for item in fields(config):
        meta = dict(item.metadata)
        if not meta.pop("cli", True):
            continue
        flag = "--" + item.name.replace("_", "-")
        help_text = meta.pop("help", None) or None
        if isinstance(item.default, bool) and "action" not in meta:
            meta["action"] = argparse.BooleanOptionalAction
        elif "action" not in meta:
            meta.setdefault("type", type(item.default))
        parser.add_argument(flag, default=item.default, help=help_text, **meta)


def config_from_args(args: argparse.Namespace, config: type):
    """An instance of ``config`` from the parsed options (lists from ``nargs`` become tuples).

    Raises:
        ValueError: the config's own checks.
    """
    values = {item.name: getattr(args, item.name) for item in fields(config) if item.metadata.get("cli", True)}
    return config(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _toy(args: argparse.Namespace) -> int:
    from core.training.toy import train_toy

    train_toy(args.out, config_from_args(args, ToyTrainConfig))
    return 0


def _graph(args: argparse.Namespace) -> int:
    import torch

    from core.training.graph import train_graph

    graph_cfg = config_from_args(args, GraphTrainConfig)
    torch.set_num_threads(graph_cfg.threads)
    cfg = ToyTrainConfig(**json.loads((args.run / "config.json").read_text()))
    data = torch.load(args.run / "data.pt", weights_only=False)
    train_graph(args.run, cfg, data, graph_cfg)
    return 0


def _decoder(args: argparse.Namespace) -> int:
    import torch

    from core.training.decoder import train_decoder

    cfg = config_from_args(args, DecoderTrainConfig)
    torch.set_num_threads(cfg.threads)
    print(train_decoder(args.run, cfg))
    return 0


def _refine(args: argparse.Namespace) -> int:
    import torch

    from core.training.refine import train_refine

    cfg = config_from_args(args, RefineConfig)
    torch.set_num_threads(cfg.threads)
    print(train_refine(args.run, args.model, cfg))
    return 0


def _export(args: argparse.Namespace) -> int:
    from core.training.export import export

    print(export(args.run, args.to, config_from_args(args, ExportConfig)))
    return 0


def _adapter(args: argparse.Namespace) -> int:
    from core.training.adapter import train_adapter_file

    cfg = config_from_args(args, AdapterTrainConfig)
    print(train_adapter_file(args.model, args.images, args.annotations, args.out, cfg, device=args.device, dtype=args.dtype))
    return 0


def _wan_toy(args: argparse.Namespace) -> int:
    from core.training.wan_toy import train_wan_toy

    print(train_wan_toy(args.out, config_from_args(args, WanToyTrainConfig), args.autoencoder, args.init_from, args.data_from))
    return 0


def _wan_export(args: argparse.Namespace) -> int:
    from core.training.wan_toy import export_wan_toy

    print(export_wan_toy(args.run, args.to, config_from_args(args, WanExportConfig)))
    return 0


def _wan_refine(args: argparse.Namespace) -> int:
    from core.training.wan_toy import refine_wan_decoder

    print(refine_wan_decoder(args.run, args.model, args.to, config_from_args(args, WanRefineConfig), args.pairs_from))
    return 0


def _wan_soup(args: argparse.Namespace) -> int:
    from core.training.wan_toy import soup_wan_toy

    print(soup_wan_toy(args.models, args.to, config_from_args(args, WanSoupConfig)))
    return 0


# stage -> (help, config dataclass, runner)
STAGES = {
    "toy": ("generate toy-world data and train (resumable)", ToyTrainConfig, _toy),
    "adapter": ("train a layout adapter on a frozen backbone from COCO boxes (VideoDirectorGPT recipe)", AdapterTrainConfig, _adapter),
    "graph": ("stage 4: train the scene-graph encoder with the UNet (after the toy stages)", GraphTrainConfig, _graph),
    "decoder": ("stage 5: fine-tune the autoencoder's decoder, encoder frozen (after the toy stages)", DecoderTrainConfig, _decoder),
    "refine": ("stage 6: teach the decoder the denoiser's own samples (after stage 5)", RefineConfig, _refine),
    "export": ("write a trained run as a pipeline folder", ExportConfig, _export),
    "wan-toy": ("model v2: the miniature Wan at 128x128 (resumable, at most --max-minutes per command)", WanToyTrainConfig, _wan_toy),
    "wan-export": ("write a wan-toy run as a WanLayoutPipeline folder", WanExportConfig, _wan_export),
    "wan-refine": ("teach model v2's decoder the denoiser's own samples (after wan-export)", WanRefineConfig, _wan_refine),
    "wan-soup": ("average the weights of exported wan-toy models (a uniform model soup) into one folder", WanSoupConfig, _wan_soup),
}


def build_parser() -> argparse.ArgumentParser:
    """The command's parser: one subcommand per entry of :data:`STAGES`."""
    parser = argparse.ArgumentParser(prog="python -m core.training", description=core.training.__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, config, _) in STAGES.items():
        stage = sub.add_parser(name, help=help_text)
        if name == "toy":
            stage.add_argument("--out", type=Path, default=Path("runs/toy"))
        elif name == "wan-toy":
            stage.add_argument("--out", type=Path, default=Path("runs/wan-toy"))
            stage.add_argument(
                "--autoencoder", type=Path, default=None,
                help="a trained frame autoencoder folder (e.g. assets/wan-toy/vae) standing in for the vae, refine and decoder parts",
            )
            stage.add_argument(
                "--init-from", type=Path, default=None,
                help="an exported wan-toy pipeline (e.g. assets/wan-toy) whose transformer and layout adapter start the transformer part",
            )
            stage.add_argument(
                "--data-from", type=Path, nargs="+", default=None, metavar="RUN",
                help="earlier wan-toy runs (same autoencoder) whose cached clips (data.pt), joined, are this run's data instead of --clips new ones",
            )
        elif name == "wan-soup":
            stage.add_argument(
                "--models", type=Path, nargs="+", required=True, metavar="MODEL",
                help="two or more exported wan-toy pipelines (wan-export) on one autoencoder, e.g. fine-tunes from one start",
            )
        elif name == "adapter":
            stage.add_argument("--model", required=True, help="diffusers text-to-video folder or hub id")
            stage.add_argument("--images", type=Path, required=True, help="folder of the images named in the annotations")
            stage.add_argument("--annotations", type=Path, required=True, help="COCO instances JSON")
            stage.add_argument("--out", type=Path, default=Path("layout2vid.safetensors"))
        else:
            stage.add_argument("--run", type=Path, default=Path({"wan-export": "runs/wan-toy", "wan-refine": "runs/wan-refine"}.get(name, "runs/toy")))
        if name == "refine":
            stage.add_argument("--model", default="assets/layout2vid-toy", help="the pipeline whose samples the decoder learns")
        if name == "wan-refine":
            stage.add_argument("--model", type=Path, default=Path("assets/wan-toy"), help="the wan-toy pipeline whose samples its decoder learns")
        if name == "wan-refine":
            stage.add_argument("--to", type=Path, required=True, help="the new pipeline folder: --model with the refined autoencoder")
            stage.add_argument(
                "--pairs-from", type=Path, nargs="+", default=None, metavar="RUN",
                help="earlier wan-refine runs of the same --model whose sampled pairs (and aligned targets) are trained on beside this run's own",
            )
        if name in ("export", "wan-export", "wan-soup"):
            stage.add_argument("--to", type=Path, default=Path("assets/layout2vid-toy" if name == "export" else "assets/wan-toy"))
        add_config_options(stage, config)
        if name == "adapter":
            stage.add_argument("--device", default="cpu")
            stage.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"])
    return parser


def error_line(error: Exception, config: type) -> str:
    """The one line printed for ``error``: a missing file by name; a config field's error by its
    option (``"ema_decay: ..."`` -> ``"--ema-decay: ..."``); anything else as it reads."""
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"error: {error.filename}: no such file"
    name, colon, reason = str(error).partition(": ")
    if colon and name in {item.name for item in fields(config)}:
        return f"error: --{name.replace('_', '-')}: {reason}"
    return f"error: {error}"


def main(argv: list[str] | None = None) -> int:
    """Run one stage; returns the exit status (0, or 2 after an ``error:`` line on stderr)."""
    args = build_parser().parse_args(argv)
    _, config, runner = STAGES[args.command]
    try:
        return runner(args)
    except (ValueError, OSError) as error:
        print(error_line(error, config), file=sys.stderr)
        return 2
