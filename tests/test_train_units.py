"""train.py's module-level helpers against values written out by hand (fast: no model, no run)."""

import math
from types import SimpleNamespace

import pytest
import torch

import train


def test_lr_schedule_written_out():
    # 3 warmup steps of 6: 1/3, 2/3, 1, then cosine from 1 to 0 over the other 3; after the end it stays 0
    factor = train.lr_lambda(3, 6)
    assert [factor(s) for s in range(8)] == pytest.approx([1 / 3, 2 / 3, 1, 1, 0.75, 0.25, 0, 0], abs=1e-15)
    # no warmup: cosine from the first step
    factor = train.lr_lambda(0, 4)
    assert [factor(s) for s in range(5)] == pytest.approx([1, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5,
                                                           0.5 + 0.5 * math.cos(3 * math.pi / 4), 0], abs=1e-15)
    # warmup as long as the run: the peak at the last step, and no division by zero after it
    factor = train.lr_lambda(2, 2)
    assert [factor(s) for s in range(4)] == pytest.approx([0.5, 1, 1, 0], abs=1e-15)


def test_build_optimizer_trains_what_requires_grad_at_the_scheduled_lr():
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    args = SimpleNamespace(lr=0.1, weight_decay=0.05, warmup_ratio=0.5, max_steps=4)  # not AdamW's default decay
    optimizer, scheduler = train.build_optimizer(model, args)
    (group,) = optimizer.param_groups
    assert group["params"] == [model.weight] and group["weight_decay"] == 0.05 and group["initial_lr"] == 0.1
    assert group["fused"] is True  # one kernel per step (BENCHMARKS.md)
    used = []
    for _ in range(4):  # warmup ceil(0.5 * 4) = 2 steps, then cosine over 2
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert used == pytest.approx([0.05, 0.1, 0.1, 0.05], abs=1e-15)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)
    args.warmup_ratio = 0.3  # ceil(1.2) = 2 steps of warmup: rounded up, not down
    optimizer, _ = train.build_optimizer(torch.nn.Linear(3, 2), args)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05, abs=1e-15)


def test_step_capacity_counts_every_row_of_every_micro_batch_on_every_rank():
    args = SimpleNamespace(micro_batch_size=3, seq_len=5, grad_accum=2)
    assert train.step_capacity(args, SimpleNamespace(num_processes=4)) == 3 * 5 * 2 * 4


def test_probe_lengths_counts_real_tokens_and_examples_per_dataset_in_name_order():
    def batch(mask, positions):
        return {"token_mask": torch.tensor(mask, dtype=torch.bool), "position_ids": torch.tensor(positions)}

    # row 0: examples of 2 and 1 tokens, then padding (its positions restart at 0 but are not real); row 1: one of 2
    one = batch([[1, 1, 1, 0], [1, 1, 0, 0]], [[0, 1, 0, 0], [0, 1, 0, 1]])
    other = batch([[1, 1, 1, 1]], [[0, 1, 2, 3]])
    assert train.probe_lengths({"zeta": [one], "alpha": [other, other]}) == [(8, 2), (5, 3)]


def test_counted_datasets_flattens_in_forward_order_and_drops_prompt_tokens_for_response_only():
    first = {"dataset_ids": torch.tensor([[0, 0, 1, -1]]), "labels": torch.tensor([[-100, 5, 6, -100]])}
    second = {"dataset_ids": torch.tensor([[2, 2], [1, -1]]), "labels": torch.tensor([[7, -100], [8, -100]])}
    assert train.counted_datasets([first, second], response_only=False).tolist() == [0, 0, 1, -1, 2, 2, 1, -1]
    assert train.counted_datasets([first, second], response_only=True).tolist() == [-1, 0, 1, -1, 2, -1, 1, -1]
