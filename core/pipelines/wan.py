"""WanLayoutPipeline: Wan 2.x text-to-video (a DiT with flow matching) with per-frame boxes and prompts.

A subclass of diffusers' ``WanPipeline`` that loads any folder the stock one saves (and saves one the
stock one loads). ``__call__`` takes a plan scene the way :class:`core.pipelines.layout2vid.Layout2VidPipeline`
does (a prompt and a :class:`LayoutConditioning`) and adds, training-free:

- box control: for the first ``layout_alpha`` of the steps, an entity's phrase tokens are read in
  the transformer's cross-attention only by the video tokens inside its box
  (:mod:`core.models.wan_attention`), or, with a trained layout adapter, GLIGEN gated
  self-attention over video and grounding tokens after every block (:mod:`core.models.wan_adapter`);
- per-frame prompts: each latent frame reads the prompt of its plan frame;
- consistency groups: an entity's own noise (from its seed) is placed under its boxes.

Frames. Wan's VAE compresses time 4x and keeps the first frame alone, so a video has ``4k + 1``
frames and ``k + 1`` latent frames. A scene of F plan frames renders V = ``4 * ceil((F - 1) / 4) + 1``
video frames (video frame v shows plan frame ``min(v, F - 1)``; the last ``V - F`` are dropped after
decoding). Latent frame 0 is video frame 0; latent frame j >= 1 is video frames ``4j - 3 .. 4j``.
A latent frame's box is the union of its plan frames' boxes where the entity is on screen, its
prompt and phrases those of the middle one of its plan frames (:func:`latent_frame_sources`).
Boxes reach the token grid of the transformer (latent / patch, 16x16 pixels per token for Wan 2.1)
as the tokens whose centres fall inside the box (at least the token under the box centre).

With ``layout=None`` (or no entity, ``layout_alpha=0``, no per-frame prompts and no entity seeds) the
output is the stock ``WanPipeline``'s for the same seed (tests/core/pipelines/test_wan.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from diffusers import WanPipeline
from diffusers.guiders.guider_utils import rescale_noise_cfg
from diffusers.pipelines.wan.pipeline_wan import prompt_clean

from core.models.toy_wan import FrameAutoencoderKL  # noqa: F401  (imported so that from_pretrained can load model v2's autoencoder)
from core.models.wan_adapter import WanLayoutAdapter
from core.models.wan_attention import ControlState, CrossAttentionControl, install, region_self_bias
from core.pipelines.guidance import phrase_token_weights
from core.pipelines.layout2vid import Layout2VidPipelineOutput, LayoutConditioning
from core.settings import AUTOGUIDANCE_SCALE, GUIDANCE_RESCALE, GUIDANCE_SCALE, LAYOUT_ALPHA, STEPS

WAN_GUIDANCE_SCALE = 5.0  # the Wan 2.1 model card's value


def video_frames(num_frames: int, temporal: int = 4) -> int:
    """The ``temporal * k + 1`` video frames that hold ``num_frames`` plan frames (the fewest)."""
    return temporal * -(-(num_frames - 1) // temporal) + 1


def latent_frame_sources(num_frames: int, temporal: int = 4) -> list[list[int]]:
    """For each latent frame, the plan frames its video frames show (see the module docstring).

    >>> latent_frame_sources(6)
    [[0], [1, 2, 3, 4], [5]]
    """
    video = video_frames(num_frames, temporal)
    latent = (video - 1) // temporal + 1
    groups = [[0]] + [list(range(temporal * j - temporal + 1, temporal * j + 1)) for j in range(1, latent)]
    return [sorted({min(v, num_frames - 1) for v in group}) for group in groups]


def latent_boxes(layout: LayoutConditioning, sources: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (L, N, 4) xyxy in [0, 1] and masks (L, N) of the latent frames: per entity the union
    of its on-screen boxes over each latent frame's plan frames."""
    boxes = torch.zeros(len(sources), layout.num_entities, 4)
    masks = torch.zeros(len(sources), layout.num_entities)
    for j, frames in enumerate(sources):
        for n in range(layout.num_entities):
            shown = [f for f in frames if layout.masks[f, n] > 0]
            if not shown:
                continue
            group = layout.boxes[shown, n].float()  # (frames shown, 4)
            boxes[j, n] = torch.cat([group[:, :2].min(0).values, group[:, 2:].max(0).values])
            masks[j, n] = 1.0
    return boxes, masks


