"""Loading pipelines: the shipped toy model, or ModelScope-class text-to-video backbones.

A model is a folder in the diffusers layout (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``), either saved by :class:`Layout2VidPipeline`
or by the stock ``TextToVideoSDPipeline``, or a hub id where the hub is reachable. A backbone
gets VideoDirectorGPT's layout adapter from a safetensors file (``--adapter``) or, without one,
the training-free box guidance of :mod:`core.pipelines.guidance`.

Adapter files are safetensors holding :class:`LayoutAdapter`'s state dict, with its config as JSON
under the metadata key ``layout2vid_adapter``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from core.models.layout import LayoutAdapter
from core.outputs import NEW_FILE_MODE

ADAPTER_METADATA_KEY = "layout2vid_adapter"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SCHEDULERS = ("ddim", "dpm++")


class AdapterMismatchError(ValueError):
    """An adapter file whose keys or shapes do not fit the model; the message lists them."""


def check_device(device: str, dtype: str) -> None:
    """Raise ValueError naming ``device`` or ``dtype`` when this machine cannot run them."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: must be one of {', '.join(DTYPES)} (got {dtype!r})")
    if device != "cpu" and not device.startswith("cuda") and device != "mps":
        raise ValueError(f"device: must be cpu, cuda[:N] or mps (got {device!r})")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but torch sees no CUDA device (allowed here: cpu)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device: 'mps' requested but torch sees no Apple GPU (allowed here: cpu)")
    if dtype != "fp32" and device == "cpu":
        raise ValueError(f"dtype: {dtype} is not supported on the cpu; use fp32")


def resolve_model_dir(model: str | Path) -> Path:
    """A local folder for ``model``: the folder itself, or a hub snapshot for an ``org/name`` id.

    Raises:
        OSError: not a folder with ``model_index.json``, and not downloadable.
    """
    path = Path(model)
    if (path / "model_index.json").exists():
        return path
    if path.exists():
        raise OSError(f"model: {path} has no model_index.json (expected a diffusers pipeline folder)")
    text = str(model)
    if text.count("/") != 1 or text.startswith((".", "/")):
        raise OSError(f"model: {text} is neither a folder nor a hub id of the form org/name")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text))
    except Exception as error:  # noqa: BLE001 - any hub failure becomes one line
        hint = "; set HF_HUB_OFFLINE=0 to allow downloads" if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False") else ""
        raise OSError(f"model: {text} is not a local folder and could not be fetched from the hub ({type(error).__name__}{hint})") from None


def adapter_for(unet, text_encoder, *, gate_init: float = 0.0, fourier_freqs: int = 8, ff_mult: int = 4) -> LayoutAdapter:
    """A new LayoutAdapter shaped for ``unet``, taking phrase embeddings from ``text_encoder``.

    The phrase dimension is the text encoder's ``hidden_size`` (CLIP's pooled output, or MiniLM's
    mean pooling). ``gate_init`` 0 keeps a pretrained backbone's output unchanged at the start
    (GLIGEN, arXiv 2301.07093, section 3.2). ``ff_mult``: see :class:`LayoutAdapter`.
    """
    return LayoutAdapter.for_unet(unet, phrase_dim=text_encoder.config.hidden_size, gate_init=gate_init, fourier_freqs=fourier_freqs, ff_mult=ff_mult)


