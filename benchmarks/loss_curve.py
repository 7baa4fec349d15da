"""Plot a training run's loss logs as one interactive plotly page (for the model card).

    .venv/bin/python benchmarks/loss_curve.py runs/wan-toy --out runs/wan-toy/loss.html [--smooth 50]

Reads every ``*loss.csv`` of the run folder (``vae_loss.csv``: step, loss, l1, mse, kl;
``loss.csv``: step, loss, ...) and draws each stage's loss against its step, raw and as a moving
average over ``--smooth`` steps, one panel per stage.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_losses(path: Path) -> tuple[list[int], list[float]]:
    """(steps, losses) from a loss log whose rows start with step and loss; a header row is skipped."""
    steps, losses = [], []
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            try:
                steps.append(int(row[0]))
                losses.append(float(row[1]))
            except (ValueError, IndexError):
                continue
    return steps, losses


def moving_average(values: list[float], window: int) -> list[float]:
    """The mean of each value and up to ``window - 1`` before it."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main() -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smooth", type=int, default=50, help="moving-average window in steps (>= 1)")
    args = parser.parse_args()
    if args.smooth < 1:
        parser.error(f"--smooth: must be >= 1 (got {args.smooth})")
    logs = sorted(args.run.glob("*loss.csv"))
    if not logs:
        parser.error(f"run: {args.run} has no *loss.csv")
    figure = make_subplots(rows=len(logs), cols=1, subplot_titles=[log.stem for log in logs])
    for row, log in enumerate(logs, start=1):
        steps, losses = read_losses(log)
        figure.add_trace(go.Scattergl(x=steps, y=losses, mode="lines", line={"width": 1, "color": "#bbb"}, name=f"{log.stem} (raw)"), row=row, col=1)
        figure.add_trace(go.Scatter(x=steps, y=moving_average(losses, args.smooth), mode="lines", name=f"{log.stem} ({args.smooth}-step mean)"), row=row, col=1)
        figure.update_yaxes(type="log", title_text="loss", row=row, col=1)
        figure.update_xaxes(title_text="step", row=row, col=1)
        print(f"{log.name}: {len(steps)} steps, last {args.smooth}-step mean {moving_average(losses, args.smooth)[-1]:.4f}")
    figure.update_layout(height=320 * len(logs), width=900, title=f"Training loss: {args.run}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(args.out, include_plotlyjs=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
