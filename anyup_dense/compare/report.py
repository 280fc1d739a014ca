"""Tables (Markdown, CSV), bar charts and labelled image grids for upsampler comparisons."""
import csv
import math
import os
from typing import Dict, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

Row = Dict[str, object]

LABEL_HEIGHT = 14  # pixels of caption strip under each grid panel
GAP = 4


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def markdown_table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    """GitHub Markdown table of ``rows`` (dicts) restricted to ``columns``; missing cells are "-"."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: str, rows: Sequence[Row], columns: Sequence[str]) -> None:
    """``rows`` to ``path`` as CSV with a header (empty cells for missing values)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def bar_chart(path: str, labels: Sequence[str], series: Dict[str, Sequence[Optional[float]]], ylabel: str,
              title: str = "") -> None:
    """Grouped bars: one group per label, one bar per series (``None`` values are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 2), 3.5))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        ys = [np.nan if v is None else v for v in values]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, ys, width, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def grid_shape(count: int, columns: int) -> tuple:
    """(rows, columns) of a grid holding ``count`` panels at most ``columns`` wide."""
    columns = min(columns, count)
    return math.ceil(count / columns), columns


def panel_grid(panels: Sequence[np.ndarray], labels: Sequence[str], size: int, columns: int = 4) -> np.ndarray:
    """uint8 [H,W,3] panels, each resized to size x size (nearest) with its label below, in a
    grid ``columns`` wide separated by ``GAP`` white pixels. Panel k's top-left corner is at
    (row * (size + LABEL_HEIGHT + GAP), col * (size + GAP)) for (row, col) = divmod(k, columns)."""
    if len(panels) != len(labels) or not panels:
        raise ValueError(f"panels and labels must be non-empty and of equal length, got {len(panels)} and "
                         f"{len(labels)}")
    rows, cols = grid_shape(len(panels), columns)
    cell_h, cell_w = size + LABEL_HEIGHT + GAP, size + GAP
    canvas = Image.new("RGB", (cols * cell_w - GAP, rows * cell_h - GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (panel, label) in enumerate(zip(panels, labels)):
        row, col = divmod(k, cols)
        top, left = row * cell_h, col * cell_w
        canvas.paste(Image.fromarray(np.ascontiguousarray(panel)).resize((size, size), Image.NEAREST), (left, top))
        draw.text((left + 2, top + size + 1), label, fill="black")
    return np.asarray(canvas)
