"""A run killed right after a checkpoint, or in the middle of a save, resumes exactly (bitwise on CPU)."""

import json
import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from launch import ENV, REPO, TINY_RUN, launch_command, run_train
from test_bad_input import run_main

RUN = [*TINY_RUN, "--max-steps", "24", "--probe-every", "3", "--save-every", "4", "--seed", "7"]

# Runs train.py in-process and SIGKILLs it just before the COMPLETE marker of step 8 is written:
# every file of that checkpoint is on disk, but the save never finished.
CRASH_IN_SAVE = """
import os, signal, sys, tyro
sys.argv[0] = "train.py"
import checkpoint, train
write_atomic = checkpoint.write_atomic
def crash_before_marker(path, text):
    if path.name == checkpoint.COMPLETE and path.parent.name == "step_8":
        os.kill(os.getpid(), signal.SIGKILL)
    write_atomic(path, text)
checkpoint.write_atomic = crash_before_marker
train.main(tyro.cli(train.Args))
"""


def tensorboard_scalars(out) -> dict[str, list[tuple[int, float]]]:
    """Every scalar as TensorBoard shows it (its reader drops what a resume purged), but the wall-clock ones."""
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
            if tag not in ("charts/tokens_per_s", "charts/probe_seconds")}


def comparable(out):
    """Everything a resumed run must reproduce: per-step losses, mixture updates, final weights and model, and
    TensorBoard's scalars (each step once: nothing a killed run logged after its checkpoint shows twice)."""
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for record in metrics:
        del record["tokens_per_s"]  # wall-clock
    updates = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    for record in updates:
        del record["seconds"]  # wall-clock
    weights = json.loads((out / "final" / "mixture_weights.json").read_text())
    model = load_file(out / "final" / "model.safetensors")
    return metrics, updates, weights, model, tensorboard_scalars(out)


def assert_same_run(a, b):
    metrics_a, updates_a, weights_a, model_a, scalars_a = a
    metrics_b, updates_b, weights_b, model_b, scalars_b = b
    assert [m["step"] for m in metrics_b] == list(range(1, 25))
    assert [step for step, _ in scalars_b["losses/train"]] == list(range(1, 25))
    assert scalars_a == scalars_b
    assert metrics_a == metrics_b  # bitwise: floats compare exactly
    assert updates_a == updates_b
    assert weights_a == weights_b
    assert model_a.keys() == model_b.keys() and all((model_a[k] == model_b[k]).all() for k in model_a)


def test_kill_after_checkpoint_and_in_save_resume_exactly(tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    result = run_train(uninterrupted, *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = comparable(uninterrupted)

    # 1. SIGKILL as soon as the step-4 checkpoint is complete, then launch the same command again.
    killed = tmp_path / "killed"
    process = subprocess.Popen(launch_command(killed, *RUN), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    marker = killed / "checkpoints" / "step_4" / "COMPLETE"
    deadline = time.time() + 240
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert marker.exists() and not (killed / "final").exists(), "the run must be killed mid-training"
    result = run_train(killed, *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout
    assert_same_run(expected, comparable(killed))

    # 2. SIGKILL in the middle of the step-8 save: the incomplete folder is ignored and removed,
    #    and the run resumes from step 4.
    crashed = tmp_path / "crashed"
    result = subprocess.run([sys.executable, "-c", CRASH_IN_SAVE, "--out", str(crashed), *RUN], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL
    incomplete = crashed / "checkpoints" / "step_8"
    assert (incomplete / "model.safetensors").exists() and not (incomplete / "COMPLETE").exists()
    result = run_train(crashed, *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"removing {incomplete}" in result.stdout and "checkpoints/step_4 at step 4" in result.stdout
    assert_same_run(expected, comparable(crashed))
    # only the newest --keep-checkpoints (2) complete checkpoints are kept
    assert sorted(p.name for p in (crashed / "checkpoints").iterdir()) == ["step_20", "step_24"]


def test_resume_from_a_named_checkpoint_with_gradient_accumulation(tmp_path):
    """`--resume <checkpoint>` continues that run into another folder; with 2 micro-batches per step it
    reproduces the original run's steps after the checkpoint bitwise."""
    flags = [*TINY_RUN, "--max-steps", "8", "--probe-every", "3", "--save-every", "4", "--grad-accum", "2", "--seed", "5"]
    first = run_main(tmp_path, *flags, "--out", str(tmp_path / "first"))
    second = run_main(tmp_path, *flags, "--out", str(tmp_path / "second"), "--resume", str(first / "checkpoints" / "step_4"))
    expected_metrics, expected_updates, expected_weights, expected_model = comparable(first)
    metrics, updates, weights, model = comparable(second)
    assert [m["step"] for m in metrics] == [5, 6, 7, 8]
    assert metrics == expected_metrics[4:]
    assert updates == [u for u in expected_updates if u["step"] > 4] and [u["step"] for u in updates] == [6, 8]
    assert weights == expected_weights
    assert model.keys() == expected_model.keys() and all(torch.equal(model[k], expected_model[k]) for k in model)
