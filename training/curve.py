"""The training-loss curve as a PNG (matplotlib's Agg canvas: no display, no global state)."""

from __future__ import annotations

import io


def plot_losses(losses: list[tuple[int, float]], title: str) -> bytes:
    """A PNG of loss against step; an empty list gives an empty, labelled plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if losses:
        steps, values = zip(*losses, strict=True)
        axes.plot(steps, values, marker="." if len(losses) < 50 else None)
    axes.set_xlabel("step")
    axes.set_ylabel("training loss")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
