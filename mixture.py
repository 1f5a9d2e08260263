"""Every dataset-weighting strategy behind one function, the state it keeps between probes, the repetition cap,
and where the first weights come from.

    weights = initial_weights("uniform", names, sizes)
    ...every probe period:
    weights = next_weights("dynamic", weights, period=p, seed=seed, delta=delta, eta=10.0, c=0.05)

`dynamic` is the paper's method (step 5 of docs/method.md, delta from routing.redundancy); the others are
its baselines and ablations (docs/method.md). Weights are plain lists of floats in
the order of `names`, ready for `MixtureSampler.set_weights`. Everything is
deterministic from its arguments (no global random state), so every rank
computes the same weights.

A run keeps one `Mixture`: the strategy's own weights, the update rule (`Rule`: the paper's, or the
anchored one that does not collapse) with its moving average of delta, and the repetition cap
(`--max-epochs`), which projects the strategy's weights onto what the datasets can supply without
repeating any of them more often than allowed:

    mix = Mixture("dynamic", names, sizes, initial, Rule.anchored(), max_epochs=4)
    weights = mix.start(usage)                       # the initial weights, capped
    update = mix.update(period, delta, usage, se)    # every probe: update["weights_after"] -> the sampler
                                                     # (se: routing.redundancy_noise, how noisy delta is)
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

STRATEGIES = ("dynamic", "static", "refloss", "random", "random-batch", "cycle")
UPDATES = ("anchored", "paper")
DELTA_SCALES = ("none", "std")
RANDOM_BATCH_EPS = 1e-3
"""random-batch: the weight of every dataset but the chosen one."""


def update_weights(weights, delta, eta: float, c: float) -> torch.Tensor:
    """One step of the update: alpha = log w + eta * delta; w = softmax(alpha); w = (1 - c) w + c / k.

    The result (float64) sums to 1 and every weight is at least c / k.
    """
    weights = torch.as_tensor(weights, dtype=torch.float64)
    delta = torch.as_tensor(delta, dtype=torch.float64)
    if weights.shape != delta.shape or weights.dim() != 1:
        raise ValueError(f"weights {tuple(weights.shape)} and delta {tuple(delta.shape)} must be equal 1-D shapes")
    if not (weights > 0).all() or not torch.isfinite(weights).all():
        raise ValueError(f"weights must be positive and finite, got {weights.tolist()}")
    if not 0.0 <= c <= 1.0:
        raise ValueError(f"smoothing c must be in [0, 1], got {c}")
    alpha = torch.log(weights / weights.sum()) + eta * delta
    return (1.0 - c) * torch.softmax(alpha, dim=0) + c / weights.numel()


def refloss_delta(dev_loss, ref_loss) -> torch.Tensor:
    """DoReMi-style delta: dev loss now minus the reference loss, per dataset (float64)."""
    dev_loss = torch.as_tensor(dev_loss, dtype=torch.float64)
    ref_loss = torch.as_tensor(ref_loss, dtype=torch.float64)
    if dev_loss.shape != ref_loss.shape:
        raise ValueError(f"dev loss {tuple(dev_loss.shape)} and reference loss {tuple(ref_loss.shape)} differ")
    return dev_loss - ref_loss


def _period_rng(seed: int, period: int, strategy: str) -> random.Random:
    """A random generator owned by one (seed, period, strategy): the same on every rank and every resume."""
    return random.Random(f"routemix/{seed}/{period}/{strategy}")


def next_weights(
    strategy: str,
    weights: list[float],
    *,
    period: int,
    seed: int,
    delta=None,
    eta: float = 10.0,
    c: float = 0.05,
) -> list[float]:
    """The weights for probe period `period` (0, 1, 2, ...), given the current ones.

    - dynamic, refloss: `update_weights(weights, delta, eta, c)`; delta is
      `routing.redundancy(...)` for dynamic and `refloss_delta(...)` for refloss.
    - static: unchanged.
    - random: fresh Dirichlet(1, ..., 1) weights drawn from (seed, period).
    - random-batch: one dataset, drawn from (seed, period), gets 1 - (k - 1) * eps, the others eps.
    - cycle: the weights rotated by one dataset (dataset i's weight goes to i + 1, the last's to the first).
    """
    k = len(weights)
    if strategy in ("dynamic", "refloss"):
        if delta is None:
            raise ValueError(f"strategy {strategy!r} needs a delta")
        return update_weights(weights, delta, eta=eta, c=c).tolist()
    if strategy == "static":
        return [float(w) for w in weights]
    if strategy == "random":
        rng = _period_rng(seed, period, strategy)
        draws = [rng.expovariate(1.0) for _ in range(k)]  # normalised exponentials are Dirichlet(1)
        return [d / sum(draws) for d in draws]
    if strategy == "random-batch":
        chosen = _period_rng(seed, period, strategy).randrange(k)
        return [1.0 - (k - 1) * RANDOM_BATCH_EPS if i == chosen else RANDOM_BATCH_EPS for i in range(k)]
    if strategy == "cycle":
        return [float(w) for w in weights[-1:] + weights[:-1]]
    raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


@dataclass(frozen=True)
class Rule:
    """How delta moves the weights of `dynamic` and `refloss`, one probe at a time:

        u     = delta - mean(delta),  kept = (1 - (noise * se / u)^2)_+     (kept = 1 without `se` or with noise 0)
        d     = kept * u / std(delta)  (`scale="std"`: units of the spread over datasets), or mean + kept * u ("none")
        e     = ema * e_before + (1 - ema) * d                  (e = d at the first probe)
        alpha = (1 - pull) * log w + pull * log w0 + eta * e    (w0: the initial weights)
        w     = (1 - c) * softmax(alpha) + c / k

    `Rule.paper()` is the paper's rule exactly: alpha = log w + eta * delta. It compounds: after n probes
    w = softmax(log w0 + eta * (the sum of the n deltas)), so a dataset that is always the most distinct ends
    with all the weight but the floor c / k, however small the gap between the deltas (docs/method.md).
    `pull` > 0 stops the compounding: under a steady e the weights settle at softmax(log w0 + eta / pull * e)
    instead of running off. `scale="std"` makes eta a number of log-units per standard deviation of delta, the
    same for a model whose routing tells datasets far apart and for one whose deltas are all small. `ema`
    averages e over probes, so that one probe's noise moves the weights less than a lasting difference.

    `noise` makes the rule answer to how certain delta is. `se` is the standard error of u from the probe's own
    batches (`routing.redundancy_noise`); each dataset keeps only the part of its deviation that clears `noise`
    standard errors, by the non-negative garrote (Breiman 1995), the positive-part James-Stein factor of one
    coordinate. A deviation inside the noise band is dropped (no movement), one just outside it moves a little (no
    jump at the band's edge, so a probe's noise cannot flip a weight between two levels), and one many standard
    errors out is kept almost whole (unlike soft thresholding, which would cut every clear difference by the band).
    Dividing by std(delta) alone would not do: when nothing differs, the spread is the noise itself, and noise
    divided by noise moves the weights by the full eta.
    """

    eta: float = 10.0
    c: float = 0.05
    scale: str = "none"
    ema: float = 0.0
    pull: float = 0.0
    noise: float = 0.0

    @classmethod
    def paper(cls, eta: float = 10.0, c: float = 0.05) -> Rule:
        return cls(eta=eta, c=c)

    def __post_init__(self):
        if self.scale not in DELTA_SCALES:
            raise ValueError(f"delta scale must be one of {', '.join(DELTA_SCALES)}, got {self.scale!r}")
        for name, value in (("c", self.c), ("ema", self.ema), ("pull", self.pull)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not (self.noise >= 0.0 and math.isfinite(self.noise)):
            raise ValueError(f"noise must be a finite number >= 0 (standard errors of delta), got {self.noise}")
        if self.ema == 1.0:
            raise ValueError("ema 1 would never let delta in; use 0 <= ema < 1")

    def kept(self, delta, se=None) -> torch.Tensor:
        """The share of each dataset's deviation from the mean delta that clears the noise: 1 without `se`."""
        centred = torch.as_tensor(delta, dtype=torch.float64)
        centred = centred - centred.mean()
        if se is None or self.noise == 0.0:
            return torch.ones_like(centred)
        band = self.noise * torch.as_tensor(se, dtype=torch.float64)
        if band.shape != centred.shape:
            raise ValueError(f"delta {tuple(centred.shape)} and its standard error {tuple(band.shape)} differ in shape")
        ratio = torch.where(centred != 0, band / centred.abs().clamp(min=torch.finfo(torch.float64).tiny), torch.inf)
        return torch.where(band > 0, (1.0 - ratio.pow(2)).clamp(min=0.0), torch.ones_like(centred))

    def signal(self, delta, before: list[float] | None, se=None) -> list[float]:
        """e of this probe from delta, its standard error `se` (None: unknown, treated as exact) and the previous
        probe's e (None at the first)."""
        delta = torch.as_tensor(delta, dtype=torch.float64)
        centred = self.kept(delta, se) * (delta - delta.mean())
        if self.scale == "std":
            spread = delta.std(correction=0)
            delta = centred / spread if spread > 0 else torch.zeros_like(delta)
        elif self.noise > 0.0 and se is not None:
            delta = delta.mean() + centred
        if before is None:
            return delta.tolist()
        return (self.ema * torch.tensor(before, dtype=torch.float64) + (1.0 - self.ema) * delta).tolist()

    def apply(self, weights: list[float], e: list[float], initial: list[float]) -> list[float]:
        """The weights after one update, from the current ones and this probe's e."""
        if self.pull == 0.0:  # the paper's update, unchanged
            return update_weights(weights, e, eta=self.eta, c=self.c).tolist()
        weights = torch.as_tensor(weights, dtype=torch.float64)
        initial = torch.as_tensor(initial, dtype=torch.float64)
        log_w = (1.0 - self.pull) * torch.log(weights / weights.sum()) + self.pull * torch.log(initial / initial.sum())
        return update_weights(torch.softmax(log_w, dim=0), e, eta=self.eta, c=self.c).tolist()


