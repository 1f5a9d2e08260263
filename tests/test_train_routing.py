"""`--probe-source train`: routing counted per dataset in the training forwards equals a separate eval-mode
forward over the same packed batches (for a model without router noise), on 1 and on 2 processes, and a run
that uses it resumes exactly."""

import json
import shutil

import pytest
import torch
import transformers
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file
from test_caps import small_one_favoured
from test_distributed import read_jsonl, run_two

from reading import data
import routing
from reading import sources
import train
from launch import REPO, TINY_RUN, run_train
from models import TargetHead, load_model
from sampler import MixtureSampler

DEMO = REPO / "data" / "demo"


def demo_batches(tokenizer, seed: int, rank: int, count: int, rows: int = 4, seq_len: int = 128, world: int = 1) -> list[dict]:
    """The first `count` micro-batches a uniform, static run of `world` processes draws on `rank` (what train.py's
    stream gives). Each also holds `dataset_of_example`: every token's dataset found by looking its whole example's
    tokens up among the examples drawn of each dataset (-1 at padding), an oracle that does not use the stream's
    dataset tagging."""
    train_sets, _ = sources.load_train_dev(DEMO)
    sizes = {name: len(records) for name, records in train_sets.items()}
    sampler = MixtureSampler(sizes, dict.fromkeys(sizes, 0.25), seed=seed, rank=rank, world=world)
    drawn = []

    def draw():
        drawn.append(sampler.draw())
        return drawn[-1]

    stream = data.PackedStream(draw, train_sets, tokenizer, seq_len, rows, sampler.upcoming)
    batches = [stream.next_batch()[0] for _ in range(count)]
    names, of_tokens = sorted(sizes), {}
    for name, index in drawn:
        of_tokens.setdefault(tuple(stream.example(name, index).input_ids), set()).add(sorted(sizes).index(name))
    for batch in batches:
        batch["dataset_of_example"] = torch.full_like(batch["input_ids"], -1)
        for r in range(len(batch["input_ids"])):
            real = int(batch["token_mask"][r].sum())
            starts = [i for i in range(real) if batch["position_ids"][r, i] == 0] + [real]
            for start, end in zip(starts, starts[1:]):
                (dataset,) = of_tokens[tuple(batch["input_ids"][r, start:end].tolist())]  # one dataset: no ambiguity
                batch["dataset_of_example"][r, start:end] = dataset
    assert len(names) == 4
    return batches


@torch.no_grad()
def eval_counts(model, routers, batches, num_datasets: int, response_only: bool = False) -> torch.Tensor:
    """Per-dataset histograms from an eval-mode forward of each batch, one masked histogram() per dataset."""
    model.eval()
    counts = 0
    with routing.RoutingCapture(routers) as capture:
        for batch in batches:
            per_dataset = []
            for d in range(num_datasets):
                model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
                mask = batch["dataset_of_example"] == d
                if response_only:
                    mask &= batch["labels"] != data.IGNORE_INDEX
                per_dataset.append(capture.histogram(mask))
            counts = counts + torch.stack(per_dataset)
    return counts