def save_adapter(adapter: LayoutAdapter, path: str | Path) -> Path:
    """Write ``adapter`` as a safetensors file (fp32 or its own dtype), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in adapter.state_dict().items()}
    metadata = {ADAPTER_METADATA_KEY: json.dumps({k: v for k, v in adapter.config.items() if not k.startswith("_")})}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.chmod(tmp, NEW_FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _read_adapter_file(path: Path) -> tuple[dict, dict]:
    """(config, state dict) of an adapter file (see :func:`save_adapter`)."""
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # noqa: BLE001 - a corrupt file is a user error
        raise ValueError(f"adapter: {path} is not a readable safetensors file ({error})") from None
    return json.loads(metadata.get(ADAPTER_METADATA_KEY, "{}")), state


def _load_checked(adapter, state: dict, path: Path, what: str):
    """Load ``state`` into ``adapter``, or raise AdapterMismatchError listing every key that does not fit."""
    expected = adapter.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (file vs model): {_listing(mismatched)}")
        raise AdapterMismatchError(f"adapter: {path.name} does not fit this model's {what}: " + "; ".join(parts))
    adapter.load_state_dict(state)
    return adapter


def load_adapter(path: str | Path, unet, text_encoder) -> LayoutAdapter:
    """Load a layout adapter file for ``unet`` (see :func:`save_adapter`).

    Raises:
        FileNotFoundError: no such file.
        AdapterMismatchError: missing keys, unexpected keys or shape mismatches, all listed.
    """
    path = Path(path)
    config, state = _read_adapter_file(path)
    adapter = adapter_for(unet, text_encoder, fourier_freqs=int(config.get("fourier_freqs", 8)), ff_mult=int(config.get("ff_mult", 4)))
    return _load_checked(adapter, state, path, "UNet")


def wan_adapter_for(pipe, *, gate_init: float = 0.0, fourier_freqs: int = 8, ff_mult: int = 0, depth_slots: int = 0):
    """A new :class:`core.models.wan_adapter.WanLayoutAdapter` for a WanLayoutPipeline's transformer,
    taking phrase embeddings of its text encoder's width (UMT5's ``d_model``, a BERT's ``hidden_size``)."""
    from core.models.wan_adapter import WanLayoutAdapter

    text_config = pipe.text_encoder.config
    return WanLayoutAdapter.for_transformer(
        pipe.transformer if pipe.transformer is not None else pipe.transformer_2, phrase_dim=getattr(text_config, "d_model", None) or text_config.hidden_size,
        gate_init=gate_init, fourier_freqs=fourier_freqs, ff_mult=ff_mult, depth_slots=depth_slots,
    )


def load_wan_adapter(path: str | Path, pipe):
    """Load a Wan layout adapter file (:func:`save_adapter` of a WanLayoutAdapter) for ``pipe``.

    Raises:
        FileNotFoundError: no such file.
        AdapterMismatchError: missing keys, unexpected keys or shape mismatches, all listed.
    """
    path = Path(path)
    config, state = _read_adapter_file(path)
    adapter = wan_adapter_for(
        pipe, fourier_freqs=int(config.get("fourier_freqs", 8)), ff_mult=int(config.get("ff_mult", 0)), depth_slots=int(config.get("depth_slots", 0))
    )
    return _load_checked(adapter, state, path, "Wan transformer")


def build_scheduler(name: str, config):
    """A diffusers scheduler from another scheduler's ``config``.

    Args:
        name: ``"ddim"`` or ``"dpm++"`` (DPMSolverMultistepScheduler, algorithm ``dpmsolver++``,
            Lu et al. 2022, arXiv 2211.01095).

    Raises:
        ValueError: unknown name.
    """
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name == "dpm++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    raise ValueError(f"scheduler: must be one of {', '.join(SCHEDULERS)} (got {name!r})")


WAN_PIPELINES = ("WanPipeline", "WanLayoutPipeline")


def model_family(index: dict) -> str:
    """Which renderer a folder's ``model_index.json`` (as a dict) needs, from its ``_class_name``:

    - ``"layout2vid"``: saved by :class:`Layout2VidPipeline` (the toy model, or a UNet3D with an adapter);
    - ``"wan"``: saved by diffusers' ``WanPipeline`` or :class:`core.pipelines.wan.WanLayoutPipeline`
      (Wan 2.1 / 2.2 text-to-video, a DiT);
    - ``"unet3d"``: any other diffusers text-to-video pipeline (ModelScope's ``TextToVideoSDPipeline``).
    """
    name = index.get("_class_name")
    if name == "Layout2VidPipeline":
        return "layout2vid"
    if name in WAN_PIPELINES:
        return "wan"
    return "unet3d"


