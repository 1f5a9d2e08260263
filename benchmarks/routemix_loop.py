"""routemix's real training loop, measured: `train.main` runs in this process exactly as `python train.py` would.

Only two functions are wrapped to observe it: `data.PackedStream.next_batch` (a clock tick per step
and the tokens of every batch) and `train.probe` (seconds per probe). Nothing of the loop is
re-implemented here.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from reading import data
import train
from benchmarks.clock import StepClock, peak_rss_mib


def train_loop(
    mix: str, probe_every: int, probe_batches: int, warmup: int, steps: int, rows: int, seq_len: int, data_dir: Path,
    **flags,
) -> dict:
    """Throughput of `train.main` over `steps` steps after `warmup`; probes at every multiple of `probe_every`.

    The run stops one step after the window (`max-steps = warmup + steps + 1`) so that the final
    probe, checkpoint and model export happen outside the window; `save-every` is out of reach, so no
    other checkpoint is written. `flags` are more `train.Args` fields (e.g. `probe_source="train"`).
    """
    clock, probe_starts, probe_seconds = StepClock(), [], []
    next_batch, probe = data.PackedStream.next_batch, train.probe

    def timed_next_batch(stream):
        clock.tick()
        batch, trained = next_batch(stream)
        clock.count(batch["token_mask"].sum(), data.count_targets(batch["labels"]))
        return batch, trained

    def timed_probe(*args, **kwargs):
        start = time.perf_counter()
        probe_starts.append(start)
        result = probe(*args, **kwargs)
        probe_seconds.append(time.perf_counter() - start)
        return result

    data.PackedStream.next_batch, train.probe = timed_next_batch, timed_probe
    try:
        with tempfile.TemporaryDirectory(prefix="routemix-bench-") as out:
            args = train.Args(
                data=data_dir, out=Path(out) / "run", resume="none", mix=mix, probe_every=probe_every,
                probe_batches=probe_batches, max_steps=warmup + steps + 1, save_every=10**9,
                micro_batch_size=rows, seq_len=seq_len, **flags,
            )
            train.main(args)
    finally:
        data.PackedStream.next_batch, train.probe = next_batch, probe
    result = clock.window(warmup, steps)
    # probes run at the end of steps probe_every, 2 * probe_every, ...; the last one (after the final step) is outside
    probe_steps = [s for s in range(warmup + 1, warmup + steps + 1) if s % probe_every == 0]
    result["probe_steps"] = probe_steps
    result["probe_seconds"] = probe_seconds[: len(probe_steps)]
    # the whole once-in-a-while block (probe, weight update, mixture.jsonl, plots, TensorBoard, a log line when
    # due): from the probe's start to the loop's next request for a batch
    result["probe_block_seconds"] = [clock.wall[s] - start for s, start in zip(probe_steps, probe_starts)]
    result["probe_share"] = sum(result["probe_block_seconds"]) / result["seconds"]
    result["peak_rss_mib"] = peak_rss_mib()
    return result
