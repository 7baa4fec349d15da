"""The settings of every training stage, one frozen dataclass per stage.

Each field is defined once, with its default and its help text; :mod:`core.training.cli` builds the
command-line options from these fields (``--graph-lr`` is ``GraphTrainConfig.graph_lr``), so a
setting never has a second home. Fields marked :data:`HIDDEN` are library-only settings with no
option. A config that can be invalid checks itself when it is made and raises ``ValueError``
naming the field (``"ema_decay: must be in [0, 1) (got 1.0)"``); the command line prints it with
the option's name (``"error: --ema-decay: must be in [0, 1) (got 1.0)"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.settings import GUIDANCE_SCALE, Setting
from core.toyworld.world import BACKGROUNDS, COLORS, KINDS

HIDDEN = {"cli": False}  # field metadata: a library-only setting, no command-line option


def option(help: str = "", **argparse_keywords) -> dict:
    """Field metadata that exposes a setting as ``--name``: its help text and extra argparse keywords
    (``type``, ``choices``, ``nargs``, ``metavar``, ``action``). Without ``type`` the option takes
    the type of the field's default."""
    return {"cli": True, "help": help, **argparse_keywords}


OVERLAP_TERM = "overlap"  # the --oversample term for clips whose boxes overlap (core.training.toy_data.OVERLAP_SHARE)


