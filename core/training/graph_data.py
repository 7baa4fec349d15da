"""Scene graphs of the cached training clips, for the ``graph`` stage.

Each cached clip gets per-frame scene graphs in :mod:`core.scene_graph`'s schema, derived from the clip's
own layout: an object node per entity (its kind), a ``has color`` attribute node with the frame's
colour (so a colour change is a different node from its frame on), and a relation node for its
motion (``moves right``, ``moves left``, ``falls``, ``rises``, ``grows``, ``shrinks`` or
``stays``, from the boxes), linked to a value node with the background half of the time (as the
rules planner's events often are).
"""

from __future__ import annotations

import sys

import networkx as nx
import numpy as np
import torch
from tqdm import tqdm

from core.models.graph_encoder import GraphTensors, graph_tensors
from core.scene_graph import HAS_COLOR
from core.toyworld.world import BACKGROUNDS
from core.training.toy_data import phrase_vocabulary

MAX_GRAPH_NODES = 16  # nodes per frame graph (padded or cut)
MOTION_THRESHOLD = 0.1  # centre displacement (fraction of the frame) that counts as motion


def _area(box: np.ndarray) -> float:
    """The area of an xyxy box, at least 1e-6."""
    return max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))


def track_predicate(boxes: np.ndarray, present: np.ndarray) -> str:
    """The motion word of one entity's track.

    Args:
        boxes: (F, 4) xyxy in [0, 1].
        present: (F,) bool, the frames the entity is on screen.

    Returns:
        ``"moves right"``, ``"moves left"``, ``"falls"``, ``"rises"`` (the centre moved at least
        :data:`MOTION_THRESHOLD` between its first and last frame on screen, along the larger
        axis), else ``"grows"`` / ``"shrinks"`` (area x1.5 or /1.5), else ``"stays"``.
    """
    frames = np.flatnonzero(present)
    if len(frames) < 2:
        return "stays"
    first, last = boxes[frames[0]], boxes[frames[-1]]
    delta = (last[:2] + last[2:] - first[:2] - first[2:]) / 2
    axis = int(np.argmax(np.abs(delta)))
    if abs(delta[axis]) >= MOTION_THRESHOLD:
        if axis == 0:
            return "moves right" if delta[0] > 0 else "moves left"
        return "falls" if delta[1] > 0 else "rises"
    ratio = _area(last) / _area(first)
    if ratio > 1.5:
        return "grows"
    if ratio < 1 / 1.5:
        return "shrinks"
    return "stays"


def clip_graphs(phrases: list[list[str]], masks: np.ndarray, boxes: np.ndarray, background: str | None) -> list[nx.DiGraph]:
    """Per-frame scene graphs of one training clip.

    Args:
        phrases: ``phrases[f][n]`` = ``"<colour> <kind>"`` of entity slot n in frame f.
        masks: (F, N), 1 where the entity is on screen.
        boxes: (F, N, 4) xyxy in [0, 1].
        background: the value node of the motion relation, or None for none.

    Returns:
        F ``networkx.DiGraph`` with node attributes ``type`` and ``label`` (:mod:`core.scene_graph`'s schema).
    """
    frames, slots = masks.shape
    predicates = [track_predicate(boxes[:, n], masks[:, n] > 0) for n in range(slots)]
    graphs = []
    for f in range(frames):
        graph = nx.DiGraph(frame=f)
        for n in range(slots):
            if masks[f, n] <= 0:
                continue
            color, kind = phrases[f][n].split(" ", 1)
            entity = f"e{n}"
            graph.add_node(entity, type="object", label=kind, kind=kind)
            attribute = f"{entity}|{HAS_COLOR}|{color}"
            graph.add_node(attribute, type="attribute", predicate=HAS_COLOR, label=color)
            graph.add_edge(entity, attribute)
            relation = f"{entity}|{predicates[n]}|{background}"
            graph.add_node(relation, type="relation", label=predicates[n])
            graph.add_edge(entity, relation)
            if background is not None:
                graph.add_node(f"value|{background}", type="value", label=background)
                graph.add_edge(relation, f"value|{background}")
        graphs.append(graph)
    return graphs


def _pad(tensors: GraphTensors, nodes: int) -> GraphTensors:
    """``tensors`` padded with empty nodes, or cut, to exactly ``nodes`` nodes per frame."""
    pad = nodes - tensors.node_mask.shape[1]
    if pad <= 0:
        return GraphTensors(tensors.node_embeds[:, :nodes], tensors.node_types[:, :nodes], tensors.edges[:, :nodes, :nodes], tensors.node_mask[:, :nodes])
    return GraphTensors(
        torch.nn.functional.pad(tensors.node_embeds, (0, 0, 0, pad)),
        torch.nn.functional.pad(tensors.node_types, (0, pad)),
        torch.nn.functional.pad(tensors.edges, (0, pad, 0, pad)),
        torch.nn.functional.pad(tensors.node_mask, (0, pad)),
    )


def graph_dataset(data: dict, *, seed: int = 0) -> dict:
    """Graph tensors of every cached clip, stacked.

    Node labels are embedded once each with MiniLM (normalised mean pooling, as the pipeline's
    phrases are). Half of the clips (drawn with ``seed``) link their motion to the background.

    Args:
        data: :func:`core.training.toy_data.build_dataset`'s cache.

    Returns:
        ``node_embeds`` (clips, F, 16, 384) float16, ``node_types`` (clips, F, 16) int64,
        ``edges`` (clips, F, 16, 16) int8, ``node_mask`` (clips, F, 16) float32.
    """
    from core.text import load_minilm, sentence_embeddings

    text_encoder, tokenizer = load_minilm()
    vocab = phrase_vocabulary()
    cache: dict[str, torch.Tensor] = {}

    def embed(texts: list[str]) -> torch.Tensor:
        missing = [t for t in texts if t not in cache]
        if missing:
            for text, vector in zip(missing, sentence_embeddings(text_encoder, tokenizer, missing)):
                cache[text] = vector
        return torch.stack([cache[t] for t in texts])

    rng = np.random.default_rng(seed)
    phrase_ids = data["phrase_ids"].numpy()
    masks = data["masks"].numpy()
    boxes = data["boxes"].numpy()
    out = {"node_embeds": [], "node_types": [], "edges": [], "node_mask": []}
    for i in tqdm(range(len(phrase_ids)), desc="graphs", file=sys.stdout, mininterval=10):
        words = data["captions"][i].replace(":", " ").replace(".", " ").split()
        background = next((w for w in words if w in BACKGROUNDS), None) if rng.random() < 0.5 else None
        phrases = [[vocab[j] for j in row] for row in phrase_ids[i]]
        tensors = _pad(graph_tensors(clip_graphs(phrases, masks[i], boxes[i], background), embed, max_nodes=MAX_GRAPH_NODES), MAX_GRAPH_NODES)
        out["node_embeds"].append(tensors.node_embeds.half())
        out["node_types"].append(tensors.node_types)
        out["edges"].append(tensors.edges.to(torch.int8))
        out["node_mask"].append(tensors.node_mask)
    return {k: torch.stack(v) for k, v in out.items()}


def batch_graphs(graphs: dict, idx: torch.Tensor) -> GraphTensors:
    """The GraphTensors of clips ``idx`` (B,): node_embeds (B, F, 16, 384) float32, node_types,
    edges (int64) and node_mask, as :meth:`SceneGraphEncoder.encode` takes them."""
    return GraphTensors(
        graphs["node_embeds"][idx].float(), graphs["node_types"][idx], graphs["edges"][idx].long(), graphs["node_mask"][idx],
    )
