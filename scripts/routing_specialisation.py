"""Do the tiny model's experts specialise by domain? Routing histograms of held-out prose, code and math.

routemix reweights datasets by how alike their routing is, which only means something if routers send
different kinds of text to different experts. This script runs the pretrained `tiny` and the
same-shape `tiny-random` over the held-out split of each corpus domain (scripts/build_corpus.py), counts
the experts each token is routed to with routemix's own `routing.RoutingCapture`, and compares the
domains with `routing.representations` and `routing.pairwise`, as a probe does:

- cos distance (1 - cosine similarity) and l2 distance between every two domains' histograms, on the
  last MoE layer (the paper's representation) and on all layers;
- the same distance between the two halves of each domain's held-out tokens: the noise floor, what
  "no difference" looks like at this many tokens;
- routemix's redundancy delta per domain (cos, mean over the others).

    python scripts/routing_specialisation.py     # writes docs/routing_specialisation.md and
                                                 # docs/routing_<domain>.png (experts x layers, both models)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
import models  # noqa: E402 -- the repository root goes on the path first
import routing  # noqa: E402

DOMAINS = ("code", "math", "prose")
MODELS = ("tiny", "tiny-random")


@dataclass
class Args:
    cache: Path = Path.home() / ".cache" / "routemix" / "corpus"
    """build_corpus.py's --cache: held-out tokens are read from its tokens/ folder"""
    tokens: int = 32768
    """held-out tokens per domain (from the start of its held-out split)"""
    seq_len: int = 256
    """tokens per row"""
    seed: int = 0
    """tiny-random's weights"""
    out: Path = REPO_ROOT / "docs"
    """where the markdown report and the heatmaps go"""
    threads: int = 1
    """torch CPU threads"""


def heldout_rows(cache: Path, domain: str, tokens: int, seq_len: int) -> torch.Tensor:
    stream = np.load(cache / "tokens" / f"{domain}.heldout.npy", mmap_mode="r")
    rows = min(tokens, len(stream)) // seq_len
    return torch.from_numpy(np.asarray(stream[:rows * seq_len], dtype=np.int64)).reshape(rows, seq_len)


