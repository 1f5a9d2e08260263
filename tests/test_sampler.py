"""The sampler draws datasets in proportion to their weights and resumes mid-stream exactly."""

import json
import random
from collections import Counter

import pytest

from sampler import MixtureSampler, reshard

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
    a = MixtureSampler(SIZES, {"code": 0.4, "math": 0.3, "explain": 0.2, "reasoning": 0.1}, seed=5, rank=1, world=2)
    for _ in range(123):  # several passes of `reasoning`
        a.draw()
    a.set_weights([0.1, 0.2, 0.3, 0.4], at=7)
    state = a.state_dict()
    expected = [a.draw() for _ in range(500)]

    b = MixtureSampler(SIZES, {n: 1 for n in SIZES}, seed=0, rank=1, world=2)
    b.load_state_dict(state)
    assert [b.draw() for _ in range(500)] == expected
    assert b.history == a.history and b.weights == a.weights


def test_ranks_draw_different_streams():
    a, b = (MixtureSampler(SIZES, {n: 1 for n in SIZES}, seed=0, rank=r, world=2) for r in range(2))
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


# --------------------------------------------------------------------------------------------------
# Several ranks share one sequence (issue 25). The checks below compute what they expect by hand: each dataset's
# draws, in the order of the run's sequence, cut into passes of `size` draws, hold each example exactly once.


def problems_with_passes(draws: list[tuple[str, int]], sizes: dict[str, int]) -> list[str]:
    """What is wrong with `draws`, the whole run's `(dataset, index)` in the sequence's order: each dataset's draws,
    cut into consecutive passes of its size, must hold every example once per full pass, and none twice in the
    last (partial) one."""
    problems = []
    for name, size in sizes.items():
        mine = [index for dataset, index in draws if dataset == name]
        for start in range(0, len(mine), size):
            one_pass = mine[start : start + size]
            if len(one_pass) == size and sorted(one_pass) != list(range(size)):
                problems.append(f"{name} pass {start // size}: {sorted(one_pass)}")
            elif len(set(one_pass)) != len(one_pass):
                problems.append(f"{name} partial pass {start // size}: {sorted(one_pass)}")
    return problems


def in_sequence_order(logged: list[list]) -> tuple[list[tuple[str, int]], int]:
    """All ranks' logged draws `[name, index, pass, place]` ordered by their place; every place must be taken once.
    Returns the draws of the places 0, 1, 2, ... up to the first place no rank took (ranks stop at different
    places), and how many draws lie beyond it."""
    places = [draw[3] for draw in logged]
    assert len(places) == len(set(places)), "a place of the sequence was drawn twice"
    by_place = {draw[3]: (draw[0], draw[1]) for draw in logged}
    prefix = []
    while len(prefix) in by_place:
        prefix.append(by_place[len(prefix)])
    return prefix, len(logged) - len(prefix)


SMALL = {"a": 7, "b": 11, "c": 5}


def simulate(samplers: list[MixtureSampler], steps: int, seed: int, reweight_at=(), reference=None) -> list[list]:
    """Ranks drawing at their own random pace (0 to 4 draws each per step, as packing takes what fills a batch);
    at the steps in `reweight_at` every rank takes new weights from the furthest place any rank has reached (what
    train.py does), and `reference` (a one-rank sampler, if given) takes them at the same place. Returns every
    draw as `[name, index, pass, place]`, with the rank in front."""
    pace, logged = random.Random(seed), []
    for step in range(steps):
        for sampler in samplers:
            for _ in range(pace.randint(0, 4)):
                name, index = sampler.draw()
                logged.append([sampler.rank, name, index, sampler.last_pass, sampler.last_place])
        if step in reweight_at:
            start = max(s.position for s in samplers)
            weights = [pace.random() + 0.05 for _ in SMALL]
            for sampler in samplers:
                sampler.set_weights(weights, at=step, start=start)
            if reference is not None:
                reference.append((start, weights))
    return logged