def load_guidance_model(path: Path, pipe, torch_dtype):
    """Autoguidance's guiding model from ``path`` (``transformer/`` and an optional
    ``layout_adapter/``), as a WanLayoutPipeline sharing ``pipe``'s text encoder, tokenizer, VAE and
    scheduler (:meth:`core.pipelines.wan.WanLayoutPipeline.set_guidance_model`).

    Raises:
        ValueError: its transformer's config differs from ``pipe``'s in width, blocks, patch or channels.
    """
    from diffusers import WanTransformer3DModel

    from core.models.wan_adapter import WanLayoutAdapter
    from core.pipelines.wan import WanLayoutPipeline

    transformer = WanTransformer3DModel.from_pretrained(Path(path) / "transformer", torch_dtype=torch_dtype)
    keys = ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "patch_size", "text_dim")
    main = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
    if any(transformer.config[k] != main.config[k] for k in keys):
        raise ValueError(f"guidance_model: {path} does not match the model's transformer ({', '.join(keys)} must agree)")
    guide = WanLayoutPipeline(pipe.tokenizer, pipe.text_encoder, pipe.vae, pipe.scheduler, transformer=transformer)
    if (Path(path) / "layout_adapter" / "config.json").exists():
        guide.set_layout_adapter(WanLayoutAdapter.from_pretrained(Path(path) / "layout_adapter", torch_dtype=torch_dtype))
    return guide


def load_wan(path: Path, torch_dtype):
    """A :class:`core.pipelines.wan.WanLayoutPipeline` from a folder saved by ``WanPipeline`` or by it.

    A folder whose ``model_index.json`` names no text encoder and tokenizer (the shipped miniature,
    ``assets/wan-toy``) gets the installed MiniLM; a ``layout_adapter/`` subfolder is attached.

    The VAE stays in float32 (as Wan's model card loads it); the rest takes ``torch_dtype``.
    """
    from core.pipelines.wan import WanLayoutPipeline

    index = json.loads((Path(path) / "model_index.json").read_text())
    text_parts = {}
    if index.get("text_encoder", [None])[0] is None and index.get("tokenizer", [None])[0] is None:
        from core.text import load_minilm  # the shipped miniature names no text encoder: the installed MiniLM

        text_encoder, tokenizer = load_minilm()
        text_parts = {"text_encoder": text_encoder.to(torch_dtype), "tokenizer": tokenizer}
    pipe = WanLayoutPipeline.from_pretrained(path, dtype=torch_dtype, **text_parts)
    if (Path(path) / "layout_adapter" / "config.json").exists():
        from core.models.wan_adapter import WanLayoutAdapter

        pipe.set_layout_adapter(WanLayoutAdapter.from_pretrained(Path(path) / "layout_adapter", torch_dtype=torch_dtype))
    if (Path(path) / "guidance_model" / "transformer" / "config.json").exists():
        pipe.set_guidance_model(load_guidance_model(Path(path) / "guidance_model", pipe, torch_dtype))
    for name in ("vae", "text_encoder", "tokenizer", "scheduler"):
        if getattr(pipe, name, None) is None:
            raise OSError(f"model: {path} has no {name}/ (a Wan pipeline needs vae, text_encoder, tokenizer, scheduler and a transformer)")
    if pipe.transformer is None and pipe.transformer_2 is None:
        raise OSError(f"model: {path} has no transformer/ (a Wan pipeline needs vae, text_encoder, tokenizer, scheduler and a transformer)")
    if pipe.vae.dtype != torch.float32:
        pipe.vae.to(torch.float32)
    return pipe


def load_backbone(path: Path, torch_dtype):
    """A Layout2VidPipeline built from any diffusers text-to-video folder (e.g. ``TextToVideoSDPipeline``).

    The text encoder's own ``model_max_length`` (77 for CLIP) becomes the prompt length; there is
    no closed background set.
    """
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    from core.pipelines.layout2vid import Layout2VidPipeline

    # The stock pipeline class is only a loader here; its deprecation notice is not for our users.
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        stock = DiffusionPipeline.from_pretrained(path, dtype=torch_dtype)
    finally:
        diffusers_logging.set_verbosity(verbosity)
    parts = stock.components
    for name in ("vae", "unet", "text_encoder", "tokenizer", "scheduler"):
        if parts.get(name) is None:
            raise OSError(f"model: {path} has no {name}/ (a text-to-video backbone needs vae, unet, text_encoder, tokenizer, scheduler)")
    return Layout2VidPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"], scheduler=parts["scheduler"],
        layout_adapter=None, max_prompt_tokens=int(parts["tokenizer"].model_max_length), backgrounds=None,
    )
