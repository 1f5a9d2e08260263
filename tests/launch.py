"""Running train.py the way users do, for the end-to-end tests."""

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# One thread, as the test processes have (tests/conftest.py says why).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
# Small enough for a few seconds per run on 2 CPU cores, big enough for several probes and checkpoints.
TINY_RUN = ["--micro-batch-size", "4", "--seq-len", "128", "--probe-batches", "1", "--log-every", "1"]


def launch_command(out: Path, *extra: str) -> list[str]:
    """`accelerate launch train.py --out OUT ...` with this interpreter."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "train.py", "--out", str(out), *extra]


def run_train(out: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(launch_command(out, *extra), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def train_py_command(out: Path, *extra: str) -> list[str]:
    """`python train.py --out OUT ...`: a single process without a launcher."""
    return [sys.executable, "train.py", "--out", str(out), *extra]


def start(command: list[str], logs: Path, env: dict = ENV) -> subprocess.Popen:
    """Start `command` in the background in its own session, its stdout and stderr in files under `logs`
    (files, not pipes: a train.py that outlives its launcher still has somewhere to write)."""
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=stdout, stderr=stderr, start_new_session=True)


def wait_for_steps(out: Path, steps: int, process: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until `out/metrics.jsonl` has logged `steps` steps (with --log-every 1)."""
    metrics, deadline = out / "metrics.jsonl", time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= steps:
            return
        time.sleep(0.01)
    raise AssertionError(f"{out}: {steps} steps were not logged (exit status {process.poll()})")


# train.py in-process, SIGKILLed just before the COMPLETE marker of checkpoint step_8 is written (by the main
# process): every file of that checkpoint is on disk, but the save never finished. Run with `python -c` or as a
# script under a launcher, with train.py's arguments.
CRASH_IN_SAVE = f"""
import os, signal, sys
sys.path.insert(0, {str(REPO)!r})
sys.argv[0] = "train.py"
import tyro
import train
from lifecycle import checkpoint
write_atomic = checkpoint.write_atomic
def crash_before_marker(path, text):
    if path.name == checkpoint.COMPLETE and path.parent.name == "step_8":
        os.kill(os.getpid(), signal.SIGKILL)
    write_atomic(path, text)
checkpoint.write_atomic = crash_before_marker
train.main(tyro.cli(train.Args))
"""
