"""Starting a run from another model's weights (``ToyTrainConfig.init_from``)."""

from __future__ import annotations

from pathlib import Path

import torch


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor of ``state`` whose name and shape match a parameter or buffer of ``module``.

    Used to start a run with another latent width from a trained model: only the layers that touch
    the latent (the VAE's ``conv_out``/``quant_conv``/``post_quant_conv``/decoder ``conv_in``, the
    UNet's ``conv_in``/``conv_out``) differ in shape and keep their fresh initialisation. Copied
    tensors take the dtype of ``module``'s own.

    Returns:
        The names of ``module``'s tensors left at their initialisation (missing or another shape), sorted.
    """
    own = module.state_dict()
    taken = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(taken, strict=False)
    return sorted(set(own) - set(taken))


def pipeline_weights(folder: str | Path, part: str) -> dict[str, torch.Tensor]:
    """The state dict of one part of a saved pipeline folder, as float32.

    Args:
        folder: a ``Layout2VidPipeline`` folder.
        part: ``"vae"``, ``"unet"``, ``"layout_adapter"`` or ``"graph_encoder"``.

    Raises:
        FileNotFoundError: the folder has no such part (the message starts with ``init_from:``).
    """
    from safetensors.torch import load_file

    path = Path(folder) / part / "diffusion_pytorch_model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"init_from: {path} does not exist")
    return {k: v.float() for k, v in load_file(path).items()}
