"""The sampler draws datasets in proportion to their weights and resumes mid-stream exactly."""

from collections import Counter

import pytest

from sampler import MixtureSampler

SIZES = {"code": 50, "math": 30, "explain": 20, "reasoning": 7}


def test_frequencies_match_weights_chi_square():
    weights = {"code": 0.1, "math": 0.2, "explain": 0.3, "reasoning": 0.4}
    sampler = MixtureSampler(SIZES, weights, seed=3)
    n = 20_000
    counts = Counter(sampler.draw()[0] for _ in range(n))
    chi2 = sum((counts[name] - n * w) ** 2 / (n * w) for name, w in weights.items())
    assert chi2 < 16.27  # chi-square critical value, 3 degrees of freedom, p = 0.001


def test_each_pass_is_a_permutation_and_passes_differ():
    sampler = MixtureSampler({"a": 7, "b": 5}, {"a": 1.0, "b": 0.0}, seed=1)
    upcoming = sampler.upcoming("a", 10)  # the rest of the pass, drawing nothing
    first = [sampler.draw()[1] for _ in range(7)]
    assert upcoming == first and sampler.upcoming("a", 10) == []  # the next pass is shuffled when it starts
    second = [sampler.draw()[1] for _ in range(7)]
    assert sampler.upcoming("a", 2) == []
    assert sorted(first) == sorted(second) == list(range(7))
    assert first != second
    assert sampler.epoch["a"] == 1 and sampler.epoch["b"] == 0


def test_set_weights_takes_effect_and_is_remembered():
    sampler = MixtureSampler(SIZES, {n: 1 for n in SIZES}, seed=0)
    sampler.set_weights({"code": 0, "math": 0, "explain": 0, "reasoning": 2}, at=10)
    assert {sampler.draw()[0] for _ in range(100)} == {"reasoning"}
    assert sampler.history == [(0, [0.25] * 4), (10, [0.0, 0.0, 0.0, 1.0])]  # names sorted: code explain math reasoning
    with pytest.raises(ValueError, match="weights name"):
        sampler.set_weights({"code": 1})


def test_state_round_trips_mid_stream():
    a = MixtureSampler(SIZES, {"code": 0.4, "math": 0.3, "explain": 0.2, "reasoning": 0.1}, seed=5, rank=1)
    for _ in range(123):  # several passes of `reasoning`
        a.draw()
    a.set_weights([0.1, 0.2, 0.3, 0.4], at=7)
    state = a.state_dict()
    expected = [a.draw() for _ in range(500)]

    b = MixtureSampler(SIZES, {n: 1 for n in SIZES}, seed=0, rank=0)
    b.load_state_dict(state)
    assert [b.draw() for _ in range(500)] == expected
    assert b.history == a.history and b.weights == a.weights


def test_ranks_draw_different_streams():
    a, b = (MixtureSampler(SIZES, {n: 1 for n in SIZES}, seed=0, rank=r) for r in range(2))
    assert [a.draw() for _ in range(50)] != [b.draw() for _ in range(50)]


def test_empty_dataset_is_an_error():
    with pytest.raises(ValueError, match="reasoning"):
        MixtureSampler({"code": 3, "reasoning": 0}, {"code": 1, "reasoning": 1})
