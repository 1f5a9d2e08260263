"""Rendering a grid of numbers (rows = runs or checkpoints, columns = tasks or datasets) as a
markdown table and as a grouped bar chart. Used by `eval.show` and `eval.dev_loss`."""

from __future__ import annotations

from pathlib import Path

Grid = dict[str, dict[str, float | None]]  # row -> column -> value (None or absent: not measured)


def markdown_table(grid: Grid, columns: list[str], corner: str = "run", digits: int = 4) -> str:
    """One row per key of `grid`, one column per entry of `columns`; missing values show as "-"."""
    lines = [
        "| " + " | ".join([corner, *columns]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for row, values in grid.items():
        cells = [f"{v:.{digits}f}" if (v := values.get(c)) is not None else "-" for c in columns]
        lines.append("| " + " | ".join([row, *cells]) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(grid: Grid, columns: list[str], path: Path | str, ylabel: str, title: str) -> Path:
    """Grouped bars: one group per column, one bar per row (missing values are left out, and rows
    without any value); saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in grid if any(grid[row].get(column) is not None for column in columns)]
    width = 0.8 / max(len(rows), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(columns) * max(1, len(rows)) ** 0.5 + 2), 4))
    for r, row in enumerate(rows):
        positions = [c + (r - (len(rows) - 1) / 2) * width for c in range(len(columns))]
        heights = [grid[row].get(column) for column in columns]
        kept = [(x, h) for x, h in zip(positions, heights) if h is not None]
        axes.bar([x for x, _ in kept], [h for _, h in kept], width=width, label=row, color=f"C{r % 10}")
    axes.set_xticks(range(len(columns)), columns, rotation=30 if len(columns) > 4 else 0, ha="right" if len(columns) > 4 else "center")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
