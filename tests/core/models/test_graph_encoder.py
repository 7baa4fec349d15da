"""Dysen's recurrent graph Transformer: graph tensors from real scene graphs, shapes, causality of the
recurrence, the zero-initialised fusion gate, and the fusion reaching a UNet3D."""

import numpy as np
import torch

from core.models.graph_encoder import GraphTensors, SceneGraphEncoder, graph_tensors
from core.planner.rules import plan_with_rules
from core.scene_graph import build_scene_graphs
from tests.core.pipelines.test_layout2vid import get_dummy_components


def embed(texts):
    # A deterministic stand-in text embedding (the pipeline passes MiniLM's); 8 channels.
    return torch.stack([torch.tensor([float(sum(map(ord, t)) % (k + 3)) for k in range(8)]) for t in texts])


def scene_graphs():
    plan = plan_with_rules("A red ball rolls from left to right across the grass, then it turns blue.", num_frames=8)
    return build_scene_graphs(plan, plan.scenes[0]).frames


def test_graph_tensors_align_nodes_across_frames():
    graphs = scene_graphs()
    tensors = graph_tensors(graphs, embed)
    frames, nodes = tensors.node_mask.shape
    assert frames == 8 and tensors.node_embeds.shape == (8, nodes, 8) and tensors.edges.shape == (8, nodes, nodes)
    assert tensors.node_types[0, 0] == 0 and tensors.node_mask[:, 0].all()  # the ball: slot 0 in every frame
    first, last = tensors.node_mask[0], tensors.node_mask[-1]
    assert not torch.equal(first, last), "the colour change puts the new colour node in another slot"
    assert (tensors.edges[0][tensors.edges[0] > 0] <= 7).all() and tensors.edges[0, 0, 0] == 7


def test_encoder_shapes_and_causal_recurrence():
    torch.manual_seed(0)
    encoder = SceneGraphEncoder(block_dims=[16], block_heads=[2], text_dim=8, dim=16, num_layers=2, heads=4).eval()
    tensors = graph_tensors(scene_graphs(), embed)
    tokens, mask = encoder.encode(tensors)
    assert tokens.shape == (8, tensors.node_mask.shape[1] + 1, 16) and mask[:, 0].all()
    changed = GraphTensors(tensors.node_embeds.clone(), tensors.node_types, tensors.edges, tensors.node_mask)
    changed.node_embeds[3] += 1.0
    tokens2, _ = encoder.encode(changed)
    assert torch.allclose(tokens2[:3], tokens[:3]), "earlier frames must not see later ones"
    assert not torch.allclose(tokens2[4], tokens[4]), "later frames carry the change through the recurrence"


def test_fusion_gate_starts_closed_and_opens():
    components = get_dummy_components()
    unet = components["unet"].eval()
    encoder = SceneGraphEncoder.for_unet(unet, text_dim=8, dim=16, heads=4).eval()
    encoder.attach(unet)
    frames = 4
    tensors = graph_tensors(scene_graphs()[:frames], embed)
    tokens = encoder.encode(tensors)
    latents = torch.randn(1, 4, frames, 4, 4)
    text = torch.randn(1, 3, 32)
    with torch.no_grad():
        plain = unet(latents, 10, encoder_hidden_states=text).sample
        with encoder.conditioning(tokens):
            closed = unet(latents, 10, encoder_hidden_states=text).sample
        for fuser in encoder.fusers:
            fuser.gate.fill_(0.5)
        with encoder.conditioning(tokens):
            opened = unet(latents, 10, encoder_hidden_states=text).sample
    assert torch.allclose(plain, closed)
    assert (opened - plain).abs().mean() > 1e-4
    encoder.detach(unet)
    with torch.no_grad(), encoder.conditioning(tokens):
        assert torch.allclose(unet(latents, 10, encoder_hidden_states=text).sample, plain)


def test_pipeline_with_a_graph_encoder_renders_and_round_trips(tmp_path):
    from core.pipelines.layout2vid import Layout2VidPipeline
    from tests.core.pipelines.test_layout2vid import dummy_layout

    components = get_dummy_components()
    encoder = SceneGraphEncoder.for_unet(components["unet"], text_dim=32, dim=16, heads=4)
    for fuser in encoder.fusers:
        fuser.gate.data.fill_(0.8)
    pipe = Layout2VidPipeline(**components, graph_encoder=encoder)
    pipe.set_progress_bar_config(disable=True)
    layout = dummy_layout()
    graphs = scene_graphs()[: layout.num_frames]

    def run(p, with_graphs=True):
        layout.scene_graphs = graphs if with_graphs else None
        return p("a ball", layout, num_frames=layout.num_frames, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames

    with_graph = run(pipe)
    assert (with_graph.astype(int) - run(pipe, with_graphs=False).astype(int)).any(), "the graph tokens change the video"
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = Layout2VidPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.graph_encoder).__name__ == "SceneGraphEncoder"
    assert np.abs(run(loaded).astype(int) - with_graph.astype(int)).max() <= 1