def oversample_terms(text: str) -> tuple[str, ...]:
    """``"orange@ocean, red+orange"`` -> ``("orange@ocean", "red+orange")`` (empty items dropped)."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def parse_oversample_term(term: str) -> tuple[list[str], str | None]:
    """``"orange@ocean"`` -> (["orange"], "ocean"); ``"red+orange"`` -> (["red", "orange"], None).

    Raises:
        ValueError: a malformed term, or an unknown colour or background.
    """
    if "@" in term:
        colour, background = term.split("@", 1)
        if background not in BACKGROUNDS:
            raise ValueError(f"--oversample: {term!r}: background must be one of {', '.join(BACKGROUNDS)}")
        pair = [colour]
    elif "+" in term:
        pair, background = term.split("+", 1), None
    else:
        raise ValueError(f"--oversample: {term!r}: must be a kind ({', '.join(KINDS)}), colour@background, colour+colour or {OVERLAP_TERM}")
    for c in pair:
        if c not in COLORS:
            raise ValueError(f"--oversample: {term!r}: colour must be one of {', '.join(COLORS)}")
    return pair, background


def check_oversample_terms(terms: tuple[str, ...] | list[str]) -> None:
    """Check ``--oversample`` terms (see :func:`core.training.toy_data.mixture_weights`) without any data.

    Raises:
        ValueError: the first term that is not a kind, ``colour@background`` or ``colour+colour`` of
            the toy world, in one line naming ``--oversample`` and the allowed values.
    """
    for term in terms:
        if term not in KINDS and term != OVERLAP_TERM:
            parse_oversample_term(term)


def _out_of_range(setting: Setting, value: float | None) -> str:
    """``setting``'s range error for ``value`` (None: the model's own, always allowed), or ""."""
    if value is None:
        return ""
    try:
        setting.check(value)
    except ValueError as error:
        return str(error)
    return ""


def _first_problem(problems: list[str]) -> None:
    """Raise ``ValueError`` with the first non-empty message of ``problems``, if any."""
    for problem in problems:
        if problem:
            raise ValueError(problem)


@dataclass(frozen=True)
class ToyTrainConfig:
    """Settings of the ``toy`` stage: autoencoder, encoded clips, UNet + layout adapter.

    Written to ``config.json`` in the run folder; the later stages read it back.
    """

    seed: int = 0
    vae_steps: int = 3600
    vae_batch: int = 16
    vae_lr: float = 1e-3
    vae_foreground_weight: float = field(default=8.0, metadata=option("autoencoder loss weight of shape pixels (background pixels 1)"))
    clips: int = field(default=3000, metadata=option("training clips generated and encoded"))
    clip_frames: int = 8
    unet_steps: int = 2800
    unet_batch: int = 10
    unet_lr: float = 3e-4
    warmup: int = field(default=100, metadata=option("UNet learning-rate warm-up steps"))
    drop_both: float = field(default=0.1, metadata=option("share of batches without prompt and layout (classifier-free guidance)"))
    drop_prompt: float = field(default=0.05, metadata=option("share of batches without the prompt"))
    drop_layout: float = field(default=0.05, metadata=option("share of batches without the layout"))
    drop_adapter: float = field(default=0.1, metadata=option("share of batches without gated attention, so layout alpha < 1 works"))
    box_loss_weight: float = field(default=1.0, metadata=option("loss weight of latent cells inside an entity's box (1: plain MSE)"))
    checkpoint_every: int = 200
    threads: int = 2
    latent_channels: int = field(default=16, metadata=option("channels of the 8x8 latent (the shipped model's: 16)"))
    init_from: str = field(
        default="", metadata=option("a Layout2VidPipeline folder whose same-shaped weights start the autoencoder and the graph stage")
    )
    adapter_ff_mult: int = field(
        default=4, metadata=option("width of the adapter's gated feed-forward (GLIGEN: 4); below init_from's it is pruned, then fine-tuned")
    )
    box_masked_grounding: bool = field(
        default=False, metadata=option("visual tokens read only the grounding tokens whose box covers them")
    )
    colour_direction_weight: float = field(
        default=0.0, metadata=option("extra loss on the error along the nearest palette-colour latent directions (0: none)")
    )
    transformer_in_heads: int = field(
        default=0, metadata=option("graph stage: heads of the UNet's input temporal transformer; 0: init_from's (else 8); below it: pruned")
    )
    transformer_in_ff_inner_dim: int = field(
        default=0, metadata=option("graph stage: its feed-forward units; 0: init_from's (else 4x the block width); below it: pruned")
    )


@dataclass(frozen=True)
class GraphTrainConfig:
    """Settings of the ``graph`` stage: the scene-graph encoder trained jointly with the UNet.

    Raises:
        ValueError: ``ema_decay`` outside [0, 1), ``oversample_weight`` below 1, or an ``oversample`` term
            that is not a kind, colour@background, colour+colour or overlap (the message names the option).
    """

    steps: int = 3600
    lr: float = field(default=1.2e-4, metadata=option("UNet and adapter learning rate"))
    graph_lr: float = field(default=3e-4, metadata=option("graph encoder learning rate"))
    threads: int = 2
    box_loss_weight: float | None = field(
        default=None, metadata=option("loss weight inside entity boxes (default: the run's config, 1)", type=float)
    )
    ema_decay: float = field(default=0.0, metadata=option("keep an EMA of the weights with this decay, in [0, 1); 0 keeps none"))
    oversample: tuple[str, ...] = field(
        default=(), metadata=option("comma-separated kind, colour@background, colour+colour and overlap terms whose clips are drawn more often", type=oversample_terms)
    )
    oversample_weight: float = field(default=3.0, metadata=option("draw weight of a matching clip, >= 1 (others 1)"))
    gate_init: float = field(default=0.1, metadata=HIDDEN)  # fusion gates of a fresh encoder: slightly open, the UNet trains too

    def __post_init__(self) -> None:
        _first_problem([
            f"ema_decay: must be in [0, 1) (got {self.ema_decay})" if not 0.0 <= self.ema_decay < 1.0 else "",
            f"oversample_weight: must be >= 1 (got {self.oversample_weight})" if self.oversample_weight < 1 else "",
            _oversample_problem(self.oversample),
        ])


@dataclass(frozen=True)
class DecoderTrainConfig:
    """Settings of the ``decoder`` stage: the autoencoder's decoder fine-tuned, its encoder frozen.

    The ``refine`` stage runs the same training with ``stage="refine"`` and sampled pairs (see
    :class:`RefineConfig`).

    Raises:
        ValueError: a share or ``latent_noise`` outside [0, 1], or ``colour_mix_max`` outside
            [0, 0.5) (the message names the field).
    """

    steps: int = 3000
    lr: float = 3e-4
    batch: int = 16
    foreground_weight: float = field(default=4.0, metadata=option("loss weight of shape pixels (background pixels 1), >= 1"))
    latent_noise: float = field(default=0.1, metadata=option("largest latent perturbation, times the latents' std"))
    empty_share: float = field(default=0.1, metadata=option("probability that a plain frame is replaced by its empty background, in [0, 1]"))
    colour_mix_share: float = field(
        default=0.0, metadata=option("fraction of each batch mixed part way to a neighbouring palette colour, in [0, 1]")
    )
    colour_mix_max: float = field(default=0.45, metadata=option("largest share of the neighbouring colour's latents, in [0, 0.5)"))
    threads: int = 2
    seed: int = field(default=0, metadata=HIDDEN)
    checkpoint_every: int = field(default=200, metadata=HIDDEN)
    stage: str = field(default="decoder", metadata=HIDDEN)  # names run/<stage>_ckpt.pt, run/<stage>_loss.csv, run/vae_<stage>
    source: str = field(default="vae", metadata=HIDDEN)  # the autoencoder folder under the run to start from
    sample_share: float = field(default=0.5, metadata=HIDDEN)  # fraction of each batch from sampled pairs, when given

    def __post_init__(self) -> None:
        _first_problem([
            f"empty_share: must be in [0, 1] (got {self.empty_share})" if not 0.0 <= self.empty_share <= 1.0 else "",
            f"latent_noise: must be in [0, 1] (got {self.latent_noise})" if not 0.0 <= self.latent_noise <= 1.0 else "",
            f"sample_share: must be in [0, 1] (got {self.sample_share})" if not 0.0 <= self.sample_share <= 1.0 else "",
            f"colour_mix_share: must be in [0, 1] (got {self.colour_mix_share})" if not 0.0 <= self.colour_mix_share <= 1.0 else "",
            f"colour_mix_max: must be in [0, 0.5) (got {self.colour_mix_max})" if not 0.0 <= self.colour_mix_max < 0.5 else "",
        ])


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the ``refine`` stage: sample the pipeline on random training clips, then train the
    decoder to decode those samples into the clips' drawn frames.

    Raises:
        ValueError: ``sample_share`` outside [0, 1), ``clips`` or ``steps`` below 1, or
            ``guidance_scale`` outside ``core.settings.GUIDANCE_SCALE``'s range (0-30).
    """

    clips: int = field(default=240, metadata=option("random training clips to sample (16 frames each)"))
    steps: int = 1500
    lr: float = 1e-4
    batch: int = 16
    sample_share: float = field(default=0.5, metadata=option("fraction of each batch from the sampled pairs, in [0, 1)"))
    guidance_scale: float | None = field(
        default=None, metadata=option("guidance of the samples, 0-30 (default: the model's own, as a render)", type=float)
    )
    threads: int = 2

    def __post_init__(self) -> None:
        _first_problem([
            f"sample_share: must be in [0, 1) (got {self.sample_share})" if not 0.0 <= self.sample_share < 1.0 else "",
            f"clips: must be >= 1 (got {self.clips})" if self.clips < 1 else "",
            f"steps: must be >= 1 (got {self.steps})" if self.steps < 1 else "",
            _out_of_range(GUIDANCE_SCALE, self.guidance_scale),
        ])

    def decoder_config(self, source: str) -> DecoderTrainConfig:
        """The decoder training this stage runs, starting from the autoencoder folder ``source``."""
        return DecoderTrainConfig(steps=self.steps, lr=self.lr, batch=self.batch, stage="refine", source=source, sample_share=self.sample_share)


