"""Planners: prompt -> VideoPlan. ``rules`` is offline (spaCy); ``openai`` uses any OpenAI-compatible LLM."""

from __future__ import annotations


class PlanError(ValueError):
    """The planner could not produce a valid plan (the message names the step and the field)."""


PLANNERS = ("rules", "openai")  # the choices of the command line and the studio; the first is the default
