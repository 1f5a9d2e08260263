"""The costs around the loop: the model's ceiling, routing capture, the sampler.

The ceiling is the same tiny MoE's plain step on random full rows, the most tokens per second the
model can train at this batch shape; the capture and sampler numbers are micro-benchmarks of
`routing.RoutingCapture` and `sampler.MixtureSampler`.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from reading import data
import routing
from reading import sources
from benchmarks.clock import StepClock, peak_rss_mib
from models import load_model, token_loss_sum
from sampler import MixtureSampler


def ceiling(warmup: int, steps: int, rows: int, seq_len: int) -> dict:
    """The same model's plain step on random full rows: forward, next-token loss, backward, AdamW.

    No data pipeline, no packing (no position_ids, so the plain causal mask), no clipping, no schedule:
    the most tokens per second this model can train at this batch shape.
    """
    clock = StepClock()
    model, tokenizer = load_model("tiny", seed=0)
    routing.freeze_routers(model, routing.find_routers(model))  # as routemix trains by default
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)  # as train.py
    generator = torch.Generator().manual_seed(0)
    for _ in range(warmup + steps):
        clock.tick()
        input_ids = torch.randint(0, len(tokenizer), (rows, seq_len), generator=generator)
        loss = token_loss_sum(model(input_ids=input_ids).logits, input_ids) / (rows * (seq_len - 1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.count(input_ids.numel(), data.count_targets(input_ids))
    clock.tick()
    return {**clock.window(warmup, steps), "peak_rss_mib": peak_rss_mib()}


def capture_overhead(data_dir: Path, rows: int, seq_len: int, repeats: int) -> dict:
    """Seconds of one eval forward on a packed dev batch, without and with `RoutingCapture` active
    (the hooks record the chosen experts and `histogram()` counts them), interleaved."""
    model, tokenizer = load_model("tiny", seed=0)
    model.eval()
    capture = routing.RoutingCapture(routing.find_routers(model))
    _, dev = sources.load_train_dev(data_dir)
    examples = data.encode_many(tokenizer, dev[min(dev)], seq_len)
    batch = data.collate_packed(data.pack(examples, seq_len, rows)[0], seq_len, tokenizer.pad_token_id)

    @torch.no_grad()
    def forward(with_capture: bool) -> float:
        start = time.perf_counter()
        if with_capture:
            with capture:
                model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
                capture.histogram(batch["token_mask"])
        else:
            model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
        return time.perf_counter() - start

    forward(False), forward(True)  # warm-up
    without, with_ = [], []
    for _ in range(repeats):
        without.append(forward(False))
        with_.append(forward(True))
    return {"forward_seconds": without, "forward_with_capture_seconds": with_,
            "overhead": statistics.median(with_) / statistics.median(without) - 1}


def sampler_cost(data_dir: Path, draws: int, updates: int) -> dict:
    """Draws per second of `MixtureSampler.draw` and seconds per `set_weights`, on the demo datasets' sizes."""
    train_sets, _ = sources.load_train_dev(data_dir)
    sizes = {name: len(examples) for name, examples in train_sets.items()}
    sampler = MixtureSampler(sizes, {name: 1.0 for name in sizes}, seed=0)
    start = time.perf_counter()
    for _ in range(draws):
        sampler.draw()
    draw_seconds = time.perf_counter() - start
    generator = torch.Generator().manual_seed(0)
    new_weights = torch.rand(updates, len(sizes), generator=generator).add_(0.01).tolist()
    start = time.perf_counter()
    for step, weights in enumerate(new_weights):
        sampler.set_weights(weights, at=step)
    set_weights_seconds = (time.perf_counter() - start) / updates
    return {"draws_per_s": draws / draw_seconds, "set_weights_seconds": set_weights_seconds}
