"""The plots: a PNG on disk, the same picture as an HWC uint8 array, quickly."""

import time

import matplotlib.image
import numpy as np
import torch

from outputs.plots import plot_pairwise, plot_routing, plot_weights

NAMES = ["alpaca", "code", "math", "chat"]


def _check_picture(picture, path):
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert picture.std() > 0  # something was drawn
    on_disk = matplotlib.image.imread(path)  # PNG read back as floats in [0, 1], RGBA
    assert on_disk.shape[:2] == picture.shape[:2]
    assert np.abs(on_disk[..., :3] * 255 - picture).max() <= 1


def test_plots_write_pngs_and_return_pictures_fast(tmp_path):
    generator = torch.Generator().manual_seed(0)
    histograms = torch.randint(0, 50, (4, 4, 8), generator=generator)  # k = 4, L = 4, E = 8
    similarity = torch.rand(4, 4, generator=generator, dtype=torch.float64)
    history = [(0, [0.25] * 4), (100, [0.4, 0.2, 0.2, 0.2]), (200, [0.1, 0.5, 0.2, 0.2])]
    calls = {
        "weights.png": lambda path: plot_weights(history, NAMES, path),
        "routing.png": lambda path: plot_routing(histograms, NAMES, path),
        "pairwise.png": lambda path: plot_pairwise(similarity, NAMES, "cos", path),
    }
    calls["weights.png"](tmp_path / "warmup.png")  # the first figure pays matplotlib's start-up
    for filename, plot in calls.items():
        started = time.perf_counter()
        picture = plot(tmp_path / filename)
        elapsed = time.perf_counter() - started
        _check_picture(picture, tmp_path / filename)
        assert elapsed < 1.0, f"{filename} took {elapsed:.2f} s"  # ~0.15 s alone; slack for a shared CPU


def test_routing_plot_handles_an_empty_layer_and_many_layers(tmp_path):
    histograms = torch.zeros(2, 6, 4, dtype=torch.long)
    histograms[0, 5] = torch.tensor([1, 2, 3, 4])
    picture = plot_routing(histograms, ["a", "b"], tmp_path / "routing.png")
    _check_picture(picture, tmp_path / "routing.png")
