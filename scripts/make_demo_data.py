"""Write the bundled demo datasets that the default routemix job trains on.

Four small instruction datasets with clearly different vocabulary and style, so
that even a tiny MoE routes them differently:

    name       format           content
    code       ShareGPT         write-a-Python-function requests, code answers
    math       Alpaca           arithmetic and word problems, worked answers
    explain    OpenAI messages  short explanations of concepts from a fact table
    reasoning  ShareGPT         ordering, syllogisms, conditionals, knights and
                                knaves; ~20% two-turn conversations

Layout (as train.py's --data expects): `train/<name>/part-000.jsonl` and
`dev/<name>.jsonl`. Every record is built from templates with a seeded
`random.Random`, so the output is byte-identical on every run and platform.
Dev records never share their first user prompt with a train record.

    python scripts/make_demo_data.py                 # writes data/demo/
    python scripts/make_demo_data.py --out /tmp/demo

Standard library only; no network.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as `python scripts/make_demo_data.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.demo_data import code_requests, explanations, logic_puzzles, math_problems  # noqa: E402

TRAIN_RECORDS = 1200
"""Train records written per dataset."""
DEV_RECORDS = 80
"""Dev records written per dataset."""
SEED = 20250401
"""Base seed; each dataset draws from `random.Random(f"{SEED}-{name}")`."""
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "demo"

DATASETS: dict[str, Callable[[random.Random], tuple[str, dict]]] = {
    "code": code_requests.make_record,
    "math": math_problems.make_record,
    "explain": explanations.make_record,
    "reasoning": logic_puzzles.make_record,
}
"""Dataset name -> function drawing one (first user prompt, record) pair."""


def draw_unique_records(make_record: Callable[[random.Random], tuple[str, dict]], rng: random.Random,
                        count: int) -> list[dict]:
    """Draw records until `count` of them have distinct first prompts (later repeats are dropped)."""
    records: list[dict] = []
    prompts: set[str] = set()
    for _ in range(50 * count):
        prompt, record = make_record(rng)
        if prompt not in prompts:
            prompts.add(prompt)
            records.append(record)
            if len(records) == count:
                return records
    raise RuntimeError(f"only {len(records)} distinct prompts after {50 * count} draws; the templates are too few")


def to_jsonl(records: list[dict]) -> bytes:
    """One JSON object per line, UTF-8, keys in insertion order, '\\n' line ends."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")


def generate(out_dir: Path | str = DEFAULT_OUT) -> dict[str, dict[str, int]]:
    """Write every demo dataset under `out_dir`; returns {name: {train_records, dev_records, train_bytes, dev_bytes}}.

    The first TRAIN_RECORDS distinct-prompt records go to train, the next DEV_RECORDS to dev,
    so no dev prompt appears in train.
    """
    out_dir = Path(out_dir)
    summary = {}
    for name, make_record in DATASETS.items():
        rng = random.Random(f"{SEED}-{name}")
        records = draw_unique_records(make_record, rng, TRAIN_RECORDS + DEV_RECORDS)
        train, dev = to_jsonl(records[:TRAIN_RECORDS]), to_jsonl(records[TRAIN_RECORDS:])
        train_path = out_dir / "train" / name / "part-000.jsonl"
        dev_path = out_dir / "dev" / f"{name}.jsonl"
        for path, payload in ((train_path, train), (dev_path, dev)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
        summary[name] = {"train_records": TRAIN_RECORDS, "dev_records": DEV_RECORDS,
                         "train_bytes": len(train), "dev_bytes": len(dev)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: data/demo)")
    summary = generate(parser.parse_args().out)
    print(f"{'dataset':<10} {'train':>6} {'dev':>4} {'train bytes':>12} {'dev bytes':>10}")
    for name, row in summary.items():
        print(f"{name:<10} {row['train_records']:>6} {row['dev_records']:>4} {row['train_bytes']:>12,} "
              f"{row['dev_bytes']:>10,}")
    total = sum(row["train_bytes"] + row["dev_bytes"] for row in summary.values())
    print(f"total {total:,} bytes")


if __name__ == "__main__":
    main()
