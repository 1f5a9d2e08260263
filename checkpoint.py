"""Checkpoints of a run: where they are, saving, loading for an exact resume, and clean-up.

    checkpoint.remove_interrupted(out)                  # main process, before anything else touches `out`
    folder = checkpoint.find(out, args.resume)          # the checkpoint to continue from, or None
    state = checkpoint.load(accelerator, folder, fingerprint)
    ...
    checkpoint.save(accelerator, out, step, {"step": step, "sampler": sampler.state_dict(), ...}, keep=2)

A checkpoint is `out/checkpoints/step_N/`: accelerate's state (model, optimizer, LR schedule, RNGs)
written by every rank, routemix's own state as one JSON file per rank (`routemix_state_<rank>.json`:
the sampler, the packing stream, counters, the run's fingerprint), and last the `COMPLETE` marker.
A folder without the marker is an interrupted save and never counts. routemix's state is JSON rather
than accelerate's `register_for_checkpointing`, which loads with `torch.load(weights_only=False)`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from accelerate import Accelerator

from run_folder import write_atomic

COMPLETE = "COMPLETE"


def state_file(folder: Path, rank: int) -> Path:
    return folder / f"routemix_state_{rank}.json"


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints in `out`, oldest first."""
    found = [p for p in (out / "checkpoints").glob("step_*") if (p / COMPLETE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def remove_interrupted(out: Path) -> None:
    """Delete checkpoint folders whose save never finished (main process only, before training starts)."""
    for folder in (out / "checkpoints").glob("step_*"):
        if not (folder / COMPLETE).exists():
            print(f"removing {folder}: an interrupted save")
            shutil.rmtree(folder)


def find(out: Path, resume: str) -> Path | None:
    """The checkpoint to continue from, per `--resume`: `auto` (the newest complete one in `out`, if any),
    `none` (start fresh; refuses a folder that already holds a run) or a checkpoint folder."""
    if resume == "none":
        if (out / "config.json").exists():
            raise SystemExit(f"{out} already holds a run; pass another --out, or --resume auto to continue it")
        return None
    if resume == "auto":
        checkpoints = complete_checkpoints(out)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume)
    if not (path / COMPLETE).exists():
        raise SystemExit(f"--resume {path}: not a complete routemix checkpoint (no {COMPLETE} marker)")
    return path


def save(accelerator: Accelerator, out: Path, step: int, state: dict, keep: int) -> Path:
    """Write checkpoint `step` on every rank (accelerate's state, then this rank's `state` as JSON), mark it
    complete once every rank is done, and delete all but the newest `keep` complete checkpoints."""
    folder = out / "checkpoints" / f"step_{step}"
    accelerator.save_state(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(state_file(folder, accelerator.process_index), json.dumps(state))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_atomic(folder / COMPLETE, "")
        for old in complete_checkpoints(out)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return folder


def load(accelerator: Accelerator, folder: Path, fingerprint: dict) -> dict:
    """Restore accelerate's state from `folder` and return this rank's routemix state.

    Refuses a checkpoint written by another number of processes (every rank continues its own sample
    stream) or by a run whose fingerprint differs, naming what changed.
    """
    saved_ranks = len(list(folder.glob("routemix_state_*.json")))
    if saved_ranks != accelerator.num_processes:
        raise SystemExit(f"cannot resume from {folder}: it was written by {saved_ranks} processes and this run "
                         f"has {accelerator.num_processes}; every rank continues its own sample stream, so launch "
                         "with the same number of processes")
    state = json.loads(state_file(folder, accelerator.process_index).read_text())
    changed = {key: (state["fingerprint"][key], value) for key, value in fingerprint.items()
               if state["fingerprint"][key] != value}
    if changed:
        raise SystemExit(f"cannot resume from {folder}: the run changed: "
                         + "; ".join(f"{key} was {was}, now {now}" for key, (was, now) in changed.items()))
    accelerator.load_state(folder)
    if accelerator.is_main_process:
        print(f"resumed from {folder} at step {state['step']}")
    return state
