"""The training loop: gradient accumulation equivalence, and a real `accelerate launch train.py` run."""

import json
import math

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

from reading import data
import routing
from reading import sources
import train
from launch import REPO, run_train
from models import TargetHead, load_model, token_loss_sum
from test_bad_input import run_main


def moe_layers_of(config) -> list[int]:
    """The layers of a Qwen3-MoE config that have a sparse MoE block (and so a router), by its own rule."""
    return [i for i in range(config.num_hidden_layers)
            if i not in config.mlp_only_layers and config.num_experts > 0 and (i + 1) % config.decoder_sparse_step == 0]


def gradients(grad_accum: int, rows_per_micro_batch: int, batch: dict) -> dict[str, torch.Tensor]:
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator = Accelerator(gradient_accumulation_steps=grad_accum, cpu=True)
    model, _ = load_model("tiny", seed=0)
    head = TargetHead(model)
    model = accelerator.prepare(model)
    micro_batches = [{k: v[i : i + rows_per_micro_batch] for k, v in batch.items()} for i in range(0, 8, rows_per_micro_batch)]
    assert len(micro_batches) == grad_accum
    loss_sum, tokens = train.forward_backward(model, head, micro_batches, accelerator)
    assert accelerator.sync_gradients
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, loss_sum / tokens


def packed_batch(tokenizer) -> dict[str, torch.Tensor]:
    train_set, _ = sources.load_train_dev(REPO / "data" / "demo")
    stream = data.PackedStream(iter([(n, i) for i in range(40) for n in sorted(train_set)]).__next__, train_set, tokenizer, 128, 8)
    return stream.next_batch()[0]


def test_target_head_gives_the_full_logits_loss_and_gradients():
    model, tokenizer = load_model("tiny", seed=0)
    batch = packed_batch(tokenizer)
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}

    def loss_and_gradients(loss_of_model):
        model.zero_grad(set_to_none=True)
        loss = loss_of_model()
        loss.backward()
        return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    full_logits = model(**inputs).logits
    full_loss, full_grads = loss_and_gradients(lambda: token_loss_sum(model(**inputs).logits, batch["labels"]))
    head = TargetHead(model)
    with head.on(batch["labels"]) as targets:
        logits = model(**inputs).logits
    n_targets = int((batch["labels"][:, 1:] != data.IGNORE_INDEX).sum())
    assert n_targets < 0.9 * batch["labels"].numel()  # prompts and padding: many positions without a target
    assert logits.shape == (n_targets, full_logits.shape[-1]) and targets.shape == (n_targets,)
    # the selected rows are exactly the full logits at the positions with a target, in order
    rows, positions = (batch["labels"][:, 1:] != data.IGNORE_INDEX).nonzero(as_tuple=True)
    assert torch.allclose(logits, full_logits[rows, positions], atol=1e-6)
    assert torch.equal(targets, batch["labels"][rows, positions + 1])

    def head_loss():
        with head.on(batch["labels"]) as targets:
            logits = model(**inputs).logits
        return head.loss_sum(logits, targets, batch["labels"])

    loss, grads = loss_and_gradients(head_loss)
    assert abs(loss - full_loss) <= 1e-6 * full_loss
    assert grads.keys() == full_grads.keys() and len(grads) > 10
    # float sums in another order: relative to each gradient's size (summed loss, so gradients are large)
    assert max(((grads[k] - full_grads[k]).abs().max() / full_grads[k].abs().max()).item() for k in grads) <= 1e-5
    # outside the block the head is untouched; a model that bypasses the head module returns full logits
    assert model(**inputs).logits.shape == full_logits.shape
    assert torch.allclose(head.loss_sum(full_logits, targets, batch["labels"]), token_loss_sum(full_logits, batch["labels"]))


