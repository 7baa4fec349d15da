"""Train the miniature Layout2Vid on the procedural toy world, or a layout adapter for a backbone.

    python -m core.training toy --out runs/toy --seed 0          # autoencoder, data, UNet + adapter (resumable)
    python -m core.training graph --run runs/toy --steps 3600    # + the scene-graph encoder, jointly with the UNet
    python -m core.training decoder --run runs/toy --steps 3000  # the decoder fine-tuned, encoder frozen
    python -m core.training refine --run runs/toy --clips 240    # the decoder taught the UNet's own samples
    python -m core.training export --run runs/toy --to assets/layout2vid-toy
    python -m core.training adapter --model PATH --images DIR --annotations COCO.json
    python -m core.training wan-toy --out runs/wan-toy             # model v2: the miniature Wan (resumable)
    python -m core.training wan-export --run runs/wan-toy --to assets/wan-toy
    python -m core.training wan-soup --models A B --to assets/wan-toy   # uniform weight average of exports

Modules, one concept each:

- :mod:`~core.training.config`: one frozen settings dataclass per stage; the command's options.
- :mod:`~core.training.loop`: the one training loop (schedule, resume, clipping, EMA, checkpoints, log).
- :mod:`~core.training.toy_data`, :mod:`~core.training.graph_data`, :mod:`~core.training.palette`:
  the toy world as training data (cached clips, their scene graphs, the palette's latents).
- :mod:`~core.training.weights`, :mod:`~core.training.losses`, :mod:`~core.training.pruning`:
  starting from another model, the denoiser's loss, pruning to narrower widths.
- the stages: :mod:`~core.training.toy`, :mod:`~core.training.graph`, :mod:`~core.training.decoder`,
  :mod:`~core.training.refine`, :mod:`~core.training.export`, :mod:`~core.training.adapter`;
  :mod:`~core.training.cli` runs them.

Every stage resumes from its last checkpoint in the run folder; a finished stage is skipped.
"""