@dataclass(frozen=True)
class AdapterTrainConfig:
    """Settings of the ``adapter`` stage (defaults follow GLIGEN's fine-tuning: AdamW, lr 5e-5).

    :meth:`check` validates (the command checks its paths first, so it is not run on creation).
    """

    steps: int = 1000
    batch: int = 4
    lr: float = 5e-5
    seed: int = 0
    # The adapter's gated feed-forward width. 0 (none) keeps the per-step cost of a ModelScope UNet3D
    # with the adapter active at 1.07x in FLOPs; GLIGEN's full block (4) costs 1.19x
    # (benchmarks/bench_backbone.py).
    ff_mult: int = field(
        default=0, metadata=option("gated feed-forward width: 0 none (1.07x step FLOPs), 4 GLIGEN's full block (1.19x)", choices=[0, 1, 2, 4])
    )
    max_boxes: int = field(default=8, metadata=HIDDEN)
    drop_grounding: float = field(default=0.1, metadata=HIDDEN)  # fraction of samples with null grounding tokens (for guidance)

    def check(self) -> None:
        """Raises ``ValueError`` unless ``steps`` and ``batch`` >= 1 and ``lr`` in (0, 1)."""
        if self.steps < 1 or self.batch < 1 or not 0 < self.lr < 1:
            raise ValueError("--steps and --batch must be >= 1 and --lr in (0, 1)")