def cap_weights(weights: list[float], room: list[float], lengths: list[float], tokens_ahead: float
                ) -> tuple[list[float], list[bool]]:
    """The weights under which no dataset is expected to be drawn more than `room` more examples, and which
    datasets had to be capped.

    Drawn with weights w, dataset i takes the share w_i L_i / sum_j w_j L_j of the tokens (L: mean tokens
    per example), so the `tokens_ahead` tokens still to come draw tokens_ahead * w_i / sum_j w_j L_j of its
    examples. A dataset that would exceed its room is set to exactly its room; the others share what is left in
    proportion to their weights (their ratios do not change), which may cap more of them (repeated until none
    exceeds). If even all of them at their room cannot fill the run, every dataset is capped and the weights are
    proportional to their rooms (the caller must say so: the sampler's hard limit will then end some draws).
    """
    k = len(weights)
    total = float(sum(weights))
    weights = [float(w) / total for w in weights]
    if tokens_ahead <= 0:
        return weights, [False] * k
    limit = [max(float(r), 0.0) * length / tokens_ahead for r, length in zip(room, lengths)]  # most token share
    share = [w * length for w, length in zip(weights, lengths)]
    share = [s / sum(share) for s in share]
    capped = [False] * k
    while True:
        free = 1.0 - sum(limit[i] for i in range(k) if capped[i])
        open_ = [i for i in range(k) if not capped[i]]
        if not open_ or free <= 0:
            return _normalised([limit[i] / lengths[i] for i in range(k)]), [True] * k
        rest = sum(share[i] for i in open_)
        basis = share if rest > 0 else limit  # the others all have weight 0: fill by their room instead
        rest = sum(basis[i] for i in open_)
        final = [limit[i] if capped[i] else free * basis[i] / rest for i in range(k)]
        over = [i for i in open_ if final[i] > limit[i] * (1 + 1e-12)]
        if not over:
            return _normalised([final[i] / lengths[i] for i in range(k)]), capped
        for i in over:
            capped[i] = True


