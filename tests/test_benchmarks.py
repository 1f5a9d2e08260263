"""Smoke test of the benchmarks: `python benchmarks/run.py --quick` produces every row of the table and the JSON.

The numbers of a quick run mean nothing (a few steps of a small batch); only that every
configuration runs through is checked. TRL is a benchmark-only dependency: without it the TRL row
must say so instead of failing.
"""

import importlib.util
import json
import os
import subprocess
import sys

from benchmarks.run import DESCRIPTIONS, THROUGHPUT
from launch import REPO


def test_quick_run_produces_every_row(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--out", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    summary = report["summary"]
    trl_installed = importlib.util.find_spec("trl") is not None
    for config in THROUGHPUT:
        row = summary[config]
        if config == "trl-packed" and not trl_installed:
            assert row["skipped"].startswith("not installed")
            continue
        assert row["real_tokens_per_s"]["median"] > 0 and row["assistant_tokens_per_s"]["median"] > 0, config
        assert row["assistant_tokens_per_s"]["median"] <= row["real_tokens_per_s"]["median"], config
        assert row["peak_rss_mib"]["median"] > 0, config
        assert f"| {config}: {DESCRIPTIONS[config]} |" in result.stdout
    for config in ("routemix-dynamic-paper", "routemix-dynamic-demo"):  # --quick probes inside the window too
        assert summary[config]["probe_seconds"]["median"] > 0
        assert 0 <= summary[config]["probe_share"]["median"] < 1
    micro = summary["micro"]
    assert micro["draws_per_s"]["median"] > 0 and micro["set_weights_seconds"]["median"] > 0
    assert micro["forward_seconds"]["median"] > 0 and micro["forward_with_capture_seconds"]["median"] > 0
    assert set(summary["bar"]) == {"routemix-static / trl-packed", "routemix-static / ceiling",
                                   "routemix-dynamic-paper / trl-packed", "routemix-dynamic-paper / ceiling"}


# --------------------------------------------------------------------------- the packing change the benchmarks motivated


def demo_stream(drawn: list):
    """A PackedStream over the demo data at train.py's small-model rows x seq-len, recording every draw in `drawn`."""
    from transformers import AutoTokenizer

    from lifecycle.config import MODEL_DEFAULTS
    from reading import data
    from reading import sources
    from models import TINY_DIR
    from sampler import MixtureSampler

    tokenizer = AutoTokenizer.from_pretrained(TINY_DIR)
    train_sets, _ = sources.load_train_dev(REPO / "data" / "demo")
    sampler = MixtureSampler({name: len(c) for name, c in train_sets.items()}, {name: 1.0 for name in train_sets}, seed=0)

    def draw():
        drawn.append(sampler.draw())
        return drawn[-1]

    small = MODEL_DEFAULTS["small"]
    return data.PackedStream(draw, train_sets, tokenizer, small["seq_len"], small["micro_batch_size"]), sampler


def fill_when_the_first_misfit_closes(stream, draw, batches: int) -> float:
    """The share of real tokens over `batches` batches of the packing PackedStream replaced (commit 1200021):
    examples in the order `draw()` gives them, each best-fit, until the first that fits no row closes the batch and
    waits for the next one."""
    fills, waiting = [], None
    for _ in range(batches):
        free = [stream.seq_len] * stream.rows
        while True:
            key = waiting or draw()
            waiting, length = None, len(stream.example(*key).input_ids)
            fits = [r for r in range(stream.rows) if free[r] >= length]
            if not fits:
                waiting = key
                break
            free[min(fits, key=lambda r: free[r])] -= length
        fills.append(1 - sum(free) / (stream.rows * stream.seq_len))
    return sum(fills) / batches


def test_packing_fills_rows_loses_no_example_and_lets_none_wait_long():
    drawn, batches, waited = [], [], set()
    stream, _ = demo_stream(drawn)
    for _ in range(60):
        batches.append(stream.next_batch())
        assert stream.pending and not waited & set(stream.pending)  # an example that waited is in the next batch
        waited = set(stream.pending)
        # best-fit over a batch's worth of candidates: what waits fits in no row's leftover room
        room = stream.seq_len - int(batches[-1][0]["token_mask"].sum(dim=1).min())
        assert all(len(stream.example(*key).input_ids) > room for key in stream.pending)
    fill = sum(float(batch["token_mask"].float().mean()) for batch, _ in batches) / len(batches)
    # the reason for the change: over as many draws of the same sampler, rows hold clearly more real tokens
    # than when the first example that does not fit closes the batch (padding at most 3/4 of that rule's)
    again, _ = demo_stream([])
    closing = fill_when_the_first_misfit_closes(again, again.draw, len(batches))
    assert 1 - fill <= 0.75 * (1 - closing), (fill, closing)
    # every drawn example is in exactly one batch or still waiting: real and assistant tokens add up
    waiting = [stream.example(*key) for key in stream.pending]
    every = [stream.example(*key) for key in drawn]
    real = sum(int(batch["token_mask"].sum()) for batch, _ in batches)
    assert real + sum(len(e.input_ids) for e in waiting) == sum(len(e.input_ids) for e in every)
    trained = sum(sum(counts.values()) for _, counts in batches)
    assert trained + sum(sum(x != -100 for x in e.labels) for e in waiting) == sum(sum(x != -100 for x in e.labels) for e in every)


def test_packed_stream_resumes_exactly():
    import json

    import torch

    stream, sampler = demo_stream([])
    for _ in range(5):
        stream.next_batch()
    assert stream.pending  # the state under test is not empty
    saved = json.loads(json.dumps({"sampler": sampler.state_dict(), "stream": stream.state_dict()}))
    expected = [stream.next_batch() for _ in range(5)]
    resumed, resumed_sampler = demo_stream([])
    resumed_sampler.load_state_dict(saved["sampler"])
    resumed.load_state_dict(saved["stream"])
    for (batch, counts), (want, want_counts) in zip((resumed.next_batch() for _ in range(5)), expected):
        assert counts == want_counts
        assert all(torch.equal(batch[key], want[key]) for key in want)
