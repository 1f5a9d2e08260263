"""A run killed right after a checkpoint, or in the middle of a save, resumes exactly (bitwise on CPU); so does a run
stopped by SIGTERM, sent to train.py or to `accelerate launch`, which saves a checkpoint of the step it was in."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lifecycle import checkpoint
from lifecycle import stopping
from launch import (
    CRASH_IN_SAVE,
    ENV,
    REPO,
    TINY_RUN,
    launch_command,
    run_train,
    start,
    train_py_command,
    wait_for_steps,
)
from test_bad_input import run_main

RUN = [*TINY_RUN, "--max-steps", "24", "--probe-every", "3", "--save-every", "4", "--seed", "7"]

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


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    """What an uninterrupted run of RUN logs and exports: the reference of every resume here."""
    uninterrupted = tmp_path_factory.mktemp("resume") / "uninterrupted"
    result = run_train(uninterrupted, *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    return comparable(uninterrupted)


def test_kill_after_checkpoint_and_in_save_resume_exactly(tmp_path, expected):

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
    expected_metrics, expected_updates, expected_weights, expected_model, _ = comparable(first)
    metrics, updates, weights, model, _ = comparable(second)
    assert [m["step"] for m in metrics] == [5, 6, 7, 8]
    assert metrics == expected_metrics[4:]
    assert updates == [u for u in expected_updates if u["step"] > 4] and [u["step"] for u in updates] == [6, 8]
    assert weights == expected_weights
    assert model.keys() == expected_model.keys() and all(torch.equal(model[k], expected_model[k]) for k in model)


def assert_stopped_with_a_checkpoint(out, stderr: str, by: str = "SIGTERM") -> int:
    """The one-line message of a run stopped by a signal, and the complete checkpoint of the step it names."""
    found = re.search(rf"routemix: stopped by {by} after step (\d+) of 24; (\S+) is complete: run the same command "
                      rf"to continue \(exit status {stopping.EXIT_STOPPED}\)", stderr)
    assert found, stderr[-3000:]
    step = int(found[1])
    folder = out / "checkpoints" / f"step_{step}"
    assert found[2] == str(folder) and 1 <= step < 24, "stopped mid-run, at the step it names"
    assert (folder / "COMPLETE").exists() and checkpoint.verify(folder) is None
    assert json.loads((folder / "routemix_state_0.json").read_text())["step"] == step
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, step + 1))
    assert not (out / "final").exists()  # final/ is for finished runs
    return step


def test_sigterm_to_train_py_and_to_the_launcher_saves_the_step_and_resumes_exactly(tmp_path, expected):
    # 1. SIGTERM to `python train.py` itself, mid-run: the step finishes, is saved, and the run exits with its status
    direct = tmp_path / "direct"
    process = start(train_py_command(direct, *RUN), tmp_path / "direct-logs")
    wait_for_steps(direct, 6, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == stopping.EXIT_STOPPED
    stderr = (tmp_path / "direct-logs" / "stderr").read_text()
    assert "routemix: SIGTERM: stopping after this optimizer step, with a checkpoint" in stderr
    assert_stopped_with_a_checkpoint(direct, stderr)
    result = run_train(direct, *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(expected, comparable(direct))

    # 2. SIGTERM to `accelerate launch` only (what Kubernetes sends to a container's first process): the launcher
    #    forwards nothing and dies; train.py, which had asked for SIGTERM when its launcher ends, saves and exits
    launched = tmp_path / "launched"
    launcher = start(launch_command(launched, *RUN), tmp_path / "launched-logs")
    wait_for_steps(launched, 6, launcher)
    [trainer] = psutil.Process(launcher.pid).children()
    assert "train.py" in trainer.cmdline()
    launcher.send_signal(signal.SIGTERM)
    # how the launcher itself ends is accelerate's business: killed by the signal (1.15) or exiting 128 + 15 (1.16)
    assert launcher.wait(timeout=60) in (-signal.SIGTERM, 128 + signal.SIGTERM)
    gone, alive = psutil.wait_procs([trainer], timeout=120)
    assert gone and not alive, "train.py must not outlive its launcher"
    assert_stopped_with_a_checkpoint(launched, (tmp_path / "launched-logs" / "stderr").read_text())
    result = run_train(launched, *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(expected, comparable(launched))


# Signals in a process that only installs routemix's handlers: the first one is remembered (and the ranks agree on it
# at the next step's end), a second one, or one before the training loop, ends the process at once.
SIGNALS = """
import os, signal, sys, time, types
from lifecycle import stopping
stopping.install()
if sys.argv[1] == "armed":
    stopping.arm()