@dataclass(frozen=True)
class ExportConfig:
    """Settings of the ``export`` stage: which weights to write and the model's render defaults.

    Raises:
        ValueError: ``guidance_scale`` outside ``core.settings.GUIDANCE_SCALE``'s range (0-30);
            ``guidance_interval`` out of order or outside [0, 1].
    """

    stage: str | None = field(default=None, metadata=option("which checkpoint (default: graph if it exists)", type=str, choices=["unet", "graph"]))
    ema: bool = field(default=False, metadata=option("write the graph stage's moving average of the weights", action="store_true"))
    guidance_scale: float | None = field(
        default=None, metadata=option("default classifier-free guidance of the exported model (0-30)", type=float)
    )
    guidance_interval: tuple[float, float] | None = field(
        default=None,
        metadata=option(
            "default fractions of the steps with guidance (0 <= START <= END <= 1; default every step)",
            type=float, nargs=2, metavar=("START", "END"),
        ),
    )

    def __post_init__(self) -> None:
        interval = self.guidance_interval
        _first_problem([
            _out_of_range(GUIDANCE_SCALE, self.guidance_scale),
            f"guidance_interval: must be START END with 0 <= START <= END <= 1 (got {tuple(interval)})"
            if interval is not None and not 0.0 <= interval[0] <= interval[1] <= 1.0 else "",
        ])


LATENT_FACTORS = (4, 8)  # pixels per latent cell of model v2's autoencoder (core.models.toy_wan.build_toy_wan_vae)
DECODER_WIDTHS = (32, 64, 96, 128)  # full-resolution widths of model v2's decoder: multiples of its 32 (core.models.toy_wan.widen_decoder)


