"""The routing math (docs/method.md, steps 3-5) against numbers worked out by hand.

The running example has k = 3 datasets, L = 2 MoE layers, E = 3 experts:

    layer 0: every dataset [2, 2, 0]            -> g = [1/2, 1/2, 0] for all
    layer 1: A [3, 1, 0] -> g_A = [3/4, 1/4, 0]
             B [1, 1, 2] -> g_B = [1/4, 1/4, 1/2]
             C [0, 0, 2] -> g_C = [0,   0,   1]

Cosine similarities of the last layer:
    cos(A, B) = (3/16 + 1/16) / (sqrt(10/16) sqrt(6/16)) = (1/4) / sqrt(60/256) = 2 / sqrt(15) = 0.5163977795
    cos(A, C) = 0
    cos(B, C) = (1/2) / sqrt(6/16) = sqrt(2/3) = 0.8164965809
Euclidean distances of the last layer:
    |A - B| = |[1/2, 0, -1/2]|   = sqrt(1/2)  = 0.7071067812
    |A - C| = |[3/4, 1/4, -1]|   = sqrt(13/8) = 1.2747548784
    |B - C| = |[1/4, 1/4, -1/2]| = sqrt(3/8)  = 0.6123724357
"""

import itertools
import math

import pytest
import torch

from mixture import update_weights
from routing import pairwise, redundancy, representations, reverse_ranks

HISTOGRAMS = torch.tensor(
    [
        [[2, 2, 0], [3, 1, 0]],  # A
        [[2, 2, 0], [1, 1, 2]],  # B
        [[2, 2, 0], [0, 0, 2]],  # C
    ]
)
COS_AB, COS_AC, COS_BC = 2 / math.sqrt(15), 0.0, math.sqrt(2 / 3)
L2_AB, L2_AC, L2_BC = math.sqrt(1 / 2), math.sqrt(13 / 8), math.sqrt(3 / 8)

# delta for every distance x agg, over the two other datasets, in the order A, B, C.
EXPECTED_DELTA = {
    ("cos", "mean"): [1 - (COS_AB + COS_AC) / 2, 1 - (COS_AB + COS_BC) / 2, 1 - (COS_AC + COS_BC) / 2],
    ("cos", "min"): [1 - COS_AC, 1 - COS_AB, 1 - COS_AC],
    ("cos", "max"): [1 - COS_AB, 1 - COS_BC, 1 - COS_BC],
    ("l2", "mean"): [(L2_AB + L2_AC) / 2, (L2_AB + L2_BC) / 2, (L2_AC + L2_BC) / 2],
    ("l2", "min"): [L2_AB, L2_BC, L2_BC],
    ("l2", "max"): [L2_AC, L2_AB, L2_AC],
    # l2 mean is 0.991 (A) > 0.944 (C) > 0.660 (B): reversing the ranks swaps A's and B's values.
    ("inv-l2", "mean"): [(L2_AB + L2_BC) / 2, (L2_AB + L2_AC) / 2, (L2_AC + L2_BC) / 2],
    # l2 min is A 0.707, B = C 0.612 (tied). Reversed, A gets the smallest value 0.612; the tied
    # B and C take the two remaining values 0.707 and 0.612 and share their mean.
    ("inv-l2", "min"): [L2_BC, (L2_AB + L2_BC) / 2, (L2_AB + L2_BC) / 2],
    # l2 max is B 0.707 < A = C 1.275 (tied). Reversed, B gets 1.275; A and C share (1.275 + 0.707) / 2.
    ("inv-l2", "max"): [(L2_AC + L2_AB) / 2, L2_AC, (L2_AC + L2_AB) / 2],
}


def test_representations_last_layer_normalises_counts():
    g = representations(HISTOGRAMS, "last")
    assert g.dtype == torch.float64
    assert g.tolist() == [[0.75, 0.25, 0.0], [0.25, 0.25, 0.5], [0.0, 0.0, 1.0]]


def test_representations_all_layers_concatenates_normalised_layers():
    g = representations(HISTOGRAMS, "all")
    assert g.tolist() == [
        [0.5, 0.5, 0.0, 0.75, 0.25, 0.0],
        [0.5, 0.5, 0.0, 0.25, 0.25, 0.5],
        [0.5, 0.5, 0.0, 0.0, 0.0, 1.0],
    ]


