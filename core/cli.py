"""The headless command line: plan, graph, render, batch, eval.

    python launch.py plan "A red ball rolls from left to right across the grass." --out plan.json
    python launch.py graph plan.json --out dsg.json
    python launch.py render --plan plan.json --out video.mp4
    python launch.py render --prompt "..." --out video.mp4
    python launch.py batch jobs.jsonl --out videos/ [--workers N] [--gpus-per-worker G] [--ray-address ADDR]

Errors exit with code 2 and print one line on stderr that starts with ``error:``; no output file is
left behind (every file is written atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from core import settings as specs
from core.messages import one_line
from core.outputs import atomic_write_bytes, check_writable, write_together
from core.plan import PlanValidationError, load_plan, save_plan
from core.settings import add_model_options, model_options


class CliError(Exception):
    """A user-facing error: printed as ``error: <message>`` with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise CliError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="launch.py", description="Director Studio: prompt -> video plan -> scene graph -> video.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    plan = sub.add_parser("plan", help="turn a prompt into a video plan (JSON)")
    plan.add_argument("prompt")
    plan.add_argument("--out", type=Path, required=True)
    _planner_options(plan)

    graph = sub.add_parser("graph", help="per-frame dynamic scene graphs of a plan (JSON)")
    graph.add_argument("plan", type=Path)
    graph.add_argument("--out", type=Path, required=True)

    render = sub.add_parser("render", help="render a plan (or a prompt) to an MP4")
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument("--plan", type=Path)
    source.add_argument("--prompt")
    render.add_argument("--out", type=Path, required=True)
    _render_options(render)

    batch = sub.add_parser("batch", help="render every job of a JSONL file on Ray (MP4s, plans, manifest.jsonl)")
    batch.add_argument("jobs", type=Path, help='JSONL, one {"prompt": ...} or {"plan": {...}} per line (optional "id", "seed", render settings)')
    batch.add_argument("--out", type=Path, required=True, help="output folder")
    _cluster_options(batch)
    _render_options(batch)
    batch.set_defaults(device=None)  # cuda with --gpus-per-worker, else cpu

    evaluate = sub.add_parser("eval", help="render a prompt file and measure layout control (metrics.json, report.html)")
    evaluate.add_argument("prompts", type=Path, help='JSONL, one {"prompt": ...} per line (optional "checks")')
    evaluate.add_argument("--out", type=Path, required=True, help="output folder")
    evaluate.add_argument("--variant", default="full", help="full, no-graph, no-layout or training-free")
    evaluate.add_argument("--limit", type=int, default=None, help="first N prompts only")
    add_setting_option(evaluate, specs.STEPS)
    add_setting_option(evaluate, specs.GUIDANCE_SCALE)
    _guidance_interval_option(evaluate)
    add_setting_option(evaluate, specs.GUIDANCE_RESCALE)
    add_setting_option(evaluate, specs.AUTOGUIDANCE_SCALE)
    add_setting_option(evaluate, specs.LAYOUT_ALPHA)
    add_setting_option(evaluate, specs.SEED)
    _box_guidance_options(evaluate)
    add_model_options(evaluate)
    _cluster_options(evaluate, serial_default=True)
    evaluate.set_defaults(device=None)  # cuda with --gpus-per-worker, else cpu
    return parser