one_process = types.SimpleNamespace(num_processes=1)
print("before:", stopping.agreed(one_process), flush=True)
os.kill(os.getpid(), signal.SIGINT)
time.sleep(0.5)
print("after one:", stopping.agreed(one_process), stopping.message(3, 10, "out/checkpoints/step_3"), flush=True)
os.kill(os.getpid(), signal.SIGINT)
time.sleep(5)
print("still running", flush=True)
"""


def test_a_second_signal_or_one_before_training_ends_the_process_at_once():
    def run(mode):
        return subprocess.run([sys.executable, "-c", SIGNALS, mode], cwd=REPO, env=ENV, capture_output=True, text=True,
                              timeout=60, check=False)

    armed = run("armed")
    assert armed.returncode == -signal.SIGINT and "still running" not in armed.stdout
    assert armed.stdout.splitlines() == [
        "before: False",
        ("after one: True routemix: stopped by SIGINT after step 3 of 10; out/checkpoints/step_3 is complete: run the "
         f"same command to continue (exit status {stopping.EXIT_STOPPED})")]
    assert "routemix: SIGINT: stopping after this optimizer step, with a checkpoint (a second signal stops at once)" in armed.stderr
    unarmed = run("unarmed")
    assert unarmed.returncode == -signal.SIGINT and unarmed.stdout == "before: False\n"


def test_ctrl_c_under_the_launcher_saves_the_step_and_the_readme_resume_line_finishes_the_run_as_started(tmp_path, expected):
    """Ctrl-C in a terminal sends SIGINT to the launcher and train.py alike (one process group); the launcher then
    passes it on as SIGTERM (accelerate 1.16) or dies and the kernel sends train.py its parent-death SIGTERM: one
    event, so the step finishes and is saved. The README's resume line (`--out` alone) then continues the run as it was started,
    to its own --max-steps, bitwise as an uninterrupted run."""
    out = tmp_path / "interrupted"
    launcher = start(launch_command(out, *RUN), tmp_path / "logs")
    wait_for_steps(out, 6, launcher)
    os.killpg(launcher.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground process group
    # the launcher's own status is accelerate's (130 from 1.16, README "Stopping"; death by the signal before; 1 was
    # seen once on a loaded machine): only that it does not report success. train.py's part is asserted below.
    assert launcher.wait(timeout=120) != 0
    stderr = (tmp_path / "logs" / "stderr").read_text()
    assert "routemix: SIGINT: stopping after this optimizer step, with a checkpoint" in stderr
    step = assert_stopped_with_a_checkpoint(out, stderr, by="SIGINT")
    resumed = subprocess.run(launch_command(out), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resume: the run's settings from {out / 'config.json'}\n" in resumed.stdout
    assert f"resumed from {out / 'checkpoints' / f'step_{step}'} at step {step}" in resumed.stdout
    assert "done: 24 steps" in resumed.stdout
    assert_same_run(expected, comparable(out))


# The copies a launcher sends on: in a process whose parent counts as its launcher, the SIGTERM that follows a Ctrl-C
# (accelerate's one-process launcher passing it on) and the same SIGINT again at once (torchrun forwarding it) are the
# first signal's event; a person's second Ctrl-C, a moment later, stops at once. Without a launcher, any second
# signal stops at once.
RELAYS = """
import os, signal, sys, time, types
from lifecycle import stopping
stopping.install()
if sys.argv[1] == "launched":
    stopping._state["launcher"] = os.getppid()  # as install() records an accelerate or torchrun parent
stopping.arm()
one_process = types.SimpleNamespace(num_processes=1)
os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
time.sleep(0.1)
os.kill(os.getpid(), signal.SIGTERM)  # accelerate 1.16's launcher passing it on
os.kill(os.getpid(), signal.SIGINT)  # torchrun forwarding the same Ctrl-C
time.sleep(0.2)
print("one event:", stopping.agreed(one_process), stopping._state["agreed"], flush=True)
time.sleep(stopping.RELAY_SECONDS)
os.kill(os.getpid(), signal.SIGINT)  # the person's second Ctrl-C
time.sleep(5)
print("still running", flush=True)
"""


def test_what_a_launcher_sends_on_after_ctrl_c_is_the_same_event_and_a_second_ctrl_c_stops_at_once():
    def run(mode):
        return subprocess.run([sys.executable, "-c", RELAYS, mode], cwd=REPO, env=ENV, capture_output=True, text=True,
                              timeout=60, check=False)

    launched = run("launched")
    assert launched.stdout == "one event: True SIGINT\n" and launched.returncode == -signal.SIGINT
    assert launched.stderr.count("stopping after this optimizer step") == 1
    alone = run("alone")  # python train.py: the SIGTERM is someone's second signal
    assert alone.returncode == -signal.SIGTERM and alone.stdout == ""


def test_a_run_in_a_default_folder_names_the_out_that_continues_it(tmp_path):
    """Without --out the run gets a new folder, runs/<timestamp>, so the same command alone would start a new run:
    the stop line names the --out that continues it, and that command does."""
    logs = tmp_path / "logs"
    logs.mkdir()
    command = [sys.executable, str(REPO / "train.py"), *RUN]
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        process = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=stdout, stderr=stderr, start_new_session=True)
    deadline = time.time() + 300
    while not list(tmp_path.glob("runs/*/metrics.jsonl")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    [out] = [path.parent for path in tmp_path.glob("runs/*/metrics.jsonl")]
    wait_for_steps(out, 5, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == stopping.EXIT_STOPPED
    stderr = (logs / "stderr").read_text()
    found = re.search(r"is complete: run the same command with --out (\S+) to continue", stderr)
    assert found, stderr[-3000:]
    assert (tmp_path / found[1]).resolve() == out.resolve()
    again = subprocess.run([*command, "--out", found[1]], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stdout
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, 25))
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == [out.name]  # no second run folder
