"""Training-free box guidance: the energy on hand-made attention maps, its gradient sign, token matching,
one guidance step on a tiny ModelScope-architecture UNet lowering the energy; attention masking's bias,
its processor (outside the box an entity's words are not read) and a masked render of the toy model."""

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention
from transformers import AutoTokenizer

from core.pipelines.guidance import (
    BoxGuidance,
    BoxMaskedAttention,
    box_attention_bias,
    box_attention_energy,
    box_masks_on_grid,
    guided_latents,
    install_recorder,
    layer_energy,
    phrase_token_weights,
)
from core.text import minilm_path


def test_box_masks_cover_cells_exactly():
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 1.0], [0.25, 0.25, 0.75, 0.75]]])
    masks = torch.tensor([[1.0, 1.0]])
    grid = box_masks_on_grid(boxes, masks, 2, 2)  # cells in row-major order
    assert grid[0, 0].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert grid[0, 1].tolist() == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert box_masks_on_grid(boxes, torch.tensor([[1.0, 0.0]]), 2, 2)[0, 1].sum() == 0


def _attention(inside: float) -> torch.Tensor:
    # 1 frame, 4 queries (2x2 grid), 2 tokens: token 0 is the entity's, token 1 is not.
    entity = torch.tensor([inside / 2, 0.0, inside / 2, 0.0]) + torch.tensor([0.0, (1 - inside) / 2, 0.0, (1 - inside) / 2])
    return torch.stack([entity, 1 - entity], dim=-1)[None]  # (1, 4, 2)


@pytest.mark.parametrize(("inside", "expected"), [(1.0, 0.0), (0.0, 1.0), (0.5, 0.25)])
def test_energy_on_hand_made_maps(inside, expected):
    weights = torch.tensor([[[1.0, 0.0]]])
    box = box_masks_on_grid(torch.tensor([[[0.0, 0.0, 0.5, 1.0]]]), torch.ones(1, 1), 2, 2)
    assert float(box_attention_energy(_attention(inside), weights, box)) == pytest.approx(expected)


def test_energy_ignores_entities_off_screen_or_not_in_the_prompt():
    box = box_masks_on_grid(torch.tensor([[[0.0, 0.0, 0.5, 1.0]]]), torch.zeros(1, 1), 2, 2)
    assert float(box_attention_energy(_attention(0.0), torch.tensor([[[1.0, 0.0]]]), box)) == 0.0
    box = box_masks_on_grid(torch.tensor([[[0.0, 0.0, 0.5, 1.0]]]), torch.ones(1, 1), 2, 2)
    assert float(box_attention_energy(_attention(0.0), torch.zeros(1, 1, 2), box)) == 0.0


def test_gradient_step_moves_attention_mass_into_the_box():
    torch.manual_seed(0)
    logits = torch.randn(2, 16, 5, requires_grad=True)  # (frames, queries on a 4x4 grid, tokens)
    weights = torch.zeros(2, 1, 5)
    weights[:, 0, 2] = 1.0
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5]], [[0.5, 0.5, 1.0, 1.0]]])
    grid = box_masks_on_grid(boxes, torch.ones(2, 1), 4, 4)

    def inside_fraction(lg):
        maps = torch.einsum("fqk,fnk->fnq", lg.softmax(-1), weights)
        return ((maps * grid).sum(-1) / maps.sum(-1)).mean()

    energy = box_attention_energy(logits.softmax(-1), weights, grid)
    (grad,) = torch.autograd.grad(energy, logits)
    inside = grid[:, 0] > 0  # (frames, queries)
    # Descent raises the entity token's logits inside the box and lowers them outside.
    assert (grad[..., 2][inside] < 0).all() and (grad[..., 2][~inside] > 0).all()
    before = float(inside_fraction(logits.detach()))
    stepped = logits.detach() - 20.0 * grad
    assert float(inside_fraction(stepped)) > before + 0.05, before


def test_phrase_tokens_are_found_in_each_frames_prompt():
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    prompts = ["the grass: a red ball rolls", "the grass: a blue ball rolls"]
    weights = phrase_token_weights(tokenizer, prompts, [["red ball"], ["blue ball"]], max_length=12)
    ids = tokenizer(prompts[0], truncation=True, max_length=12)["input_ids"]
    named = [tokenizer.convert_ids_to_tokens(i) for i, w in zip(ids, weights[0, 0]) if w > 0]
    assert named == ["red", "ball"]
    assert weights[1, 0].sum() == pytest.approx(1.0)
    assert phrase_token_weights(tokenizer, ["the grass"], [["red ball"]], max_length=12).sum() == 0