def train_mode_counts(model, routers, batches, num_datasets: int, response_only: bool = False):
    """What train.py counts with --probe-source train: train.forward_backward over the batches as one step."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator = Accelerator(gradient_accumulation_steps=len(batches), cpu=True)
    head = TargetHead(model)
    prepared = accelerator.prepare(model)
    prepared.train()
    trained = routing.PeriodCounts(routing.RoutingCapture(routers), num_datasets)
    with trained.counting(train.counted_datasets(batches, response_only)):
        train.forward_backward(prepared, head, batches, accelerator)
    assert any(p.grad is not None for p in model.parameters())  # a real training step's forward and backward
    return trained.take()


@pytest.mark.parametrize("response_only", [False, True])
def test_training_forwards_count_what_an_eval_forward_counts(response_only):
    model, tokenizer = load_model("tiny", seed=1)
    routers = routing.find_routers(model)
    routing.freeze_routers(model, routers)
    batches = demo_batches(tokenizer, seed=4, rank=0, count=2)
    histograms, tokens = train_mode_counts(model, routers, batches, 4, response_only)
    expected = eval_counts(model, routers, batches, 4, response_only)  # the same parameters: no optimizer step
    assert histograms.dtype == torch.int64 and torch.equal(histograms, expected)
    counted = [sum(int(((b["dataset_of_example"] == d) & ((b["labels"] != data.IGNORE_INDEX) | (not response_only))).sum())
                   for b in batches) for d in range(4)]
    assert tokens == counted and min(counted) > 0
    assert (histograms.sum(-1) == 2 * torch.tensor(counted)[:, None]).all()  # top-2: two slots per token, per layer


def test_router_noise_makes_training_counts_differ():
    """Negative control: Mixtral's router jitter (on in train mode only) changes what the training forwards route,
    which is the one way `--probe-source train` sees other routing than the eval-mode dev probe."""
    _, tokenizer = load_model("tiny", seed=0)
    config = transformers.MixtralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        num_local_experts=8, num_experts_per_tok=2, router_jitter_noise=0.5,
                                        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.config.use_cache = False
    routers = routing.find_routers(model)
    batches = demo_batches(tokenizer, seed=4, rank=0, count=1)
    histograms, _ = train_mode_counts(model, routers, batches, 4)
    assert not torch.equal(histograms, eval_counts(model, routers, batches, 4))
    model.config.router_jitter_noise = 0.0
    for module in model.modules():
        if hasattr(module, "jitter_noise"):
            module.jitter_noise = 0.0
    histograms, _ = train_mode_counts(model, routers, batches, 4)
    assert torch.equal(histograms, eval_counts(model, routers, batches, 4))


# A static run whose learning rate is far below float32's resolution at the weights' scale (--lr must be > 0) keeps
# the parameters at their initial values, so every period's routing can be recomputed afterwards from the batches the
# run drew (the sampler and the packing are deterministic from the seed).
FROZEN = [*TINY_RUN, "--mix", "static", "--lr", "1e-30", "--probe-source", "train", "--max-steps", "6", "--probe-every", "3",
          "--seed", "5"]


def expected_updates(world: int, steps: int = 6, every: int = 3) -> list[list]:
    """Per update, the histograms of eval-mode forwards over every batch all `world` ranks trained on in its period."""
    model, tokenizer = load_model("tiny", seed=5)
    routers = routing.find_routers(model)
    per_rank = [demo_batches(tokenizer, seed=5, rank=rank, count=steps, world=world) for rank in range(world)]
    return [eval_counts(model, routers, [b for batches in per_rank for b in batches[start : start + every]], 4).tolist()
            for start in range(0, steps, every)]


def test_one_and_two_processes_count_every_training_token_of_the_period(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    result = run_train(one, *FROZEN)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_two(two, *FROZEN, "--debug-checks")
    assert result.returncode == 0, result.stderr[-3000:]
    for out, world in ((one, 1), (two, 2)):
        updates = read_jsonl(out / "mixture.jsonl")
        assert [u["step"] for u in updates] == [3, 6] and all(u["probe_source"] == "train" for u in updates)
        assert [u["histograms"] for u in updates] == expected_updates(world)  # integer counts: exact
        assert all(u["dev_loss"] is None for u in updates)  # static needs no dev loss: no dev probe ran
    # two processes: the logged histograms are the sum of the two ranks' own counts, which differ (their own batches)
    ranks = [[r for r in read_jsonl(two / "debug" / f"rank_{rank}.jsonl") if "probe_histograms" in r] for rank in (0, 1)]
    for update, share0, share1 in zip(read_jsonl(two / "mixture.jsonl"), *ranks):
        assert (torch.tensor(share0["probe_histograms"]) + torch.tensor(share1["probe_histograms"])).tolist() == update["histograms"]
        assert share0["probe_histograms"] != share1["probe_histograms"]


def test_run_with_train_probe_resumes_exactly(tmp_path):
    """A checkpoint in the middle of a period (save every 4, update every 3) holds the counts so far, the anchored
    rule's moving average and the strategy's weights: resumed from it, the run logs bitwise the same updates (capped
    ones among them) and ends with the same model."""
    folder = small_one_favoured(tmp_path / "data")
    flags = [*TINY_RUN, "--data", str(folder), "--probe-source", "train", "--max-steps", "10", "--probe-every", "3",
             "--save-every", "4", "--keep-checkpoints", "3", "--seed", "2", "--max-epochs", "0.5"]  # digits: <= 6 draws
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    for out in (whole, resumed):
        result = run_train(out, *flags)
        assert result.returncode == 0, result.stderr[-3000:]
    # as if the second run had been killed right after its step-4 checkpoint (mid-period: the period is steps 4-6)
    shutil.rmtree(resumed / "final")
    for later in (resumed / "checkpoints").iterdir():
        if later.name != "step_4":
            shutil.rmtree(later)
    state = json.loads((resumed / "checkpoints" / "step_4" / "routemix_state_0.json").read_text())
    assert state["trained_routing"]["histograms"] is not None and state["mixture"]["signal"] is not None
    result = run_train(resumed, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and "checkpoints/step_4 at step 4" in result.stdout

    def logged(out):
        updates = read_jsonl(out / "mixture.jsonl")
        for update in updates:
            del update["seconds"]  # wall-clock
        return updates, read_jsonl(out / "metrics.jsonl")

    expected, got = logged(whole), logged(resumed)
    assert [u["step"] for u in got[0]] == [3, 6, 9, 10]
    assert got[0] == expected[0] and [m["loss"] for m in got[1]] == [m["loss"] for m in expected[1]]
    assert any(u["capped"] == ["digits"] for u in expected[0])
    a, b = load_file(whole / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
