"""Weighting strategies and where the first weights come from."""

import json
import math

import pytest
import torch

import mixture
from mixture import (
    RANDOM_BATCH_EPS,
    STRATEGIES,
    Mixture,
    Rule,
    Usage,
    cap_weights,
    initial_weights,
    load_ref_loss,
    max_draws,
    next_weights,
    refloss_delta,
    update_weights,
)

NAMES = ["alpaca", "code", "math", "chat"]


def _is_distribution(weights):
    return len(weights) == len(NAMES) and all(w > 0 for w in weights) and math.isclose(sum(weights), 1.0)


def test_static_keeps_weights():
    assert next_weights("static", [0.1, 0.2, 0.3, 0.4], period=3, seed=0) == [0.1, 0.2, 0.3, 0.4]


def test_cycle_rotates_by_one_dataset_each_period():
    weights = [1.0, 0.0, 0.0, 0.0]
    seen = []
    for period in range(4):
        weights = next_weights("cycle", weights, period=period, seed=0)
        seen.append(weights)
    assert seen == [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]
    assert next_weights("cycle", [0.1, 0.2, 0.3, 0.4], period=0, seed=0) == [0.4, 0.1, 0.2, 0.3]


def test_random_is_a_fresh_distribution_fixed_by_seed_and_period():
    uniform = [0.25] * 4
    first = next_weights("random", uniform, period=5, seed=7)
    assert _is_distribution(first)
    # Same (seed, period) on another rank or after a resume: the same weights, whatever the input weights.
    assert next_weights("random", [0.7, 0.1, 0.1, 0.1], period=5, seed=7) == first
    assert next_weights("random", uniform, period=6, seed=7) != first
    assert next_weights("random", uniform, period=5, seed=8) != first
    # Dirichlet(1) has mean 1/k per dataset: the average over 2000 periods is within 0.02 of 0.25.
    draws = [next_weights("random", uniform, period=p, seed=0) for p in range(2000)]
    for column in range(4):
        assert sum(d[column] for d in draws) / len(draws) == pytest.approx(0.25, abs=0.02)


def test_random_batch_gives_one_dataset_almost_everything():
    chosen = []
    for period in range(40):
        weights = next_weights("random-batch", [0.25] * 4, period=period, seed=3)
        assert weights == next_weights("random-batch", [0.1, 0.2, 0.3, 0.4], period=period, seed=3)
        assert _is_distribution(weights)
        winner = max(range(4), key=weights.__getitem__)
        assert weights[winner] == pytest.approx(1 - 3 * RANDOM_BATCH_EPS)
        assert sorted(weights)[:3] == [RANDOM_BATCH_EPS] * 3
        chosen.append(winner)
    assert set(chosen) == {0, 1, 2, 3}  # 40 draws among 4 datasets hit every one


def test_dynamic_and_refloss_apply_the_update_rule():
    # delta = [ln 2, 0, 0, 0] with eta = 1: softmax gives [2/5, 1/5, 1/5, 1/5]; c = 0.2 -> 0.8 w + 0.05.
    delta = [math.log(2), 0.0, 0.0, 0.0]
    expected = [0.37, 0.21, 0.21, 0.21]
    for strategy in ("dynamic", "refloss"):
        weights = next_weights(strategy, [0.25] * 4, period=0, seed=0, delta=delta, eta=1.0, c=0.2)
        assert weights == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="delta"):
        next_weights("dynamic", [0.25] * 4, period=0, seed=0)


def test_refloss_delta_is_dev_minus_reference():
    assert refloss_delta([2.5, 1.0], [2.0, 1.5]).tolist() == [0.5, -0.5]
    with pytest.raises(ValueError):
        refloss_delta([1.0, 2.0], [1.0])


def test_every_strategy_is_known_and_unknown_ones_are_rejected():
    for strategy in STRATEGIES:
        weights = next_weights(strategy, [0.25] * 4, period=1, seed=0, delta=[0.0] * 4)
        assert _is_distribution(weights)
    with pytest.raises(ValueError, match="unknown strategy 'doremi'"):
        next_weights("doremi", [0.25] * 4, period=0, seed=0)


def test_initial_weights_uniform_and_size():
    sizes = {"alpaca": 100, "code": 300, "math": 50, "chat": 50}
    assert initial_weights("uniform", NAMES, sizes) == [0.25] * 4
    assert initial_weights("size", NAMES, sizes) == [0.2, 0.6, 0.1, 0.1]
    with pytest.raises(ValueError, match="math"):
        initial_weights("size", NAMES, {**sizes, "math": 0})


