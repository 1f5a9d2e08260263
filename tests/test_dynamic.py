"""The dynamic mixture end to end: redundant datasets lose weight; probe-only; strategies through train.py."""

import json
import math
import shutil
import time

import pytest

from transformers import AutoConfig

import mixture
from models import TINY_DIR
from test_bad_input import DEMO, run_main, small_data


def four_datasets_two_alike(root):
    """code_a and code_b are disjoint halves of the same source; math and explain stand apart."""
    for split in ("train", "dev"):
        (root / split).mkdir(parents=True)
    code = (DEMO / "train" / "code" / "part-000.jsonl").read_text().splitlines()
    code_dev = (DEMO / "dev" / "code.jsonl").read_text().splitlines()
    for name, lines, dev in (("code_a", code[:600], code_dev[:40]), ("code_b", code[600:], code_dev[40:])):
        (root / "train" / name).mkdir()
        (root / "train" / name / "part.jsonl").write_text("\n".join(lines) + "\n")
        (root / "dev" / f"{name}.jsonl").write_text("\n".join(dev) + "\n")
    for name in ("math", "explain"):
        shutil.copytree(DEMO / "train" / name, root / "train" / name)
        shutil.copy(DEMO / "dev" / f"{name}.jsonl", root / "dev" / f"{name}.jsonl")
    return root


@pytest.mark.parametrize("distance, agg", [("cos", "max"), ("l2", "min")])
def test_datasets_from_the_same_source_get_the_lowest_weights(tmp_path, distance, agg):
    """A dataset's nearest neighbour decides its redundancy here (max similarity / min distance): with the mean
    over all others, on this barely trained tiny model, the pair's closeness is diluted to within noise."""
    folder = four_datasets_two_alike(tmp_path / "data")
    # ~5k probe tokens per dataset: enough for routing statistics to tell datasets apart
    out = run_main(tmp_path, "--data", str(folder), "--max-steps", "4", "--probe-every", "2", "--probe-batches", "3",
                   "--micro-batch-size", "8", "--seq-len", "256", "--distance", distance, "--agg", agg,
                   "--out", str(tmp_path / "run"))
    updates = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    assert [u["step"] for u in updates] == [2, 4]
    final = dict(zip(updates[-1]["names"], updates[-1]["weights_after"]))
    lowest = sorted(final, key=final.get)[:2]
    assert sorted(lowest) == ["code_a", "code_b"], final
    for update in updates:  # the two halves also route most alike (highest cosine, smallest l2 distance)
        closeness = update["pairwise"] if distance == "cos" else [[-d for d in row] for row in update["pairwise"]]
        a, b = update["names"].index("code_a"), update["names"].index("code_b")
        others = [closeness[i][j] for i in range(4) for j in range(4) if i < j and (i, j) != (a, b)]
        assert closeness[a][b] > max(others)


def test_probe_only_writes_weights_in_init_weights_format(tmp_path):
    """Three datasets and the paper's rule named in full: the written weights are one update from uniform by the
    deltas of the histograms the probe logged, computed here by a second, plain implementation."""
    folder = small_data(tmp_path / "data", names=("a", "b", "c"))
    started = time.perf_counter()
    out = run_main(tmp_path, "--data", str(folder), "--probe-only", "--out", str(tmp_path / "probe"), "--update", "paper",
                   "--eta", "10", "--c", "0.05", "--distance", "cos", "--agg", "mean", "--layers", "last")
    elapsed = time.perf_counter() - started
    weights = json.loads((out / "probe_weights.json").read_text())
    assert mixture.initial_weights(str(out / "probe_weights.json"), ["a", "b", "c"], {}) == pytest.approx(list(weights.values()))
    update = json.loads((out / "mixture.jsonl").read_text())
    assert update["step"] == 0 and not (out / "final").exists()
    expected_keys = {"step", "strategy", "names", "weights_before", "weights_proposed", "weights_after", "capped",
                     "cap_infeasible", "planned_epochs", "epochs_drawn", "delta_spread", "delta_se", "delta_kept", "signal", "histograms",
                     "probe_source", "routing_carried_over", "routing_unseen", "layers", "distance", "agg", "update", "rule", "max_epochs", "eta", "c", "pairwise",
                     "delta", "probe_tokens", "dev_loss", "seconds"}
    assert set(update) == expected_keys
    assert 0 < update["seconds"] < elapsed  # the probe's own time, within the run's (TensorBoard's probe_seconds)
    histograms = update["histograms"]  # k x L x E counts over every real token, top-k slots each
    config = AutoConfig.from_pretrained(TINY_DIR)
    assert [len(histograms), len(histograms[0]), len(histograms[0][0])] == [3, config.num_hidden_layers, config.num_experts]
    assert all(sum(layer) == config.num_experts_per_tok * tokens for h, tokens in zip(histograms, update["probe_tokens"]) for layer in h)
    # by hand: the last layer's counts as frequencies, delta_i = 1 - the mean cosine with the others,
    # w = 0.95 softmax(log 1/3 + 10 delta) + 0.05 / 3
    g = [[x / sum(h[-1]) for x in h[-1]] for h in histograms]
    cos = [[sum(p * q for p, q in zip(gi, gj)) / math.sqrt(sum(p * p for p in gi) * sum(q * q for q in gj)) for gj in g]
           for gi in g]
    delta = [1 - sum(cos[i][j] for j in range(3) if j != i) / 2 for i in range(3)]
    assert update["delta"] == pytest.approx(delta, abs=1e-9)
    exps = [math.exp(math.log(1 / 3) + 10 * d) for d in delta]
    expected = [0.95 * e / sum(exps) + 0.05 / 3 for e in exps]
    assert list(weights.values()) == pytest.approx(expected, abs=1e-9) and list(weights) == ["a", "b", "c"]
    assert max(expected) - min(expected) > 1e-3  # the probe moved them: uniform weights would fail


