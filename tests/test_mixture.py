"""Weighting strategies and where the first weights come from."""

import json
import math

import pytest

from mixture import (
    RANDOM_BATCH_EPS,
    STRATEGIES,
    initial_weights,
    load_ref_loss,
    next_weights,
    refloss_delta,
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
