"""The weighted multi-dataset sampler.

Every draw first picks a dataset with probability equal to its weight, then takes
the next example of that dataset's own shuffled stream. Each stream is a fresh
permutation per pass, so a dataset is seen without repeats until it runs out.
Everything is deterministic from ``(seed, rank)`` and the whole state is plain
Python data, so ``state_dict()`` / ``load_state_dict()`` resume a run exactly.
An optional hard limit per dataset (``max_draws``, the repetition cap) stops drawing a dataset once it
has given that many examples; its weight then goes to the others in proportion to their weights.

No torch, no accelerate: copy this file anywhere.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from itertools import accumulate


def _permutation(size: int, seed: int, rank: int, name: str, epoch: int) -> list[int]:
    """The order of dataset `name` in pass `epoch`: a seeded shuffle of range(size)."""
    order = list(range(size))
    random.Random(f"routemix/{seed}/{rank}/{name}/{epoch}").shuffle(order)
    return order


class MixtureSampler:
    """Draws `(dataset name, example index)` pairs from a weighted mixture of datasets.

    Args:
        sizes: number of examples in each dataset, by name.
        weights: sampling probability of each dataset, by name (normalised here).
        seed: the run's seed.
        rank: the process rank; each rank draws its own stream, disjoint in its
            dataset choices and shuffles, from the same weights.
        max_draws: the most examples this sampler draws of each dataset, by name (repeats count again);
            None: no limit. `draw` raises once every dataset with weight is used up.
    """

    def __init__(self, sizes: dict[str, int], weights: dict[str, float], seed: int = 0, rank: int = 0,
                 max_draws: dict[str, int] | None = None):
        empty = [name for name, size in sizes.items() if size <= 0]
        if empty:
            raise ValueError(f"datasets with no examples: {', '.join(empty)}")
        self.names = sorted(sizes)
        self.sizes = dict(sizes)
        self.seed = seed
        self.rank = rank
        self._rng = random.Random(f"routemix/{seed}/{rank}/choice")
        self.epoch = {name: 0 for name in self.names}
        self.cursor = {name: 0 for name in self.names}
        self._order = {name: _permutation(self.sizes[name], seed, rank, name, 0) for name in self.names}
        self.draws = 0
        self.max_draws = dict(max_draws) if max_draws is not None else None
        if self.max_draws is not None and sorted(self.max_draws) != self.names:
            raise ValueError(f"max_draws names {sorted(self.max_draws)}, the sampler has {self.names}")
        self.history: list[tuple[int, list[float]]] = []  # (step or draws, weights) at every change
        self.set_weights(weights)

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(self.names, self._weights))

    @property
    def drawn(self) -> dict[str, int]:
        """Examples drawn of each dataset so far (a repeated example counts again)."""
        return {name: self.epoch[name] * self.sizes[name] + self.cursor[name] for name in self.names}

    @property
    def used_up(self) -> list[str]:
        """The datasets that have reached `max_draws` and are drawn no more."""
        if self.max_draws is None:
            return []
        drawn = self.drawn
        return [name for name in self.names if drawn[name] >= self.max_draws[name]]

    def _update_cumulative(self) -> None:
        """The cumulative weights `draw` uses: the weights, with used-up datasets at zero."""
        used_up = set(self.used_up)
        self._cumulative = list(accumulate(0.0 if name in used_up else w for name, w in zip(self.names, self._weights)))

    def set_weights(self, weights: dict[str, float] | list[float], at: int | None = None) -> None:
        """Use new sampling weights from the next draw on, and remember them in `history` under
        `at` (the caller's step count; default: the number of draws so far)."""
        if not isinstance(weights, dict):
            weights = dict(zip(self.names, weights, strict=True))
        if sorted(weights) != self.names:
            raise ValueError(f"weights name {sorted(weights)}, the sampler has {self.names}")
        values = [float(weights[name]) for name in self.names]
        if not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
            raise ValueError(f"weights must be finite, non-negative and not all zero, got {weights}")
        total = sum(values)
        self._weights = [v / total for v in values]
        self._update_cumulative()
        self.history.append((self.draws if at is None else at, list(self._weights)))

    def draw(self) -> tuple[str, int]:
        """The next example: `(dataset name, index into that dataset)`."""
        if self._cumulative[-1] <= 0:
            raise ValueError(
                f"every dataset with weight has been drawn as often as --max-epochs allows ({self.max_draws} examples "
                f"per dataset on this rank; weights {self.weights}): raise --max-epochs or lower --max-steps"
            )
        u = self._rng.random() * self._cumulative[-1]
        name = self.names[min(bisect_right(self._cumulative, u), len(self.names) - 1)]
        if self.cursor[name] == self.sizes[name]:
            self.epoch[name] += 1
            self.cursor[name] = 0
            self._order[name] = _permutation(self.sizes[name], self.seed, self.rank, name, self.epoch[name])
        index = self._order[name][self.cursor[name]]
        self.cursor[name] += 1
        self.draws += 1
        if self.max_draws is not None and self.epoch[name] * self.sizes[name] + self.cursor[name] == self.max_draws[name]:
            self._update_cumulative()
        return name, index

    def upcoming(self, name: str, n: int) -> list[int]:
        """The next (up to) `n` indices of dataset `name` in its current pass, in the order `draw` gives
        them; draws nothing (for tokenising ahead)."""
        return self._order[name][self.cursor[name] : self.cursor[name] + n]

    def state_dict(self) -> dict:
        """Everything needed to continue the exact same stream (JSON-serialisable)."""
        version, internal, gauss = self._rng.getstate()
        return {
            "names": list(self.names),
            "sizes": dict(self.sizes),
            "seed": self.seed,
            "rank": self.rank,
            "weights": list(self._weights),
            "history": [[at, list(weights)] for at, weights in self.history],
            "epoch": dict(self.epoch),
            "cursor": dict(self.cursor),
            "draws": self.draws,
            "rng": [version, list(internal), gauss],
        }

    def load_state_dict(self, state: dict) -> None:
        if state["names"] != self.names or state["sizes"] != self.sizes:
            raise ValueError(
                f"sampler state is for datasets {dict(zip(state['names'], state['sizes'].values()))}, "
                f"this run has {self.sizes}"
            )
        self.seed, self.rank = state["seed"], state["rank"]
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        self.epoch, self.cursor, self.draws = dict(state["epoch"]), dict(state["cursor"]), state["draws"]
        self._order = {n: _permutation(self.sizes[n], self.seed, self.rank, n, self.epoch[n]) for n in self.names}
        self._weights = list(state["weights"])
        self._update_cumulative()
        self.history = [(at, list(weights)) for at, weights in state["history"]]