def test_cycle_with_one_hot_start_is_sequential_training(tmp_path):
    folder = small_data(tmp_path / "data")
    one_hot = tmp_path / "one_hot.json"
    one_hot.write_text(json.dumps({"a": 1.0, "b": 1e-9, "c": 1e-9}))
    out = run_main(tmp_path, "--data", str(folder), "--mix", "cycle", "--init-weights", str(one_hot),
                   "--max-steps", "6", "--probe-every", "2", "--out", str(tmp_path / "run"))
    updates = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    leaders = [u["names"][max(range(3), key=u["weights_after"].__getitem__)] for u in updates]
    assert leaders == ["b", "c", "a"]


def test_refloss_moves_weight_to_the_dataset_furthest_above_its_reference(tmp_path):
    folder = small_data(tmp_path / "data")
    reference = tmp_path / "ref.json"
    reference.write_text(json.dumps({"a": 0.0, "b": 100.0, "c": 100.0}))  # a is far above its reference
    out = run_main(tmp_path, "--data", str(folder), "--mix", "refloss", "--ref-loss", str(reference), "--update", "paper", "--eta", "1",
                   "--max-steps", "2", "--probe-every", "2", "--out", str(tmp_path / "run"))
    update = json.loads((out / "mixture.jsonl").read_text())
    assert update["delta"] == pytest.approx([loss - ref for loss, ref in zip(update["dev_loss"], [0.0, 100.0, 100.0])])
    assert update["weights_after"][0] > 0.9


def test_init_weights_size_starts_in_proportion_to_the_train_sizes(tmp_path):
    folder = small_data(tmp_path / "data", per_dataset=40)
    for name, size in (("a", 10), ("b", 20)):
        part = folder / "train" / name / "part.jsonl"
        part.write_text("\n".join(part.read_text().splitlines()[:size]) + "\n")
    out = run_main(tmp_path, "--data", str(folder), "--mix", "static", "--init-weights", "size", "--max-steps", "2",
                   "--probe-every", "2", "--out", str(tmp_path / "run"))
    update = json.loads((out / "mixture.jsonl").read_text())
    assert update["names"] == ["a", "b", "c"]
    assert update["weights_before"] == pytest.approx([10 / 70, 20 / 70, 40 / 70], abs=1e-12)
    assert update["weights_after"] == pytest.approx(update["weights_before"], abs=1e-12)  # static keeps them


@pytest.mark.parametrize("mix", ["random", "random-batch"])
def test_random_strategies_draw_new_weights_every_period_from_the_seed(tmp_path, mix):
    folder = small_data(tmp_path / "data")

    def weights(seed: int, run: str) -> list[list[float]]:
        out = run_main(tmp_path, "--data", str(folder), "--mix", mix, "--max-steps", "4", "--probe-every", "1",
                       "--seed", str(seed), "--out", str(tmp_path / run))
        return [json.loads(line)["weights_after"] for line in (out / "mixture.jsonl").read_text().splitlines()]

    first, again, other = weights(0, "first"), weights(0, "again"), weights(1, "other")
    assert len(first) == 4 and first == again  # bitwise: (seed, period) decides
    assert first != other
    assert len({tuple(w) for w in first}) > 1  # new weights each period
    for w in first:
        assert sum(w) == pytest.approx(1.0, abs=1e-12) and min(w) > 0
        if mix == "random-batch":  # one dataset takes (almost) everything
            assert sorted(w) == pytest.approx([mixture.RANDOM_BATCH_EPS] * 2 + [1 - 2 * mixture.RANDOM_BATCH_EPS], abs=1e-12)