@dataclass(frozen=True)
class WanToyTrainConfig:
    """Settings of the ``wan-toy`` stage: model v2, a miniature Wan at 128x128 (:mod:`core.models.toy_wan`).

    Raises:
        ValueError: ``max_minutes`` outside (0, 150], ``vae_crop`` not a multiple of 8 in [16, 128],
            ``min_side`` outside [0.05, 0.42], ``decoder_layers`` outside [1, 4], ``decoder_width`` outside {32, 64, 96, 128}, ``visibility_weight`` or ``image_batch`` below 0, ``oversample_weight`` below 1, ``timestep_shift`` outside [0.25, 10], an ``oversample`` term that is not a kind, colour@background, colour+colour or overlap, a share outside [0, 1],
            ``latent_factor`` not 4 or 8, ``patch`` not 1, 2 or 4, ``layers`` or ``heads`` outside [1, 40], or a ``device`` that is not cpu
            or cuda[:N] or that this machine lacks (the message names the field).
    """

    seed: int = 0
    max_minutes: float = field(default=150.0, metadata=option("stop (checkpointed) after this many minutes, in (0, 150]; the same command resumes"))
    threads: int = 2
    checkpoint_every: int = 100
    min_side: float = field(default=0.12, metadata=option("smallest side of a shape in every part's training frames, as a share of the frame, in [0.05, 0.42] (plans draw shapes from 0.13)"))
    vae_steps: int = field(default=3000, metadata=option("autoencoder steps"))
    vae_batch: int = field(default=20, metadata=option("autoencoder batch: random frames, each cut to a vae_crop window"))
    vae_crop: int = field(default=64, metadata=option("side of the random window each autoencoder clip is cut to (128: whole frames)"))
    vae_lr: float = 1e-3
    latent_factor: int = field(
        default=8, metadata=option("pixels per latent cell of a new autoencoder, 8 (16x16 latents, 4 levels) or 4 (32x32, 3 levels: finer outlines; use --patch 4 to keep the token count)")
    )
    vae_foreground_weight: float = field(default=8.0, metadata=option("autoencoder loss weight of shape pixels (background pixels 1)"))
    refine_steps: int = field(default=5000, metadata=option("autoencoder refinement steps (encoder and decoder) on whole 128x128 frames, outlines weighted"))
    refine_lr: float = 3e-4
    decoder_steps: int = field(default=1000, metadata=option("decoder-only steps after the refinement (encoder frozen)"))
    decoder_lr: float = 3e-4
    decoder_layers: int = field(default=1, metadata=option("ResNet layers a level, beyond the first, of the decoder part's decoder, in [1, 4] (1: refine's; more: deepened, the new layers starting as the identity)"))
    decoder_width: int = field(default=32, metadata=option("channels of the decoder part's full-resolution level, 32, 64, 96 or 128 (32: refine's; more: widened, decoding as before until trained)"))
    tune_batch: int = field(default=8, metadata=option("whole frames per refinement and decoder step"))
    boundary_weight: float = field(default=4.0, metadata=option("loss weight factor of pixels within 3 px of a shape's outline (inside or out) over shape pixels, in refinement and decoder steps"))
    edge_weight: float = field(default=1.0, metadata=option("loss weight of the image-difference (edge) L1 term in refinement and decoder steps"))
    visibility_weight: float = field(default=1.0, metadata=option("loss weight, in decoder steps, of the shape pixels' lost contrast against the background, relative to their own (0: off)"))
    clips: int = field(default=2000, metadata=option("training clips generated and encoded for the transformer"))
    group_share: float = field(default=0.0, metadata=option("share of the encoded clips that are groups: two or three entities of one kind and colour side by side, as plans draw \"three purple squares\", in [0, 1]"))
    clip_frames: int = 16
    transformer_steps: int = field(default=6800, metadata=option("transformer + layout adapter steps (6,800: about 100 minutes at 0.88 s a step on a 2-core CPU, one command after the data part)"))
    transformer_batch: int = 4
    image_batch: int = field(default=0, metadata=option("one-frame clips (images: a random frame of a random clip) trained beside each step's videos, as Wan trains on images and videos together (0: videos only)"))
    transformer_lr: float = 3e-4
    patch: int = field(default=2, metadata=option("spatial patch of the transformer, 1, 2 or 4: a 16x16 latent frame is 64 tokens at 2 (16 pixels of the frame a token), 256 at 1 (8 pixels: 4x the tokens, for a GPU); a 32x32 one (--latent-factor 4) is 64 tokens at 4"))
    layers: int = field(default=4, metadata=option("transformer blocks, in [1, 40]; above --init-from's, its blocks are spread among new ones that start as the identity"))
    heads: int = field(default=4, metadata=option("attention heads of 64 channels (the transformer's width is 64 x heads), in [1, 40]"))
    warmup: int = 200
    drop_prompt: float = field(default=0.1, metadata=option("share of clips trained without the prompt (classifier-free guidance)"))
    drop_layout: float = field(default=0.1, metadata=option("share of clips trained without grounding tokens"))
    bf16: bool = field(default=True, metadata=option("transformer forward passes under bf16 autocast (on a CPU about 1.75x faster with AVX512-BF16 or AMX; weights and optimizer stay float32)"))
    device: str = field(default="cpu", metadata=option("where the transformer part trains: cpu or cuda[:N] (the cached clips stay in CPU memory, each batch is moved; a checkpoint resumes on either)"))
    box_loss_weight: float = field(default=3.0, metadata=option("loss weight of latent cells inside an entity's box (1: plain MSE)"))
    timestep_shift: float = field(
        default=3.0, metadata=option("shift of the training noise levels, sigma = s u / (1 + (s - 1) u) with u uniform, in [0.25, 10] (3: the sampler's; 1: uniform, more low-noise steps)")
    )
    oversample: tuple[str, ...] = field(
        default=(), metadata=option("comma-separated kind, colour@background, colour+colour and overlap terms whose clips the transformer part draws more often", type=oversample_terms)
    )
    oversample_weight: float = field(default=2.0, metadata=option("draw weight of a clip matching --oversample, >= 1 (others 1)"))
    stats_frames: int = field(default=512, metadata=HIDDEN)  # frames encoded to measure the latents' mean and std

    def __post_init__(self) -> None:
        _first_problem([
            f"max_minutes: must be in (0, 150] (got {self.max_minutes})" if not 0.0 < self.max_minutes <= 150.0 else "",
            f"vae_crop: must be a multiple of 8 in [16, 128] (got {self.vae_crop})" if self.vae_crop % 8 or not 16 <= self.vae_crop <= 128 else "",
            f"min_side: must be in [0.05, 0.42] (got {self.min_side})" if not 0.05 <= self.min_side <= 0.42 else "",
            f"group_share: must be in [0, 1] (got {self.group_share})" if not 0.0 <= self.group_share <= 1.0 else "",
            f"decoder_layers: must be in [1, 4] (got {self.decoder_layers})" if not 1 <= self.decoder_layers <= 4 else "",
            f"decoder_width: must be 32, 64, 96 or 128 (got {self.decoder_width})" if self.decoder_width not in DECODER_WIDTHS else "",
            f"visibility_weight: must be >= 0 (got {self.visibility_weight})" if self.visibility_weight < 0 else "",
            f"image_batch: must be >= 0 (got {self.image_batch})" if self.image_batch < 0 else "",
            f"oversample_weight: must be >= 1 (got {self.oversample_weight})" if self.oversample_weight < 1 else "",
            f"timestep_shift: must be in [0.25, 10] (got {self.timestep_shift})" if not 0.25 <= self.timestep_shift <= 10.0 else "",
            _oversample_problem(self.oversample),
            f"drop_prompt: must be in [0, 1] (got {self.drop_prompt})" if not 0.0 <= self.drop_prompt <= 1.0 else "",
            f"drop_layout: must be in [0, 1] (got {self.drop_layout})" if not 0.0 <= self.drop_layout <= 1.0 else "",
            f"latent_factor: must be 4 or 8 (got {self.latent_factor})" if self.latent_factor not in LATENT_FACTORS else "",
            f"patch: must be 1, 2 or 4 (got {self.patch})" if self.patch not in (1, 2, 4) else "",
            f"layers: must be in [1, 40] (got {self.layers})" if not 1 <= self.layers <= 40 else "",
            f"heads: must be in [1, 40] (got {self.heads})" if not 1 <= self.heads <= 40 else "",
            _device_problem(self.device),
        ])