def test_one_guidance_step_lowers_the_energy_of_a_real_unet(tmp_path):
    from tests.core.pipelines.tiny_modelscope import tiny_components

    parts = tiny_components(tmp_path)
    unet, tokenizer, text_encoder = parts["unet"], parts["tokenizer"], parts["text_encoder"]
    frames = 2
    prompt = "a red ball"
    with torch.no_grad():
        ids = tokenizer([prompt], padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
        embeds = text_encoder(ids).last_hidden_state
    weights = phrase_token_weights(tokenizer, [prompt] * frames, [["red ball"]] * frames, max_length=77)
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5]]]).repeat(frames, 1, 1)
    masks = torch.ones(frames, 1)
    recorder, previous = install_recorder(unet)
    t = torch.tensor(500)

    def energy(x):
        recorder.maps.clear()
        recorder.recording = True
        unet(x, t, encoder_hidden_states=embeds)
        recorder.recording = False
        return layer_energy(recorder.maps, weights, boxes, masks, aspect=1.0)

    latents = torch.randn(1, 4, frames, 8, 8, generator=torch.Generator().manual_seed(0))
    stepped, before = guided_latents(latents, energy, scale=0.5)
    with torch.no_grad():
        after = float(energy(stepped))
    unet.set_attn_processor(previous)
    assert recorder.maps, "the recorder saw no cross-attention"
    assert after < before
    assert stepped.shape == latents.shape and not stepped.requires_grad


def test_mask_bias_keeps_entity_words_in_their_boxes_and_boxes_on_their_words():
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 0.5]]])  # left half; top-right quarter
    grid = box_masks_on_grid(boxes, torch.ones(1, 2), 2, 2)  # queries: top-left, top-right, bottom-left, bottom-right
    # Token 0 is [CLS], tokens 1-2 name entity 0, token 3 entity 1, token 4 is another word.
    weights = torch.tensor([[[0.0, 0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0]]])
    bias = box_attention_bias(weights, grid, penalty=100.0) / -100.0  # 1 = masked
    assert bias[0].tolist() == [
        [0, 0, 0, 1, 1],  # inside entity 0's box: [CLS] and its words only
        [0, 1, 1, 0, 1],  # inside entity 1's box
        [0, 0, 0, 1, 1],  # inside entity 0's box
        [0, 1, 1, 1, 0],  # in no box: no entity's words, the rest
    ]
    off_screen = box_attention_bias(weights, box_masks_on_grid(boxes, torch.tensor([[1.0, 0.0]]), 2, 2)) < 0
    assert off_screen[0, :, 3].all()  # an entity off screen is read nowhere in that frame
    assert off_screen[0, 1].tolist() == [False, True, True, True, False]  # and its box is an ordinary place
    unnamed = box_attention_bias(torch.zeros(1, 2, 5), grid) < 0
    assert not unnamed.any()  # entities not named in the prompt mask nothing


def test_masked_attention_outside_the_box_does_not_read_the_entitys_token():
    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4).eval()
    processor = BoxMaskedAttention()
    hidden = torch.randn(2, 4, 8)  # (frames, queries on a 2x2 grid, channels)
    context = torch.randn(2, 3, 6)  # token 1 names the entity
    changed = context.clone()
    changed[:, 1] = torch.randn(2, 6) * 5
    weights = torch.tensor([[[0.0, 1.0, 0.0]]]).repeat(2, 1, 1)
    grid = box_masks_on_grid(torch.tensor([[[0.0, 0.0, 0.5, 0.5]]]).repeat(2, 1, 1), torch.ones(2, 1), 2, 2)
    processor.bias_fn = lambda batch, queries: box_attention_bias(weights, grid)
    with torch.no_grad():
        out, out_changed = processor(attn, hidden, context), processor(attn, hidden, changed)
        processor.bias_fn = None
        plain = processor(attn, hidden, context)
    # Queries 1-3 lie outside the box: the entity's token no longer changes them; query 0 still reads it.
    assert torch.allclose(out[:, 1:], out_changed[:, 1:], atol=1e-5)
    assert not torch.allclose(out[:, 0], out_changed[:, 0], atol=1e-3)
    assert not torch.allclose(out[:, 1:], plain[:, 1:], atol=1e-3)  # without the bias they do read it


def test_masked_render_of_the_toy_model_restores_its_processors():
    from core.pipelines.layout2vid import LayoutConditioning
    from core.render import REFERENCE_MODEL, load_pipeline

    pipe = load_pipeline(REFERENCE_MODEL)
    pipe.set_progress_bar_config(disable=True)
    before = {name: type(proc) for name, proc in pipe.unet.attn_processors.items()}
    layout = LayoutConditioning(phrases=[["red ball"]] * 4, boxes=torch.tensor([[[0.1, 0.1, 0.5, 0.5]]]).repeat(4, 1, 1), masks=torch.ones(4, 1))
    common = dict(num_frames=4, num_inference_steps=4, generator=None, layout_alpha=0.0)
    masked = pipe("the grass: a red ball", layout, box_guidance=BoxGuidance(alpha=1.0, method="mask"), **{**common, "generator": torch.Generator().manual_seed(0)}).frames
    plain = pipe("the grass: a red ball", layout, **{**common, "generator": torch.Generator().manual_seed(0)}).frames
    assert masked.shape == (4, 64, 64, 3) and masked.dtype == np.uint8
    assert np.abs(masked.astype(int) - plain.astype(int)).mean() > 1.0  # masking changed the video
    assert {name: type(proc) for name, proc in pipe.unet.attn_processors.items()} == before
    with pytest.raises(ValueError, match="box_guidance.method"):
        pipe("the grass: a red ball", layout, box_guidance=BoxGuidance(method="boxes"), num_frames=4, num_inference_steps=1)