def test_representations_of_a_layer_without_counts_are_zero_not_nan():
    histograms = torch.tensor([[[0, 0, 0], [1, 3, 0]], [[4, 0, 4], [0, 0, 0]]])
    g = representations(histograms, "all")
    assert g.tolist() == [[0, 0, 0, 0.25, 0.75, 0], [0.5, 0, 0.5, 0, 0, 0]]
    cos = pairwise(representations(histograms, "last"), "cos")
    torch.testing.assert_close(cos, torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64))


def test_pairwise_matrices():
    g = representations(HISTOGRAMS, "last")
    cos = [[1, COS_AB, COS_AC], [COS_AB, 1, COS_BC], [COS_AC, COS_BC, 1]]
    l2 = [[0, L2_AB, L2_AC], [L2_AB, 0, L2_BC], [L2_AC, L2_BC, 0]]
    torch.testing.assert_close(pairwise(g, "cos"), torch.tensor(cos, dtype=torch.float64))
    torch.testing.assert_close(pairwise(g, "l2"), torch.tensor(l2, dtype=torch.float64))
    torch.testing.assert_close(pairwise(g, "inv-l2"), torch.tensor(l2, dtype=torch.float64))


@pytest.mark.parametrize(("distance", "agg"), list(EXPECTED_DELTA))
def test_redundancy_matches_hand_computed_values(distance, agg):
    delta = redundancy(representations(HISTOGRAMS, "last"), distance, agg)
    torch.testing.assert_close(delta, torch.tensor(EXPECTED_DELTA[(distance, agg)], dtype=torch.float64))


def test_redundancy_cos_mean_decimals():
    # The same numbers as decimals, to catch a wrong constant above as well.
    delta = redundancy(representations(HISTOGRAMS, "last"), "cos", "mean")
    torch.testing.assert_close(delta, torch.tensor([0.7418011103, 0.3335528198, 0.5917517095], dtype=torch.float64))