def test_gradient_accumulation_matches_one_big_batch():
    model, tokenizer = load_model("tiny", seed=0)
    batch = packed_batch(tokenizer)
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
    """The default job, shortened: what lands in the run folder, and that each piece is what it claims to be."""
    out = tmp_path / "run"
    result = run_train(out, "--max-steps", "12", "--probe-every", "5", "--log-every", "2", "--save-every", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4, 6, 8, 10, 12]
    assert metrics[-1]["loss"] < metrics[0]["loss"] - 0.5
    assert all(set(m) == {"step", "loss", "lr", "tokens", "tokens_per_s", "weights"} for m in metrics)
    # linear warmup over ceil(3% of 12) = 1 step, then cosine decay from the peak (1e-3 for tiny) to 0 at step 12
    for m in metrics:
        assert m["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * (m["step"] - 1) / 11)), abs=1e-12)
    assert metrics[-1]["lr"] == pytest.approx(0.0, abs=1e-15)

    # every update is the default (anchored) rule, written out here, applied to the histograms it logged
    updates = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    assert [u["step"] for u in updates] == [5, 10, 12]  # the last step probes, logs and saves too
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_10", "step_12"]  # the newest 2 kept
    assert {key: updates[0][key] for key in ("update", "distance", "agg", "eta", "c")} == {
        "update": "anchored", "distance": "cos", "agg": "max", "eta": 0.3, "c": 0.05}
    assert {key: updates[0]["rule"][key] for key in ("ema", "pull", "scale", "noise")} == {"ema": 0.5, "pull": 1.0, "scale": "std", "noise": 2.0}
    signal, kept_all = None, []
    for u in updates:
        delta = routing.redundancy(routing.representations(torch.tensor(u["histograms"]), u["layers"]), u["distance"], u["agg"])
        assert u["delta"] == pytest.approx(delta.tolist(), abs=1e-12)
        ema, pull, noise, eta, c, k = u["rule"]["ema"], u["rule"]["pull"], u["rule"]["noise"], u["eta"], u["c"], len(delta)
        # the default 3 probe batches per dataset: delta's standard error over them is measured (routing.redundancy_noise,
        # hand-checked in test_delta_noise.py), and each deviation from the mean keeps (1 - (2 se / deviation)^2)_+ of itself
        se = torch.tensor(u["delta_se"], dtype=torch.float64)
        assert se.shape == (k,) and bool((se > 0).all())
        u_i = delta - delta.mean()
        kept = (1 - (noise * se / u_i) ** 2).clamp(min=0)
        kept_all += kept.tolist()
        assert u["delta_kept"] == pytest.approx(kept.tolist(), abs=1e-12)
        z = kept * u_i / delta.std(correction=0)  # delta in units of its spread over the datasets
        signal = z if signal is None else ema * signal + (1 - ema) * z
        before = torch.tensor(u["weights_before"], dtype=torch.float64)
        log_w = (1 - pull) * torch.log(before / before.sum()) + pull * math.log(1 / k)  # pulled towards uniform
        expected = (1 - c) * torch.softmax(log_w + eta * signal, dim=0) + c / k
        assert u["weights_after"] == pytest.approx(expected.tolist(), abs=1e-12)
        assert max(abs(a - 1 / k) for a in u["weights_after"]) > 1e-3  # and it moved them
    assert any(0 < x < 1 for x in kept_all)  # the garrote cut some deviation (not all kept whole, not all dropped)
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["pairwise.png", "routing.png", "weights.png"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    names = updates[0]["names"]
    assert set(events.Tags()["scalars"]) == {"losses/train", "charts/lr", "charts/tokens_per_s", "charts/grad_norm",
                                             "charts/probe_seconds", *(f"mixture/weight_{n}" for n in names),
                                             *(f"mixture/delta_{n}" for n in names), *(f"losses/dev_{n}" for n in names),
                                             *(f"mixture/planned_epochs_{n}" for n in names)}
    assert [e.step for e in events.Scalars("losses/train")] == [2, 4, 6, 8, 10, 12]
    assert [e.value for e in events.Scalars("losses/train")] == pytest.approx([m["loss"] for m in metrics], rel=1e-6)
    assert [e.value for e in events.Scalars(f"mixture/weight_{names[0]}")] == pytest.approx([u["weights_after"][0] for u in updates], rel=1e-6)
    assert events.Tags()["images"] == ["mixture/routing"]

    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # routers frozen (the default): bitwise the initial ones, while the experts trained
    initial, _ = load_model("tiny", seed=0)
    initial, moe_layers = initial.state_dict(), len(moe_layers_of(initial.config))
    final = load_file(out / "final" / "model.safetensors")
    routers = [name for name in final if name.endswith("mlp.gate.weight")]
    assert len(routers) == moe_layers and all(torch.equal(final[name], initial[name]) for name in routers)
    assert not torch.equal(final["lm_head.weight"], initial["lm_head.weight"])

    model = AutoModelForCausalLM.from_pretrained(out / "final")
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    generated = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    weights = json.loads((out / "final" / "mixture_weights.json").read_text())
    assert weights == pytest.approx(dict(zip(updates[-1]["names"], updates[-1]["weights_after"])))


def test_no_freeze_router_trains_the_routers(tmp_path):
    from safetensors.torch import load_file

    out = run_main(tmp_path, "--max-steps", "2", "--probe-every", "2", "--no-freeze-router", "--out", str(tmp_path / "run"))
    initial, _ = load_model("tiny", seed=0)
    initial, moe_layers = initial.state_dict(), len(moe_layers_of(initial.config))
    final = load_file(out / "final" / "model.safetensors")
    routers = [name for name in final if name.endswith("mlp.gate.weight")]
    assert len(routers) == moe_layers and not any(torch.equal(final[name], initial[name]) for name in routers)
