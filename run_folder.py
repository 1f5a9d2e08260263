"""The run folder's logs: `metrics.jsonl`, `mixture.jsonl`, TensorBoard and `plots/`, written by the main
process, continued (not duplicated) by a resumed run. Checkpoints live in checkpoint.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

import plots


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Write a small file so that a crash leaves either the old or the new content, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines logged after `step` (they are redone by the resumed run)."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        write_atomic(path, "".join(line + "\n" for line in lines))


class RunLog:
    """What the main process writes about a run; on the other ranks (`enabled=False`) every method does nothing.

    Started at `step` > 0 (a resume), it first drops the lines logged after that step, and TensorBoard
    purges its events after it, so the resumed run's logs read as one uninterrupted run.
    """

    def __init__(self, out: Path, names: list[str], distance: str, enabled: bool, step: int = 0):
        self.out, self.names, self.distance, self.enabled = out, names, distance, enabled
        self.writer = None
        if enabled:
            for log in ("metrics.jsonl", "mixture.jsonl"):
                truncate_jsonl(out / log, step)
            self.writer = SummaryWriter(out / "tensorboard", purge_step=step or None)

    def metrics(self, record: dict, grad_norm: float) -> None:
        """One training log line: `metrics.jsonl` and the `losses/train`, `charts/...` scalars."""
        if not self.enabled:
            return
        append_jsonl(self.out / "metrics.jsonl", record)
        step = record["step"]
        self.writer.add_scalar("losses/train", record["loss"], step)
        self.writer.add_scalar("charts/lr", record["lr"], step)
        self.writer.add_scalar("charts/tokens_per_s", record["tokens_per_s"], step)
        self.writer.add_scalar("charts/grad_norm", grad_norm, step)

    def mixture(self, record: dict) -> None:
        """One weight update (a record of `train.reweight`): `mixture.jsonl` and the `mixture/...` scalars."""
        if not self.enabled:
            return
        append_jsonl(self.out / "mixture.jsonl", record)
        step = record["step"]
        for i, name in enumerate(record["names"]):
            self.writer.add_scalar(f"mixture/weight_{name}", record["weights_after"][i], step)
            self.writer.add_scalar(f"mixture/delta_{name}", record["delta"][i], step)
            self.writer.add_scalar(f"losses/dev_{name}", record["dev_loss"][i], step)
        self.writer.add_scalar("charts/probe_seconds", record["seconds"], step)

    def plots(self, history: list[tuple[int, list[float]]], record: dict | None) -> None:
        """`plots/` and the TensorBoard routing heatmap, from the weight history and the latest update record.
        Drawn at checkpoints rather than at every probe: a figure costs about as much as a small probe."""
        if not self.enabled or record is None:
            return
        folder = self.out / "plots"
        plots.plot_weights(history, self.names, folder / "weights.png")
        heatmap = plots.plot_routing(record["histograms"], self.names, folder / "routing.png")
        plots.plot_pairwise(record["pairwise"], self.names, self.distance, folder / "pairwise.png")
        self.writer.add_image("mixture/routing", heatmap, record["step"], dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
