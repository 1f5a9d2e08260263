"""The run folder's logs: `metrics.jsonl`, `mixture.jsonl`, `plots/` and the trackers (TensorBoard in
`tensorboard/` by default; Weights & Biases, MLflow) through accelerate's tracker API, written by the main
process, continued (not duplicated) by a resumed run. Checkpoints live in checkpoint.py."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from accelerate.tracking import GeneralTracker, MLflowTracker, TensorBoardTracker, WandBTracker
from accelerate.utils import is_mlflow_available, is_tensorboard_available, is_wandb_available

from outputs import plots

TRACKERS = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available, "mlflow": is_mlflow_available}
PROJECT = "routemix"  # the W&B project and MLflow experiment; each run is named after its folder


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


def tracker_names(report_to: str) -> list[str]:
    """The trackers of `--report-to` (`tensorboard`, `wandb`, `mlflow`, `all` = every one installed, or `none`). A
    tracker asked for by name that is not installed stops the run here (accelerate would drop it without a word)."""
    names = [name for name, available in TRACKERS.items() if available()] if report_to == "all" else (
        [] if report_to == "none" else [report_to])
    for name in names:
        if not TRACKERS[name]():
            raise SystemExit(f"--report-to {name}: the {name} package is not installed (pip install {name})")
    return names


def trackers(report_to: str, out: Path) -> list[GeneralTracker] | None:
    """The tracker objects of `--report-to` for the run folder `out` (known only once the folder is claimed, so
    `RunLog` makes them and hands them to the accelerator before starting them)."""
    names = tracker_names(report_to)
    made = {
        "tensorboard": lambda: TensorBoardTracker("tensorboard", out),  # logs to out/tensorboard
        "wandb": lambda: WandBTracker(PROJECT, name=out.name, dir=str(out), resume="allow"),
        "mlflow": lambda: MLflowTracker(PROJECT, run_name=out.name),
    }
    return [made[name]() for name in names] or None  # None: accelerate warns about an empty list


def continue_trackers(accelerator, out: Path, step: int, config: dict) -> None:
    """Start `accelerator`'s trackers (main process) so that a resumed run continues the same tracker runs.

    TensorBoard starts with `purge_step` = `step + 1`, the first step the resumed run logs: readers drop the
    events a killed run logged from there on (`step` itself was logged before its checkpoint), so every step
    appears once. W&B and MLflow continue the run whose id `trackers.json` holds; W&B ignores
    steps it has seen already, MLflow records them again (a bitwise resume logs the same values)."""
    ids_file = out / "trackers.json"
    ids = json.loads(ids_file.read_text()) if step > 0 and ids_file.exists() else {}
    for tracker in accelerator.log_with:
        if isinstance(tracker, TensorBoardTracker):
            tracker.init_kwargs["purge_step"] = step + 1 if step else None
        elif isinstance(tracker, WandBTracker):
            tracker.init_kwargs["id"] = ids.get("wandb") or uuid.uuid4().hex[:16]
        elif isinstance(tracker, MLflowTracker):
            tracker.run_id = ids.get("mlflow")
    accelerator.init_trackers(PROJECT)
    for tracker in accelerator.trackers:
        if tracker.name == "wandb":
            ids["wandb"] = tracker.run.id
        elif tracker.name == "mlflow":
            ids["mlflow"] = tracker.active_run.info.run_id
        if tracker.name != "tensorboard" and step == 0:  # config.json has it for TensorBoard readers
            tracker.store_init_configuration(json.loads(json.dumps(config, default=str)))  # paths as strings
    if ids:
        write_atomic(ids_file, json.dumps(ids))


class RunLog:
    """What the main process writes about a run; on the other ranks (`enabled=False`) every method does nothing.

    Started at `step` > 0 (a resume), it first drops the lines logged after that step, and the trackers
    continue their runs (`continue_trackers`), so the resumed run's logs read as one uninterrupted run.
    Scalars go to every tracker of `--report-to` through `accelerator.log`.
    """

    def __init__(self, out: Path, names: list[str], distance: str, accelerator, step: int = 0, config: dict | None = None,
                 report_to: str | None = None):
        self.out, self.names, self.distance, self.accelerator = out, names, distance, accelerator
        self.enabled = accelerator.is_main_process
        if self.enabled:
            for log in ("metrics.jsonl", "mixture.jsonl"):
                truncate_jsonl(out / log, step)
            if report_to is not None:  # the trackers of `--report-to`, in this run folder (else the accelerator's own)
                accelerator.log_with = trackers(report_to, out) or []
            continue_trackers(accelerator, out, step, config or {})

    def metrics(self, record: dict, grad_norm: float) -> None:
        """One training log line: `metrics.jsonl` and the `losses/train`, `charts/...` scalars."""
        if not self.enabled:
            return
        append_jsonl(self.out / "metrics.jsonl", record)
        self.accelerator.log({"losses/train": record["loss"], "charts/lr": record["lr"],
                              "charts/tokens_per_s": record["tokens_per_s"], "charts/grad_norm": grad_norm}, step=record["step"])

    def mixture(self, record: dict) -> None:
        """One weight update (a record of `train.reweight`): `mixture.jsonl` and the `mixture/...` scalars."""
        if not self.enabled:
            return
        append_jsonl(self.out / "mixture.jsonl", record)
        scalars = {"charts/probe_seconds": record["seconds"]}
        for i, name in enumerate(record["names"]):
            scalars |= {f"mixture/weight_{name}": record["weights_after"][i], f"mixture/delta_{name}": record["delta"][i]}
            if record["dev_loss"] is not None:  # None: --probe-source train and no strategy that needs dev losses
                scalars[f"losses/dev_{name}"] = record["dev_loss"][i]
            if record.get("planned_epochs") is not None:
                scalars[f"mixture/planned_epochs_{name}"] = record["planned_epochs"][i]
        self.accelerator.log(scalars, step=record["step"])

    def plots(self, history: list[tuple[int, list[float]]], record: dict | None) -> None:
        """`plots/` and the TensorBoard routing heatmap, from the weight history and the latest update record.
        Drawn at checkpoints rather than at every probe: a figure costs about as much as a small probe."""
        if not self.enabled or record is None:
            return
        folder = self.out / "plots"
        plots.plot_weights(history, self.names, folder / "weights.png")
        heatmap = plots.plot_routing(record["histograms"], self.names, folder / "routing.png", record["step"])
        plots.plot_pairwise(record["pairwise"], self.names, self.distance, folder / "pairwise.png", record["step"])
        for tracker in self.accelerator.trackers:  # each tracker takes images its own way
            if tracker.name == "tensorboard":
                tracker.log_images({"mixture/routing": heatmap[None]}, record["step"], dataformats="NHWC")
            elif tracker.name == "wandb":
                tracker.log_images({"mixture/routing": [heatmap]}, record["step"])
            elif tracker.name == "mlflow":
                tracker.log_artifact(str(folder / "routing.png"), artifact_path=f"routing/step_{record['step']}")

    def close(self) -> None:
        """Flush and close the trackers (accelerate's `end_training` would too, later)."""
        if self.enabled:
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.accelerator.trackers = []
