"""Boxes between keyframes: linear interpolation, as VideoDirectorGPT and LVD do."""

from __future__ import annotations

import numpy as np

from core.plan.schema import Scene


def interpolate_boxes(scene: Scene, entity_ids: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame boxes of a scene by linear interpolation between its keyframes.

    Between two consecutive keyframes an entity is on screen only if it has a box in both; at a
    keyframe it is on screen exactly when it has a box there.

    Args:
        scene: the scene.
        entity_ids: order of the entity axis (default: ``scene.entity_ids()``).

    Returns:
        (boxes, masks): boxes np.ndarray (num_frames, entities, 4) float32 xyxy in [0, 1] (zeros
        where absent), masks np.ndarray (num_frames, entities) bool, True where on screen.
    """
    entity_ids = scene.entity_ids() if entity_ids is None else entity_ids
    boxes = np.zeros((scene.num_frames, len(entity_ids), 4), dtype=np.float32)
    masks = np.zeros((scene.num_frames, len(entity_ids)), dtype=bool)
    keyframes = scene.keyframes
    for n, entity_id in enumerate(entity_ids):
        for a, b in zip(keyframes[:-1], keyframes[1:]):
            box_a, box_b = a.boxes.get(entity_id), b.boxes.get(entity_id)
            if box_a is not None:
                boxes[a.frame, n], masks[a.frame, n] = box_a, True
            if box_b is not None:
                boxes[b.frame, n], masks[b.frame, n] = box_b, True
            if box_a is None or box_b is None:
                continue
            for frame in range(a.frame + 1, b.frame):
                t = (frame - a.frame) / (b.frame - a.frame)
                boxes[frame, n] = (1 - t) * np.asarray(box_a) + t * np.asarray(box_b)
                masks[frame, n] = True
    return boxes, masks
