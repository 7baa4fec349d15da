"""Layout-guided video diffusion pipelines and what loads and steers them.

- :mod:`core.pipelines.layout2vid`: ``Layout2VidPipeline`` (VideoDirectorGPT's Layout2Vid: a UNet3D
  with GLIGEN gated self-attention over per-frame grounding tokens);
- :mod:`core.pipelines.wan`: ``WanLayoutPipeline`` (Wan 2.x's DiT through diffusers' ``WanPipeline``, with
  training-free box control in its cross-attention, per-frame prompts and entity noise);
- :mod:`core.pipelines.backbones`: stock text-to-video folders and hub ids (ModelScope), adapters,
  schedulers, devices;
- :mod:`core.pipelines.guidance`: training-free box guidance (cross-attention energy, masking).
"""
