"""The adapter stage on a tiny ModelScope-class backbone: training lowers the loss, the file loads,
and a bad annotation is one error line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.pipelines.backbones import adapter_for, load_adapter, save_adapter
from core.render import load_pipeline
from core.toyworld.world import ToyObject, render_frame
from core.training.adapter import diffusion_loss, encode_examples, grounding_examples, load_coco, train_adapter
from core.training.cli import main
from core.training.config import AdapterTrainConfig
from tests.core.pipelines.tiny_modelscope import save_stock, tiny_components


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    """A tiny stock TextToVideoSDPipeline folder."""
    tmp = tmp_path_factory.mktemp("adapter")
    return save_stock(tmp / "stock", tiny_components(tmp))


def _coco_set(folder, count=6):
    """Toy-world images with known boxes, written as a COCO instances file: (images folder, JSON path)."""
    rng = np.random.default_rng(0)
    kinds = ["ball", "square"]
    images, annotations = [], []
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        x0, y0 = rng.uniform(0.05, 0.45, size=2)
        box = (x0, y0, x0 + 0.45, y0 + 0.45)
        kind = kinds[i % 2]
        Image.fromarray(render_frame("grass", [ToyObject(kind, "red", box)], size=32)).save(folder / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 32, "height": 32})
        annotations.append({"id": i, "image_id": i, "category_id": i % 2, "bbox": [box[0] * 32, box[1] * 32, 0.45 * 32, 0.45 * 32]})
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 0, "name": "ball"}, {"id": 1, "name": "square"}]}
    (folder / "coco.json").write_text(json.dumps(coco))
    return folder / "images", folder / "coco.json"


def test_adapter_training_lowers_the_loss_and_saves_a_loadable_file(stock, tmp_path):
    images, annotations = _coco_set(tmp_path / "coco")
    pipe = load_pipeline(stock)
    examples = grounding_examples(load_coco(annotations), images, size=(16, 16), max_boxes=2)
    data = encode_examples(pipe, examples, max_boxes=2)
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(data["latents"].shape, generator=generator)
    timesteps = torch.full((len(examples),), 500)
    adapter, losses = train_adapter(pipe, data, AdapterTrainConfig(steps=60, batch=6, lr=3e-3, drop_grounding=0.0))
    assert len(losses) == 60
    # The same fixed batch, noise and timesteps before (gates at 0 = the frozen backbone) and after.
    before = adapter_for(pipe.unet, pipe.text_encoder, gate_init=0.0)
    pipe.layout_adapter = None
    adapter.detach(pipe.unet)
    before.attach(pipe.unet)
    with torch.no_grad():
        loss_before = float(diffusion_loss(pipe, before, data, noise, timesteps))
    before.detach(pipe.unet)
    adapter.attach(pipe.unet)
    with torch.no_grad():
        loss_after = float(diffusion_loss(pipe, adapter, data, noise, timesteps))
    assert loss_after < 0.9 * loss_before, (loss_before, loss_after)
    path = save_adapter(adapter, tmp_path / "trained.safetensors")
    reloaded = load_adapter(path, pipe.unet, pipe.text_encoder)
    assert reloaded.fusers[0].alpha_attn.item() == pytest.approx(adapter.fusers[0].alpha_attn.item())


def test_adapter_command_rejects_a_bad_annotation(stock, tmp_path, capsys):
    images, annotations = _coco_set(tmp_path / "coco-bad", count=2)
    coco = json.loads(annotations.read_text())
    coco["annotations"][0]["category_id"] = 42
    annotations.write_text(json.dumps(coco))
    out = tmp_path / "never.safetensors"
    code = main(["adapter", "--model", str(stock), "--images", str(images), "--annotations", str(annotations), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: annotations[0].category_id: 42 is not a category id"]
    assert not out.exists()
