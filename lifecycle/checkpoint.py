"""Checkpoints of a run: where they are, saving, verifying, loading for an exact resume, and clean-up.

    folder = checkpoint.find(out, args.resume, fingerprint, accelerator)  # verified and resumable, or None
    checkpoint.remove_interrupted(out)                  # main process, before anything else touches `out`
    state = checkpoint.load(accelerator, folder, sampler, stream)  # this rank's routemix state: step, tokens, ...
    ...
    checkpoint.save(accelerator, out, step, {"step": step, "sampler": sampler.state_dict(), ...}, keep=2)

A checkpoint is `out/checkpoints/step_N/`: accelerate's state (model, optimizer, LR schedule, RNGs)
written by every rank, routemix's own state as one JSON file per rank (`routemix_state_<rank>.json`:
the sampler, the packing stream, counters, the run's settings), and last the `COMPLETE` marker, which
lists every file with its size (and its SHA-256 when the file is small enough to hash cheaply).
A folder without the marker is an interrupted save and never counts; one whose files do not match
their marker is damaged, and a resume falls back to the newest checkpoint that verifies.
routemix's state is JSON rather than accelerate's `register_for_checkpointing`, which loads with
`torch.load(weights_only=False)`.

A checkpoint is also a model: its `model.safetensors` holds the weights under the model's own names (not
DDP's or torch.compile's prefixed ones: `use_model_keys`), and the main process writes the model's config,
generation config and tokenizer beside them (`write_model_files`; a LoRA run writes its adapter instead), so
`from_pretrained(checkpoint)` and `eval.*` load it. FSDP and DeepSpeed checkpoints hold sharded weights.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import torch

from accelerate import Accelerator

from lifecycle.config import changes_on_resume
from lifecycle.run_folder import write_atomic
from sampler import reshard

COMPLETE = "COMPLETE"
CHECKSUM_MAX_BYTES = 64 << 20
"""Files up to this size get a SHA-256 in the marker (states, RNGs, small models); larger ones only their size,
so that saving and resuming a large model does not read its weights again."""
DAMAGED_PREFIX = "damaged-"


def state_file(folder: Path, rank: int) -> Path:
    return folder / f"routemix_state_{rank}.json"


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints in `out`, oldest first."""
    found = [p for p in (out / "checkpoints").glob("step_*") if (p / COMPLETE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(folder: Path) -> dict:
    """Every file of a checkpoint folder: {relative path: [size, sha256 or None]}."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE):
        size = path.stat().st_size
        files[str(path.relative_to(folder))] = [size, sha256(path) if size <= CHECKSUM_MAX_BYTES else None]
    return {"files": files}


def verify(folder: Path) -> str | None:
    """What is wrong with a complete checkpoint's files, compared with its marker; None when they match
    (or when the marker is an older routemix's empty one, which recorded nothing to compare)."""
    text = (folder / COMPLETE).read_text()
    if not text.strip():
        return None
    for name, (size, checksum) in json.loads(text)["files"].items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if (found := path.stat().st_size) != size:
            return f"{name} has {found} bytes, its marker recorded {size}"
        if checksum is not None and sha256(path) != checksum:
            return f"{name} does not match its SHA-256 in the marker"
    return None


def remove_interrupted(out: Path) -> None:
    """Delete checkpoint folders whose save never finished, and rename damaged ones to `damaged-step_N` (kept for
    inspection, out of the way of new saves). Main process only, after every rank has chosen its checkpoint."""
    for folder in (out / "checkpoints").glob("step_*"):
        if not (folder / COMPLETE).exists():
            print(f"removing {folder}: an interrupted save")
            shutil.rmtree(folder)
        elif problem := verify(folder):
            print(f"moving {folder} to {DAMAGED_PREFIX}{folder.name}: damaged ({problem})")
            folder.rename(folder.with_name(DAMAGED_PREFIX + folder.name))


def find(out: Path, resume: str, fingerprint: dict, accelerator: Accelerator) -> Path | None:
    """The checkpoint to continue from, per `--resume`: `auto` (the newest complete one in `out` whose files verify,
    if any), `none` (start fresh; refuses a folder that already holds a run) or a checkpoint folder.

    Stops, before anything in `out` is written, when the checkpoint cannot be resumed by this run: with settings that
    change what is trained (`config.changes_on_resume`).
    """
    if resume == "none":
        if (out / "config.json").exists():
            raise SystemExit(f"{out} already holds a run; pass another --out, or --resume auto to continue it")
        return None
    if resume == "auto":
        candidates = complete_checkpoints(out)[::-1]
    else:
        candidates = [Path(resume)]
        if not (candidates[0] / COMPLETE).exists():
            raise SystemExit(f"--resume {resume}: not a complete routemix checkpoint (no {COMPLETE} marker)")
    damaged = []
    for folder in candidates:
        if problem := verify(folder):
            damaged.append(f"{folder} ({problem})")
            continue
        if damaged and accelerator.is_main_process:
            print(f"warning: damaged checkpoint{'s' * (len(damaged) > 1)} {'; '.join(damaged)}: resuming from {folder}")
        check_resumable(folder, fingerprint, accelerator)
        return folder
    if damaged:
        raise SystemExit(f"cannot resume: no checkpoint verifies: {'; '.join(damaged)}")
    return None


def use_model_keys(accelerator: Accelerator) -> None:
    """Save and load the model's weights in checkpoints under the model's own parameter names, which is what
    `from_pretrained` reads, whatever the wrapper (DDP: `module.`, torch.compile: `_orig_mod.`; accelerate 1.15's
    safetensors save drops DDP's prefix itself, the hook does not depend on that).
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


def saved_processes(folder: Path) -> int:
    """The number of processes that wrote a checkpoint (one routemix state file each)."""
    return len(list(folder.glob("routemix_state_*.json")))


def check_resumable(folder: Path, fingerprint: dict, accelerator: Accelerator) -> None:
    """Refuse a checkpoint with settings that change what is trained, naming each difference; print what the resume
    changes, the number of processes among them (`reshard_state`: the run's data order continues)."""
    state = json.loads(state_file(folder, 0).read_text())
    saved = {**state["fingerprint"], "processes": saved_processes(folder)}  # older checkpoints do not record it
    if saved["processes"] != accelerator.num_processes and "world" not in state["sampler"]:
        raise SystemExit(f"cannot resume from {folder} on {accelerator.num_processes} processes: it was written by "
                         f"{saved['processes']} processes of a routemix whose ranks each drew their own stream; resume "
                         "it on as many processes")
    notes = changes_on_resume(saved, fingerprint, state["step"], f"cannot resume from {folder}")
    if accelerator.is_main_process:
        for note in notes:
            print(f"resume: {note}")


def save(accelerator: Accelerator, out: Path, step: int, state: dict, keep: int, model=None, tokenizer=None) -> Path:
    """Write checkpoint `step` on every rank (accelerate's state, then this rank's `state` as JSON), mark it
    complete once every rank is done, and delete all but the newest `keep` complete checkpoints. With `model`
    and `tokenizer`, the main process also writes the files that make the checkpoint a model (`write_model_files`).
    The marker lists every file with its size and, up to CHECKSUM_MAX_BYTES, its SHA-256 (`verify`)."""
    folder = out / "checkpoints" / f"step_{step}"
    if folder.exists() and accelerator.is_main_process:  # a checkpoint of another trajectory: never mix its files
        shutil.rmtree(folder)
    accelerator.wait_for_everyone()
    accelerator.save_state(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(state_file(folder, accelerator.process_index), json.dumps(state))
    if model is not None and accelerator.is_main_process:
        write_model_files(folder, accelerator.unwrap_model(model, keep_torch_compile=False), tokenizer)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_atomic(folder / COMPLETE, json.dumps(manifest(folder), indent=1))
        for old in complete_checkpoints(out)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return folder


def load(accelerator: Accelerator, folder: Path, sampler, stream) -> dict:
    """Restore accelerate's state from `folder` (checked by `find`), and the sampler's and packing stream's own
    (they continue their streams: no batches skipped or replayed); returns this rank's routemix state (step,
    tokens seen, and what the mixture keeps). A checkpoint of another number of processes is resharded first
    (`reshard_state`)."""
    saved = saved_processes(folder)
    if saved == accelerator.num_processes:
        state = json.loads(state_file(folder, accelerator.process_index).read_text())
    else:
        states = [json.loads(state_file(folder, rank).read_text()) for rank in range(saved)]
        state = reshard_state(states, accelerator.process_index, accelerator.num_processes, sampler.max_draws)
    accelerator.load_state(folder)  # a rank the checkpoint has no RNG file for keeps its seeded RNGs
    sampler.load_state_dict(state["sampler"])
    stream.load_state_dict(state["stream"])
    if accelerator.is_main_process:
        print(f"resumed from {folder} at step {state['step']}"
              + (f" (written by {saved} processes, resumed on {accelerator.num_processes})" if saved != accelerator.num_processes else ""))
    return state


def reshard_state(states: list[dict], rank: int, world: int, max_draws: dict[str, int] | None) -> dict:
    """Rank `rank`'s routemix state when the run that saved `states` (one per old rank) continues on `world` ranks.

    The sampler continues the run's one data order (`sampler.reshard`); the examples the old ranks had drawn but not
    yet packed are shared out round-robin as the new ranks' waiting examples; counts that are summed over ranks
    (tokens drawn per dataset, the period's training-routing counts) go to the new rank 0. What the ranks hold alike
    (step, tokens seen, the mixture, the last period's routing) is taken from rank 0's state.
    """
    samplers = reshard([s["sampler"] for s in states], world, max_draws)
    waiting = [key for s in states for key in s["stream"]["pending"]]
    drawn_tokens = Counter()
    for s in states:
        drawn_tokens.update(s["stream"].get("drawn_tokens", {}))
    stream = {"pending": waiting[rank::world], "drawn_tokens": dict(drawn_tokens) if rank == 0 else {}}
    trained = states[0].get("trained_routing")
    if trained is not None:
        counted = [s["trained_routing"]["histograms"] for s in states if s["trained_routing"]["histograms"] is not None]
        histograms = torch.tensor(counted).sum(0).tolist() if counted and rank == 0 else None
        tokens = [sum(column) for column in zip(*(s["trained_routing"]["tokens"] for s in states))]
        trained = {**trained, "histograms": histograms, "tokens": tokens if rank == 0 else [0] * len(tokens)}
    return {**states[0], "sampler": samplers[rank], "stream": stream, "trained_routing": trained}
