"""The run folder's files: JSONL logs that a resume continues, small files written atomically, and
checkpoint folders that count only once their completion marker exists. No torch, no accelerate."""

from __future__ import annotations

import json
import os
from pathlib import Path


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


COMPLETE = "COMPLETE"  # written last: a checkpoint folder without it is an interrupted save


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints in `out`, oldest first."""
    found = [p for p in (out / "checkpoints").glob("step_*") if (p / COMPLETE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))
