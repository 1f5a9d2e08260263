"""Where train.py wires tested pieces together, checked against values that do not come from the code under test:
the balance loss as the loop calls it, gradient clipping, the first steps' learning rate, `--probe-source train` for
a dataset not drawn yet, and the ranks' example streams through a two-process launch."""

import json
import math
import re
import subprocess
import sys

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

import train
from launch import REPO
from models import TargetHead, load_model
from models.families import BalanceLoss
from test_bad_input import run_main, small_data
from test_distributed import ENV, launch_two


# --------------------------------------------------------------------------------------------------
# The balance loss as forward_backward calls it


def balance_losses(model, micro_batches: list[dict]) -> list[float]:
    """The balance-loss values train.forward_backward adds, one per micro-batch (read where the loop reads them)."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator = Accelerator(gradient_accumulation_steps=len(micro_batches), cpu=True)
    head, balance = TargetHead(model), BalanceLoss(model)
    values, value = [], balance.value

    def recorded(outputs):
        values.append(float(value(outputs).detach()))
        return values[-1] * torch.ones((), requires_grad=True)

    balance.value = recorded
    prepared = accelerator.prepare(model)
    train.forward_backward(prepared, head, micro_batches, accelerator, balance, aux_loss_coef=0.01)
    return values


def row(tokens: list[int], width: int, pad_id: int) -> dict[str, torch.Tensor]:
    """One row by hand: `tokens` (one example, every one a target) then padding up to `width`."""
    n = len(tokens)
    ids = torch.tensor([tokens + [pad_id] * (width - n)])
    return {"input_ids": ids, "labels": torch.where(torch.arange(width) < n, ids, -100),
            "position_ids": torch.arange(width)[None] * (torch.arange(width)[None] < n),
            "token_mask": (torch.arange(width) < n)[None], "dataset_ids": torch.where(torch.arange(width) < n, 0, -1)[None]}


def test_balance_loss_as_the_loop_calls_it_counts_real_tokens_only():
    """A row padded to 48 tokens gives the loop the balance loss of the same 20 tokens with no padding at all."""
    model, tokenizer = load_model("tiny", seed=0)
    tokens = tokenizer("The quick brown fox jumps over the lazy dog, twice, and then once more.")["input_ids"][:20]
    assert len(tokens) == 20
    padded, unpadded = balance_losses(model, [row(tokens, 48, tokenizer.pad_token_id), row(tokens, 20, tokenizer.pad_token_id)])
    assert padded == pytest.approx(unpadded, rel=1e-6)
    # negative control: the padding does route, and counted it would change the loss
    everything = row(tokens, 48, tokenizer.pad_token_id) | {"token_mask": torch.ones(1, 48, dtype=torch.bool)}
    (counted,) = balance_losses(model, [everything])
    assert abs(counted - unpadded) > 1e-3 * unpadded


# --------------------------------------------------------------------------------------------------
# Gradient clipping and the learning rate of every step, seen at the optimizer's step


@pytest.fixture(scope="module", params=[1, 2], ids=lambda n: f"grad_accum{n}")
def steps_seen(request, tmp_path_factory):
    """For each optimizer step of a 6-step run with `--grad-accum` 1 or 2: the learning rate the step used and the
    norm of the gradient it applied, read inside AdamW.step."""
    seen, step = [], torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        seen.append((self.param_groups[0]["lr"], float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))))
        return step(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        tmp = tmp_path_factory.mktemp(f"accum{request.param}")
        run_main(tmp, "--max-steps", "6", "--warmup-ratio", "0.5", "--lr", "1e-3", "--max-grad-norm", "0.05",
                 "--grad-accum", str(request.param), "--probe-every", "6", "--save-every", "6", "--mix", "static",
                 "--out", str(tmp / "run"))
    finally:
        torch.optim.AdamW.step = step
    return seen


def test_every_step_applies_a_gradient_clipped_to_exactly_max_grad_norm(steps_seen):
    """A tiny model's gradient at these settings is far above 0.05, so every applied gradient has norm 0.05."""
    norms = [norm for _, norm in steps_seen]
    assert len(norms) == 6
    assert norms == pytest.approx([0.05] * 6, rel=1e-4)