def _render_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``render`` after ``--out`` (model, sampling, layout control, seed, planner),
    shared by ``batch``."""
    add_model_options(parser)
    add_setting_option(parser, specs.STEPS)
    add_setting_option(parser, specs.GUIDANCE_SCALE)
    _guidance_interval_option(parser)
    add_setting_option(parser, specs.GUIDANCE_RESCALE)
    add_setting_option(parser, specs.AUTOGUIDANCE_SCALE)
    add_setting_option(parser, specs.LAYOUT_ALPHA)
    parser.add_argument(
        "--layout-control", choices=["auto", "adapter", "guidance", "none"], default="auto",
        help="adapter, training-free box guidance, or none (auto: the adapter if the model has one, else guidance)",
    )
    parser.add_argument("--frame-prompts", choices=["auto", "on", "off"], default="auto", help="a prompt per frame from its scene graph (auto: on for backbones)")
    _box_guidance_options(parser)
    add_setting_option(parser, specs.SEED)
    _planner_options(parser)


def _cluster_options(parser: argparse.ArgumentParser, *, serial_default: bool = False) -> None:
    """``--workers``, ``--gpus-per-worker`` and ``--ray-address`` (``batch``; ``eval`` renders here
    without Ray unless ``--workers`` is given)."""
    default = "render here, without Ray" if serial_default else "one per GPU with --gpus-per-worker, else one per CPU"
    parser.add_argument("--workers", type=int, default=None, help=f"render workers on Ray, one pipeline each (default: {default})")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (default 0: CPU workers; 1: one worker per GPU)")
    parser.add_argument("--ray-address", default=None, help="join a running Ray cluster: auto or ray://HOST:PORT (default: a local cluster on this machine)")


def add_setting_option(parser: argparse.ArgumentParser, setting: specs.Setting) -> None:
    """Add ``setting.flag`` with its default, and its range in the help (core.settings defines both;
    RenderSettings checks the range and the error names the flag)."""
    default = "the model's own" if setting.default is None else f"{setting.default:g}"
    help_text = setting.help if setting.default is None else f"{setting.help} (default {default})"
    parser.add_argument(
        setting.flag, type=int if setting.integer else float, default=setting.default, help=f"{help_text}; {setting.range_text()}",
    )


def _guidance_interval_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--guidance-interval", type=float, nargs=2, default=None, metavar=("START", "END"),
        help="fractions of the steps (0 <= START <= END <= 1) with classifier-free guidance; the rest run the conditional branch alone "
        "(default: the model's own, every step for models without one)",
    )


def _box_guidance_options(parser: argparse.ArgumentParser) -> None:
    add_setting_option(parser, specs.BOX_GUIDANCE_ALPHA)
    add_setting_option(parser, specs.BOX_GUIDANCE_SCALE)
    parser.add_argument(
        "--box-guidance-method", choices=["energy", "mask"], default=None,
        help="training-free box guidance: energy step or attention masking (default: energy on UNet3D, mask on Wan)",
    )
    parser.add_argument(
        "--unconditional-layout", choices=["null", "none"], default="null",
        help="unconditional branch of classifier-free guidance: null grounding tokens (GLIGEN), or no gated attention (faster, weaker on the toy model)",
    )


def _planner_options(parser: argparse.ArgumentParser) -> None:
    from core.planner import PLANNERS
    from core.planner.llm import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, MAX_RETRIES, TIMEOUT_RANGE_S

    parser.add_argument("--planner", choices=PLANNERS, default=PLANNERS[0], help="rules: offline (spaCy); openai: any OpenAI-compatible LLM endpoint")
    parser.add_argument("--llm-model", default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    parser.add_argument(
        "--llm-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
        help=f"seconds to wait for the LLM endpoint per request ({TIMEOUT_RANGE_S[0]:g}-{TIMEOUT_RANGE_S[1]:g}; default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--llm-retries", type=int, default=DEFAULT_RETRIES, help=f"times a failed LLM request is sent again (0-{MAX_RETRIES}; default {DEFAULT_RETRIES})")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the LLM answer cache")
    parser.add_argument("--frames", type=int, default=16, help="frames per scene (8-64)")


def _check_planner_options(args) -> None:
    """``--frames`` and, for the openai planner, ``--llm-timeout`` and ``--llm-retries`` in range."""
    if not 8 <= args.frames <= 64:
        raise CliError(f"--frames: must be in [8, 64] (got {args.frames})")
    if args.planner == "openai":
        from core.planner import PlanError
        from core.planner.llm import check_llm_options

        try:
            check_llm_options(args.llm_timeout, args.llm_retries)
        except PlanError as error:
            raise CliError(f"--{str(error).replace('_', '-', 1)}") from None


def _make_plan(args):
    _check_planner_options(args)
    if args.planner == "openai":
        from core.planner.llm import OpenAIPlanner

        planner = OpenAIPlanner(model=args.llm_model, timeout=args.llm_timeout, retries=args.llm_retries, cache_dir="" if args.no_cache else None)
        return planner.plan(args.prompt, num_frames=args.frames)
    from core.planner.rules import plan_with_rules

    return plan_with_rules(args.prompt, num_frames=args.frames)


def cmd_plan(args) -> None:
    check_writable(args.out)
    plan = _make_plan(args)
    save_plan(plan, args.out)
    print(f"wrote {args.out} ({len(plan.scenes)} scene(s), {len(plan.entities)} entit{'y' if len(plan.entities) == 1 else 'ies'})")


def cmd_graph(args) -> None:
    from core.scene_graph import dsg_to_json

    check_writable(args.out)
    plan = load_plan(args.plan)
    atomic_write_bytes(args.out, (json.dumps(dsg_to_json(plan), indent=1) + "\n").encode())
    print(f"wrote {args.out}")


def cmd_render(args) -> None:
    from tqdm import tqdm

    from core.export import encode_mp4
    from core.render import load_pipeline, render_plan

    if args.out.suffix.lower() != ".mp4":
        raise CliError(f"--out: must end in .mp4 (got {args.out.name})")
    plan_path = args.out.with_suffix(".plan.json")
    check_writable(args.out)
    check_writable(plan_path, "--out (its plan)")
    settings = _settings(args)
    plan = load_plan(args.plan) if args.plan else _make_plan(args)
    pipe = load_pipeline(**model_options(args))
    pipe.set_progress_bar_config(disable=True)
    total = sum(1 for _ in plan.scenes) * settings.num_inference_steps
    with tqdm(total=total, unit="step", desc="render", disable=None) as bar:

        def on_progress(p):
            bar.set_description(f"scene {p.scene + 1}/{p.scenes}")
            bar.n = p.scene * p.steps + p.step
            bar.refresh()

        frames = render_plan(pipe, plan, settings, on_progress=on_progress)
    write_together({args.out: lambda tmp: encode_mp4(frames, tmp, fps=plan.fps), plan_path: lambda tmp: save_plan(plan, tmp)})
    print(f"wrote {args.out} ({len(frames)} frames, {frames.shape[2]}x{frames.shape[1]}, {plan.fps} fps) and {plan_path}")


def cmd_batch(args) -> None:
    from core.batch import require_ray, run_batch
    from core.render import check_model_options

    require_ray()  # BatchError (a ValueError): one line saying how to install it
    cluster = _cluster(args)
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out: {args.out} exists and is not a folder")
    check_writable(args.out / "manifest.jsonl", "--out")
    settings = _settings(args)
    _check_planner_options(args)
    model = model_options(args)
    if cluster.address is None:
        check_model_options(**model)  # this machine is the cluster: fail before it starts
    planner = {"planner": args.planner, "llm_model": args.llm_model, "llm_timeout": args.llm_timeout, "llm_retries": args.llm_retries, "no_cache": args.no_cache}
    summary = run_batch(args.jobs, args.out, settings=settings, model=model, planner=planner, frames=args.frames, cluster=cluster)
    print(summary.line())


def _cluster(args):
    """The Cluster of ``--workers``, ``--gpus-per-worker`` and ``--ray-address``; sets ``args.device``
    when not given (cuda with GPUs per worker, else cpu)."""
    from core.batch import Cluster

    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers: must be >= 1 (got {args.workers})")
    if not 0 <= args.gpus_per_worker <= 64:
        raise CliError(f"--gpus-per-worker: must be in [0, 64] (got {args.gpus_per_worker:g})")
    if args.device is None:
        args.device = "cuda" if args.gpus_per_worker > 0 else "cpu"
    if args.gpus_per_worker > 0 and args.device != "cuda":
        raise CliError(f"--device: must be cuda with --gpus-per-worker (Ray gives each worker its GPUs; got {args.device})")
    if args.gpus_per_worker == 0 and args.device.startswith("cuda"):
        raise CliError("--device: cuda needs --gpus-per-worker (e.g. 1: one worker per GPU)")
    return Cluster(workers=args.workers, gpus_per_worker=args.gpus_per_worker, address=args.ray_address)


def cmd_eval(args) -> None:
    from tqdm import tqdm

    from core.evaluation.run import read_prompts, run_eval, variant_settings
    from core.render import load_pipeline

    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit: must be >= 1 (got {args.limit})")
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out: {args.out} exists and is not a folder")
    check_writable(args.out / "metrics.json", "--out")
    settings = _checked(
        lambda: variant_settings(
            args.variant, num_inference_steps=args.steps, guidance_scale=args.guidance_scale, seed=args.seed,
            guidance_interval=args.guidance_interval, guidance_rescale=args.guidance_rescale, autoguidance_scale=args.autoguidance_scale,
            layout_alpha=args.layout_alpha,
            box_guidance_alpha=args.box_guidance_alpha, box_guidance_scale=args.box_guidance_scale,
            box_guidance_method=args.box_guidance_method, unconditional_layout=args.unconditional_layout,
        )
    )
    prompts = read_prompts(args.prompts, args.limit)
    if args.workers is None:  # the serial path: one pipeline, here
        if args.ray_address is not None or args.gpus_per_worker:
            raise CliError(f"--{'ray-address' if args.ray_address is not None else 'gpus-per-worker'}: needs --workers (eval renders here without it)")
        args.device = args.device or "cpu"
        pipe, cluster = load_pipeline(**model_options(args)), None
        pipe.set_progress_bar_config(disable=True)
    else:  # the batch path: Ray workers
        from core.batch import require_ray
        from core.render import check_model_options

        require_ray()
        pipe, cluster = None, _cluster(args)
        if cluster.address is None:
            check_model_options(**model_options(args))
    with tqdm(total=len(prompts), unit="video", desc=f"eval {args.variant}", disable=None) as bar:
        metrics = run_eval(
            prompts, args.out, pipe=pipe, settings=settings, variant=args.variant, on_video=lambda done, total: bar.update(1),
            cluster=cluster, model=model_options(args) if cluster else None,
        )
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'report.html'}")


def _settings(args):
    from core.render import RenderSettings

    return _checked(
        lambda: RenderSettings(
            num_inference_steps=args.steps, guidance_scale=args.guidance_scale, layout_alpha=args.layout_alpha, seed=args.seed,
            guidance_interval=args.guidance_interval, guidance_rescale=args.guidance_rescale, autoguidance_scale=args.autoguidance_scale,
            layout_control=args.layout_control, frame_prompts={"auto": None, "on": True, "off": False}[args.frame_prompts],
            box_guidance_alpha=args.box_guidance_alpha, box_guidance_scale=args.box_guidance_scale,
            box_guidance_method=args.box_guidance_method, unconditional_layout=args.unconditional_layout,
        )
    )


def _checked(make):
    """``make()`` a RenderSettings; a validation error becomes a CliError naming the option."""
    from pydantic import ValidationError

    from core.plan import format_validation_error

    try:
        return make()
    except ValidationError as error:
        line = format_validation_error(error)[0]
        field, _, message = line.partition(": ")
        raise CliError(f"--{field.replace('num_inference_steps', 'steps').replace('_', '-')}: {message}") from None


def _print_error(error: object) -> None:
    """``error: <message>`` on stderr: one line, control characters escaped, at most 300 characters."""
    print(one_line(f"error: {error}"), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 0
        {"plan": cmd_plan, "graph": cmd_graph, "render": cmd_render, "batch": cmd_batch, "eval": cmd_eval}[args.command](args)
        return 0
    except (CliError, PlanValidationError, ValueError) as error:
        _print_error(error)
        return 2
    except FileNotFoundError as error:
        _print_error(f"{error.filename}: no such file")
        return 2
    except IsADirectoryError as error:
        _print_error(f"{error.filename}: is a folder, not a file")
        return 2
    except OSError as error:
        _print_error(error)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
