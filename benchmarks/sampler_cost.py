"""What the shared data order costs (issue 25): `MixtureSampler` on simulated ranks over a large dataset mixture.

    python benchmarks/sampler_cost.py                      # the BENCHMARKS.md row: 8 ranks, 1M records
    python benchmarks/sampler_cost.py --records 10000 --draws 2000 --repeats 2   # a quick check

Every rank computes the whole run's sequence and takes every `ranks`-th draw, so a rank pays `ranks` draws of
the sequence for each draw it takes. Measured in one process, rank 0 of `ranks` (every rank does the same work):
- microseconds per draw a rank takes, and per draw of the sequence (the first divided by `ranks`), over `draws`
  draws of rank 0 with the weights changed every 10,000 of its draws;
- the same for one rank alone (`ranks` 1), the baseline;
- memory of one rank's sampler (tracemalloc, the Python heap: the datasets' current permutations as `array`s, and
  the rest of its state) right after construction, and the peak while it built the permutations;
- the size of its checkpoint state (JSON), and the seconds `reshard` takes to turn the `ranks` states into those
  of `ranks` / 2 ranks.
The records are split over 4 datasets of unequal sizes (40%, 30%, 20%, 10%). Medians over `repeats`; the machine
these numbers come from is shared, so they are noisy (BENCHMARKS.md says how noisy).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tyro  # noqa: E402

from sampler import MixtureSampler, reshard  # noqa: E402


@dataclass
class Args:
    records: int = 1_000_000
    """Records over all datasets."""
    ranks: int = 8
    """Simulated ranks."""
    draws: int = 200_000
    """Draws rank 0 takes per repetition."""
    repeats: int = 5
    """Repetitions; medians and ranges are printed."""


def sizes_of(records: int) -> dict[str, int]:
    shares = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
    return {name: max(1, int(records * share)) for name, share in shares.items()}


def per_draw_us(sizes: dict[str, int], ranks: int, draws: int, seed: int) -> float:
    """Microseconds per draw that rank 0 of `ranks` takes, the weights changed every 10,000 of its draws."""
    sampler = MixtureSampler(sizes, dict.fromkeys(sizes, 1.0), seed=seed, rank=0, world=ranks)
    weights = random.Random(seed)
    start = time.perf_counter()
    for i in range(draws):
        if i % 10_000 == 0:
            sampler.set_weights([weights.random() + 0.1 for _ in sizes])
        sampler.draw()
    return (time.perf_counter() - start) / draws * 1e6


def memory_mib(sizes: dict[str, int], ranks: int) -> tuple[float, float]:
    """(MiB held by one rank's new sampler, MiB at the peak while it was built), Python heap only."""
    tracemalloc.start()
    sampler = MixtureSampler(sizes, dict.fromkeys(sizes, 1.0), seed=0, rank=0, world=ranks)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del sampler
    return held / 2**20, peak / 2**20


def state_and_reshard(sizes: dict[str, int], ranks: int, draws: int) -> tuple[int, float]:
    """(bytes of one rank's state as JSON, seconds to reshard `ranks` states to `ranks` // 2 ranks); the ranks
    stopped at different places, as after a real run (each has taken `draws` give or take a few)."""
    samplers = [MixtureSampler(sizes, dict.fromkeys(sizes, 1.0), seed=0, rank=r, world=ranks) for r in range(ranks)]
    pace = random.Random(0)
    for sampler in samplers:
        for _ in range(draws + pace.randint(0, 20)):
            sampler.draw()
    states = [json.loads(json.dumps(s.state_dict())) for s in samplers]
    start = time.perf_counter()
    reshard(states, max(1, ranks // 2))
    return len(json.dumps(states[0])), time.perf_counter() - start


def cell(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def main(args: Args) -> None:
    sizes = sizes_of(args.records)
    shared, alone, held, peak, state_bytes, reshard_s = [], [], [], [], [], []
    for repeat in range(args.repeats):  # interleaved, so that the machine's load falls on both alike
        shared.append(per_draw_us(sizes, args.ranks, args.draws, seed=repeat))
        alone.append(per_draw_us(sizes, 1, args.draws, seed=repeat))
        h, p = memory_mib(sizes, args.ranks)
        held.append(h)
        peak.append(p)
        b, s = state_and_reshard(sizes, args.ranks, min(args.draws // 10, 20_000))
        state_bytes.append(b)
        reshard_s.append(s)
    print(f"{args.records:,} records in 4 datasets {sizes}, {args.ranks} simulated ranks, {args.draws:,} draws of "
          f"rank 0 per repetition, {args.repeats} repetitions: median [min-max]")
    print("| ranks | us per draw a rank takes | us per draw of the sequence | sampler memory per rank, MiB "
          "(peak while built) | state per rank, KiB | reshard to half the ranks, ms |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.ranks} | {cell(shared, '.2f')} | {cell([v / args.ranks for v in shared], '.3f')} "
          f"| {cell(held, '.1f')} ({cell(peak, '.1f')}) | {cell([b / 1024 for b in state_bytes], '.1f')} "
          f"| {cell([s * 1e3 for s in reshard_s], '.0f')} |")
    print(f"| 1 | {cell(alone, '.2f')} | {cell(alone, '.3f')} | | | |")


if __name__ == "__main__":
    main(tyro.cli(Args))