def test_initial_weights_from_json_are_normalised(tmp_path):
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({"chat": 1, "math": 1, "code": 4, "alpaca": 4}))
    assert initial_weights(str(path), NAMES, {}) == [0.4, 0.4, 0.1, 0.1]


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ({"alpaca": 1, "code": 1, "math": 1, "chat": 1, "poetry": 1}, ["poetry"]),  # unknown name
        ({"alpaca": 1, "code": 1}, ["chat", "math"]),  # missing names
        ({"alpaca": 1, "code": 0, "math": -2, "chat": 1}, ["code", "math"]),  # non-positive
        ({"alpaca": 1, "code": "1", "math": True, "chat": 1}, ["code", "math"]),  # not numbers
    ],
)
def test_initial_weights_json_errors_name_the_file_and_the_datasets(tmp_path, content, named):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as error:
        initial_weights(str(path), NAMES, {})
    assert str(path) in str(error.value)
    for name in named:
        assert name in str(error.value)


def test_initial_weights_rejects_non_finite_values_and_bad_files(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text('{"alpaca": NaN, "code": Infinity, "math": 1, "chat": 1}')  # Python's json reads these
    with pytest.raises(ValueError, match=r"not finite numbers for \['alpaca', 'code'\]"):
        initial_weights(str(path), NAMES, {})
    (tmp_path / "list.json").write_text("[1, 2, 3, 4]")
    with pytest.raises(ValueError, match="list.json must hold one JSON object"):
        initial_weights(str(tmp_path / "list.json"), NAMES, {})
    with pytest.raises(ValueError, match="missing.json does not exist"):
        initial_weights(str(tmp_path / "missing.json"), NAMES, {})


def test_load_ref_loss(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps({"alpaca": 1.5, "code": 0.75, "math": 2.0, "chat": 0.0}))
    assert load_ref_loss(path, NAMES) == [1.5, 0.75, 2.0, 0.0]
    path.write_text(json.dumps({"alpaca": 1.5, "code": -0.5, "math": 2.0}))
    with pytest.raises(ValueError, match=r"ref.json .*missing \['chat'\]"):
        load_ref_loss(path, NAMES)
    path.write_text(json.dumps({"alpaca": 1.5, "code": -0.5, "math": 2.0, "chat": 1.0}))
    with pytest.raises(ValueError, match=r"ref.json has negative losses for \['code'\]"):
        load_ref_loss(path, NAMES)


# --------------------------------------------------------------------------------------------------
# The update rules: the paper's, and the anchored one that does not collapse


def test_paper_rule_is_update_weights_and_compounds_to_one_dataset():
    """The paper's rule, applied n times with the same delta, is one step with n * delta: a dataset that stays the most
    distinct by 0.1 takes everything but the floor within a few probes (the collapse of issue 13)."""
    rule, delta, start = Rule.paper(eta=10.0, c=0.0), [0.3, 0.2, 0.2, 0.2], [0.25] * 4
    mix = Mixture("dynamic", NAMES, dict.fromkeys(NAMES, 100), start, rule)
    usage = Usage([0] * 4, [0] * 4, 0.0)
    for n in range(1, 6):
        weights = mix.update(n, delta, usage)["weights_after"]
        expected = update_weights(start, [n * d for d in delta], eta=10.0, c=0.0).tolist()
        assert weights == pytest.approx(expected, abs=1e-12)
    assert weights[0] == pytest.approx(math.exp(5) / (math.exp(5) + 3), abs=1e-12)  # 0.98 after 5 probes
    assert mix.signal == delta  # no scaling, no average: delta itself


def test_anchored_rule_hand_computed():
    # scale std: delta [0.4, 0.1, 0.1, 0.2] has mean 0.2 and std sqrt((0.04 + 0.01 + 0.01 + 0) / 4) = sqrt(0.015),
    # so d = [0.2, -0.1, -0.1, 0] / 0.1224744871 = [1.6329931619, -0.8164965809, -0.8164965809, 0].
    rule = Rule(eta=0.5, c=0.2, scale="std", ema=0.5, pull=1.0)
    first = rule.signal([0.4, 0.1, 0.1, 0.2], None)
    assert first == pytest.approx([1.6329931619, -0.8164965809, -0.8164965809, 0.0], abs=1e-9)
    # the second probe's d = [0, 0, 0, 0] (all equal: std 0) halves e
    second = rule.signal([0.3, 0.3, 0.3, 0.3], first)
    assert second == pytest.approx([0.8164965809, -0.4082482905, -0.4082482905, 0.0], abs=1e-9)
    # pull 1: w = 0.8 softmax(log w0 + 0.5 e) + 0.2 / 4, whatever the current weights; with w0 uniform
    # softmax(0.5 e) = exp([0.408248, -0.204124, -0.204124, 0]) / (1.504177 + 2 * 0.815355 + 1) = 0.363777, 0.197189, 0.197189, 0.241844
    weights = rule.apply([0.7, 0.1, 0.1, 0.1], second, [0.25] * 4)
    assert weights == pytest.approx([0.8 * 0.363777 + 0.05, 0.8 * 0.197189 + 0.05, 0.8 * 0.197189 + 0.05,
                                     0.8 * 0.241844 + 0.05], abs=1e-6)
    assert weights == pytest.approx(rule.apply([0.25] * 4, second, [0.25] * 4), abs=1e-15)  # memoryless


def test_delta_ema_away_from_one_half_hand_computed():
    """--delta-ema 0.8 keeps 0.8 of the previous e and takes 0.2 of the new delta (at 0.5 a swap of the two would
    not show). With scale none, pull 1, eta 1, c 0 and uniform w0: w = softmax(e)."""
    rule = Rule(eta=1.0, c=0.0, scale="none", ema=0.8, pull=1.0)
    mix = Mixture("dynamic", NAMES, dict.fromkeys(NAMES, 100), [0.25] * 4, rule)
    usage = Usage([0] * 4, [0] * 4, 0.0)
    assert mix.update(1, [0.5, 0.0, 0.0, 0.0], usage)["signal"] == [0.5, 0.0, 0.0, 0.0]  # the first probe: e = delta
    update = mix.update(2, [0.0, 0.0, 0.0, 1.0], usage)
    assert update["signal"] == pytest.approx([0.4, 0.0, 0.0, 0.2], abs=1e-15)  # 0.8 * 0.5, 0.2 * 1
    # softmax([0.4, 0, 0, 0.2]) = exp(e) / (e^0.4 + 2 + e^0.2) = exp(e) / 4.7132275
    assert update["weights_after"] == pytest.approx([0.316518715, 0.2121688396, 0.2121688396, 0.2591436059], abs=1e-9)


def test_delta_ema_and_the_rule_flags_reach_the_rule_train_uses():
    import tyro

    import train

    args = tyro.cli(train.Args, args=["--update", "anchored", "--delta-ema", "0.8", "--pull", "0.4", "--eta", "2.5",
                                      "--c", "0.1"])
    assert train.update_rule(train.resolve_defaults(args)) == Rule(eta=2.5, c=0.1, scale="std", ema=0.8, pull=0.4,
                                                                   noise=2.0)
    args = tyro.cli(train.Args, args=["--update", "paper", "--eta", "7", "--c", "0.2"])
    assert train.update_rule(train.resolve_defaults(args)) == Rule(eta=7.0, c=0.2, scale="none", ema=0.0, pull=0.0)


def test_anchored_rule_is_free_of_the_scale_of_delta():
    rule = Rule(eta=0.5, c=0.05, scale="std", ema=0.3, pull=0.5)
    deltas = [[0.4, 0.1, 0.1, 0.2], [0.3, 0.1, 0.2, 0.2], [0.35, 0.15, 0.1, 0.2]]
    runs = []
    for scale, shift in ((1.0, 0.0), (0.01, 0.0), (7.0, 3.0)):
        mix = Mixture("dynamic", NAMES, dict.fromkeys(NAMES, 100), [0.4, 0.3, 0.2, 0.1], rule)
        runs.append([w for p, delta in enumerate(deltas)
                     for w in mix.update(p, [scale * d + shift for d in delta], Usage([0] * 4, [0] * 4, 0.0))["weights_after"]])
    assert runs[1] == pytest.approx(runs[0], abs=1e-12) and runs[2] == pytest.approx(runs[0], abs=1e-12)
    paper = [Mixture("dynamic", NAMES, dict.fromkeys(NAMES, 100), [0.25] * 4, Rule.paper()) for _ in range(2)]
    assert paper[0].update(0, deltas[0], Usage([0] * 4, [0] * 4, 0.0))["weights_after"] != pytest.approx(
        paper[1].update(0, [0.01 * d for d in deltas[0]], Usage([0] * 4, [0] * 4, 0.0))["weights_after"])


def test_pull_settles_where_the_paper_rule_runs_off():
    """Under a steady delta, pull p settles at softmax(log w0 + eta / p * delta); the paper's rule (p = 0) does not."""
    w0, delta = [0.4, 0.3, 0.2, 0.1], [0.3, 0.2, 0.2, 0.25]
    settled = Rule(eta=2.0, c=0.0, pull=0.25)
    weights = list(w0)
    for _ in range(200):
        weights = settled.apply(weights, delta, w0)
    expected = torch.softmax(torch.log(torch.tensor(w0, dtype=torch.float64)) + 2.0 / 0.25 * torch.tensor(delta, dtype=torch.float64), 0)
    assert weights == pytest.approx(expected.tolist(), abs=1e-9)
    weights = list(w0)
    for _ in range(200):
        weights = Rule.paper(eta=2.0, c=0.0).apply(weights, delta, w0)
    assert weights[0] > 0.999


def test_rule_rejects_bad_settings():
    with pytest.raises(ValueError, match="scale"):
        Rule(scale="max")
    with pytest.raises(ValueError, match="pull"):
        Rule(pull=1.5)
    with pytest.raises(ValueError, match="ema 1"):
        Rule(ema=1.0)


def test_mixture_state_dict_continues_exactly():
    """A Mixture rebuilt from its state_dict (through JSON, as checkpoints store it) continues bitwise."""
    rule = Rule(eta=0.7, c=0.05, scale="std", ema=0.6, pull=0.3)
    deltas = [[0.1 * i + 0.03 * p, 0.2, 0.05 * p, 0.3 - 0.01 * i] for p in range(6) for i in range(1)]
    usage = Usage([0] * 4, [0] * 4, 0.0)
    reference = Mixture("dynamic", NAMES, dict.fromkeys(NAMES, 100), [0.25] * 4, rule)
    expected = [reference.update(p, d, usage)["weights_after"] for p, d in enumerate(deltas)]
    first = Mixture("dynamic", NAMES, dict.fromkeys(NAMES, 100), [0.25] * 4, rule)
    got = [first.update(p, d, usage)["weights_after"] for p, d in enumerate(deltas[:3])]
    resumed = Mixture("dynamic", NAMES, dict.fromkeys(NAMES, 100), [0.25] * 4, rule)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    got += [resumed.update(p, d, usage)["weights_after"] for p, d in enumerate(deltas[3:], start=3)]
    assert got == expected
    # and what it continues is the arithmetic of the rule, from the saved e and weights: a second, plain
    # implementation of one update (scale std, ema, pull towards w0, softmax, smoothing)
    saved = first.state_dict()
    d = torch.tensor(deltas[3], dtype=torch.float64)
    z = (d - d.mean()) / d.std(correction=0)
    e = 0.6 * torch.tensor(saved["signal"], dtype=torch.float64) + 0.4 * z
    w = torch.tensor(saved["weights"], dtype=torch.float64)
    log_w = 0.7 * torch.log(w / w.sum()) + 0.3 * math.log(0.25)
    assert got[3] == pytest.approx((0.95 * torch.softmax(log_w + 0.7 * e, 0) + 0.05 / 4).tolist(), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# The repetition cap


def test_cap_weights_caps_and_gives_the_excess_to_the_others_in_proportion():
    # Every example 10 tokens, 1000 tokens ahead: weights are draws out of 100. Dataset 0 would take 70 but has room
    # for 40; the 30 left over go to the others in proportion to 0.1 : 0.1 : 0.1 -> 20 each.
    weights, capped = cap_weights([0.7, 0.1, 0.1, 0.1], room=[40, 100, 100, 100], lengths=[10] * 4, tokens_ahead=1000)
    assert weights == pytest.approx([0.4, 0.2, 0.2, 0.2], abs=1e-12) and capped == [True, False, False, False]
    # Unequal lengths: the weight is per example, the room per example, the run's budget in tokens. Dataset 0's
    # examples are 20 tokens: at [0.7, 0.1, 0.1, 0.1] a draw averages 0.7*20 + 0.3*10 = 17 tokens, so 1000 tokens
    # draw 1000 * 0.7 / 17 = 41.2 of dataset 0 > its room 30. Capped, dataset 0 takes 30 * 20 = 600 tokens; the other
    # 400 tokens draw 40 examples, split 0.1 : 0.1 : 0.1. Weights: 30 : 13.33 : 13.33 : 13.33 of 70 draws.
    weights, capped = cap_weights([0.7, 0.1, 0.1, 0.1], room=[30, 100, 100, 100], lengths=[20, 10, 10, 10],
                                  tokens_ahead=1000)
    assert weights == pytest.approx([30 / 70, 40 / 3 / 70, 40 / 3 / 70, 40 / 3 / 70], abs=1e-12)
    # Nothing exceeds: unchanged (normalised).
    assert cap_weights([2, 1, 1], [100, 100, 100], [10, 10, 10], 1000) == (pytest.approx([0.5, 0.25, 0.25]), [False] * 3)


def test_cap_weights_caps_in_rounds_and_says_when_nothing_fits():
    # Room 40 for dataset 0, 25 for dataset 1, 1000 tokens of 10 each (100 draws). Capping 0 hands 1 a share of
    # 60 * 0.3 / 0.6 = 30 > 25, so 1 is capped too; 2 and 3 share the last 35 equally.
    weights, capped = cap_weights([0.4 + 0.2, 0.2, 0.1, 0.1], [40, 25, 100, 100], [10] * 4, 1000)
    assert capped == [True, True, False, False]
    assert weights == pytest.approx([0.40, 0.25, 0.175, 0.175], abs=1e-12)
    # All four together hold 90 draws of the 100 needed: every dataset capped, weights in proportion to the rooms.
    weights, capped = cap_weights([0.25] * 4, [30, 30, 20, 10], [10] * 4, 1000)
    assert capped == [True] * 4 and weights == pytest.approx([3 / 9, 3 / 9, 2 / 9, 1 / 9])
    # A one-hot weight whose dataset is capped: the others have weight 0, so they fill by their room.
    weights, capped = cap_weights([1.0, 0.0, 0.0], [50, 100, 300], [10] * 3, 1000)
    assert capped == [True, False, False] and weights == pytest.approx([0.5, 0.125, 0.375])


def test_mixture_cap_plans_from_what_was_drawn():
    sizes = {"alpaca": 100, "code": 1000, "math": 1000, "chat": 1000}
    mix = Mixture("static", NAMES, sizes, [0.25] * 4, Rule.paper(), max_epochs=2.0, prior=[(500, 10)] * 4)
    # Before any draw: 100 steps of 1000 tokens; the prior says 50 tokens per example, so 2000 draws, 500 each;
    # alpaca's 100 examples would be seen 5 times. Capped at 2 epochs = 200 draws; the others take 600 each.
    start = mix.start(Usage.at(0, 100, [0] * 4, [0] * 4, tokens_per_step=1000))
    assert start["planned_epochs_initial"] == pytest.approx([5.0, 0.5, 0.5, 0.5])
    assert start["capped"] == ["alpaca"] and start["planned_epochs"] == pytest.approx([2.0, 0.6, 0.6, 0.6])
    assert start["weights_after"] == pytest.approx([0.1, 0.3, 0.3, 0.3])
    # Halfway: 50 steps drew 40,000 tokens (800 per step, not 1000), alpaca 150 examples of 100 tokens (the prior
    # of 10 examples x 50 tokens is counted with them: 15,500 / 160 = 96.875). Its room: 200 - 150 = 50 examples.
    usage = Usage.at(50, 100, [150, 300, 300, 300], [15_000, 8_333, 8_333, 8_334], tokens_per_step=1000)
    assert usage.tokens_ahead == pytest.approx(50 * 40_000 / 50)
    update = mix.update(2, None, usage)
    assert update["weights_proposed"] == [0.25] * 4 and update["capped"] == ["alpaca"]
    assert update["planned_epochs"][0] == pytest.approx(2.0, abs=1e-12)
    assert update["epochs_drawn"] == pytest.approx([1.5, 0.3, 0.3, 0.3])
    others = update["weights_after"][1:]
    assert others == pytest.approx([others[0]] * 3, rel=1e-12) and update["weights_after"][0] < 0.1
    assert mixture.max_draws(sizes, 2.0) == {"alpaca": 200, "code": 2000, "math": 2000, "chat": 2000}  # the whole run's
    assert mixture.max_draws(sizes, None) is None


# --------------------------------------------------------------------------------------------------
# Edges found by mutation testing (scripts/mutmut_modules.py), each against values written out by hand


def test_refloss_delta_is_float64_and_names_mismatched_shapes():
    delta = refloss_delta([0.1, 2.0], [0.3, 1.0])
    assert delta.dtype == torch.float64 and delta.tolist() == [0.1 - 0.3, 2.0 - 1.0]  # Python's float64 arithmetic
    with pytest.raises(ValueError, match=r"^dev loss \(3,\) and reference loss \(2,\) differ$"):
        refloss_delta([1.0, 2.0, 3.0], [1.0, 2.0])


def test_cap_weights_normalises_and_with_nothing_ahead_caps_nothing():
    assert cap_weights([1.0, 3.0], [100, 100], [1.0, 1.0], 10.0) == (pytest.approx([0.25, 0.75]), [False, False])
    assert cap_weights([1.0, 3.0], [0, 0], [1.0, 1.0], 0.0) == (pytest.approx([0.25, 0.75]), [False, False])
    # half a token ahead still caps: room 0.1 examples of length 1 is a token share of 0.2 of the 0.5 tokens
    weights, capped = cap_weights([0.5, 0.5], [0.1, 10], [1.0, 1.0], 0.5)
    assert weights == pytest.approx([0.2, 0.8]) and capped == [True, False]


def test_usage_projects_the_tokens_still_to_come():
    # 300 + 100 tokens in 4 steps: 100 per step, 6 steps left
    assert Usage.at(4, 10, [3, 1], [300, 100], 999).tokens_ahead == 600
    # nothing drawn yet (a resume at step 4 of a run that drew nothing): the batch's capacity per step
    assert Usage.at(4, 10, [0, 0], [0, 0], 100).tokens_ahead == 600
    assert Usage.at(0, 10, [0, 0], [0, 0], 100).tokens_ahead == 1000
    assert Usage.at(10, 10, [5, 5], [200, 200], 100).tokens_ahead == 0  # the last step: nothing ahead
    assert Usage.at(1, 3, [2], [300], 100).tokens_ahead == 600  # after one step: that step's rate
    assert Usage.at(1, 3, [1], [1], 100).tokens_ahead == 2  # one token drawn is a rate too
    assert Usage.at(0, 10, [1], [50], 100).tokens_ahead == 1000  # before any step: the capacity, whatever was drawn


def test_a_cap_that_cannot_hold_the_run_says_how_much_it_holds():
    # 10 examples of 10 tokens each per dataset: 0.5 passes over both hold 100 tokens; the run plans 5000
    mix = Mixture("static", ["a", "b"], {"a": 10, "b": 10}, [0.5, 0.5], Rule.paper(), max_epochs=0.5,
                  prior=[(100, 10), (100, 10)])
    with pytest.raises(ValueError, match=r"^--max-epochs 0.5 cannot hold the run: 0.5 passes over every dataset are "
                                         r"about 100 tokens, the planned steps draw about 5,000; raise --max-epochs"):
        mix.start(Usage([0, 0], [0, 0], 5000.0))


def test_max_draws_counts_whole_passes_of_the_whole_run():
    # every rank draws from one data order, so the cap is the run's: 1.5 passes over 10 and 7 examples, rounded down
    assert max_draws({"a": 10, "b": 7}, 1.5) == {"a": 15, "b": 10}
    assert max_draws({"a": 10}, None) is None


def test_initial_weights_by_size_and_the_files_named_in_errors(tmp_path):
    assert initial_weights("size", ["a", "b"], {"a": 1, "b": 3}) == pytest.approx([0.25, 0.75])  # size 1 is fine
    with pytest.raises(ValueError, match=r"empty or unknown: \['b'\]"):
        initial_weights("size", ["a", "b"], {"a": 2})
    with pytest.raises(ValueError, match=r"empty or unknown: \['b'\]"):
        initial_weights("size", ["a", "b"], {"a": 2, "b": 0})
    missing = tmp_path / "missing.json"
    with pytest.raises(ValueError, match=rf"^init weights file {missing} does not exist$"):
        initial_weights(str(missing), ["a"], {})
    with pytest.raises(ValueError, match=rf"^reference loss file {missing} does not exist$"):
        load_ref_loss(missing, ["a"])
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match=rf"^init weights file {broken} is not valid JSON: "):
        initial_weights(str(broken), ["a"], {})


def test_cap_weights_edges_by_hand():
    # a negative room is no room: that dataset gets weight 0, the other all of it
    weights, capped = cap_weights([0.5, 0.5], [-5, 100], [1.0, 1.0], 10.0)
    assert weights == pytest.approx([0.0, 1.0]) and capped == [True, False]
    # token shares, not weights, meet the limits: examples of 10 tokens, 1000 tokens ahead, room for 100 each:
    # each may take a share of 1; at weights 1/2 each takes 1/2, nothing is capped
    assert cap_weights([0.5, 0.5], [100, 100], [10.0, 10.0], 1000.0) == (pytest.approx([0.5, 0.5]), [False, False])
    # exactly at its limit (share 1/2, room 5 of 10 tokens ahead) is not over it
    assert cap_weights([0.5, 0.5], [5, 100], [1.0, 1.0], 10.0) == (pytest.approx([0.5, 0.5]), [False, False])
    # nothing fits: the weights are the rooms in examples, 1 and 1 (not in tokens, 1 and 3)
    assert cap_weights([0.5, 0.5], [1, 1], [1.0, 3.0], 100.0) == (pytest.approx([0.5, 0.5]), [True, True])


def test_mixture_state_dict_format_and_a_state_without_signal():
    mix = Mixture("dynamic", ["a", "b"], {"a": 1, "b": 1}, [0.5, 0.5], Rule(eta=2.0, c=0.1, scale="std", ema=0.5, pull=1.0))
    assert mix.state_dict() == {"weights": [0.5, 0.5], "signal": None,
                                "rule": {"eta": 2.0, "c": 0.1, "scale": "std", "ema": 0.5, "pull": 1.0, "noise": 0.0}}
    mix.load_state_dict({"weights": [0.25, 0.75], "signal": None})
    assert mix.weights == [0.25, 0.75] and mix.signal is None
    mix.load_state_dict({"weights": [0.25, 0.75], "signal": [1.0, -1.0]})
    assert mix.signal == [1.0, -1.0]


def test_update_weights_checks_its_inputs_and_names_them():
    with pytest.raises(ValueError, match=r"^weights \(2,\) and delta \(3,\) must be equal 1-D shapes$"):
        update_weights([0.5, 0.5], [0.1, 0.2, 0.3], eta=1.0, c=0.0)
    with pytest.raises(ValueError, match=r"^weights \(1, 2\) and delta \(1, 2\) must be equal 1-D shapes$"):
        update_weights([[0.5, 0.5]], [[0.1, 0.2]], eta=1.0, c=0.0)
    for weights in ([0.0, 1.0], [1.0, math.inf]):
        with pytest.raises(ValueError, match=r"^weights must be positive and finite, got \["):
            update_weights(weights, [0.0, 0.0], eta=1.0, c=0.0)
    with pytest.raises(ValueError, match=r"^smoothing c must be in \[0, 1\], got 1.5$"):
        update_weights([0.5, 0.5], [0.0, 0.0], eta=1.0, c=1.5)
    assert update_weights([0.9, 0.1], [1.0, 0.0], eta=1.0, c=1.0).tolist() == [0.5, 0.5]  # c = 1: uniform


def test_rule_messages_and_the_papers_defaults():
    assert Rule.paper() == Rule(eta=10.0, c=0.05, scale="none", ema=0.0, pull=0.0)
    assert Rule.paper(eta=3.0, c=0.2) == Rule(eta=3.0, c=0.2)
    for field in ("c", "ema", "pull"):
        with pytest.raises(ValueError, match=rf"^{field} must be in \[0, 1\], got 1.5$"):
            Rule(**{field: 1.5})
    with pytest.raises(ValueError, match=r"^delta scale must be one of none, std, got 'max'$"):
        Rule(scale="max")
    with pytest.raises(ValueError, match=r"^ema 1 would never let delta in; use 0 <= ema < 1$"):
        Rule(ema=1.0)


def test_mixture_refloss_and_its_record_and_errors():
    usage = Usage([0, 0], [0, 0], 0.0)
    # refloss takes the rule like dynamic: softmax(log 1/2 + [1, 0]) = [e, 1] / (e + 1)
    update = Mixture("refloss", ["a", "b"], {"a": 1, "b": 1}, [0.5, 0.5], Rule.paper(eta=1.0, c=0.0)).update(1, [1.0, 0.0], usage)
    assert update["weights_after"] == pytest.approx([math.e / (math.e + 1), 1 / (math.e + 1)], abs=1e-12)
    assert update["delta_spread"] == 0.5 and update["signal"] == [1.0, 0.0]
    assert update["capped"] == [] and update["cap_infeasible"] is False
    with pytest.raises(ValueError, match=r"^strategy 'dynamic' needs a delta$"):
        Mixture("dynamic", ["a", "b"], {"a": 1, "b": 1}, [0.5, 0.5], Rule.paper()).update(1, None, usage)
    with pytest.raises(ValueError, match=r"^unknown strategy 'x'; choose one of dynamic, static, refloss, random, "
                                         r"random-batch, cycle$"):
        Mixture("x", ["a"], {"a": 1}, [1.0], Rule.paper())
    with pytest.raises(ValueError, match=r"^unknown strategy 'x'; choose one of dynamic, static, refloss, random, "
                                         r"random-batch, cycle$"):
        next_weights("x", [1.0], period=1, seed=0)
    with pytest.raises(ValueError, match=r"^--max-epochs must be positive, got 0$"):
        Mixture("static", ["a"], {"a": 1}, [1.0], Rule.paper(), max_epochs=0)
    # the cap's weights are normalised even where nothing is capped
    assert Mixture("static", ["a", "b"], {"a": 1, "b": 1}, [1.0, 3.0], Rule.paper()).cap([1.0, 3.0], usage) \
        ["weights_after"] == [0.25, 0.75]


def test_mixture_random_strategies_default_to_seed_zero():
    usage = Usage([0, 0, 0], [0, 0, 0], 0.0)
    for strategy in ("random", "random-batch"):
        mix = Mixture(strategy, ["a", "b", "c"], dict.fromkeys("abc", 1), [1 / 3] * 3, Rule.paper())
        assert mix.update(4, None, usage)["weights_proposed"] == next_weights(strategy, [1 / 3] * 3, period=4, seed=0)
    chosen = {max(range(3), key=next_weights("random-batch", [1 / 3] * 3, period=1, seed=s).__getitem__) for s in range(12)}
    assert len(chosen) > 1  # the seed decides which dataset a period favours


def test_mixture_lengths_from_drawn_and_prior_with_fallbacks():
    def lengths(prior, drawn=(0, 0), drawn_tokens=(0, 0)):
        mix = Mixture("static", ["a", "b"], {"a": 1, "b": 1}, [0.5, 0.5], Rule.paper(), prior=prior)
        return mix.lengths(Usage(list(drawn), list(drawn_tokens), 0.0))

    assert lengths([(10, 1), (30, 1)]) == [10.0, 30.0]  # one example each is enough to know its length
    assert lengths([(0, 0), (7, 1)]) == [7.0, 7.0]  # a dataset with nothing known: the mean of what is known
    assert lengths([(0, 0), (0, 0)]) == [1.0, 1.0]  # nothing known at all
    assert lengths(None) == [1.0, 1.0]
    assert lengths([(0, 0), (30, 2)], drawn=(2, 0), drawn_tokens=(10, 0)) == [5.0, 15.0]


def test_next_weights_dynamic_defaults_are_the_papers_and_delta_spread_is_float64():
    # eta 10, c 0.05 by default: softmax(log 1/2 + 10 * [0.1, 0]) = [e, 1] / (e + 1), then 0.95 w + 0.025
    weights = next_weights("dynamic", [0.5, 0.5], period=1, seed=0, delta=[0.1, 0.0])
    assert weights == pytest.approx([0.95 * math.e / (math.e + 1) + 0.025, 0.95 / (math.e + 1) + 0.025], abs=1e-12)
    mix = Mixture("dynamic", ["a", "b"], {"a": 1, "b": 1}, [0.5, 0.5], Rule.paper())
    spread = mix.update(1, [0.1, 0.3], Usage([0, 0], [0, 0], 0.0))["delta_spread"]
    assert spread == pytest.approx(0.1, rel=1e-12)  # half the gap of two values; float32 would be off at 1e-8
    two_known = Mixture("static", ["a", "b"], {"a": 1, "b": 1}, [0.5, 0.5], Rule.paper(), prior=[(0, 0), (30, 2)])
    assert two_known.lengths(Usage([0, 0], [0, 0], 0.0)) == [15.0, 15.0]  # the fallback is tokens per example
