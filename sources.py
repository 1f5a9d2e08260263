"""Where records come from: dataset folders of JSONL files, read into named datasets of chat messages.

A dataset folder holds ``train/<name>/*.jsonl`` and ``dev/<name>.jsonl`` (or
``dev/<name>/*.jsonl``); the dataset name is the folder or file stem. Each line
is one record in any of three formats:

- ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}],
  "system_prompt": optional}``
- OpenAI messages: ``{"messages": [{"role": "user"|"assistant"|"system", "content": ...}]}``
- Alpaca: ``{"instruction": ..., "input": optional, "output": ...}``

Every record becomes a list of ``{"role", "content"}`` messages (`to_messages`); `data.py` renders
them with the chat template, labels and packs them. No torch.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}

Messages = list[dict[str, str]]


class DataError(ValueError):
    """Bad input data; the message names the file, line or dataset."""


# --------------------------------------------------------------------------- records


def to_messages(record: dict) -> Messages:
    """One record in any supported format -> chat messages. Raises ValueError saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
    if "conversations" in record:
        messages = []
        if record.get("system_prompt"):
            messages.append({"role": "system", "content": str(record["system_prompt"])})
        for turn in record["conversations"]:
            role = SHAREGPT_ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
            if role is None:
                raise ValueError(f"unknown ShareGPT turn {turn!r}")
            messages.append({"role": role, "content": str(turn.get("value", ""))})
    elif "messages" in record:
        messages = []
        for turn in record["messages"]:
            if not isinstance(turn, dict) or turn.get("role") not in ("system", "user", "assistant"):
                raise ValueError(f"unknown message {turn!r}")
            messages.append({"role": turn["role"], "content": str(turn.get("content") or "")})
    elif "instruction" in record and "output" in record:
        prompt = str(record["instruction"])
        if record.get("input"):
            prompt += "\n\n" + str(record["input"])
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": str(record["output"])}]
    else:
        raise ValueError(f"unknown record format with keys {sorted(record)} (expected conversations, messages or instruction/output)")
    check_turn_order(messages)
    return messages


def check_turn_order(messages: Messages) -> None:
    """An optional system message, then user/assistant alternating, starting with user, with an assistant turn."""
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not any(m["role"] == "assistant" and m["content"].strip() for m in turns):
        raise ValueError("no assistant turn")
    for i, message in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise ValueError(f"broken role order: turn {i} is {message['role']!r}, expected {expected!r}")


def read_jsonl(path: Path, *, skip_bad_lines: bool = False, stats: Counter | None = None) -> list[dict]:
    """The JSON objects of a .jsonl file. A malformed line is an error naming file and line,
    or, with `skip_bad_lines`, a skipped line counted in `stats["bad_lines"]`."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                if not skip_bad_lines:
                    raise DataError(f"{path}:{line_no}: malformed JSON ({e.msg}); pass --skip-bad-records to skip such lines") from None
                if stats is not None:
                    stats["bad_lines"] += 1
    return records


def split_files(folder: Path, split: str) -> dict[str, list[Path]]:
    """Dataset name -> its .jsonl files in `folder/split` (`<name>/*.jsonl` or `<name>.jsonl`)."""
    root = Path(folder) / split
    if not root.is_dir():
        raise DataError(f"{root} does not exist: a data folder needs train/<name>/*.jsonl and dev/<name>.jsonl")
    files: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            files[entry.name] = sorted(entry.glob("*.jsonl"))
        elif entry.suffix == ".jsonl":
            files.setdefault(entry.stem, []).append(entry)
    return files


def load_split(
    folder: Path | str, split: str, *, skip_bad_lines: bool = False, stats: dict[str, Counter] | None = None
) -> dict[str, list[Messages]]:
    """Dataset name -> conversations of one split. Records with no assistant turn or a broken role order
    are skipped and counted in `stats[name]` (`no_assistant`, `bad_order`, ...); an empty dataset is an error."""
    datasets = {}
    for name, paths in split_files(Path(folder), split).items():
        counts = Counter()
        conversations = []
        for path in paths:
            for record in read_jsonl(path, skip_bad_lines=skip_bad_lines, stats=counts):
                try:
                    conversations.append(to_messages(record))
                except ValueError as e:
                    counts["no_assistant" if "no assistant" in str(e) else "bad_record"] += 1
        if not conversations:
            raise DataError(f"dataset {name!r} in {Path(folder) / split} has no usable records ({dict(counts) or 'no files'})")
        datasets[name] = conversations
        if stats is not None:
            stats[name] = counts
    if not datasets:
        raise DataError(f"no datasets in {Path(folder) / split}")
    return datasets


def load_train_dev(folder: Path | str, **kwargs) -> tuple[dict[str, list[Messages]], dict[str, list[Messages]]]:
    """Both splits; their dataset names must match."""
    train, dev = load_split(folder, "train", **kwargs), load_split(folder, "dev", **kwargs)
    if sorted(train) != sorted(dev):
        raise DataError(
            f"train and dev dataset names differ in {folder}: only in train {sorted(set(train) - set(dev))}, "
            f"only in dev {sorted(set(dev) - set(train))}"
        )
    return train, dev
