"""Write the `unequal` mix: very unequal dataset sizes and a near-duplicate pair, from the demo generators.

    name       train  dev  source
    math        3000   80  the demo `math` generator
    code_a      1000   80  the demo `code` generator: one stream of 2160 records, the first half ...
    code_b      1000   80  ... and the second half (same templates, disjoint records: a near-duplicate pair)
    reasoning    500   80  the demo `reasoning` generator
    explain      120   80  the demo `explain` generator (25x smaller than math)

The demo data has four datasets of equal size that route apart; this mix has what real mixes have and
the demo lacks: sizes that differ by 25x (so a weight that favours the small dataset repeats it many
times) and two datasets that are one source split in two (so the dynamic update has real redundancy to
find). Records come from `scripts/demo_data` with their own seeds (not the demo's), so the output is
byte-identical on every run and no record is shared with `data/demo`. Dev records never share their
first user prompt with a train record of the same source.

    python -m experiments.unequal_data --out data/unequal      # what experiments.compare uses

It also writes `eval/math.jsonl` and `eval/reasoning.jsonl`, held-out problems for eval.accuracy
(scripts/make_eval_sets.py), none of which occurs in this mix.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from scripts import make_eval_sets
from scripts.make_demo_data import DATASETS, draw_unique_records, to_jsonl

DEV = 80
SIZES = {"math": 3000, "code_a": 1000, "code_b": 1000, "reasoning": 500, "explain": 120}
SOURCES = {"math": "math", "code_a": "code", "code_b": "code", "reasoning": "reasoning", "explain": "explain"}
SEED = "routemix-unequal"


def generate(out: Path) -> dict[str, tuple[int, int]]:
    """Write `out/train/<name>/part-000.jsonl` and `out/dev/<name>.jsonl`; returns {name: (train, dev) records}."""
    records: dict[str, tuple[list[dict], list[dict]]] = {}
    for source in sorted(set(SOURCES.values())):
        names = [name for name in SIZES if SOURCES[name] == source]  # each source's datasets, in SIZES order
        drawn = draw_unique_records(DATASETS[source], random.Random(f"{SEED}-{source}"),
                                    sum(SIZES[name] + DEV for name in names))
        for name in names:
            train, drawn = drawn[: SIZES[name]], drawn[SIZES[name] :]
            dev, drawn = drawn[:DEV], drawn[DEV:]
            records[name] = (train, dev)
    for name, (train, dev) in records.items():
        (out / "train" / name).mkdir(parents=True, exist_ok=True)
        (out / "dev").mkdir(parents=True, exist_ok=True)
        (out / "train" / name / "part-000.jsonl").write_bytes(to_jsonl(train))
        (out / "dev" / f"{name}.jsonl").write_bytes(to_jsonl(dev))
    make_eval_sets.write(out)  # held-out problems for eval.accuracy, none of them in this mix
    return {name: (len(train), len(dev)) for name, (train, dev) in records.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/unequal"), help="output folder (default: data/unequal)")
    for name, (train, dev) in generate(parser.parse_args().out).items():
        print(f"{name:<10} {train:>5} train {dev:>3} dev")


if __name__ == "__main__":
    main()
