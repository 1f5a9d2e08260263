"""Why `models.load_model` switches transformers' `batched_mm` experts to `grouped_mm` on the CPU: one training
step (forward + backward) of the tiny model on a packed demo micro-batch with each experts implementation,
interleaved repetition by repetition.

    python benchmarks/experts_cpu.py --repeats 5

Prints the median (min-max) seconds per step, wall and CPU time of this process, and the ratio
batched_mm / grouped_mm paired within each repetition. One thread by default, so that a machine other processes
share disturbs the CPU time little.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/experts_cpu.py` puts benchmarks/ first on the path, not the repo
    sys.path.insert(0, str(REPO))

from reading import data  # noqa: E402
from reading import sources  # noqa: E402
from models import TargetHead, attention, load_model  # noqa: E402

IMPLEMENTATIONS = ("grouped_mm", "batched_mm")


@dataclass
class Args:
    repeats: int = 5
    steps: int = 5
    """Timed steps per implementation and repetition (after one untimed step)."""
    threads: int = 1
    rows: int = 8
    seq_len: int = 256


def one_batch(tokenizer, rows: int, seq_len: int) -> dict:
    train = sources.load(REPO / "data" / "demo", splits=("train",)).train
    names = sorted(train)
    keys = iter((names[i % len(names)], i // len(names)) for i in range(10**6))
    stream = data.PackedStream(lambda: next(keys), train, tokenizer, seq_len, rows)
    batch, _ = stream.next_batch()
    return batch


def seconds_per_step(model, head: TargetHead, batch: dict, steps: int) -> tuple[float, float]:
    def step():
        with head.on(batch["labels"], "cpu") as targets:
            logits = model(**attention.packed_inputs(model.config, batch, "cpu")).logits
        head.loss_sum(logits, targets, batch["labels"]).backward()
        model.zero_grad(set_to_none=True)

    step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model("tiny", seed=0)
    model.train()
    head = TargetHead(model)
    batch = one_batch(tokenizer, args.rows, args.seq_len)
    results = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(args.repeats):
        for name in IMPLEMENTATIONS:
            model.set_experts_implementation(name)
            results[name].append(seconds_per_step(model, head, batch, args.steps))
    print(f"tiny model, one {args.rows} x {args.seq_len} packed micro-batch, forward + backward, {args.threads} thread(s), "
          f"median (min-max) of {args.repeats} interleaved repetitions of {args.steps} steps")
    for name in IMPLEMENTATIONS:
        for i, clock in enumerate(("wall", "cpu")):
            values = [r[i] for r in results[name]]
            print(f"  {name:10s} {clock:4s} {statistics.median(values):.3f} s/step ({min(values):.3f}-{max(values):.3f})")
    for i, clock in enumerate(("wall", "cpu")):
        ratios = [b[i] / g[i] for g, b in zip(results["grouped_mm"], results["batched_mm"])]
        print(f"  batched_mm / grouped_mm, {clock}: {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main(tyro.cli(Args))