@torch.no_grad()
def domain_histograms(model, rows_by_domain: dict[str, torch.Tensor], batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Per domain, `(2, L, E)` expert counts: first and second half of its rows."""
    capture = routing.RoutingCapture(routing.find_routers(model))
    histograms = {}
    with capture:
        for domain, rows in rows_by_domain.items():
            halves = []
            for half in rows.tensor_split(2):
                for chunk in half.split(batch_size):
                    model(input_ids=chunk)
                halves.append(capture.histogram(torch.ones(half.shape, dtype=torch.bool)))
            histograms[domain] = torch.stack(halves)
    return histograms


def distances(histograms_kLE: torch.Tensor, layers: routing.Layers) -> dict[str, torch.Tensor]:
    g = routing.representations(histograms_kLE, layers)
    return {"cos": 1.0 - routing.pairwise(g, "cos"), "l2": routing.pairwise(g, "l2")}


def compare(histograms: dict[str, torch.Tensor]) -> dict:
    """Between-domain distances, the half-vs-half noise floor and redundancy, for both layer choices."""
    whole_kLE = torch.stack([h.sum(dim=0) for h in histograms.values()])
    result = {}
    for layers in ("last", "all"):
        between = distances(whole_kLE, layers)
        within = {domain: distances(h, layers) for domain, h in histograms.items()}
        result[layers] = {
            "between": {metric: {f"{a}-{b}": float(matrix[i, j]) for i, a in enumerate(DOMAINS)
                                 for j, b in enumerate(DOMAINS) if i < j} for metric, matrix in between.items()},
            "within": {metric: {domain: float(within[domain][metric][0, 1]) for domain in DOMAINS}
                       for metric in ("cos", "l2")},
            "redundancy_cos_mean": {domain: float(d) for domain, d in
                                    zip(DOMAINS, routing.redundancy(routing.representations(whole_kLE, layers), "cos", "mean"))},
        }
    shares_kLE = whole_kLE.double() / whole_kLE.sum(dim=-1, keepdim=True)
    result["top_expert_share_last_layer"] = {d: float(shares_kLE[i, -1].max()) for i, d in enumerate(DOMAINS)}
    result["histograms"] = {d: whole_kLE[i].tolist() for i, d in enumerate(DOMAINS)}
    return result


def heatmap(domain: str, results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODELS), figsize=(9, 3.2), constrained_layout=True)
    for ax, name in zip(axes, MODELS):
        counts_LE = np.array(results[name]["histograms"][domain], dtype=float)
        shares_LE = counts_LE / counts_LE.sum(axis=1, keepdims=True)
        image = ax.imshow(shares_LE, vmin=0, vmax=max(0.5, shares_LE.max()), cmap="viridis", aspect="auto")
        ax.set_title(f"{name}: {domain}")
        ax.set_xlabel("expert")
        ax.set_ylabel("layer")
        ax.set_xticks(range(shares_LE.shape[1]))
        ax.set_yticks(range(shares_LE.shape[0]))
    fig.colorbar(image, ax=axes, label="share of the layer's (token, slot) pairs")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict, tokens: dict[str, int]) -> str:
    lines = ["# Routing specialisation of the embedded tiny model", "",
             "Written by `python scripts/routing_specialisation.py`: the pretrained `tiny` and the same-shape "
             "`tiny-random` (seed 0) over the held-out split of each corpus domain (docs/corpus.json), "
             "routing counted with `routing.RoutingCapture`, compared with `routing.representations` and "
             "`routing.pairwise` as a probe does. Distances are 1 - cosine similarity (cos) and Euclidean (l2) "
             "between the per-layer-normalised expert histograms. \"within\" splits one domain's held-out "
             "tokens in two halves: the distance that sampling noise alone gives.", "",
             "Random routers separate domains too: a random linear router sends different tokens to different "
             "experts, and the domains use different tokens. What pretraining changes shows in how far each "
             "between-domain distance sits above the within-domain rows of the same model, and in how "
             "concentrated each layer's routing is (the heatmaps), not in the raw distances alone.", "",
             "Held-out tokens per domain: " + ", ".join(f"{d} {n}" for d, n in tokens.items()) + ".", ""]
    for layers, title in (("last", "last MoE layer (the paper's representation)"), ("all", "all layers concatenated")):
        lines += [f"## {title}", "", "| pair | cos, tiny | cos, tiny-random | l2, tiny | l2, tiny-random |", "|---|---|---|---|---|"]
        for pair in results["tiny"][layers]["between"]["cos"]:
            values = [results[m][layers]["between"][metric][pair] for metric in ("cos", "l2") for m in MODELS]
            lines.append(f"| {pair} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
        for domain in DOMAINS:
            values = [results[m][layers]["within"][metric][domain] for metric in ("cos", "l2") for m in MODELS]
            lines.append(f"| {domain} within (half vs half) | " + " | ".join(f"{v:.4f}" for v in values) + " |")
        lines += ["", "Redundancy delta (cos, mean): " + "; ".join(
            f"{m}: " + ", ".join(f"{d} {results[m][layers]['redundancy_cos_mean'][d]:.4f}" for d in DOMAINS) for m in MODELS), ""]
    lines += ["## Largest expert share in the last layer", "", "| domain | tiny | tiny-random |", "|---|---|---|"]
    for domain in DOMAINS:
        lines.append(f"| {domain} | " + " | ".join(f"{results[m]['top_expert_share_last_layer'][domain]:.3f}" for m in MODELS) + " |")
    lines += ["", "Heatmaps (share of each layer's routing per expert, both models): "
              + ", ".join(f"[{d}](routing_{d}.png)" for d in DOMAINS) + ".", ""]
    return "\n".join(lines)


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    rows_by_domain = {d: heldout_rows(args.cache, d, args.tokens, args.seq_len) for d in DOMAINS}
    results = {}
    for name in MODELS:
        model, _ = models.load_model(name, seed=args.seed, training=False)
        model.eval()
        results[name] = compare(domain_histograms(model, rows_by_domain))
    args.out.mkdir(parents=True, exist_ok=True)
    for domain in DOMAINS:
        heatmap(domain, results, args.out / f"routing_{domain}.png")
    tokens = {d: int(rows.numel()) for d, rows in rows_by_domain.items()}
    (args.out / "routing_specialisation.md").write_text(markdown(results, tokens))
    (args.out / "routing_specialisation.json").write_text(json.dumps({"tokens": tokens, **results}, indent=1) + "\n")
    print(markdown(results, tokens))


if __name__ == "__main__":
    main(tyro.cli(Args))
