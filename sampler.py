"""The weighted multi-dataset sampler: one data order for the whole run, shared out among its ranks.

The run draws one sequence of examples. Each draw first picks a dataset with probability equal to its
weight, then takes the next example of that dataset's shuffled order: a fresh permutation per pass, from
`(seed, dataset, pass)`. Every rank computes the same sequence and takes its own share of it: with `world`
ranks, rank r takes draws r, r + world, r + 2 * world, ... So within a pass no example goes to two ranks,
every example of a pass is drawn before the next pass starts, and the passes (`epoch`) and the repetition
cap (`max_draws`) count the run's real passes over each dataset, whatever the number of ranks.

Ranks take their draws at their own pace (a packed batch takes as many examples as fill it), so at any
moment they are at different places in the sequence. Two things follow:
- new weights take effect at a place every rank agrees on: `set_weights(..., start=)` with the furthest
  place any rank has generated (`position`, the maximum over ranks); a rank behind it still draws its
  earlier share with the old weights;
- the states of all ranks together say exactly which draws the run has taken, and `reshard` turns the
  states of N ranks into those of M ranks that continue the same sequence: first the draws that some old
  rank had not reached yet (`carried`), then the sequence where the furthest rank was; no draw is skipped
  or repeated (docs/distributed.md: what else changes with the number of processes). A draw keeps its
  place in the sequence (`last_place`) through any number of reshards.

Everything is deterministic from the seed and the whole state is plain Python data, so `state_dict()` /
`load_state_dict()` resume a run exactly. With one rank the sequence is the one rank 0 drew before the
ranks shared it, so single-process runs draw what they drew before.

No torch, no accelerate: copy this file anywhere.
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_right
from itertools import accumulate


def _permutation(size: int, seed: int, name: str, epoch: int) -> array:
    """The order of dataset `name` in pass `epoch`: a seeded shuffle of range(size), stored compactly (`array`)."""
    order = list(range(size))
    # "/0/": the seed string of rank 0 when every rank shuffled on its own, kept so that one process draws as before
    random.Random(f"routemix/{seed}/0/{name}/{epoch}").shuffle(order)
    return array("q", order)


class MixtureSampler:
    """Draws `(dataset name, example index)` pairs from a weighted mixture of datasets: this rank's share of the
    run's one sequence of draws (module docstring).

    Args:
        sizes: number of examples in each dataset, by name.
        weights: sampling probability of each dataset, by name (normalised here).
        seed: the run's seed.
        rank, world: this process's rank and the number of processes; rank r takes draws r, r + world, ...
        max_draws: the most examples the whole run draws of each dataset, by name (repeats count again);
            None: no limit. `draw` raises once every dataset with weight is used up.

    State: the sequence's generator (choice RNG, `epoch` and `cursor` per dataset, `position`: the place of
    the next draw it generates, the weights in effect and the changes waiting for their place) is the same on
    every rank, at that rank's own place. The ranks share out one list: the `carried` draws (from before a
    `reshard`; none in a fresh run), then the sequence from place `base`; this rank takes items rank,
    rank + world, ... of it, `next` is the index of its next one, and `taken` counts its draws per dataset.
    """

    def __init__(self, sizes: dict[str, int], weights: dict[str, float], seed: int = 0, rank: int = 0, world: int = 1,
                 max_draws: dict[str, int] | None = None):
        empty = [name for name, size in sizes.items() if size <= 0]
        if empty:
            raise ValueError(f"datasets with no examples: {', '.join(empty)}")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of {world} ranks")
        self.names = sorted(sizes)
        self.sizes = dict(sizes)
        self.seed, self.rank, self.world = seed, rank, world
        self._rng = random.Random(f"routemix/{seed}/0/choice")  # "/0/": see _permutation
        self.epoch = {name: 0 for name in self.names}
        self.cursor = {name: 0 for name in self.names}
        self._order = {name: _permutation(self.sizes[name], seed, name, 0) for name in self.names}
        self.position = self.base = 0
        self.changes: list[tuple[int, list[float]]] = []  # (place, weights) set but not yet in effect
        self.next = rank
        self.carried: list[tuple[str, int, int, int]] = []  # (name, index, pass, place)
        self.taken = {name: 0 for name in self.names}
        self.last_pass = self.last_place = 0  # the pass of the latest draw and its place in the sequence
        self.recorded: list | None = None  # a list: every draw appends [name, index, pass, place] (for --debug-checks)
        self.max_draws = dict(max_draws) if max_draws is not None else None
        if self.max_draws is not None and sorted(self.max_draws) != self.names:
            raise ValueError(f"max_draws names {sorted(self.max_draws)}, the sampler has {self.names}")
        self.history: list[tuple[int, list[float]]] = []  # (step or draws, weights) at every change
        self.set_weights(weights)

    @property
    def weights(self) -> dict[str, float]:
        """The latest weights set (on several ranks, draws before their place still use the earlier ones)."""
        return dict(zip(self.names, self.changes[-1][1] if self.changes else self._weights))

    @property
    def draws(self) -> int:
        """Examples this rank has drawn."""
        return sum(self.taken.values())

    @property
    def drawn(self) -> dict[str, int]:
        """Examples this rank has drawn of each dataset (a repeated example counts again); summed over ranks, the
        run's."""
        return dict(self.taken)

    @property
    def generated(self) -> dict[str, int]:
        """Examples of each dataset in the run's sequence up to `position` (all ranks' draws, repeats counted)."""
        return {name: self.epoch[name] * self.sizes[name] + self.cursor[name] for name in self.names}

    @property
    def used_up(self) -> list[str]:
        """The datasets that have reached `max_draws` and are drawn no more."""
        if self.max_draws is None:
            return []
        generated = self.generated
        return [name for name in self.names if generated[name] >= self.max_draws[name]]

    def _update_cumulative(self) -> None:
        """The cumulative weights `draw` uses: the weights, with used-up datasets at zero."""
        used_up = set(self.used_up)
        self._cumulative = list(accumulate(0.0 if name in used_up else w for name, w in zip(self.names, self._weights)))

    def set_weights(self, weights: dict[str, float] | list[float], at: int | None = None, start: int | None = None) -> None:
        """Use new sampling weights from place `start` of the sequence on (default: this rank's `position`, the
        next draw it generates; on several ranks pass the maximum of every rank's `position`), and remember them
        in `history` under `at` (the caller's step count; default: this rank's draws so far)."""
        if not isinstance(weights, dict):
            weights = dict(zip(self.names, weights, strict=True))
        if sorted(weights) != self.names:
            raise ValueError(f"weights name {sorted(weights)}, the sampler has {self.names}")
        values = [float(weights[name]) for name in self.names]
        if not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
            raise ValueError(f"weights must be finite, non-negative and not all zero, got {weights}")
        start = self.position if start is None else start
        if start < self.position or (self.changes and start < self.changes[-1][0]):
            raise ValueError(f"new weights from place {start}: this rank has generated up to {self.position}")
        total = sum(values)
        self.history.append((self.draws if at is None else at, [v / total for v in values]))
        self.changes.append((start, [v / total for v in values]))
        self._apply_changes()

    def _apply_changes(self) -> None:
        """Put into effect the weights whose place has come."""
        while self.changes and self.changes[0][0] <= self.position:
            self._weights = self.changes.pop(0)[1]
            self._update_cumulative()

    def _generate(self) -> tuple[str, int, int, int]:
        """The draw at `position` of the run's sequence (whichever rank takes it): `(name, index, pass, place)`."""
        if self._cumulative[-1] <= 0:
            raise ValueError(
                f"every dataset with weight has been drawn as often as --max-epochs allows ({self.max_draws} examples "
                f"per dataset; weights {self.weights}): raise --max-epochs or lower --max-steps"
            )
        u = self._rng.random() * self._cumulative[-1]
        name = self.names[min(bisect_right(self._cumulative, u), len(self.names) - 1)]
        if self.cursor[name] == self.sizes[name]:
            self.epoch[name] += 1
            self.cursor[name] = 0
            self._order[name] = _permutation(self.sizes[name], self.seed, name, self.epoch[name])
        index = self._order[name][self.cursor[name]]
        self.cursor[name] += 1
        self.position += 1
        if self.max_draws is not None and self.epoch[name] * self.sizes[name] + self.cursor[name] == self.max_draws[name]:
            self._update_cumulative()
        self._apply_changes()
        return name, index, self.epoch[name], self.position - 1

    def _item(self, j: int) -> tuple[str, int, int, int]:
        """Item `j` of the list the ranks share out: a carried draw, or the sequence's draw at its place (at or
        after this rank's `position`), generating up to it."""
        if j < len(self.carried):
            return self.carried[j]
        place = self.base + j - len(self.carried)
        if place < self.position:
            raise RuntimeError(f"the draw at place {place} was generated already (this rank is at {self.position})")
        while self.position < place:  # the other ranks' draws
            self._generate()
        return self._generate()

    def draw(self) -> tuple[str, int]:
        """This rank's next example: `(dataset name, index into that dataset)`."""
        name, index, self.last_pass, self.last_place = self._item(self.next)
        self.next += self.world
        self.taken[name] += 1
        if self.recorded is not None:
            self.recorded.append([name, index, self.last_pass, self.last_place])
        return name, index

    def upcoming(self, name: str, n: int) -> list[int]:
        """The next (up to) `n` indices of dataset `name` in the run's current pass, in order; draws nothing (for
        tokenising ahead). On several ranks this rank draws about one in `world` of them."""
        return list(self._order[name][self.cursor[name] : self.cursor[name] + n])

    def state_dict(self) -> dict:
        """Everything needed to continue the exact same stream (JSON-serialisable)."""
        version, internal, gauss = self._rng.getstate()
        return {
            "names": list(self.names),
            "sizes": dict(self.sizes),
            "seed": self.seed,
            "rank": self.rank,
            "world": self.world,
            "weights": list(self._weights),
            "changes": [[start, list(weights)] for start, weights in self.changes],
            "history": [[at, list(weights)] for at, weights in self.history],
            "epoch": dict(self.epoch),
            "cursor": dict(self.cursor),
            "position": self.position,
            "base": self.base,
            "next": self.next,
            "carried": [list(draw) for draw in self.carried],
            "taken": dict(self.taken),
            "rng": [version, list(internal), gauss],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state`, which must be this rank's of a run with as many ranks (else `reshard` first)."""
        if state["names"] != self.names or state["sizes"] != self.sizes:
            raise ValueError(
                f"sampler state is for datasets {dict(zip(state['names'], state['sizes'].values()))}, "
                f"this run has {self.sizes}"
            )
        if "world" not in state:  # before the ranks shared one sequence: each rank's stream was its own
            if state["rank"] != 0 or self.world != 1:
                raise ValueError("this checkpoint is from a routemix whose ranks each drew their own stream; "
                                 "resume it with that version, or on one process")
            drawn = {n: state["epoch"][n] * self.sizes[n] + state["cursor"][n] for n in self.names}
            state = {**state, "world": 1, "changes": [], "position": state["draws"], "base": 0, "next": state["draws"],
                     "carried": [], "taken": drawn}
        if (state["rank"], state["world"]) != (self.rank, self.world):
            raise ValueError(f"sampler state of rank {state['rank']} of {state['world']}, this is rank {self.rank} "
                             f"of {self.world}: reshard the states first")
        built = {n: (self.seed, self.epoch[n]) for n in self.names}  # the permutations this sampler holds
        self.seed = state["seed"]
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        self.epoch, self.cursor = dict(state["epoch"]), dict(state["cursor"])
        self.position, self.base = state["position"], state["base"]
        self.next, self.taken = state["next"], dict(state["taken"])
        self.carried = [tuple(draw) for draw in state["carried"]]
        self._order = {n: self._order[n] if (state["seed"], self.epoch[n]) == built[n] else
                       _permutation(self.sizes[n], self.seed, n, self.epoch[n]) for n in self.names}
        self._weights = list(state["weights"])
        self.changes = [(start, list(weights)) for start, weights in state["changes"]]
        self._update_cumulative()
        self.history = [(at, list(weights)) for at, weights in state["history"]]


def reshard(states: list[dict], world: int, max_draws: dict[str, int] | None = None) -> list[dict]:
    """The sampler states of `world` ranks that continue the run whose ranks saved `states` (one per old rank): no
    draw of the run's sequence is skipped or repeated.

    The old ranks have taken, each, its items of the shared list below its `next`. Up to the furthest of them some
    items were not taken yet (a rank behind the others): those draws, generated from the state furthest behind,
    become the new ranks' `carried` draws, shared out first, in order; then the sequence continues where the
    furthest rank was, with its weights and waiting weight changes. The old ranks' draw counts (`taken`) go to the
    new rank 0, so that their sum over ranks stays the run's.
    """
    old = len(states)
    if sorted(s["rank"] for s in states) != list(range(old)) or any(s.get("world") != old for s in states):
        raise ValueError(f"reshard needs the states of all ranks of one run, got ranks "
                         f"{[(s['rank'], s.get('world')) for s in states]}")
    carried = [tuple(draw) for draw in states[0]["carried"]]
    frontier = max(s["next"] for s in states) - old + 1  # every item below it was reached by its rank
    behind = min(states, key=lambda s: s["position"])
    generator = MixtureSampler(behind["sizes"], dict.fromkeys(behind["names"], 1.0), behind["seed"], behind["rank"], old,
                               max_draws)
    generator.load_state_dict(behind)
    gaps = sorted(j for s in states for j in range(s["next"], frontier, old))
    still = [generator._item(j) for j in gaps] + carried[frontier:]  # not taken yet, in the list's order
    while generator.position < generator.base + max(frontier - len(carried), 0):  # where the furthest rank was
        generator._generate()
    state = generator.state_dict()
    state.update(world=world, carried=[list(draw) for draw in still], base=generator.position,
                 history=states[0]["history"])
    taken = {name: sum(s["taken"][name] for s in states) for name in state["names"]}
    return [{**state, "rank": r, "next": r, "taken": taken if r == 0 else dict.fromkeys(taken, 0)} for r in range(world)]
