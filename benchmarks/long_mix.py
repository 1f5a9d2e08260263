"""A mix of long chat examples for the long-packed-row benchmarks, made from the bundled demo data.

The demo datasets' records are short (36 to ~300 tokens), so at 2,048-token rows they measure
little of what long rows cost. Here each dataset's records are chained into multi-turn
conversations (the user turns and assistant answers of consecutive records, one system prompt at
most), with a number of records per conversation drawn from a geometric distribution: lengths then
spread from one record to well past 2,048 tokens, as in real chat mixes (a few short exchanges, a
long tail of long ones). Written as a routemix dataset folder (`train/<name>/part-000.jsonl`,
`dev/<name>.jsonl`), so that every loop reads it as it reads any data. Deterministic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from reading import sources

REPO = Path(__file__).resolve().parents[1]
MEAN_RECORDS = 8
"""Mean records chained per conversation (demo records average ~110 tokens: ~900 tokens per conversation)."""


def chain(records: list[sources.Messages], rng: random.Random) -> list[sources.Messages]:
    """Consecutive records joined into conversations of a geometric number of records each."""
    conversations, i = [], 0
    while i < len(records):
        n = 1
        while rng.random() > 1 / MEAN_RECORDS:
            n += 1
        messages = [m for m in records[i][:1] if m["role"] == "system"]
        for record in records[i : i + n]:
            messages += [m for m in record if m["role"] != "system"]
        conversations.append(messages)
        i += n
    return conversations


def write_long_mix(out: Path, data_dir: Path = REPO / "data" / "demo", seed: int = 0) -> Path:
    """The demo data's datasets as long conversations, in `out` (a routemix dataset folder); returns `out`."""
    train_sets, dev_sets = sources.load_train_dev(data_dir)
    for name in sorted(train_sets):
        rng = random.Random(f"{seed}-{name}")
        for split, records, path in (("train", train_sets[name], out / "train" / name / "part-000.jsonl"),
                                     ("dev", dev_sets[name], out / "dev" / f"{name}.jsonl")):
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = (json.dumps({"messages": messages}) for messages in chain(list(records), rng))
            path.write_text("".join(line + "\n" for line in lines))
    return out
