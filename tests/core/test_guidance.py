"""Training-free box guidance: the energy on hand-made attention maps, its gradient sign, token matching, and
one guidance step on a tiny ModelScope-architecture UNet lowering the energy."""

import pytest
import torch
from transformers import AutoTokenizer

from core.guidance import box_attention_energy, box_masks_on_grid, guided_latents, install_recorder, layer_energy, phrase_token_weights
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
    from tests.core.tiny_modelscope import tiny_components

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
