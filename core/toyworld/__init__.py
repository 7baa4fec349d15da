"""The procedural toy world the shipped model is trained on, and its palette detector.

- :mod:`core.toyworld.world`: kinds, colours, backgrounds, drawing and random training clips;
- :mod:`core.toyworld.detect`: the detector that reads frames against the same palette
  (independent of the model; the evaluation uses it).
"""