def test_redundancy_over_all_layers_differs_from_last_layer():
    # With layer 0 = [1/2, 1/2, 0] prepended to every g (|layer 0|^2 = 1/2):
    #   cos(A, B) = (1/2 + 1/4) / sqrt((1/2 + 10/16)(1/2 + 6/16)) = 0.75 / sqrt(63/64) = 0.7559289460
    #   cos(A, C) = (1/2 + 0)   / sqrt((1/2 + 10/16)(1/2 + 1))    = 0.5 / sqrt(27/16)  = 0.3849001795
    #   cos(B, C) = (1/2 + 1/2) / sqrt((1/2 + 6/16)(1/2 + 1))     = 1 / sqrt(21/16)    = 0.8728715609
    cos_ab, cos_ac, cos_bc = 0.75 / math.sqrt(63 / 64), 0.5 / math.sqrt(27 / 16), 1 / math.sqrt(21 / 16)
    delta = redundancy(representations(HISTOGRAMS, "all"), "cos", "mean")
    expected = [1 - (cos_ab + cos_ac) / 2, 1 - (cos_ab + cos_bc) / 2, 1 - (cos_ac + cos_bc) / 2]
    torch.testing.assert_close(delta, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(delta, torch.tensor([0.4295854373, 0.1855997465, 0.3711141298], dtype=torch.float64))
    # Layer 0 is identical for all datasets, so L2 distances are those of the last layer alone.
    torch.testing.assert_close(
        redundancy(representations(HISTOGRAMS, "all"), "l2", "mean"),
        torch.tensor(EXPECTED_DELTA[("l2", "mean")], dtype=torch.float64),
    )


def test_reverse_ranks_gives_the_smallest_the_largest_value():
    assert reverse_ranks(torch.tensor([0.3, 0.1, 0.2, 0.9], dtype=torch.float64)).tolist() == [0.2, 0.9, 0.3, 0.1]
    # Ties share the mean of the values their positions receive: 1, 1 sit at ranks 0, 1 -> 5 and 2.
    assert reverse_ranks(torch.tensor([1.0, 2.0, 1.0, 5.0], dtype=torch.float64)).tolist() == [3.5, 1.0, 3.5, 1.0]


def test_update_weights_hand_computed():
    # Uniform weights cancel in the softmax: w_i = exp(10 delta_i) / sum_j exp(10 delta_j), then
    # 0.95 w + 0.05 / 3. delta = cos-mean deltas: exp(7.418011) = 1666.77, exp(3.335528) = 28.09,
    # exp(5.917517) = 371.48, sum 2066.34 -> softmax 0.806628, 0.013597, 0.179776.
    delta = EXPECTED_DELTA[("cos", "mean")]
    weights = update_weights([1 / 3, 1 / 3, 1 / 3], delta, eta=10.0, c=0.05)
    torch.testing.assert_close(
        weights, torch.tensor([0.7828664503, 0.0295890383, 0.1875445114], dtype=torch.float64), atol=1e-9, rtol=0
    )
    # A non-uniform start: 0.5 exp(2 * 0.990931), 0.3 exp(2 * 0.659740), 0.2 exp(2 * 0.943564), normalised,
    # then 0.9 w + 0.1 / 3.
    weights = update_weights([0.5, 0.3, 0.2], EXPECTED_DELTA[("l2", "mean")], eta=2.0, c=0.1)
    torch.testing.assert_close(
        weights, torch.tensor([0.5712187946, 0.1997404962, 0.2290407091], dtype=torch.float64), atol=1e-9, rtol=0
    )


@pytest.mark.parametrize("c", [0.0, 0.05, 0.8, 1.0])
def test_update_weights_smoothing_bound(c):
    # A huge step drives the softmax to one-hot; smoothing still keeps every weight >= c / k.
    weights = update_weights([0.25, 0.25, 0.25, 0.25], [5.0, 0.0, -3.0, 1.0], eta=100.0, c=c)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    assert bool((weights >= c / 4 - 1e-15).all())
    assert float(weights[0]) == pytest.approx(1 - c + c / 4, abs=1e-12)


@pytest.mark.parametrize(("distance", "agg"), list(EXPECTED_DELTA))
def test_permuting_datasets_permutes_weights(distance, agg):
    start = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    reference = update_weights(start, redundancy(representations(HISTOGRAMS, "all"), distance, agg), 10.0, 0.05)
    for order in itertools.permutations(range(3)):
        order = list(order)
        delta = redundancy(representations(HISTOGRAMS[order], "all"), distance, agg)
        torch.testing.assert_close(update_weights(start[order], delta, 10.0, 0.05), reference[order])


@pytest.mark.parametrize("distance", ["cos", "l2", "inv-l2"])
@pytest.mark.parametrize("agg", ["mean", "min", "max"])
def test_two_datasets_change_only_by_smoothing(distance, agg):
    # With k = 2 each dataset's only partner is the other one, so both deltas are equal and the
    # softmax returns the weights unchanged: 0.95 * [0.7, 0.3] + 0.05 / 2 = [0.69, 0.31].
    histograms = torch.tensor([[[5, 1, 0, 2]], [[0, 3, 3, 1]]])
    delta = redundancy(representations(histograms, "last"), distance, agg)
    assert float(delta[0]) == pytest.approx(float(delta[1]), abs=1e-15)
    torch.testing.assert_close(
        update_weights([0.7, 0.3], delta, eta=10.0, c=0.05), torch.tensor([0.69, 0.31], dtype=torch.float64)
    )


def test_invalid_arguments_are_rejected():
    g = representations(HISTOGRAMS, "last")
    with pytest.raises(ValueError, match="distance"):
        redundancy(g, "cosine", "mean")
    with pytest.raises(ValueError, match="agg"):
        redundancy(g, "cos", "median")
    with pytest.raises(ValueError, match="at least 2"):
        redundancy(g[:1], "cos", "mean")
    with pytest.raises(ValueError, match="layers"):
        representations(HISTOGRAMS, "first")
    with pytest.raises(ValueError, match="positive"):
        update_weights([0.0, 1.0], [0.0, 0.0], eta=1.0, c=0.0)