def _normalised(values: list[float]) -> list[float]:
    total = sum(values)
    return [v / total for v in values]


@dataclass(frozen=True)
class Usage:
    """What a run has drawn so far, summed over all ranks, and how many tokens it will still draw."""

    drawn: list[int]  # examples drawn of each dataset (repeats count again)
    drawn_tokens: list[int]  # their tokens
    tokens_ahead: float  # tokens the rest of the run will draw

    @classmethod
    def at(cls, step: int, max_steps: int, drawn: list[int], drawn_tokens: list[int], tokens_per_step: float) -> Usage:
        """After `step` of `max_steps` optimizer steps: the steps left draw as many tokens per step as the steps so
        far did on average, or `tokens_per_step` (the batch's capacity) before the first step."""
        per_step = sum(drawn_tokens) / step if step > 0 and sum(drawn_tokens) > 0 else tokens_per_step
        return cls(list(drawn), list(drawn_tokens), per_step * max(max_steps - step, 0))


class Mixture:
    """A run's sampling weights between probes: the strategy's own weights, the update rule's state, the cap.

    The cap (`max_epochs`, None = none) is a projection applied after the strategy: the strategy keeps its own
    weights (so the paper's rule runs exactly as published), and the sampler draws with the capped ones
    (`cap_weights`). Mean example lengths for the cap come from the tokens drawn so far, with `prior`
    (tokens, examples) per dataset (e.g. the dev probe batches) counted as if drawn.

    Args:
        strategy: one of STRATEGIES.
        names, sizes: the datasets, in the sampler's order, and their train examples.
        initial: the initial weights (`initial_weights`).
        rule: how delta moves the weights (dynamic, refloss).
        seed: for the random strategies.
        max_epochs: at most this many passes over any dataset over the whole run.
        prior: (tokens, examples) per dataset, the length estimate before anything is drawn.
    """

    def __init__(self, strategy: str, names: list[str], sizes: dict[str, int], initial: list[float], rule: Rule, *,
                 seed: int = 0, max_epochs: float | None = None, prior: list[tuple[int, int]] | None = None):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if max_epochs is not None and not max_epochs > 0:
            raise ValueError(f"--max-epochs must be positive, got {max_epochs}")
        self.strategy, self.names, self.rule, self.seed = strategy, list(names), rule, seed
        self.sizes = [sizes[name] for name in self.names]
        self.initial = [float(w) for w in initial]
        self.max_epochs = max_epochs
        self.prior = [tuple(p) for p in prior] if prior is not None else [(0, 0)] * len(self.names)
        self.weights = list(self.initial)  # the strategy's own weights, before the cap
        self.signal: list[float] | None = None  # the rule's e (its moving average of delta)
        self._announced: set[str] = set()  # datasets whose cap was printed (`cap_messages`); not state
        self._announced_infeasible = False

    def lengths(self, usage: Usage) -> list[float]:
        """Mean tokens per example of each dataset: drawn so far, and the prior, together."""
        known = [(t + pt, n + pn) for t, n, (pt, pn) in zip(usage.drawn_tokens, usage.drawn, self.prior)]
        fallback = sum(t for t, _ in known) / max(sum(n for _, n in known), 1) or 1.0
        return [t / n if n > 0 else fallback for t, n in known]

    def planned_epochs(self, weights: list[float], usage: Usage) -> list[float]:
        """The passes over each dataset at the end of the run if the rest is drawn with `weights`."""
        lengths = self.lengths(usage)
        per_token = usage.tokens_ahead / sum(w * length for w, length in zip(weights, lengths))
        return [(n + per_token * w) / size for n, w, size in zip(usage.drawn, weights, self.sizes)]

    def cap(self, weights: list[float], usage: Usage) -> dict:
        """The weights to draw with, and what the cap did: the record fields `weights_after`, `capped` (names),
        `cap_infeasible`, `planned_epochs` (at the weights drawn with) and `epochs_drawn` (so far)."""
        total = sum(weights)
        weights = [w / total for w in weights]
        capped, infeasible = [False] * len(weights), False
        if self.max_epochs is not None:
            room = [self.max_epochs * size - n for size, n in zip(self.sizes, usage.drawn)]
            weights, capped = cap_weights(weights, room, self.lengths(usage), usage.tokens_ahead)
            infeasible = all(capped)
        return {
            "weights_after": weights,
            "capped": [name for name, flag in zip(self.names, capped) if flag],
            "cap_infeasible": infeasible,
            "planned_epochs": self.planned_epochs(weights, usage),
            "epochs_drawn": [n / size for n, size in zip(usage.drawn, self.sizes)],
        }

    def start(self, usage: Usage) -> dict:
        """The weights of the first period: the initial ones, capped (see `cap`). Also `planned_epochs_initial`,
        the passes the initial weights themselves would make.

        Raises ValueError when even every dataset at the cap cannot fill the planned run.
        """
        record = self.cap(self.initial, usage) | {"planned_epochs_initial": self.planned_epochs(self.initial, usage)}
        if record["cap_infeasible"]:
            lengths = self.lengths(usage)
            holds = sum(self.max_epochs * size * length for size, length in zip(self.sizes, lengths))
            raise ValueError(f"--max-epochs {self.max_epochs:g} cannot hold the run: {self.max_epochs:g} passes over "
                             f"every dataset are about {holds:,.0f} tokens, the planned steps draw about "
                             f"{usage.tokens_ahead:,.0f}; raise --max-epochs, lower --max-steps, or pass --max-epochs None")
        return record

    def update(self, period: int, delta, usage: Usage, delta_se=None) -> dict:
        """The weights for probe period `period` from this probe's delta (dynamic, refloss; ignored otherwise) and
        the standard error of delta - mean(delta) (`routing.redundancy_noise`; None: not measured, delta taken
        as exact).

        Returns the record fields of `cap`, plus `weights_proposed` (the strategy's weights before the cap),
        and for dynamic and refloss `delta_spread` (the standard deviation of delta over datasets), `delta_se`,
        `delta_kept` (the share of each deviation that cleared the noise) and `signal` (the rule's e: what moved
        the weights).
        """
        extra = {}
        if self.strategy in ("dynamic", "refloss"):
            if delta is None:
                raise ValueError(f"strategy {self.strategy!r} needs a delta")
            self.signal = self.rule.signal(delta, self.signal, delta_se)
            self.weights = self.rule.apply(self.weights, self.signal, self.initial)
            extra = {"delta_spread": float(torch.as_tensor(delta, dtype=torch.float64).std(correction=0)),
                     "delta_se": None if delta_se is None else torch.as_tensor(delta_se, dtype=torch.float64).tolist(),
                     "delta_kept": self.rule.kept(delta, delta_se).tolist(), "signal": list(self.signal)}
        else:
            self.weights = next_weights(self.strategy, self.weights, period=period, seed=self.seed)
        return {"weights_proposed": list(self.weights)} | self.cap(self.weights, usage) | extra

    def cap_messages(self, record: dict, step: int) -> list[str]:
        """What to print about the cap, once: the cap itself and a warning for each dataset that the initial weights
        would repeat past it (at the start, `step` 0), then the first update that caps each dataset. Every capped
        update is in mixture.jsonl (`capped`, `planned_epochs`); this only tells the user once."""
        if self.max_epochs is None:
            return []
        messages = []
        if "planned_epochs_initial" in record:
            limits = {name: math.floor(self.max_epochs * size) for name, size in zip(self.names, self.sizes)}
            messages.append(f"--max-epochs {self.max_epochs:g}: at most {limits} examples per dataset over the run")
            for name, passes, weight in zip(self.names, record["planned_epochs_initial"], record["weights_after"]):
                if passes > self.max_epochs:
                    messages.append(f"warning: at its initial weight {name!r} would be drawn {passes:.3g} times over "
                                    f"the run, past --max-epochs {self.max_epochs:g}; its weight is capped from the start "
                                    f"(to {weight:.4f}), the other datasets share the rest")
            self._announced.update(record["capped"])
        elif new := [name for name in record["capped"] if name not in self._announced]:
            messages.append(f"step {step}: --max-epochs caps {new} (planned passes "
                            + ", ".join(f"{n} {p:.2f}" for n, p in zip(self.names, record["planned_epochs"]) if n in new)
                            + "); every capped update is in mixture.jsonl")
            self._announced.update(new)
        if record["cap_infeasible"] and not self._announced_infeasible:
            messages.append(f"warning: even every dataset at --max-epochs {self.max_epochs:g} cannot fill the remaining "
                            "steps; the sampler stops drawing each dataset at its limit and stops the run when all are "
                            "used up: raise --max-epochs or lower --max-steps")
            self._announced_infeasible = True
        return messages

    def state_dict(self) -> dict:
        """The strategy's weights and the rule's moving average (JSON: floats round-trip exactly)."""
        return {"weights": list(self.weights), "signal": self.signal, "rule": asdict(self.rule)}

    def load_state_dict(self, state: dict) -> None:
        self.weights = list(state["weights"])
        self.signal = None if state["signal"] is None else list(state["signal"])


