"""Layout2VidPipeline: text-to-video diffusion with per-frame box grounding (VideoDirectorGPT's Layout2Vid).

The stages of ``__call__`` follow diffusers' text-to-video pipelines:
check inputs -> encode prompt -> grounding tokens -> timesteps -> latents -> denoising loop -> decode.
Grounding (GLIGEN gated self-attention, see :mod:`core.models.layout`) is active for the first
``layout_alpha`` fraction of the denoising steps, VideoDirectorGPT's alpha (arXiv 2309.15091, sec. 3.2).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet3DConditionModel
from diffusers.guiders.guider_utils import rescale_noise_cfg
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput
from einops import rearrange

from core.models.frame_text import FrameText
from core.models.graph_encoder import SceneGraphEncoder, graph_tensors
from core.models.layout import LayoutAdapter
from core.models.unet import PrunedUNet3DConditionModel  # noqa: F401  (imported so that from_pretrained can load it)
from core.pipelines.guidance import METHODS, BoxGuidance, BoxGuidanceHooks, phrase_token_weights
from core.settings import GUIDANCE_RESCALE, GUIDANCE_SCALE, LAYOUT_ALPHA, STEPS, model_guidance_scale


@dataclass
class LayoutConditioning:
    """Per-frame grounding of one scene.

    Attributes:
        phrases: ``phrases[f][n]`` is entity ``n``'s phrase in frame ``f`` (e.g. ``"blue ball"``),
            length ``frames`` x ``entities``.
        boxes: torch.Tensor (frames, entities, 4), float32 xyxy in [0, 1].
        masks: torch.Tensor (frames, entities), float32, 1 where the entity is on screen, else 0.
        entity_seeds: one int per entity; an entity's initial noise is drawn from its seed and
            placed under its box, so entities that share a seed (a consistency group) start alike.
        frame_prompts: optional text of each frame (length ``frames``), built from that frame's
            scene graph; it replaces the scene prompt in the spatial cross-attention of its frame.
        scene_graphs: optional per-frame scene graphs (networkx, :mod:`core.scene_graph`) for a pipeline
            with a ``graph_encoder`` (Dysen-VDM's recurrent graph Transformer).
    """

    phrases: list[list[str]]
    boxes: torch.Tensor
    masks: torch.Tensor
    entity_seeds: list[int] | None = None
    frame_prompts: list[str] | None = None
    scene_graphs: list | None = None

    @property
    def num_frames(self) -> int:
        return self.boxes.shape[0]

    @property
    def num_entities(self) -> int:
        return self.boxes.shape[1]


def conditional_half(rows, num_frames: int):
    """The conditional rows of classifier-free-guided conditioning: the last ``num_frames`` rows of
    a (2F or F, ...) tensor, of each tensor of a tuple, or None for None."""
    if rows is None:
        return None
    if isinstance(rows, tuple):
        return tuple(part[-num_frames:] for part in rows)
    return rows[-num_frames:]


@dataclass
class StepInputs:
    """What every UNet call of one scene is conditioned on; where classifier-free guidance runs, each
    batched tensor holds the unconditional rows first, then the conditional ones.

    Attributes:
        prompt_embeds: (2 or 1, T, D) text tokens (negative prompt, prompt).
        frame_embeds: (2F or F, T, D) per-frame text tokens, or None. cond_frame_embeds: (F, T, D) or None.
        objs: grounding tokens for the adapter, or None. region: their (boxes, masks), or None.
        graph_tokens: scene-graph tokens (tuple of tensors), or None.
        aspect: latent height / width. num_frames: F.
    """

    prompt_embeds: torch.Tensor
    frame_embeds: torch.Tensor | None
    cond_frame_embeds: torch.Tensor | None
    objs: torch.Tensor | None
    region: tuple | None
    graph_tokens: tuple | None
    aspect: float
    num_frames: int


@dataclass
class Layout2VidPipelineOutput(BaseOutput):
    """frames: np.ndarray (frames, height, width, 3) uint8, or None when the call was interrupted."""

    frames: np.ndarray | None
    interrupted: bool = False


class Layout2VidPipeline(DiffusionPipeline):
    """Layout-guided text-to-video pipeline.

    Components:
        vae: AutoencoderKL (frames <-> latents, downsampling ``vae_scale_factor``).
        text_encoder, tokenizer: a transformers text model (MiniLM BERT for the toy model, CLIP for
            ModelScope) and its tokenizer.
        unet: UNet3DConditionModel predicting noise or velocity over (batch, channels, frames, h, w)
            (or :class:`core.models.unet.PrunedUNet3DConditionModel`, the toy model's).
        scheduler: any diffusers scheduler (DDIM and DPM-Solver++ are used).
        layout_adapter: LayoutAdapter or None (then no grounding; boxes are ignored).
        graph_encoder: SceneGraphEncoder or None (then scene graphs reach the model only through
            phrases and frame prompts).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["layout_adapter", "graph_encoder", "text_encoder", "tokenizer"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder,
        tokenizer,
        unet: UNet3DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        layout_adapter: LayoutAdapter | None = None,
        graph_encoder: SceneGraphEncoder | None = None,
        max_prompt_tokens: int = 24,
        backgrounds: list[str] | None = None,
        default_guidance_scale: float | None = None,
        default_guidance_interval: list[float] | None = None,
    ):
        super().__init__()
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler, layout_adapter=layout_adapter, graph_encoder=graph_encoder
        )
        # backgrounds: the closed set a toy-world model was trained on (None for open-domain models).
        # default_guidance_scale: the guidance weight the model was selected with (None: core.settings.DEFAULT_GUIDANCE_SCALE).
        # default_guidance_interval: [start, end] fractions of the steps with guidance (None: every step).
        self.register_to_config(
            max_prompt_tokens=max_prompt_tokens, backgrounds=backgrounds, default_guidance_scale=default_guidance_scale,
            default_guidance_interval=default_guidance_interval,
        )
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if layout_adapter is not None:
            layout_adapter.attach(unet)
        if graph_encoder is not None:
            graph_encoder.attach(unet)
        self._frame_text = FrameText(unet)
        self._interrupt = False

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ---------------------------------------------------------------------------------------
    # Text
    # ---------------------------------------------------------------------------------------

    def _is_bert(self) -> bool:
        return getattr(self.text_encoder.config, "model_type", "") == "bert"

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Token embeddings (len(prompts), max_prompt_tokens, hidden) for cross-attention.

        For BERT encoders padding positions are zeroed (the toy model was trained so); CLIP
        encoders keep diffusers' convention.
        """
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("text_encoder: the pipeline has no text encoder; pass text_encoder= and tokenizer= to from_pretrained")
        batch = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.config.max_prompt_tokens, return_tensors="pt")
        ids = batch["input_ids"].to(self.text_encoder.device)
        mask = batch["attention_mask"].to(self.text_encoder.device)
        hidden = self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if self._is_bert():
            hidden = hidden * mask[..., None].to(hidden.dtype)
        return hidden

    @torch.no_grad()
    def encode_phrases(self, phrases: list[str]) -> torch.Tensor:
        """Phrase embeddings (len(phrases), hidden): normalised mean pooling (BERT) or CLIP's pooled output."""
        batch = self.tokenizer(phrases, padding=True, truncation=True, max_length=self.config.max_prompt_tokens, return_tensors="pt")
        ids = batch["input_ids"].to(self.text_encoder.device)
        mask = batch["attention_mask"].to(self.text_encoder.device)
        out = self.text_encoder(input_ids=ids, attention_mask=mask)
        if self._is_bert():
            m = mask[..., None].to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1)
            return torch.nn.functional.normalize(pooled, dim=-1)
        return out.pooler_output

    # ---------------------------------------------------------------------------------------
    # Inputs, latents, grounding
    # ---------------------------------------------------------------------------------------

    def check_inputs(
        self, prompt, layout, num_frames, height, width, num_inference_steps, guidance_scale, guidance_interval, layout_alpha,
        unconditional_layout, box_guidance, callback_on_step_end_tensor_inputs, guidance_rescale=0.0,
    ):
        """Raise ValueError naming the first argument outside its range (ranges: :mod:`core.settings`)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt: must be a non-empty string (got {prompt!r})")
        if not 1 <= num_frames <= 256:
            raise ValueError(f"num_frames: must be in [1, 256] (got {num_frames})")
        if height % self.vae_scale_factor or width % self.vae_scale_factor:
            raise ValueError(f"height, width: must be multiples of {self.vae_scale_factor} (got {height}x{width})")
        STEPS.check(num_inference_steps)
        GUIDANCE_SCALE.check(guidance_scale)
        GUIDANCE_RESCALE.check(guidance_rescale)
        LAYOUT_ALPHA.check(layout_alpha)
        if len(guidance_interval) != 2 or not 0.0 <= guidance_interval[0] <= guidance_interval[1] <= 1.0:
            raise ValueError(f"guidance_interval: must be (start, end) with 0 <= start <= end <= 1 (got {tuple(guidance_interval)})")
        if unconditional_layout not in ("null", "none"):
            raise ValueError(f"unconditional_layout: must be 'null' or 'none' (got {unconditional_layout!r})")
        if box_guidance is not None and not (0.0 <= box_guidance.alpha <= 1.0 and box_guidance.scale >= 0.0):
            raise ValueError(f"box_guidance: alpha must be in [0, 1] and scale >= 0 (got {box_guidance.alpha}, {box_guidance.scale})")
        if box_guidance is not None and box_guidance.method not in METHODS:
            raise ValueError(f"box_guidance.method: must be one of {', '.join(METHODS)} (got {box_guidance.method!r})")
        if layout is not None:
            if layout.boxes.shape != (num_frames, layout.num_entities, 4) or layout.masks.shape != (num_frames, layout.num_entities):
                raise ValueError(
                    f"layout: boxes must be (num_frames, entities, 4) and masks (num_frames, entities) "
                    f"with num_frames={num_frames} (got {tuple(layout.boxes.shape)} and {tuple(layout.masks.shape)})"
                )
            if len(layout.phrases) != num_frames or any(len(row) != layout.num_entities for row in layout.phrases):
                raise ValueError(f"layout.phrases: must be num_frames x entities = {num_frames} x {layout.num_entities}")
            if layout.entity_seeds is not None and len(layout.entity_seeds) != layout.num_entities:
                raise ValueError(f"layout.entity_seeds: must have {layout.num_entities} entries (got {len(layout.entity_seeds)})")
            if layout.frame_prompts is not None and len(layout.frame_prompts) != num_frames:
                raise ValueError(f"layout.frame_prompts: must have one prompt per frame ({num_frames}), got {len(layout.frame_prompts)}")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs: must be among {self._callback_tensor_inputs} (got {sorted(unknown)})")

    def prepare_latents(self, num_frames, height, width, dtype, device, generator, layout: LayoutConditioning | None) -> torch.Tensor:
        """Initial noise (1, C, F, h, w); each seeded entity's own noise is pasted under its boxes.

        The entity noise is one (C, h, w) canvas per entity whose top-left corner follows the box, so
        the entity starts from the same noise in every frame and in every scene it appears in.
        """
        shape = (1, self.unet.config.in_channels, num_frames, height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
        if layout is None or layout.entity_seeds is None:
            return latents * self.scheduler.init_noise_sigma
        _, channels, frames, h, w = shape
        for n, seed in enumerate(layout.entity_seeds):
            canvas = torch.randn((channels, h, w), generator=torch.Generator().manual_seed(int(seed))).to(device=device, dtype=dtype)
            for f in range(frames):
                if layout.masks[f, n] <= 0:
                    continue
                x0, y0, x1, y1 = layout.boxes[f, n].tolist()
                c0, r0 = int(x0 * w), int(y0 * h)
                c1, r1 = max(c0 + 1, round(x1 * w)), max(r0 + 1, round(y1 * h))
                c1, r1 = min(c1, w), min(r1, h)
                latents[0, :, f, r0:r1, c0:c1] = canvas[:, : r1 - r0, : c1 - c0]
        return latents * self.scheduler.init_noise_sigma

    def prepare_grounding(self, layout: LayoutConditioning, *, with_unconditional: bool, device, dtype) -> torch.Tensor:
        """Grounding tokens (F, N, D), or (2F, N, D) with the null-token unconditional half first."""
        unique = sorted({p for row in layout.phrases for p in row})
        table = self.encode_phrases(unique).to(device=device, dtype=dtype)
        index = {p: i for i, p in enumerate(unique)}
        ids = torch.tensor([[index[p] for p in row] for row in layout.phrases], device=device)
        phrase_embeds = table[ids]  # (F, N, hidden)
        boxes = layout.boxes.to(device=device, dtype=dtype)
        masks = layout.masks.to(device=device, dtype=dtype)
        objs = self.layout_adapter.grounding_tokens(boxes, masks, phrase_embeds)
        if not with_unconditional:
            return objs
        null = self.layout_adapter.grounding_tokens(boxes, torch.zeros_like(masks), phrase_embeds)
        return torch.cat([null, objs])

    def grounding_region(self, layout: LayoutConditioning, *, with_unconditional: bool, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes (F, N, 4) and masks (F, N) in the rows of :meth:`prepare_grounding`'s tokens
        ((2F, ...) with the unconditional half first, whose null tokens are all off screen)."""
        boxes = layout.boxes.to(device=device, dtype=dtype)
        masks = layout.masks.to(device=device, dtype=dtype)
        if not with_unconditional:
            return boxes, masks
        return torch.cat([boxes, boxes]), torch.cat([torch.zeros_like(masks), masks])

    def prepare_graph_tokens(self, scene_graphs: list, *, with_unconditional: bool, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Graph tokens and mask, (F, N + 1, D) and (F, N + 1), or (2F, ...) with the empty-graph half first."""
        tensors = graph_tensors(scene_graphs, lambda texts: self.encode_phrases(texts).float().cpu()).to(device=device, dtype=dtype)
        tokens, mask = self.graph_encoder.encode(tensors)
        if not with_unconditional:
            return tokens, mask
        null_tokens, null_mask = self.graph_encoder.null_tokens(tokens.shape[0], like=tokens)
        return torch.cat([null_tokens, tokens]), torch.cat([null_mask, mask])

    # ---------------------------------------------------------------------------------------
    # Call
    # ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        layout: LayoutConditioning | None = None,
        *,
        num_frames: int = 16,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        guidance_rescale: float = 0.0,
        layout_alpha: float = 1.0,
        unconditional_layout: str = "null",
        box_guidance: BoxGuidance | None = None,
        negative_prompt: str = "",
        generator: torch.Generator | None = None,
        callback_on_step_end: Callable[["Layout2VidPipeline", int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
        output_type: str = "np",
    ) -> Layout2VidPipelineOutput:
        """Render one scene.

        Args:
            prompt: the scene's text.
            layout: per-frame grounding; None renders from the text alone.
            num_frames: frames F (1-256). height, width: pixels, multiples of ``vae_scale_factor``
                (default: the UNet's sample size times it).
            num_inference_steps: denoising steps (1-200, core.settings.STEPS).
            guidance_scale: classifier-free guidance weight w (0-30, core.settings.GUIDANCE_SCALE); w <= 1 disables guidance.
                The unconditional branch has the negative prompt (and see ``unconditional_layout``).
                None: the model's own (:func:`core.settings.model_guidance_scale`).
            guidance_interval: (start, end), fractions of the steps (0 <= start <= end <= 1):
                guidance runs on steps i with ``round(start * n) <= i < round(end * n)`` and the
                other steps run the conditional branch alone, half the batch (guidance in a
                limited interval, Kynkäänniemi et al. 2024, arXiv 2404.07724). None: the model's
                ``config.default_guidance_interval``, or (0, 1), every step.
            guidance_rescale: phi in [0, 1] of Lin et al. 2024 (arXiv 2305.08891, Sec. 3.4, Eqs. 15-16):
                on guided steps the guided prediction is rescaled to the conditional one's standard
                deviation over the whole video, and phi of the rescaled one is mixed with 1 - phi of
                the plain one (diffusers' ``rescale_noise_cfg``); 0, the default: plain guidance.
            layout_alpha: fraction of the steps (0-1) with the adapter's gated attention on,
                VideoDirectorGPT's alpha. 0 turns the adapter off.
            unconditional_layout: what the unconditional branch of classifier-free guidance sees
                of the layout: ``"null"`` GLIGEN's null grounding tokens (the gated attention runs
                on both halves of the batch), ``"none"`` no gated attention at all, so that
                guidance also pushes towards the layout and the adapter costs half as much.
            box_guidance: training-free box guidance (:mod:`core.pipelines.guidance`: a cross-attention
                energy step on the latents, or cross-attention masking) for the first
                ``box_guidance.alpha`` fraction of the steps; None for none.
            generator: torch.Generator for the initial noise.
            callback_on_step_end: ``f(pipe, step, timestep, {"latents": ...}) -> dict``; returned
                tensors replace the loop's. Set ``pipe._interrupt = True`` in it to stop early.
            output_type: ``"np"`` (uint8 frames) or ``"latent"``.

        Returns:
            Layout2VidPipelineOutput whose ``frames`` is np.ndarray (F, H, W, 3) uint8, or the
            latents (1, C, F, h, w) for ``output_type="latent"``.

        Raises:
            ValueError: an argument outside its range (the message names it).
        """
        # 1. Check inputs, with the model's own defaults filled in.
        if guidance_scale is None:
            guidance_scale = model_guidance_scale(self.config)
        if guidance_interval is None:
            guidance_interval = getattr(self.config, "default_guidance_interval", None) or (0.0, 1.0)
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        self.check_inputs(
            prompt, layout, num_frames, height, width, num_inference_steps, guidance_scale, guidance_interval, layout_alpha,
            unconditional_layout, box_guidance, callback_on_step_end_tensor_inputs, guidance_rescale,
        )
        self._interrupt = False
        device, dtype = self._execution_device, self.unet.dtype
        do_cfg = guidance_scale > 1.0

        # 2. Encode the prompt: the scene prompt, and each frame's own prompt where given.
        prompt_embeds = self.encode_prompt([negative_prompt, prompt] if do_cfg else [prompt]).to(dtype)
        frame_embeds = cond_frame_embeds = None  # (B * F, T, D), (F, T, D)
        frame_prompts = layout.frame_prompts if layout is not None else None
        if frame_prompts is not None:
            cond_frame_embeds = self.encode_prompt(frame_prompts).to(dtype)
            frame_embeds = torch.cat([prompt_embeds[:1].expand(num_frames, -1, -1), cond_frame_embeds]) if do_cfg else cond_frame_embeds

        # 3. Grounding tokens (GLIGEN) and scene-graph tokens (Dysen-VDM's encoder).
        objs = region = graph_tokens = None
        if layout is not None and layout.num_entities > 0 and self.layout_adapter is not None:
            # With ``unconditional_layout="none"`` the tokens cover the conditional half only; the
            # gated attention leaves the other rows alone (GroundedSelfAttention.forward).
            with_null = do_cfg and unconditional_layout == "null"
            objs = self.prepare_grounding(layout, with_unconditional=with_null, device=device, dtype=dtype)
            region = self.grounding_region(layout, with_unconditional=with_null, device=device, dtype=dtype)
        if layout is not None and layout.scene_graphs is not None and self.graph_encoder is not None:
            graph_tokens = self.prepare_graph_tokens(layout.scene_graphs, with_unconditional=do_cfg, device=device, dtype=dtype)
        inputs = StepInputs(prompt_embeds, frame_embeds, cond_frame_embeds, objs, region, graph_tokens, aspect=height / width, num_frames=num_frames)

        # 4. Timesteps, and the steps on which each control is on.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        layout_steps = round(layout_alpha * len(timesteps))
        cfg_start, cfg_end = (round(fraction * len(timesteps)) for fraction in guidance_interval)

        # 5. Latents.
        latents = self.prepare_latents(num_frames, height, width, dtype, device, generator, layout)

        # 6. Denoising loop (training-free box guidance, if any, hooks in before each step).
        hooks = self.box_guidance_hooks(box_guidance, layout, inputs, frame_prompts or [prompt] * num_frames, len(timesteps))
        with hooks or nullcontext(), self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if hooks is not None:
                    latents = hooks.before_step(i, t, latents)
                step_scale = guidance_scale if do_cfg and cfg_start <= i < cfg_end else None
                noise_pred = self.predict_noise(
                    latents, t, inputs, grounded=i < layout_steps, guidance_scale=step_scale, do_cfg=do_cfg,
                    guidance_rescale=guidance_rescale,
                )
                latents = self.scheduler.step(noise_pred, t, latents).prev_sample
                if callback_on_step_end is not None:
                    available = {"latents": latents}
                    tensors = {name: available[name] for name in callback_on_step_end_tensor_inputs}
                    latents = callback_on_step_end(self, i, t, tensors).get("latents", latents)
                progress_bar.update()
                if self.interrupt:
                    return Layout2VidPipelineOutput(frames=None, interrupted=True)
        if output_type == "latent":
            return Layout2VidPipelineOutput(frames=latents)

        # 7. Decode and post-process.
        frames = self.decode_latents(latents)
        self.maybe_free_model_hooks()
        return Layout2VidPipelineOutput(frames=frames)

    def predict_noise(
        self, latents: torch.Tensor, t, inputs: StepInputs, *, grounded: bool, guidance_scale: float | None, do_cfg: bool,
        guidance_rescale: float = 0.0,
    ) -> torch.Tensor:
        """One UNet prediction, with classifier-free guidance when ``guidance_scale`` is given.

        Args:
            latents: (1, C, F, h, w). t: the timestep. inputs: the scene's conditioning.
            grounded: whether the adapter's gated attention reads the grounding tokens this step.
            guidance_scale: w of ``uncond + w * (cond - uncond)`` (both halves of the batch run);
                None: the conditional branch alone (when ``do_cfg``, the conditional half of every
                input, as outside a guidance interval).
            do_cfg: whether ``inputs`` hold an unconditional half.
            guidance_rescale: with guidance, phi of Lin et al. 2024's rescale (see ``__call__``; 0: none).

        Returns:
            The model output, same shape as ``latents``.
        """
        objs = inputs.objs if grounded else None
        if guidance_scale is not None or not do_cfg:
            latent_input = torch.cat([latents] * 2) if guidance_scale is not None else latents
            with self._conditioning(objs, inputs.frame_embeds, inputs.aspect, inputs.graph_tokens, inputs.region):
                output = self.unet(self.scheduler.scale_model_input(latent_input, t), t, encoder_hidden_states=inputs.prompt_embeds).sample
            if guidance_scale is None:
                return output
            uncond, cond = output.chunk(2)
            guided = uncond + guidance_scale * (cond - uncond)
            return rescale_noise_cfg(guided, cond, guidance_rescale) if guidance_rescale > 0 else guided
        frames = inputs.num_frames
        with self._conditioning(
            conditional_half(objs, frames), inputs.cond_frame_embeds, inputs.aspect,
            conditional_half(inputs.graph_tokens, frames), conditional_half(inputs.region, frames),
        ):
            return self.unet(self.scheduler.scale_model_input(latents, t), t, encoder_hidden_states=inputs.prompt_embeds[-1:]).sample

    def box_guidance_hooks(self, box_guidance, layout, inputs: StepInputs, prompts: list[str], num_steps: int) -> BoxGuidanceHooks | None:
        """The training-free guidance hooks of one render (:class:`core.pipelines.guidance.BoxGuidanceHooks`),
        or None when no step is guided (no guidance, no layout or no entity on screen)."""
        if box_guidance is None or layout is None or layout.num_entities == 0:
            return None
        guided_steps = round(box_guidance.alpha * num_steps)
        if guided_steps == 0:
            return None
        device = inputs.prompt_embeds.device
        token_weights = phrase_token_weights(self.tokenizer, prompts, layout.phrases, max_length=self.config.max_prompt_tokens).to(device)
        cond_embeds = inputs.prompt_embeds[-1:]  # the energy's pass runs the conditional branch only
        cond_graph = conditional_half(inputs.graph_tokens, inputs.num_frames)

        def conditional_pass(x, t):
            with self._conditioning(None, inputs.cond_frame_embeds, inputs.aspect, cond_graph):
                self.unet(self.scheduler.scale_model_input(x, t), t, encoder_hidden_states=cond_embeds)

        return BoxGuidanceHooks(
            self.unet, box_guidance, guided_steps=guided_steps, token_weights=token_weights, boxes=layout.boxes.to(device), masks=layout.masks.to(device),
            aspect=inputs.aspect, num_frames=inputs.num_frames, dtype=inputs.prompt_embeds.dtype, conditional_pass=conditional_pass,
        )

    @contextmanager
    def _conditioning(self, objs: torch.Tensor | None, frame_embeds: torch.Tensor | None, aspect: float, graph_tokens=None, region=None):
        """UNet calls inside use grounding tokens ``objs`` (with their ``region``, (boxes, masks)), per-frame text ``frame_embeds`` and graph tokens."""
        with ExitStack() as stack:
            stack.enter_context(self._frame_text.use(frame_embeds))
            if self.layout_adapter is not None:
                boxes, masks = region if region is not None else (None, None)
                stack.enter_context(self.layout_adapter.grounding(objs, aspect=aspect, boxes=boxes, masks=masks))
            if self.graph_encoder is not None:
                stack.enter_context(self.graph_encoder.conditioning(graph_tokens))
            yield

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk: int = 16) -> np.ndarray:
        """latents (1, C, F, h, w) -> frames np.ndarray (F, H, W, 3) uint8."""
        flat = rearrange(latents, "b c f h w -> (b f) c h w") / self.vae.config.scaling_factor
        images = torch.cat([self.vae.decode(flat[i : i + chunk].to(self.vae.dtype)).sample for i in range(0, flat.shape[0], chunk)])
        images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return rearrange(images, "f c h w -> f h w c").cpu().numpy()
