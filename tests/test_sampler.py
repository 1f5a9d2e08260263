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


def test_max_draws_stops_a_dataset_and_the_others_keep_their_ratio():
    weights = {"code": 0.1, "math": 0.2, "explain": 0.6, "reasoning": 0.1}
    limits = {"code": 10_000, "math": 10_000, "explain": 40, "reasoning": 10_000}  # explain: 2 passes of 20
    sampler = MixtureSampler(SIZES, weights, seed=4, max_draws=limits)
    draws = [sampler.draw()[0] for _ in range(6000)]
    assert sampler.drawn["explain"] == 40 and sampler.used_up == ["explain"]
    assert sampler.drawn == dict(Counter(draws)) and sum(sampler.drawn.values()) == sampler.draws == 6000
    last_explain = max(i for i, name in enumerate(draws) if name == "explain")
    after = Counter(draws[last_explain + 1 :])
    n = sum(after.values())
    rest = {"code": 0.25, "math": 0.5, "reasoning": 0.25}  # 0.1 : 0.2 : 0.1 of what is left
    chi2 = sum((after[name] - n * w) ** 2 / (n * w) for name, w in rest.items())
    assert n > 5000 and chi2 < 13.82  # chi-square critical value, 2 degrees of freedom, p = 0.001
    # the limit holds through a resume, and new weights do not lift it
    state = sampler.state_dict()
    resumed = MixtureSampler(SIZES, weights, seed=0, max_draws=limits)
    resumed.load_state_dict(state)
    resumed.set_weights({"code": 0.0, "math": 0.0, "explain": 1.0, "reasoning": 1e-9})
    assert {resumed.draw()[0] for _ in range(200)} == {"reasoning"}


def test_max_draws_everything_used_up_is_an_error():
    sampler = MixtureSampler({"a": 3, "b": 2}, {"a": 1.0, "b": 1.0}, max_draws={"a": 3, "b": 2})
    assert sorted(sampler.draw()[0] for _ in range(5)) == ["a", "a", "a", "b", "b"]
    with pytest.raises(ValueError, match="--max-epochs"):
        sampler.draw()


def test_no_limit_draws_what_it_drew_before():
    """The limit's bookkeeping changes nothing when it never binds: the same draws as without it."""
    weights = {"code": 0.4, "math": 0.3, "explain": 0.2, "reasoning": 0.1}
    plain = MixtureSampler(SIZES, weights, seed=9)
    limited = MixtureSampler(SIZES, weights, seed=9, max_draws=dict.fromkeys(SIZES, 10**9))
    assert [plain.draw() for _ in range(3000)] == [limited.draw() for _ in range(3000)]