def _oversample_problem(terms: tuple[str, ...]) -> str:
    """'' when every ``--oversample`` term names a kind, colour or background of the toy world, else the first one's one-line error."""
    try:
        check_oversample_terms(terms)
    except ValueError as error:
        return str(error)
    return ""


def _device_problem(device: str) -> str:
    """'' when training can run on ``device`` here, else the one-line reason naming ``device``."""
    if device != "cpu" and not device.startswith("cuda"):
        return f"device: must be cpu or cuda[:N] (got {device!r})"
    from core.pipelines.backbones import check_device

    try:
        check_device(device, "fp32")
    except ValueError as error:
        return str(error)
    return ""


@dataclass(frozen=True)
class WanRefineConfig:
    """Settings of the ``wan-refine`` stage: sample model v2 on random training clips, then train its
    decoder to decode those samples into the clips' drawn frames (:func:`core.training.wan_toy.refine_wan_decoder`).

    Raises:
        ValueError: ``sample_share`` outside [0, 1), ``group_share`` or ``small_share`` outside [0, 1], ``patch_mix_share`` outside [0, 1 - ``small_share``], ``faint_share`` outside [0, 1 - ``small_share`` - ``patch_mix_share``], ``faint_outline`` outside (48, 100], ``silhouette_weight`` outside [0, 10], ``silhouette_frames`` not all or faint, ``decoder_layers`` outside [1, 4], ``decoder_width`` not 32, 64, 96 or 128, ``adversarial_weight`` outside [0, 10], ``shift_tolerance`` outside [0, 2], ``adversarial_start`` or ``pair_outline_weight`` below 0, ``clips``, ``steps`` or ``batch`` below 1, ``lr``
            not above 0, ``max_minutes`` outside (0, 150], or ``guidance_scale`` outside
            ``core.settings.GUIDANCE_SCALE``'s range (0-30).
    """

    clips: int = field(default=300, metadata=option("random training clips to sample (16 frames each, about 6 s each on 2 CPU cores)"))
    steps: int = 1500
    lr: float = 1e-4
    batch: int = field(default=8, metadata=option("whole 128x128 frames per step"))
    sample_share: float = field(default=0.5, metadata=option("fraction of each batch from the sampled pairs, in [0, 1)"))
    guidance_scale: float | None = field(
        default=None, metadata=option("guidance of the samples, 0-30 (default: the model's own, as a render)", type=float)
    )
    pair_outline_weight: float | None = field(
        default=None, metadata=option(
            "loss weight, >= 0, of sampled frames' pixels within 3 px of a drawn outline (the denoiser's edge may sit elsewhere; default: as in encodings)", type=float,
        ),
    )
    pair_targets: str = field(
        default="drawn", metadata=option(
            "what sampled latents learn to decode into: drawn (the frames drawn for the planned boxes) or aligned "
            "(the same objects redrawn where the denoiser put them)", choices=["drawn", "aligned"],
        ),
    )
    group_share: float = field(
        default=0.0, metadata=option("share of the sampled clips that are groups: two or three entities of one kind and colour side by side, in [0, 1]"),
    )
    decoder_layers: int | None = field(
        default=None, metadata=option(
            "ResNet layers a level, beyond the first, of the trained decoder, in [1, 4]; above the model's, the decoder is deepened "
            "first, the new layers starting as the identity (default: the model's own)", type=int,
        ),
    )
    decoder_width: int | None = field(
        default=None, metadata=option(
            "channels of the trained decoder's full-resolution level, 32, 64, 96 or 128; above the model's, the level is widened first, "
            "each channel copied within its norm group so that it decodes as before until trained (default: the model's own)", type=int,
        ),
    )
    small_share: float = field(
        default=0.0, metadata=option(
            "share, in [0, 1], of each batch's encoded frames (those not from sampled pairs) that are sheets of small exact shapes in a 3x3 or 4x4 grid "
            "(sides 0.1-0.22 of the frame), where stars and rings are hardest to decode",
        ),
    )
    patch_mix_share: float = field(
        default=0.0, metadata=option(
            "share, in [0, 1 - small_share], of each batch's encoded frames whose latents have a patch of one object moved "
            "0.2-0.7 of the way toward a neighbouring palette colour, to be decoded as drawn (one colour)",
        ),
    )
    faint_share: float = field(
        default=0.0, metadata=option(
            "share, in [0, 1 - small_share - patch_mix_share], of each batch's encoded frames that are 2x2 or 3x3 sheets of shapes "
            "(sides 0.12-0.3) in the colour/background pairs whose outline lies within --faint-outline RGB units of the background, "
            "where a star's points barely clear the detector's threshold",
        ),
    )
    faint_outline: float = field(
        default=64.0, metadata=option(
            "RGB distance, in (48, 100], below which a colour's outline counts as faint on a background, for --faint-share "
            "(64: blue or purple on the night, blue on the ocean, yellow or white on the grass; 55: the first three)",
        ),
    )
    silhouette_weight: float = field(
        default=0.0, metadata=option(
            "weight, in [0, 10], of a hinge that keeps each pixel 8 RGB units clear of the detector's foreground threshold "
            "on the side it is drawn (a faint point kept, a notch kept clear); 0: none",
        ),
    )
    silhouette_frames: str = field(
        default="all", metadata=option(
            "the frames the silhouette hinge acts on: all (every frame of a step) or faint (the faint sheets alone, exact drawings)",
            choices=["all", "faint"],
        ),
    )
    adversarial_weight: float = field(
        default=0.0, metadata=option(
            "weight, in [0, 10], of a patch discriminator's hinge loss on the decoder (scaled by the ratio of the reconstruction's "
            "and its gradients at the last layer, as in latent diffusion's autoencoders); 0: none",
        ),
    )
    adversarial_start: int = field(default=100, metadata=option("steps, >= 0, the discriminator trains alone before the decoder sees its loss"))
    shift_tolerance: int = field(
        default=0, metadata=option(
            "pixels, 0-2: each 32-pixel patch of a decoding is scored against the drawn frame moved by its best-fitting shift of up to this many "
            "pixels per axis, so a sharp shape a pixel off costs less than a blur (0: as drawn)",
        ),
    )
    seed: int = 0
    max_minutes: float = field(default=150.0, metadata=option("stop (checkpointed) after this many minutes, in (0, 150]; the same command resumes"))
    threads: int = 2

    def __post_init__(self) -> None:
        _first_problem([
            f"group_share: must be in [0, 1] (got {self.group_share})" if not 0.0 <= self.group_share <= 1.0 else "",
            f"small_share: must be in [0, 1] (got {self.small_share})" if not 0.0 <= self.small_share <= 1.0 else "",
            f"patch_mix_share: must be in [0, {1 - self.small_share:g}] (got {self.patch_mix_share})"
            if not 0.0 <= self.patch_mix_share <= 1.0 - self.small_share else "",
            f"faint_share: must be in [0, {1 - self.small_share - self.patch_mix_share:g}] (got {self.faint_share})"
            if not 0.0 <= self.faint_share <= 1.0 - self.small_share - self.patch_mix_share + 1e-9 else "",
            f"faint_outline: must be in (48, 100] (got {self.faint_outline})" if not 48.0 < self.faint_outline <= 100.0 else "",
            f"silhouette_weight: must be in [0, 10] (got {self.silhouette_weight})" if not 0.0 <= self.silhouette_weight <= 10.0 else "",
            f"silhouette_frames: must be all or faint (got {self.silhouette_frames!r})" if self.silhouette_frames not in ("all", "faint") else "",
            f"decoder_layers: must be in [1, 4] (got {self.decoder_layers})" if self.decoder_layers is not None and not 1 <= self.decoder_layers <= 4 else "",
            f"decoder_width: must be 32, 64, 96 or 128 (got {self.decoder_width})"
            if self.decoder_width is not None and self.decoder_width not in DECODER_WIDTHS else "",
            f"adversarial_weight: must be in [0, 10] (got {self.adversarial_weight})" if not 0.0 <= self.adversarial_weight <= 10.0 else "",
            f"adversarial_start: must be >= 0 (got {self.adversarial_start})" if self.adversarial_start < 0 else "",
            f"shift_tolerance: must be in [0, 2] (got {self.shift_tolerance})" if not 0 <= self.shift_tolerance <= 2 else "",
            f"pair_targets: must be drawn or aligned (got {self.pair_targets!r})" if self.pair_targets not in ("drawn", "aligned") else "",
            f"sample_share: must be in [0, 1) (got {self.sample_share})" if not 0.0 <= self.sample_share < 1.0 else "",
            f"pair_outline_weight: must be >= 0 (got {self.pair_outline_weight})" if self.pair_outline_weight is not None and self.pair_outline_weight < 0 else "",
            f"clips: must be >= 1 (got {self.clips})" if self.clips < 1 else "",
            f"steps: must be >= 1 (got {self.steps})" if self.steps < 1 else "",
            f"batch: must be >= 1 (got {self.batch})" if self.batch < 1 else "",
            f"lr: must be > 0 (got {self.lr})" if not self.lr > 0 else "",
            f"max_minutes: must be in (0, 150] (got {self.max_minutes})" if not 0.0 < self.max_minutes <= 150.0 else "",
            _out_of_range(GUIDANCE_SCALE, self.guidance_scale),
        ])