def box_cells(box: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(height, width) bool: the cells of a grid whose centres lie in ``box`` (xyxy in [0, 1]);
    at least the cell under the box centre."""
    x0, y0, x1, y1 = box.tolist()
    cy = (torch.arange(height) + 0.5) / height
    cx = (torch.arange(width) + 0.5) / width
    cells = ((cy >= y0) & (cy <= y1))[:, None] & ((cx >= x0) & (cx <= x1))[None, :]
    if not cells.any():
        r = min(int((y0 + y1) / 2 * height), height - 1)
        c = min(int((x0 + x1) / 2 * width), width - 1)
        cells[r, c] = True
    return cells


class WanBoxEnergy:
    """Energy guidance on a Wan transformer (LLM-grounded Video Diffusion, arXiv 2309.17444, sec. 4):
    before each of the first ``guided_steps`` steps, one gradient step on the latents lowers

        E = mean over layers, latent frames, on-screen named entities n of (1 - A_n(box_n) / A_n(all))^2

    where ``A_n`` is the cross-attention of the video tokens to entity n's phrase tokens in the
    conditional pass (:func:`core.pipelines.guidance.box_attention_energy`, the energy the UNet3D
    path uses; the step is :func:`core.pipelines.guidance.guided_latents`).

    Args:
        pipe: the pipeline (its control state records the attention with gradients).
        model: the transformer that runs the pass.
        guidance: ``method="energy"``; ``scale`` is the step size.
        guided_steps: how many of the first steps are guided.
        control: the text grouping of the conditional pass (per-frame prompts or one).
        prompt_embeds: (1, G * T, D) the conditional text.
        token_weights: (L, N, T) each entity's tokens in its latent frame's prompt.
        boxes: (L, N, 4) xyxy in [0, 1]. masks: (L, N). grid: (L, h, w) token grid.
    """

    def __init__(self, pipe, model, guidance, *, guided_steps: int, control, prompt_embeds, token_weights, boxes, masks, grid):
        from core.models.layout import box_masks_on_grid

        self.pipe, self.model, self.guidance, self.guided_steps = pipe, model, guidance, guided_steps
        self.control, self.prompt_embeds, self.token_weights = control, prompt_embeds, token_weights
        frames, rows, cols = grid
        self.grid = grid
        self.box_grid = box_masks_on_grid(boxes, masks, rows, cols)  # (L, N, h * w)

    def energy(self, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The box energy (a scalar with gradients) of ``latents`` (1, C, L, h', w') at timestep ``t``."""
        from core.pipelines.guidance import box_attention_energy

        state = self.pipe.control_state
        with state.recording(grad=True) as records, state.use(self.control):
            self.model(hidden_states=latents.to(self.model.dtype), timestep=self.pipe.expand_timestep(t, latents),
                       encoder_hidden_states=self.prompt_embeds, return_dict=False)
        frames, rows, cols = self.grid
        weights, grid = self.token_weights.to(records[0]), self.box_grid.to(records[0])
        return torch.stack([box_attention_energy(probs.reshape(frames, rows * cols, -1), weights, grid) for probs in records]).mean()

    def __call__(self, step: int, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The latents for step ``step``: guided while ``step < guided_steps``, else unchanged."""
        from core.pipelines.guidance import guided_latents

        if step >= self.guided_steps:
            return latents
        return guided_latents(latents, lambda x: self.energy(x, t), scale=self.guidance.scale)[0]


class WanLayoutPipeline(WanPipeline):
    """Wan text-to-video with plan-scene conditioning (see the module docstring).

    Components are the stock ``WanPipeline``'s: vae (AutoencoderKLWan), text_encoder (UMT5) and
    tokenizer, transformer (WanTransformer3DModel; and transformer_2 for Wan 2.2 A14B), scheduler
    (UniPC or flow-matching Euler, flow prediction).

    Args:
        default_guidance_scale: the classifier-free guidance weight renders use when none is given.
        default_height, default_width: the pixel size renders use when none is given (Wan 2.1: 480x832).
        max_sequence_length: text tokens per prompt when a render gives none (Wan 2.1: 512; the
            shipped miniature: 32, the length it was trained with).
        backgrounds: the backgrounds of a closed-world model (the toy world's), None for an open one
            (:func:`core.vocabulary.model_vocabulary`).
    """

    family = "wan"

    def __init__(
        self, tokenizer, text_encoder, vae, scheduler, transformer=None, transformer_2=None, boundary_ratio: float | None = None,
        expand_timesteps: bool = False, default_guidance_scale: float = WAN_GUIDANCE_SCALE, default_height: int = 480, default_width: int = 832,
        max_sequence_length: int = 512, backgrounds: list[str] | None = None, default_autoguidance_scale: float | None = None,
    ):
        super().__init__(tokenizer, text_encoder, vae, scheduler, transformer, transformer_2, boundary_ratio, expand_timesteps)
        self.register_to_config(
            default_guidance_scale=default_guidance_scale, default_height=default_height, default_width=default_width,
            max_sequence_length=max_sequence_length, backgrounds=backgrounds, default_autoguidance_scale=default_autoguidance_scale,
        )
        self.guidance_model: WanLayoutPipeline | None = None  # set_guidance_model: autoguidance's weaker model
        self.control_state = ControlState()
        for model in (transformer, transformer_2):
            if model is not None:
                install(model, self.control_state)
        self.layout_adapter: WanLayoutAdapter | None = None  # set_layout_adapter; saved on its own, not with the pipeline

    def set_layout_adapter(self, adapter: WanLayoutAdapter | None) -> None:
        """Hook ``adapter`` into the transformer (None: remove the current one). Move it to the
        transformer's device and dtype first."""
        if self.layout_adapter is not None:
            self.layout_adapter.detach()
        if adapter is not None:
            adapter.attach(self._denoiser)
        self.layout_adapter = adapter

    def set_guidance_model(self, guide: "WanLayoutPipeline | None") -> None:
        """The guiding model of autoguidance (Karras et al. 2024, arXiv 2406.02507): a weaker
        transformer of the same latent space (fewer steps of training), with its own layout adapter,
        as a WanLayoutPipeline that shares this one's text encoder (its transformer and adapter are
        used, nothing else). None: none."""
        self.guidance_model = guide

    @property
    def _denoiser(self):
        return self.transformer if self.transformer is not None else self.transformer_2

    # ---------------------------------------------------------------------------------------
    # Inputs and conditioning
    # ---------------------------------------------------------------------------------------

    def check_layout_inputs(self, prompt, layout, num_frames, height, width, num_inference_steps, guidance_scale, guidance_interval, layout_alpha, layout_mode, box_guidance, region_bias=0.0, guidance_rescale=0.0):
        """Raise ValueError naming the first argument outside its range."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt: must be a non-empty string (got {prompt!r})")
        if not 1 <= num_frames <= 257:
            raise ValueError(f"num_frames: must be in [1, 257] (got {num_frames})")
        multiple = self.vae_scale_factor_spatial * self._denoiser.config.patch_size[1]
        if height % multiple or width % multiple:
            raise ValueError(f"height, width: must be multiples of {multiple} (got {height}x{width})")
        STEPS.check(num_inference_steps)
        GUIDANCE_SCALE.check(guidance_scale)
        GUIDANCE_RESCALE.check(guidance_rescale)
        LAYOUT_ALPHA.check(layout_alpha)
        if len(guidance_interval) != 2 or not 0.0 <= guidance_interval[0] <= guidance_interval[1] <= 1.0:
            raise ValueError(f"guidance_interval: must be (start, end) with 0 <= start <= end <= 1 (got {tuple(guidance_interval)})")
        if layout_mode not in (None, "mask", "adapter"):
            raise ValueError(f"layout_mode: must be 'mask', 'adapter' or None (got {layout_mode!r})")
        if layout_mode == "adapter" and self.layout_adapter is None:
            raise ValueError("layout_mode: 'adapter' needs a layout adapter (set_layout_adapter, or --adapter)")
        if region_bias < 0:
            raise ValueError(f"region_bias: must be >= 0 (got {region_bias})")
        if box_guidance is not None and box_guidance.method != "energy":
            raise ValueError(f"box_guidance.method: must be 'energy' on Wan (got {box_guidance.method!r}); attention masking is layout_mode='mask'")
        if layout is not None:
            if layout.boxes.shape != (num_frames, layout.num_entities, 4) or layout.masks.shape != (num_frames, layout.num_entities):
                raise ValueError(
                    f"layout: boxes must be (num_frames, entities, 4) and masks (num_frames, entities) with num_frames={num_frames} "
                    f"(got {tuple(layout.boxes.shape)} and {tuple(layout.masks.shape)})"
                )
            if len(layout.phrases) != num_frames or any(len(row) != layout.num_entities for row in layout.phrases):
                raise ValueError(f"layout.phrases: must be num_frames x entities = {num_frames} x {layout.num_entities}")
            if layout.entity_seeds is not None and len(layout.entity_seeds) != layout.num_entities:
                raise ValueError(f"layout.entity_seeds: must have {layout.num_entities} entries (got {len(layout.entity_seeds)})")
            if layout.frame_prompts is not None and len(layout.frame_prompts) != num_frames:
                raise ValueError(f"layout.frame_prompts: must have one prompt per frame ({num_frames}), got {len(layout.frame_prompts)}")

    def token_grid(self, latent_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The transformer's token grid (frames, rows, columns) for a video of ``height`` x ``width`` pixels."""
        p_t, p_h, p_w = self._denoiser.config.patch_size
        s = self.vae_scale_factor_spatial
        return latent_frames // p_t, height // s // p_h, width // s // p_w

    def box_control(self, layout: LayoutConditioning, prompts: list[str], sources: list[list[int]], grid, *, groups: int, max_sequence_length: int) -> CrossAttentionControl:
        """The cross-attention mask of one scene: entity n's phrase tokens (in the prompt latent frame
        j reads) are forbidden to the video tokens of frame j outside n's latent box.

        Args:
            prompts: the prompt each latent frame reads (L). sources: :func:`latent_frame_sources`.
            grid: (L, h, w) token grid. groups: 1 (one prompt for all frames) or L (one per frame).

        Returns:
            CrossAttentionControl with ``allowed`` (groups, L * h * w / groups, T) bool.
        """
        frames, rows, cols = grid
        middle = [frames_[len(frames_) // 2] for frames_ in sources]
        phrases = [layout.phrases[f] for f in middle]
        cleaned = [prompt_clean(p) for p in prompts]
        tokens = phrase_token_weights(self.tokenizer, cleaned, phrases, max_length=max_sequence_length) > 0  # (L, N, T)
        boxes, masks = latent_boxes(layout, sources)
        allowed = torch.ones(frames, rows * cols, max_sequence_length, dtype=torch.bool)
        for j in range(frames):
            for n in range(layout.num_entities):
                if masks[j, n] <= 0 or not tokens[j, n].any():
                    continue
                outside = ~box_cells(boxes[j, n], rows, cols).flatten()  # (h * w,)
                allowed[j, outside[:, None] & tokens[j, n][None, :]] = False
        return CrossAttentionControl(groups=groups, allowed=allowed.reshape(groups, -1, max_sequence_length))

    @torch.no_grad()
    def encode_phrases(self, phrases: list[str], *, max_sequence_length: int = 512) -> torch.Tensor:
        """Phrase embeddings (len(phrases), d_model): the text encoder's hidden states, mean-pooled over the phrase's tokens."""
        batch = self.tokenizer([prompt_clean(p) for p in phrases], padding=True, truncation=True, max_length=max_sequence_length, return_tensors="pt")
        device = self.text_encoder.device
        mask = batch.attention_mask.to(device)
        hidden = self.text_encoder(batch.input_ids.to(device), mask).last_hidden_state
        weights = mask[..., None].to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)

    def grounding_tokens(self, layout: LayoutConditioning, sources: list[list[int]], *, device, dtype) -> torch.Tensor:
        """The adapter's grounding tokens (L, N, dim) of the latent frames: latent boxes and the
        phrases of each latent frame's middle plan frame."""
        boxes, masks = latent_boxes(layout, sources)
        phrases = [layout.phrases[group[len(group) // 2]] for group in sources]
        unique = sorted({p for row in phrases for p in row})
        table = self.encode_phrases(unique).to(device=device, dtype=dtype)
        index = {p: i for i, p in enumerate(unique)}
        embeds = table[torch.tensor([[index[p] for p in row] for row in phrases], device=device)]  # (L, N, d_model)
        return self.layout_adapter.grounding_tokens(boxes.to(device, dtype), masks.to(device, dtype), embeds)

    def token_regions(self, layout: LayoutConditioning, sources: list[list[int]], grid) -> torch.Tensor:
        """(N, L * h * w) bool: each entity's video tokens (its latent boxes on the token grid, frame-major)."""
        frames, rows, cols = grid
        boxes, masks = latent_boxes(layout, sources)
        regions = torch.zeros(layout.num_entities, frames, rows * cols, dtype=torch.bool)
        for j in range(frames):
            for n in range(layout.num_entities):
                if masks[j, n] > 0:
                    regions[n, j] = box_cells(boxes[j, n], rows, cols).flatten()
        return regions.flatten(1)

    def paste_entity_noise(self, latents: torch.Tensor, layout: LayoutConditioning, sources: list[list[int]]) -> torch.Tensor:
        """latents (1, C, L, h, w) with each seeded entity's own (C, h, w) noise canvas under its latent
        boxes, top-left at the box's corner, so that an entity starts alike wherever it appears."""
        _, channels, frames, h, w = latents.shape
        boxes, masks = latent_boxes(layout, sources)
        latents = latents.clone()
        for n, seed in enumerate(layout.entity_seeds):
            canvas = torch.randn((channels, h, w), generator=torch.Generator().manual_seed(int(seed))).to(latents)
            for j in range(frames):
                if masks[j, n] <= 0:
                    continue
                x0, y0, x1, y1 = boxes[j, n].tolist()
                c0, r0 = min(int(x0 * w), w - 1), min(int(y0 * h), h - 1)
                c1, r1 = min(max(c0 + 1, round(x1 * w)), w), min(max(r0 + 1, round(y1 * h)), h)
                latents[0, :, j, r0:r1, c0:c1] = canvas[:, : r1 - r0, : c1 - c0]
        return latents

    # ---------------------------------------------------------------------------------------
    # Generation
    # ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        layout: LayoutConditioning | None = None,
        *,
        num_frames: int = 81,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        guidance_rescale: float = 0.0,
        autoguidance_scale: float | None = None,
        layout_alpha: float = 0.3,
        layout_mode: str | None = None,
        region_bias: float = 0.0,
        unconditional_layout: str = "null",
        box_guidance=None,
        negative_prompt: str = "",
        generator: torch.Generator | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
        output_type: str = "np",
        max_sequence_length: int | None = None,
    ) -> Layout2VidPipelineOutput:
        """Render one scene.

        Args:
            prompt: the scene's text. layout: per-plan-frame boxes, phrases, seeds and prompts; None: text only.
            num_frames: plan frames F (1-257); V = ``4k + 1`` >= F video frames are rendered, F returned.
            height, width: pixels, multiples of 16 (default: ``config.default_height/width``).
            num_inference_steps: denoising steps (1-200). guidance_scale: classifier-free guidance
                weight (None: ``config.default_guidance_scale``, 5.0). guidance_interval: (start, end)
                fractions of the steps with guidance; the others run the conditional pass alone.
            guidance_rescale: phi in [0, 1] of Lin et al. 2024 (arXiv 2305.08891, Sec. 3.4, Eqs. 15-16):
                on guided steps the guided prediction is rescaled to the conditional one's standard
                deviation over the whole video, and phi of the rescaled one is mixed with 1 - phi of
                the plain one (diffusers' ``rescale_noise_cfg``); 0, the default: plain guidance.
            autoguidance_scale: w_ag in [1, 10] of autoguidance (Karras et al. 2024, arXiv 2406.02507,
                Eq. 2): on every step the guiding model (:meth:`set_guidance_model`) runs the
                conditional pass too, and ``(w_ag - 1) * (cond - guide)`` is added to the prediction,
                pushing away from the weaker model's errors. None: ``config.default_autoguidance_scale``,
                else 1 (off). Above 1 needs a guiding model.
            layout_alpha: fraction of the steps (0-1) with the layout control on.
            layout_mode: ``"mask"`` (training-free: the box mask in the cross-attention), ``"adapter"``
                (the layout adapter's gated self-attention; needs :meth:`set_layout_adapter`), or None:
                the adapter when there is one, else the mask.
            region_bias: with the mask, a logit bias (>= 0) in the 3D self-attention tying each
                entity's video tokens together across frames, on the same steps (0: off, the default;
                dense S x S, see :func:`core.models.wan_attention.region_self_bias`).
            unconditional_layout: accepted for the renderer's sake; the unconditional pass (negative
                prompt) never sees the layout on Wan.
            box_guidance: a :class:`core.pipelines.guidance.BoxGuidance` with ``method="energy"``:
                energy guidance (:class:`WanBoxEnergy`) for its first ``alpha`` of the steps, with
                or without the layout control above; None: none.
            generator: torch.Generator for the initial noise (as the stock pipeline draws it).
            callback_on_step_end: ``f(pipe, step, timestep, {"latents": ...}) -> dict``; set
                ``pipe._interrupt = True`` in it to stop early.
            output_type: ``"np"`` (uint8 frames) or ``"latent"``.
            max_sequence_length: text tokens per prompt (None: ``config.max_sequence_length``, the stock 512).

        Returns:
            Layout2VidPipelineOutput whose ``frames`` is np.ndarray (F, H, W, 3) uint8, or the latents
            (1, C, L, h, w) for ``output_type="latent"``.
        """
        # 1. Check inputs, with the model's own defaults filled in.
        guidance_scale = self.config.default_guidance_scale if guidance_scale is None else guidance_scale
        guidance_interval = guidance_interval or (0.0, 1.0)
        height = height or self.config.default_height
        width = width or self.config.default_width
        max_sequence_length = max_sequence_length or self.config.max_sequence_length
        self.check_layout_inputs(prompt, layout, num_frames, height, width, num_inference_steps, guidance_scale, guidance_interval, layout_alpha, layout_mode, box_guidance, region_bias, guidance_rescale)
        if autoguidance_scale is None:
            autoguidance_scale = self.config.get("default_autoguidance_scale") or 1.0
        AUTOGUIDANCE_SCALE.check(autoguidance_scale)
        guide = self.guidance_model if autoguidance_scale > 1.0 else None
        if autoguidance_scale > 1.0 and guide is None:
            raise ValueError(
                f"autoguidance_scale: above 1 needs a guiding model (a guidance_model/ folder in the model; got {autoguidance_scale})"
            )
        self._guidance_scale = guidance_scale
        self._interrupt = False
        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        temporal = self.vae_scale_factor_temporal
        sources = latent_frame_sources(num_frames, temporal)  # plan frames of each latent frame (L)

        # 2. Encode the prompt: one for every frame, or each latent frame's own (G = L runs of tokens).
        dtype = self._denoiser.dtype
        prompts, groups, prompt_embeds, negative_embeds = self.encode_scene_prompts(
            prompt, layout, sources, negative_prompt=negative_prompt, do_cfg=do_cfg, max_sequence_length=max_sequence_length, device=device, dtype=dtype
        )

        # 3. Layout control of the conditional pass: per-frame text, and the box mask or the adapter's tokens.
        grid = self.token_grid(len(sources), height, width)
        text_only, boxed, objs, self_bias = self.layout_controls(
            layout, prompts, sources, grid, groups=groups, layout_alpha=layout_alpha, layout_mode=layout_mode, region_bias=region_bias,
            max_sequence_length=max_sequence_length, device=device, dtype=dtype,
        )
        adapter = self.layout_adapter
        if guide is not None:  # the guiding model's own controls of the same layout
            guide_controls = guide.layout_controls(
                layout, prompts, sources, grid, groups=groups, layout_alpha=layout_alpha, layout_mode=layout_mode, region_bias=region_bias,
                max_sequence_length=max_sequence_length, device=device, dtype=dtype,
            )

        # 4. Timesteps, and the steps on which each control is on.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self.scheduler.set_begin_index(0)
        layout_steps = round(layout_alpha * len(timesteps))
        energy = self.box_energy(box_guidance, layout, prompts, sources, grid, groups=groups, steps=len(timesteps), prompt_embeds=prompt_embeds, max_sequence_length=max_sequence_length)
        cfg_start, cfg_end = (round(fraction * len(timesteps)) for fraction in guidance_interval)
        boundary = self.config.boundary_ratio * self.scheduler.config.num_train_timesteps if self.config.boundary_ratio is not None else None

        # 5. Latents (1, C, L, h, w): the stock draw, then each seeded entity's noise under its boxes.
        channels = self._denoiser.config.in_channels
        latents = self.prepare_latents(1, channels, height, width, video_frames(num_frames, temporal), torch.float32, device, generator)
        if layout is not None and layout.entity_seeds is not None and layout.num_entities > 0:
            latents = self.paste_entity_noise(latents, layout, sources)

        # 6. Denoising loop: the conditional pass (controlled), then the unconditional one where guided.
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                self._current_timestep = t
                model = self.transformer if boundary is None or t >= boundary or self.transformer_2 is None else self.transformer_2
                if energy is not None:
                    latents = energy(i, t, latents)
                model_input = latents.to(dtype)
                timestep = self.expand_timestep(t, latents)
                controlled = i < layout_steps
                grounded = adapter.grounding(objs if controlled else None, frames=grid[0], aspect=grid[1] / grid[2]) if adapter is not None else nullcontext()
                with self.control_state.use(boxed if controlled else text_only, self_bias=self_bias if controlled else None), grounded:
                    noise_pred = model(hidden_states=model_input, timestep=timestep, encoder_hidden_states=prompt_embeds, return_dict=False)[0]
                if guide is not None:
                    noise_guide = guide.conditional_prediction(
                        model_input, timestep, prompt_embeds, guide_controls, controlled=controlled, grid=grid
                    )
                    autoguidance = (autoguidance_scale - 1.0) * (noise_pred - noise_guide)
                if do_cfg and cfg_start <= i < cfg_end:
                    noise_uncond = model(hidden_states=model_input, timestep=timestep, encoder_hidden_states=negative_embeds, return_dict=False)[0]
                    guided = noise_uncond + guidance_scale * (noise_pred - noise_uncond)
                    noise_pred = rescale_noise_cfg(guided, noise_pred, guidance_rescale) if guidance_rescale > 0 else guided
                if guide is not None:
                    noise_pred = noise_pred + autoguidance
                latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    available = {"latents": latents}
                    tensors = {name: available[name] for name in callback_on_step_end_tensor_inputs}
                    latents = callback_on_step_end(self, i, t, tensors).get("latents", latents)
                progress_bar.update()
                if self.interrupt:
                    self._current_timestep = None
                    return Layout2VidPipelineOutput(frames=None, interrupted=True)
        self._current_timestep = None
        if output_type == "latent":
            return Layout2VidPipelineOutput(frames=latents)

        # 7. Decode (V frames) and keep the scene's F.
        frames = self.decode_latents(latents)[:num_frames]
        self.maybe_free_model_hooks()
        return Layout2VidPipelineOutput(frames=frames)

    def conditional_prediction(self, model_input, timestep, prompt_embeds, controls, *, controlled: bool, grid) -> torch.Tensor:
        """This pipeline's transformer on the conditional pass of one step, under ``controls``
        (:meth:`layout_controls`' tuple) while ``controlled``: the guiding model's pass of autoguidance.

        Returns:
            The velocity, same shape as ``model_input`` (1, C, L, h, w).
        """
        text_only, boxed, objs, self_bias = controls
        adapter = self.layout_adapter
        grounded = nullcontext() if adapter is None else adapter.grounding(objs if controlled else None, frames=grid[0], aspect=grid[1] / grid[2])
        with self.control_state.use(boxed if controlled else text_only, self_bias=self_bias if controlled else None), grounded:
            return self._denoiser(hidden_states=model_input, timestep=timestep, encoder_hidden_states=prompt_embeds, return_dict=False)[0]

    def encode_scene_prompts(self, prompt, layout, sources, *, negative_prompt: str, do_cfg: bool, max_sequence_length: int, device, dtype):
        """The text of one scene: with the layout's per-frame prompts each latent frame reads its middle
        plan frame's (G = L groups), else ``prompt`` for all (G = 1).

        Returns:
            (prompts: the L prompts read, G, prompt_embeds (1, G * T, D), negative_embeds (1, T, D) or None without guidance).
        """
        frame_prompts = layout.frame_prompts if layout is not None else None
        prompts = [frame_prompts[group[len(group) // 2]] for group in sources] if frame_prompts else [prompt] * len(sources)
        if frame_prompts:
            embeds = self._get_t5_prompt_embeds(prompt=prompts, max_sequence_length=max_sequence_length, device=device)  # (L, T, D)
            negative = self._get_t5_prompt_embeds(prompt=[negative_prompt], max_sequence_length=max_sequence_length, device=device) if do_cfg else None
            return prompts, len(sources), embeds.reshape(1, -1, embeds.shape[-1]).to(dtype), negative.to(dtype) if negative is not None else None
        positive, negative = self.encode_prompt(
            prompt=prompt, negative_prompt=negative_prompt, do_classifier_free_guidance=do_cfg, max_sequence_length=max_sequence_length, device=device
        )
        return prompts, 1, positive.to(dtype), negative.to(dtype) if negative is not None else None

    def layout_controls(self, layout, prompts, sources, grid, *, groups: int, layout_alpha: float, layout_mode, region_bias: float, max_sequence_length: int, device, dtype):
        """What the conditional pass runs with: ``text_only`` (the per-frame text grouping, or None)
        after the layout steps; during them ``boxed`` (the box mask, ``layout_mode="mask"``) and
        ``self_bias`` (:func:`region_self_bias`, with ``region_bias`` > 0), or ``objs`` (the
        adapter's grounding tokens, ``"adapter"``; None: the adapter when there is one).

        Returns:
            (text_only, boxed, objs, self_bias).
        """
        layout_mode = layout_mode or ("adapter" if self.layout_adapter is not None else "mask")
        text_only = CrossAttentionControl(groups=groups) if groups > 1 else None
        boxed, objs, self_bias = text_only, None, None
        if layout is not None and layout.num_entities > 0 and layout_alpha > 0:
            if layout_mode == "mask":
                boxed = self.box_control(layout, prompts, sources, grid, groups=groups, max_sequence_length=max_sequence_length)
                if region_bias > 0:
                    self_bias = region_self_bias(self.token_regions(layout, sources, grid), region_bias)
            else:
                objs = self.grounding_tokens(layout, sources, device=device, dtype=dtype)
        return text_only, boxed, objs, self_bias

    def box_energy(self, box_guidance, layout, prompts, sources, grid, *, groups: int, steps: int, prompt_embeds, max_sequence_length: int) -> WanBoxEnergy | None:
        """The energy guidance of one render (:class:`WanBoxEnergy`), or None without guidance or entities."""
        if box_guidance is None or layout is None or layout.num_entities == 0 or box_guidance.alpha <= 0:
            return None
        middle = [frames[len(frames) // 2] for frames in sources]
        token_weights = phrase_token_weights(self.tokenizer, [prompt_clean(p) for p in prompts], [layout.phrases[f] for f in middle], max_length=max_sequence_length)
        boxes, masks = latent_boxes(layout, sources)
        return WanBoxEnergy(
            self, self._denoiser, box_guidance, guided_steps=round(box_guidance.alpha * steps), control=CrossAttentionControl(groups=groups),
            prompt_embeds=prompt_embeds, token_weights=token_weights, boxes=boxes, masks=masks, grid=grid,
        )

    def expand_timestep(self, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The transformer's timestep input: (B,), or (B, tokens) for Wan 2.2 TI2V (``expand_timesteps``)."""
        if not self.config.expand_timesteps:
            return t.expand(latents.shape[0])
        p_t, p_h, p_w = self._denoiser.config.patch_size
        tokens = latents.shape[2] // p_t * (latents.shape[3] // p_h) * (latents.shape[4] // p_w)
        return t.expand(latents.shape[0], tokens)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """latents (1, C, L, h, w) -> frames np.ndarray (V, H, W, 3) uint8, V = 4 (L - 1) + 1."""
        vae = self.vae
        latents = latents.to(vae.device, dtype=vae.dtype)
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
        video = vae.decode(latents * std + mean, return_dict=False)[0]  # (1, 3, V, H, W) in [-1, 1]
        video = self.video_processor.postprocess_video(video, output_type="np")[0]  # (V, H, W, 3) in [0, 1]
        return (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)
