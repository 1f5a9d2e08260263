"""The probe as train.py runs it, against numbers computed without any of its code.

Every dev example is run alone through the plain Hugging Face model (full logits, the routers' own
logits via `output_router_logits`, no packing, no `TargetHead`, no `RoutingCapture`); its top-k
experts and its next-token losses are summed per dataset by hand. `train.py --probe-only` packs the
same examples several to a row and must log exactly those counts, those losses, the redundancy of
those histograms and the paper's update of them. The routers are scaled up so that routing is
decisive: a token's top-k experts do not depend on float rounding, packed or alone. Not so far that the
routers' softmax underflows: the model ranks float32 probabilities, and where the k-th and (k+1)-th round
to the same value (0) its pick among them is arbitrary and no longer that of the logits.
"""

import json

import pytest
import torch

from reading import data
import mixture
import routing
from reading import sources
from models import load_model
from test_bad_input import run_main, small_data

ROUTER_SCALE = 8.0
PROBE = ["--micro-batch-size", "2", "--seq-len", "256", "--probe-batches", "8"]  # every dev example, several per row


@pytest.fixture(scope="module")
def decisive(tmp_path_factory):
    """A local model folder (the tiny MoE with scaled routers) and a data folder with three datasets."""
    root = tmp_path_factory.mktemp("probe")
    model, tokenizer = load_model("tiny", seed=3)
    with torch.no_grad():
        for _, router in routing.find_routers(model):
            router.weight.mul_(ROUTER_SCALE)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root / "model", small_data(root / "data")


def alone(model_dir, data_dir, response_only: bool) -> dict:
    """Per dataset (sorted): expert counts (L, E), summed next-token loss, target and counted tokens, each example
    run by itself."""
    model, tokenizer = load_model(str(model_dir))
    model.eval()
    top_k = model.config.num_experts_per_tok
    result = {}
    for name, conversations in sorted(sources.load_split(data_dir, "dev").items()):
        counts = torch.zeros(model.config.num_hidden_layers, model.config.num_experts, dtype=torch.long)
        loss_sum, targets, counted, margin, runner_up = 0.0, 0, 0, float("inf"), float("inf")
        for messages in conversations:
            example = data.encode(tokenizer, messages, 256)
            input_ids, labels = torch.tensor([example.input_ids]), torch.tensor(example.labels)
            with torch.no_grad():
                out = model(input_ids=input_ids, output_router_logits=True)
            mask = labels != data.IGNORE_INDEX if response_only else torch.ones_like(labels, dtype=torch.bool)
            for layer, logits in enumerate(out.router_logits):
                ranked = logits[mask].sort(dim=-1, descending=True).values
                margin = min(margin, float((ranked[:, top_k - 1] - ranked[:, top_k]).min()))
                runner_up = min(runner_up, float(logits[mask].softmax(dim=-1, dtype=torch.float32).sort(dim=-1, descending=True).values[:, top_k].min()))
                chosen = logits[mask].topk(top_k, dim=-1).indices
                counts[layer] += torch.bincount(chosen.flatten(), minlength=model.config.num_experts)
            loss_sum += float(torch.nn.functional.cross_entropy(out.logits[0, :-1], labels[1:], reduction="sum"))
            targets += int((labels[1:] != data.IGNORE_INDEX).sum())
            counted += int(mask.sum())
        assert margin > 1e-4, f"routing of {name!r} is not decisive enough for an exact comparison"
        assert runner_up > torch.finfo(torch.float32).tiny, f"the routers' softmax underflows on {name!r}: their top-k is not that of the logits"
        result[name] = {"histogram": counts, "loss_sum": loss_sum, "targets": targets, "counted": counted}
    return result


@pytest.mark.parametrize(
    "probe_tokens, layers, distance, agg",
    [("all", "all", "cos", "mean"), ("response", "last", "l2", "max")],
)
def test_probe_only_logs_the_counts_losses_and_update_of_examples_run_alone(tmp_path, decisive, probe_tokens, layers, distance, agg):
    model_dir, data_dir = decisive
    out = run_main(tmp_path, "--model", str(model_dir), "--data", str(data_dir), *PROBE, "--probe-only",
                   "--probe-tokens", probe_tokens, "--layers", layers, "--distance", distance, "--agg", agg,
                   "--mix", "dynamic", "--update", "paper", "--eta", "10", "--c", "0.05", "--out", str(tmp_path / "probe"))
    record = json.loads((out / "mixture.jsonl").read_text())
    expected = alone(model_dir, data_dir, response_only=probe_tokens == "response")
    assert record["names"] == sorted(expected) == ["a", "b", "c"]

    histograms = torch.stack([expected[name]["histogram"] for name in record["names"]])
    assert record["histograms"] == histograms.tolist()  # exact integer counts
    assert record["probe_tokens"] == [expected[name]["counted"] for name in record["names"]]
    dev_loss = [expected[name]["loss_sum"] / expected[name]["targets"] for name in record["names"]]
    assert record["dev_loss"] == pytest.approx(dev_loss, rel=1e-5)

    g = routing.representations(histograms, layers)
    delta = routing.redundancy(g, distance, agg)
    other_layers = routing.redundancy(routing.representations(histograms, "last" if layers == "all" else "all"), distance, agg)
    assert (delta - other_layers).abs().max() > 1e-3  # the choice of layers matters for these histograms
    assert record["delta"] == pytest.approx(delta.tolist(), abs=1e-12)
    weights = mixture.update_weights([1 / 3] * 3, delta, eta=10.0, c=0.05)
    assert record["weights_after"] == pytest.approx(weights.tolist(), abs=1e-12)
    assert json.loads((out / "probe_weights.json").read_text()) == pytest.approx(dict(zip(record["names"], weights.tolist())), abs=1e-12)


def test_refloss_delta_is_the_dev_loss_of_examples_run_alone_minus_the_reference(tmp_path, decisive):
    model_dir, data_dir = decisive
    reference = {"a": 1.0, "b": 2.0, "c": 3.0}
    (tmp_path / "ref.json").write_text(json.dumps(reference))
    out = run_main(tmp_path, "--model", str(model_dir), "--data", str(data_dir), *PROBE, "--probe-only",
                   "--mix", "refloss", "--ref-loss", str(tmp_path / "ref.json"), "--update", "paper", "--eta", "1",
                   "--out", str(tmp_path / "refloss"))
    record = json.loads((out / "mixture.jsonl").read_text())
    expected = alone(model_dir, data_dir, response_only=False)
    dev_loss = [expected[name]["loss_sum"] / expected[name]["targets"] for name in record["names"]]
    assert record["delta"] == pytest.approx([loss - reference[name] for loss, name in zip(dev_loss, record["names"])], rel=1e-5)
    weights = mixture.update_weights([1 / 3] * 3, record["delta"], eta=1.0, c=0.05)
    assert record["weights_after"] == pytest.approx(weights.tolist(), abs=1e-12)