def test_the_first_step_uses_the_warmup_lr_and_warmup_lasts_its_steps(steps_seen):
    """--warmup-ratio 0.5 of 6 steps: 3 warmup steps at 1/3, 2/3 and 3/3 of the peak, then cosine from the peak to
    0 over the remaining 3 steps (the LR of a step is the schedule at that step's start), written out by hand."""
    peak = 1e-3
    expected = [peak / 3, 2 * peak / 3, peak, peak, peak * 0.75, peak * 0.25]
    assert [lr for lr, _ in steps_seen] == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# --probe-source train: a dataset not drawn yet gets the neutral delta


def test_a_dataset_not_drawn_yet_gets_the_mean_delta_of_the_others_through_train(tmp_path):
    """Static weights that give dataset `c` almost nothing: the first period never draws it, and its logged delta
    (as every dataset's not drawn yet) is the mean of the drawn datasets' deltas (no evidence either way), not one
    that sets it apart."""
    folder = small_data(tmp_path / "data", names=("a", "b", "c", "d"))
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"a": 1.0, "b": 1.0, "c": 1e-12, "d": 1.0}))
    out = run_main(tmp_path, "--data", str(folder), "--out", str(tmp_path / "run"), "--probe-source", "train",
                   "--mix", "static", "--init-weights", str(weights), "--max-steps", "1", "--probe-every", "1",
                   "--grad-accum", "3")
    (update,) = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    unseen = [update["names"].index(name) for name in update["routing_unseen"]]
    seen = [i for i in range(4) if i not in unseen]
    assert 2 in unseen and len(seen) >= 2 and all(update["probe_tokens"][i] == 0 for i in unseen)
    delta = update["delta"]
    mean = sum(delta[i] for i in seen) / len(seen)
    assert all(delta[i] == pytest.approx(mean, rel=1e-12) for i in unseen)
    assert max(delta[i] for i in seen) - min(delta[i] for i in seen) > 1e-6  # the mean is neither the largest nor the smallest


# --------------------------------------------------------------------------------------------------
# The ranks' example streams


# train.py on this rank, with every micro-batch it trains on decoded to the record ids in it (in order), written to
# OUT/drawn_rank_<rank>.json at the end: what the rank trained on, read from its inputs, not from the sampler.
DRAWN = f"""
import json, os, re, sys
sys.path.insert(0, {str(REPO)!r})
sys.argv[0] = "train.py"
import tyro
import train
args = tyro.cli(train.Args)
tokenizer, drawn, forward_backward = train.load_tokenizer(args.model), [], train.forward_backward
def recording(model, head, micro_batches, *rest, **kwargs):
    for batch in micro_batches:
        for row in batch["input_ids"]:
            drawn.extend(re.findall(r"record (\\w+)", tokenizer.decode(row)))
    return forward_backward(model, head, micro_batches, *rest, **kwargs)
train.forward_backward = recording
train.main(args)
(args.out / f"drawn_rank_{{os.environ['RANK']}}.json").write_text(json.dumps(drawn))
"""


def test_two_ranks_train_on_different_examples(tmp_path):
    """Two processes through train.py: the ranks' first steps hold no example in common (a rank that drew the same
    stream as another, or its own shuffle of the whole dataset, would train on some examples twice). Records name themselves in their text."""
    folder = tmp_path / "data"
    for split, count in (("train", 40), ("dev", 4)):
        (folder / split).mkdir(parents=True)
        for name in ("x", "y"):
            lines = [json.dumps({"instruction": f"Say the name of record {name}{i}.", "output": f"It is {name}{i}."})
                     for i in range(count)]
            target = folder / split / name / "part.jsonl" if split == "train" else folder / split / f"{name}.jsonl"
            target.parent.mkdir(exist_ok=True)
            target.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    command = launch_two(out, "--data", str(folder), "--micro-batch-size", "2", "--seq-len", "128", "--probe-batches", "1",
                         "--max-steps", "1", "--mix", "static")
    launcher = command.index("train.py")
    script = tmp_path / "drawn.py"
    script.write_text(DRAWN)
    result = subprocess.run([*command[:launcher], str(script), *command[launcher + 1 :]], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (json.loads((out / f"drawn_rank_{rank}.json").read_text()) for rank in (0, 1))
    assert len(rank0) >= 4 and len(rank1) >= 4
    assert all(re.fullmatch(r"[xy]\d+", record) for record in rank0 + rank1)
    # one data order shared out among the ranks: within a pass no example goes to both (a step is far less than one)
    assert not set(rank0) & set(rank1), f"both ranks trained on {sorted(set(rank0) & set(rank1))}"
    # each rank's examples: every one once (a step holds far less than a pass)
    assert len(set(rank0)) == len(rank0) and len(set(rank1)) == len(rank1)