@dataclass(frozen=True)
class WanSoupConfig:
    """Settings of the ``wan-soup`` stage (a uniform weight average of exported ``wan-toy`` models).

    Raises:
        ValueError: ``guidance_scale`` outside ``core.settings.GUIDANCE_SCALE``'s range (0-30).
    """

    guidance_scale: float = field(default=4.0, metadata=option("default classifier-free guidance of the averaged model (0-30)"))

    def __post_init__(self) -> None:
        _first_problem([_out_of_range(GUIDANCE_SCALE, self.guidance_scale)])


@dataclass(frozen=True)
class WanExportConfig:
    """Settings of the ``wan-export`` stage.

    Raises:
        ValueError: ``guidance_scale`` outside ``core.settings.GUIDANCE_SCALE``'s range (0-30).
    """

    ema: bool = field(default=True, metadata=option("write the moving average of the weights (--no-ema: the last ones)"))
    guidance_scale: float = field(default=4.0, metadata=option("default classifier-free guidance of the exported model (0-30)"))
    autoencoder_only: bool = field(default=False, metadata=option("write only the run's trained autoencoder, as DIR/vae (before the transformer has trained; --autoencoder of a later run)"))

    def __post_init__(self) -> None:
        _first_problem([_out_of_range(GUIDANCE_SCALE, self.guidance_scale)])
