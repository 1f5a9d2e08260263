"""Every dataset-weighting strategy behind one function, and where the first weights come from.

    weights = initial_weights("uniform", names, sizes)
    ...every probe period:
    weights = next_weights("dynamic", weights, period=p, seed=seed, delta=delta, eta=10.0, c=0.05)

`dynamic` is the paper's method (step 5 of docs/method.md, delta from routing.redundancy); the others are
its baselines and ablations (docs/method.md). Weights are plain lists of floats in
the order of `names`, ready for `MixtureSampler.set_weights`. Everything is
deterministic from its arguments (no global random state), so every rank
computes the same weights.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import torch

STRATEGIES = ("dynamic", "static", "refloss", "random", "random-batch", "cycle")
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


def initial_weights(spec: str, names: list[str], sizes: dict[str, int], records: dict | None = None, **rule) -> list[float]:
    """The weights before the first probe, in the order of `names`, summing to 1.

    spec: `uniform`; `size` (proportional to each dataset's train size); `embedding` or
    `embedding:<sentence-transformers id or path>` (from the datasets' mean sentence embeddings, see
    embeddings.py: needs `records`, the train conversations by dataset name; `rule` passes distance, agg,
    eta and c on); or the path of a JSON file `{"name": weight}` with a positive weight for every dataset.
    """
    if spec == "embedding" or spec.startswith("embedding:"):
        if records is None:
            raise ValueError("--init-weights embedding needs the datasets' records")
        import embeddings  # an optional extra (sentence-transformers), imported only when asked for

        model = spec.partition(":")[2] or embeddings.DEFAULT_MODEL
        return embeddings.embedding_weights(records, names, model=model, **rule)["weights"]
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
