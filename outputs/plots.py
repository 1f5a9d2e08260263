"""Pictures of a run: dataset weights over time, routing heatmaps, the pairwise similarity or distance matrix.

Each function writes a PNG and returns the same picture as an `(H, W, 3)` uint8
array, for `SummaryWriter.add_image(tag, picture, step, dataformats="HWC")`.
The figure is rendered once (Agg backend) and the PNG is written from that render.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.figure  # noqa: E402
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

DPI = 100


def figure_to_array(figure: matplotlib.figure.Figure) -> np.ndarray:
    """Render a figure and return its pixels as an `(H, W, 3)` uint8 array."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def _save(figure: matplotlib.figure.Figure, path: str | Path) -> np.ndarray:
    """Render `figure`, write it to `path` as PNG, close it, and return its pixels."""
    picture = figure_to_array(figure)
    plt.close(figure)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(path, picture, format="png")
    return picture


def plot_weights(history: list[tuple[int, list[float]]], names: list[str], path: str | Path) -> np.ndarray:
    """Sampling weight of each dataset against the optimizer step at which it took effect.

    history: `(step, weights)` pairs in step order, weights in the order of `names`.
    """
    steps = [step for step, _ in history]
    weights = np.asarray([list(w) for _, w in history], dtype=float).reshape(len(history), len(names))
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=DPI, layout="constrained")
    for column, name in enumerate(names):
        axes.plot(steps, weights[:, column], drawstyle="steps-post", marker=".", label=name)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("sampling weight")
    axes.set_ylim(bottom=0.0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return _save(figure, path)


def plot_routing(histograms, names: list[str], path: str | Path, step: int | None = None) -> np.ndarray:
    """One heatmap per MoE layer: datasets x experts, each row the share of that dataset's tokens per expert; the
    title names the probe's `step`.

    histograms: `(k, L, E)` counts, datasets in the order of `names`.
    """
    counts = torch.as_tensor(histograms, dtype=torch.float64).cpu()
    totals = counts.sum(dim=-1, keepdim=True)
    shares = (counts / torch.where(totals > 0, totals, torch.ones_like(totals))).numpy()
    num_datasets, num_layers, num_experts = shares.shape
    columns = min(num_layers, 4)
    rows = math.ceil(num_layers / columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(1.0 + 0.35 * num_experts * columns, 0.6 + 0.3 * num_datasets * rows + 0.4 * rows),
        dpi=DPI,
        squeeze=False,
        layout="constrained",
    )
    vmax = max(float(shares.max()), 1e-12)
    for layer, axes_of_layer in enumerate(axes.flat):
        if layer >= num_layers:
            axes_of_layer.axis("off")
            continue
        image = axes_of_layer.imshow(shares[:, layer, :], vmin=0.0, vmax=vmax, cmap="viridis", aspect="auto")
        axes_of_layer.set_title(f"MoE layer {layer}", fontsize="small")
        axes_of_layer.set_yticks(range(num_datasets), names if layer % columns == 0 else [], fontsize="small")
        axes_of_layer.set_xticks(range(num_experts), [str(e) if num_experts <= 16 else "" for e in range(num_experts)])
        axes_of_layer.tick_params(axis="x", labelsize="x-small")
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of (token, slot) pairs")
    figure.supxlabel("expert", fontsize="small")
    figure.suptitle("routing" + ("" if step is None else f" at step {step}"), fontsize="small")
    return _save(figure, path)


def plot_pairwise(matrix, names: list[str], distance: str, path: str | Path, step: int | None = None) -> np.ndarray:
    """The `(k, k)` dataset-by-dataset matrix of `routing.pairwise`, values written in the cells; the title names the
    probe's `step`."""
    matrix = torch.as_tensor(matrix, dtype=torch.float64).cpu().numpy()
    k = matrix.shape[0]
    title = ("cosine similarity of routing" if distance == "cos" else "L2 distance of routing") + (
        "" if step is None else f" at step {step}")
    figure, axes = plt.subplots(figsize=(1.5 + 0.7 * k, 1.0 + 0.6 * k), dpi=DPI, layout="constrained")
    image = axes.imshow(matrix, cmap="viridis")
    for i in range(k):
        for j in range(k):
            colour = "white" if image.norm(matrix[i, j]) < 0.5 else "black"
            axes.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color=colour, fontsize="small")
    axes.set_xticks(range(k), names, rotation=45, ha="right", fontsize="small")
    axes.set_yticks(range(k), names, fontsize="small")
    axes.set_title(title, fontsize="small")
    figure.colorbar(image, ax=axes)
    return _save(figure, path)


def plot_clusters(vectors, labels: list[int], names: list[str], path: str | Path, max_points: int = 5000) -> np.ndarray:
    """Embeddings `(n, D)` projected to their first two principal components, one colour per cluster
    (label i is `names[i]`); at most `max_points` of them, evenly spaced, so that large inputs stay readable."""
    points = torch.as_tensor(vectors, dtype=torch.float64).cpu()
    keep = torch.linspace(0, len(points) - 1, min(len(points), max_points)).round().long()
    points, kept_labels = points[keep], np.asarray(labels)[keep.numpy()]
    centred = points - points.mean(dim=0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    xy = (centred @ v[:2].T).numpy()
    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=DPI, layout="constrained")
    for i, name in enumerate(names):
        mask = kept_labels == i
        axes.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.6, label=f"{name} ({int((np.asarray(labels) == i).sum())})")
    axes.set_xlabel("principal component 1")
    axes.set_ylabel("principal component 2")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", markerscale=2)
    return _save(figure, path)
