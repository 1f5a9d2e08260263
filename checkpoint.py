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

A checkpoint is also a model: its `model.safetensors` holds the weights under the model's own names (not
DDP's or torch.compile's prefixed ones: `use_model_keys`), and the main process writes the model's config,
generation config and tokenizer beside them (`write_model_files`; a LoRA run writes its adapter instead), so
`from_pretrained(checkpoint)` and `eval.*` load it. FSDP and DeepSpeed checkpoints hold sharded weights.
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


def use_model_keys(accelerator: Accelerator) -> None:
    """Save and load the model's weights in checkpoints under the model's own parameter names, which is what
    `from_pretrained` reads; accelerate would save the wrapper's (DDP: `module.`, torch.compile: `_orig_mod.`).
    Call once after `prepare`. FSDP and DeepSpeed save their own formats and are left alone (accelerate hands
    these hooks no weights and no models for them)."""

    def save_hook(models, weights, _folder):
        for i in range(len(weights)):  # empty under FSDP and DeepSpeed
            weights[i] = accelerator.unwrap_model(models[i], keep_torch_compile=False).state_dict()

    def load_hook(models, _folder):
        for i, model in enumerate(models):
            models[i] = accelerator.unwrap_model(model, keep_torch_compile=False)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def write_model_files(folder: Path, model, tokenizer) -> None:
    """What makes `folder` loadable as a model besides its weights: config, generation config and tokenizer;
    for a LoRA model (a peft `PeftModel`), the adapter (config and weights, small) and the tokenizer."""
    if hasattr(model, "peft_config"):  # LoRA
        model.save_pretrained(folder, safe_serialization=True)  # adapter_config.json, adapter_model.safetensors
    else:
        model.config.save_pretrained(folder)
        if model.can_generate():
            model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def save(accelerator: Accelerator, out: Path, step: int, state: dict, keep: int, model=None, tokenizer=None) -> Path:
    """Write checkpoint `step` on every rank (accelerate's state, then this rank's `state` as JSON), mark it
    complete once every rank is done, and delete all but the newest `keep` complete checkpoints. With `model`
    and `tokenizer`, the main process also writes the files that make the checkpoint a model (`write_model_files`)."""
    folder = out / "checkpoints" / f"step_{step}"
    accelerator.save_state(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(state_file(folder, accelerator.process_index), json.dumps(state))
    if model is not None and accelerator.is_main_process:
        write_model_files(folder, accelerator.unwrap_model(model, keep_torch_compile=False), tokenizer)
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
