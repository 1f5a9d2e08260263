"""The training loop: gradient accumulation equivalence, and a real `accelerate launch train.py` run."""

import json

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

import data
import train
from launch import REPO, run_train
from models import load_model


def gradients(grad_accum: int, rows_per_micro_batch: int, batch: dict) -> dict[str, torch.Tensor]:
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator = Accelerator(gradient_accumulation_steps=grad_accum, cpu=True)
    model, _ = load_model("tiny", seed=0)
    model = accelerator.prepare(model)
    micro_batches = [{k: v[i : i + rows_per_micro_batch] for k, v in batch.items()} for i in range(0, 8, rows_per_micro_batch)]
    assert len(micro_batches) == grad_accum
    loss_sum, tokens = train.forward_backward(model, micro_batches, accelerator)
    assert accelerator.sync_gradients
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, loss_sum / tokens


def test_gradient_accumulation_matches_one_big_batch():
    model, tokenizer = load_model("tiny", seed=0)
    train_set, _ = data.load_train_dev(REPO / "data" / "demo")
    stream = data.PackedStream(iter([(n, i) for i in range(40) for n in sorted(train_set)]).__next__, train_set, tokenizer, 128, 8)
    batch, _ = stream.next_batch()
    # rows hold different numbers of assistant tokens: a mean of micro-batch means would be wrong
    per_row = (batch["labels"][:, 1:] != data.IGNORE_INDEX).sum(1)
    assert len(set(per_row.tolist())) > 1
    big, big_loss = gradients(1, 8, batch)
    small, small_loss = gradients(4, 2, batch)
    assert big.keys() == small.keys() and len(big) > 10
    worst = max((big[k] - small[k]).abs().max().item() for k in big)
    assert worst <= 1e-5
    assert abs(big_loss.item() - small_loss.item()) <= 1e-6


def test_smoke_run_as_users_launch_it(tmp_path):
    out = tmp_path / "run"
    result = run_train(out, "--max-steps", "12", "--probe-every", "4", "--log-every", "2", "--save-every", "6", "--probe-batches", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4, 6, 8, 10, 12]
    assert metrics[-1]["loss"] < metrics[0]["loss"] - 0.5
    assert all(set(m) == {"step", "loss", "lr", "tokens", "tokens_per_s", "weights"} for m in metrics)
    updates = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    assert [u["step"] for u in updates] == [4, 8, 12]
    assert updates[-1]["weights_after"] != updates[0]["weights_before"]
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["routing.png", "similarity.png", "weights.png"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out / "final")
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    generated = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    weights = json.loads((out / "final" / "mixture_weights.json").read_text())
    assert weights == pytest.approx(dict(zip(updates[-1]["names"], updates[-1]["weights_after"])))
