"""Shared fixtures of the training tests: tiny runs built from the shipped toy model."""

import json
import shutil
from dataclasses import asdict

import pytest

from core.render import REFERENCE_MODEL as TOY_MODEL
from core.training.config import ToyTrainConfig
from core.training.toy_data import build_dataset


@pytest.fixture
def graph_run(tmp_path):
    """A four-clip run (``tmp_path``) that starts its graph stage from the shipped pipeline: (cfg, data)."""
    cfg = ToyTrainConfig(clips=4, clip_frames=4, unet_batch=2, checkpoint_every=2, init_from=str(TOY_MODEL))
    shutil.copytree(TOY_MODEL / "vae", tmp_path / "vae")
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    return cfg, build_dataset(tmp_path, cfg)


@pytest.fixture(scope="module")
def toy_pipe():
    """The shipped reference toy pipeline (layout2vid-toy, a UNet3D), progress bars off."""
    from core.render import load_pipeline

    pipe = load_pipeline(TOY_MODEL)
    pipe.set_progress_bar_config(disable=True)
    return pipe
