"""Write held-out problems with checkable final answers for a data folder: `<data>/eval/<name>.jsonl`.

    python scripts/make_eval_sets.py                      # data/demo/eval/ (committed)
    python scripts/make_eval_sets.py --data data/unequal  # experiments.unequal_data runs this itself

`eval.accuracy` asks a checkpoint these problems and scores its final answers. They come from the demo
generators whose every answer ends in a final answer (`math`: "Answer: 14 weeks"; `reasoning`: "Therefore it will
be Saturday."), drawn with a seed of their own, and leave out every problem that occurs in a user turn of the
folder's train or dev records, so the model was never tuned on them. Datasets of the folder without such a
generator (code, explanations: no single final answer) get none.

Each line is a record `{"messages": [..., user turn, worked answer], "compare": "numbers" | "words"}`: the first
user turn (with its system prompt, if any) and the generator's own worked answer, from which eval.accuracy reads
the reference final answer; `compare` says how answers are matched (eval/accuracy.py). Any data folder can hold
such a file for its own checkable datasets. Byte-identical on every run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as `python scripts/make_eval_sets.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reading import sources  # noqa: E402
from reading.records import to_messages  # noqa: E402
from scripts.demo_data import logic_puzzles, math_problems  # noqa: E402

CHECKABLE: dict[str, tuple[Callable[[random.Random], tuple[str, dict]], str]] = {
    "math": (math_problems.make_record, "numbers"),
    "reasoning": (logic_puzzles.make_record, "words"),
}
"""Dataset name -> (its generator, how its final answers are compared)."""
EXAMPLES = 100
"""Problems per dataset."""
SEED = "routemix-eval"
"""Dataset `name` draws from `random.Random(f"{SEED}-{name}")`: neither the demo's seeds nor the unequal mix's."""
DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "demo"


def user_turns(data: Path, names: list[str]) -> str:
    """Every user turn of the train and dev records of `names` in `data`, joined by a character no prompt holds."""
    loaded = sources.load(data)
    return "\0".join(message["content"] for split in (loaded.train, loaded.dev) for name in names
                     for conversation in split[name] for message in conversation if message["role"] == "user")


def held_out(name: str, count: int, seen: str) -> list[dict]:
    """`count` records of dataset `name`: problems new among themselves that occur nowhere in `seen`."""
    make_record, compare = CHECKABLE[name]
    rng = random.Random(f"{SEED}-{name}")
    records, prompts = [], set()
    for _ in range(100 * count):
        prompt, record = make_record(rng)
        if prompt in prompts or prompt in seen:
            continue
        prompts.add(prompt)
        messages = to_messages(record)
        first = next(i for i, message in enumerate(messages) if message["role"] == "assistant")
        records.append({"messages": messages[: first + 1], "compare": compare})
        if len(records) == count:
            return records
    raise RuntimeError(f"{name}: only {len(records)} new problems in {100 * count} draws")


def write(data: Path, count: int = EXAMPLES) -> dict[str, int]:
    """Write `<data>/eval/<name>.jsonl` for every checkable dataset of `data`; returns {name: problems}."""
    names = [name for name in sources.load(data, splits=("dev",)).names if name in CHECKABLE]
    seen = user_turns(data, names) if names else ""
    written = {}
    for name in names:
        records = held_out(name, count, seen)
        (data / "eval").mkdir(exist_ok=True)
        (data / "eval" / f"{name}.jsonl").write_bytes(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
        written[name] = len(records)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data folder (default: data/demo)")
    parser.add_argument("--examples", type=int, default=EXAMPLES, help="problems per dataset")
    args = parser.parse_args()
    for name, count in write(args.data, args.examples).items():
        print(f"{args.data / 'eval' / name}.jsonl: {count} problems")


if __name__ == "__main__":
    main()
