"""Evaluation: does the video show what the plan says?

- :mod:`core.evaluation.checks`: a prompt file's ``checks`` scored against the plan (the planner);
- :mod:`core.evaluation.scoring`: frames scored against the plan with the toy world's detector;
- :mod:`core.evaluation.report`: the HTML report;
- :mod:`core.evaluation.run`: ``launch.py eval`` (plan, render, score, report).
"""
