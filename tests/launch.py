"""Running train.py the way users do, for the end-to-end tests."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}
# Small enough for a few seconds per run on 2 CPU cores, big enough for several probes and checkpoints.
TINY_RUN = ["--micro-batch-size", "4", "--seq-len", "128", "--probe-batches", "1", "--log-every", "1"]


def launch_command(out: Path, *extra: str) -> list[str]:
    """`accelerate launch train.py --out OUT ...` with this interpreter."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "train.py", "--out", str(out), *extra]


def run_train(out: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(launch_command(out, *extra), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