def max_draws(sizes: dict[str, int], max_epochs: float | None) -> dict[str, int] | None:
    """The sampler's hard limit: the whole run (all ranks share one data order) draws at most max_epochs * size
    examples of a dataset (None: no limit)."""
    if max_epochs is None:
        return None
    return {name: math.floor(max_epochs * size) for name, size in sizes.items()}


def _read_named_values(path: str | Path, names: list[str], what: str) -> dict[str, float]:
    """A JSON file `{"name": number}` that names exactly `names`, every value a finite number.

    Raises ValueError naming the file and the offending names.
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{what} file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} file {path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f'{what} file {path} must hold one JSON object {{"dataset name": number}}')
    unknown = sorted(set(values) - set(names))
    missing = sorted(set(names) - set(values))
    if unknown or missing:
        raise ValueError(
            f"{what} file {path} must name exactly the datasets {sorted(names)}: unknown {unknown}, missing {missing}"
        )
    not_numbers = sorted(
        name
        for name, value in values.items()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    )
    if not_numbers:
        raise ValueError(f"{what} file {path} has values that are not finite numbers for {not_numbers}")
    return {name: float(value) for name, value in values.items()}


def initial_weights(spec: str, names: list[str], sizes: dict[str, int]) -> list[float]:
    """The weights before the first probe, in the order of `names`, summing to 1.

    spec: `uniform`; `size` (proportional to each dataset's train size); or the path of a JSON file
    `{"name": weight}` with a positive weight for every dataset. (`embedding`, the sentence-embedding
    weights, is an optional extra: extras/embeddings.py.)
    """
    if spec == "uniform":
        return [1.0 / len(names)] * len(names)
    if spec == "size":
        empty = [name for name in names if sizes.get(name, 0) <= 0]
        if empty:
            raise ValueError(f"--init-weights size needs datasets with examples; empty or unknown: {empty}")
        total = sum(sizes[name] for name in names)
        return [sizes[name] / total for name in names]
    values = _read_named_values(spec, names, "init weights")
    not_positive = sorted(name for name, value in values.items() if value <= 0)
    if not_positive:
        raise ValueError(f"init weights file {spec} has non-positive weights for {not_positive}")
    total = sum(values.values())
    return [values[name] / total for name in names]


def load_ref_loss(path: str | Path, names: list[str]) -> list[float]:
    """Reference dev losses `{"name": loss}` from a JSON file, in the order of `names` (each finite, >= 0)."""
    values = _read_named_values(path, names, "reference loss")
    negative = sorted(name for name, value in values.items() if value < 0)
    if negative:
        raise ValueError(f"reference loss file {path} has negative losses for {negative}")
    return [values[name] for name in names]