def reference_sequence(changes: list[tuple[int, list[float]]], length: int) -> list[tuple[str, int]]:
    """The sequence one rank draws with the same weight changes at the same places."""
    one = MixtureSampler(SMALL, {"a": 1, "b": 2, "c": 1}, seed=3)
    sequence = []
    for start, weights in changes:
        sequence += [one.draw() for _ in range(start - len(sequence))]
        one.set_weights(weights)
    return sequence + [one.draw() for _ in range(length - len(sequence))]


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_take_disjoint_shares_of_one_sequence_each_pass_once(world):
    samplers = [MixtureSampler(SMALL, {"a": 1, "b": 2, "c": 1}, seed=3, rank=r, world=world) for r in range(world)]
    changes = []
    logged = simulate(samplers, steps=40, seed=world, reweight_at=(9, 23), reference=changes)
    for rank in range(world):  # rank r takes places r, r + world, r + 2 * world, ...
        assert [d[4] for d in logged if d[0] == rank] == [rank + k * world for k in range(sum(d[0] == rank for d in logged))]
    sequence, beyond = in_sequence_order([d[1:] for d in logged])
    assert len(sequence) > 5 * sum(SMALL.values()) and beyond < len(sequence) // 3  # ranks drift apart: a random walk
    assert problems_with_passes(sequence, SMALL) == []
    # the same sequence as one rank draws with the weights changed at the same places: reproducible, still weighted
    assert sequence == reference_sequence(changes, len(sequence))
    # the pass each draw reports is its real pass over the dataset
    for name, size in SMALL.items():
        passes = [d[3] for d in sorted(logged, key=lambda d: d[4]) if d[1] == name and d[4] < len(sequence)]
        assert passes == [k // size for k in range(len(passes))]


@pytest.mark.parametrize("world", [2, 3])
def test_negative_control_ranks_that_draw_the_same_order_fail_the_check(world):
    # every rank draws the whole sequence itself (the same order on every rank): in the run's order, rank by rank
    same = [MixtureSampler(SMALL, {"a": 1, "b": 2, "c": 1}, seed=3) for _ in range(world)]
    rounds = [[s.draw() for s in same] for _ in range(60)]
    assert problems_with_passes([draw for one_round in rounds for draw in one_round], SMALL) != []
    # a sanity check of the check itself: one rank's own sequence passes it
    assert problems_with_passes([one_round[0] for one_round in rounds], SMALL) == []


@pytest.mark.parametrize("old, new", [(2, 1), (2, 3), (3, 2)])
def test_reshard_continues_the_sequence_on_another_number_of_ranks(old, new):
    samplers = [MixtureSampler(SMALL, {"a": 1, "b": 2, "c": 1}, seed=3, rank=r, world=old) for r in range(old)]
    changes = []
    before = simulate(samplers, steps=15, seed=old, reweight_at=(4, 14), reference=changes)
    assert len({s.position for s in samplers}) > 1  # the ranks stopped at different places: some draws are carried
    states = reshard([json.loads(json.dumps(s.state_dict())) for s in samplers], new)
    resumed = [MixtureSampler(SMALL, {"a": 1, "b": 1, "c": 1}, seed=0, rank=r, world=new) for r in range(new)]
    for sampler, state in zip(resumed, states):
        sampler.load_state_dict(state)
    assert all(s.history == samplers[0].history and s.weights == samplers[0].weights for s in resumed)
    assert sum(sum(s.drawn.values()) for s in resumed) == len(before)  # the run's draw counts continue
    after = simulate(resumed, steps=25, seed=10 + new, reweight_at=(7,), reference=changes)
    sequence, beyond = in_sequence_order([d[1:] for d in before + after])  # no place taken twice
    assert len(sequence) > 4 * sum(SMALL.values()) and beyond < len(sequence) // 3
    assert problems_with_passes(sequence, SMALL) == []
    assert sequence == reference_sequence(changes, len(sequence))  # exactly the sequence of an uninterrupted run
    assert all(s.history == resumed[0].history for s in resumed) and len(resumed[0].history) == 4


def test_repetition_cap_counts_the_run_s_real_passes_over_all_ranks():
    limits = {"a": 7, "b": 22, "c": 10**9}  # a: one pass, b: two passes, for the whole run
    samplers = [MixtureSampler(SMALL, {"a": 3, "b": 2, "c": 1}, seed=4, rank=r, world=3, max_draws=limits) for r in range(3)]
    logged = simulate(samplers, steps=60, seed=4)
    drawn = Counter((d[1], d[2]) for d in logged)
    assert sorted(index for (name, index), n in drawn.items() if name == "a" and n == 1) == list(range(7))
    assert {n for (name, _), n in drawn.items() if name == "a"} == {1}  # every example of `a` once, on any rank
    assert {n for (name, _), n in drawn.items() if name == "b"} == {2} and len([k for k in drawn if k[0] == "b"]) == 11
    assert sum(sum(s.drawn.values()) for s in samplers) == len(logged)
