"""Split one dataset into k pseudo-datasets by k-means over sentence embeddings (the paper's
`src/core/clustering.py`), so that the mixer has datasets to weigh when there is only one.

    python scripts/pseudo_domains.py --input my_data/train/orca --k 4 --out data/orca_k4
    python scripts/pseudo_domains.py --input my_data --dataset orca --k 4 --out data/orca_k4   # uses its dev split
    python scripts/pseudo_domains.py --input big.jsonl --k 8 --field instruction --out data/big_k8
    accelerate launch train.py --data data/orca_k4

`--input` is one dataset in any record and file format train.py's --data reads: a file (.jsonl, .jsonl.gz,
.json, .parquet), a folder of them (`train/<name>/`), or a data folder (`train/` and `dev/`) with `--dataset` naming one of its datasets (or
holding only one). Each record is embedded by its first user turn (or `--field`, a string field of the
raw record) with the sentence-embedding model of embeddings.py (default all-MiniLM-L6-v2, offline), and
k-means (scikit-learn, seeded) assigns it to a cluster. Clusters are named `cluster_<i>`, numbered in the
order of their first record in the input, so the output depends only on the input, k, the model and the seed.

Writes a routemix data folder: `train/cluster_<i>/part-000.jsonl` (the records as they were in the input)
and `dev/cluster_<i>.jsonl`: the input's dev split assigned to the nearest cluster centre, or, when the
input has no dev split, `--dev-fraction` of each cluster held out of train (seeded). Beside them
`pseudo_domains.json` (sizes, settings, example prompts per cluster), `report.md` (the same, readable)
and `clusters.png` (the train embeddings in 2-D, PCA, one colour per cluster).

Needs the embeddings extra: pip install -r requirements.txt -r requirements/embeddings.txt
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import tyro

if __package__ in (None, ""):  # run as `python scripts/pseudo_domains.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extras import embeddings  # noqa: E402
from reading import sources  # noqa: E402
from reading.records import dataset_files as files_below  # noqa: E402

EXAMPLE_TITLES = 5
"""Example prompts shown per cluster in the report."""
TITLE_CHARS = 100


@dataclass
class Args:
    """Cluster one dataset into k pseudo-datasets and write them as a routemix data folder."""

    input: Path
    """One dataset: a data file, a folder of data files, or a data folder (train/, dev/) with --dataset."""
    k: int
    """Number of clusters (pseudo-datasets)."""
    out: Path
    """Output data folder (must not hold a train/ or dev/ folder yet)."""
    dataset: str | None = None
    """With a data folder as --input: which of its datasets (needed when it holds more than one)."""
    field: str | None = None
    """Embed this string field of each raw record instead of its first user turn."""
    model: str = embeddings.DEFAULT_MODEL
    """Sentence-transformers model: the default is packaged for offline use; or a hub id or a local folder."""
    seed: int = 0
    """Seeds k-means and the dev hold-out."""
    dev_fraction: float = 0.05
    """Without a dev split in the input: the share of each cluster held out as its dev set (at least 1 record)."""
    n_init: int = 10
    """k-means restarts (scikit-learn's n_init); the best by inertia is kept."""


# --------------------------------------------------------------------------- reading one dataset


def dataset_files(args: Args) -> tuple[list[Path], list[Path]]:
    """(train files, dev files) of the one dataset --input names; dev files may be none."""
    path = args.input
    if path.is_file():
        return [path], []
    if not path.is_dir():
        raise ValueError(f"--input {path} does not exist")
    if (path / "train").is_dir():
        train, dev = sources.split_files(path, "train"), (sources.split_files(path, "dev") if (path / "dev").is_dir() else {})
        name = args.dataset or (next(iter(train)) if len(train) == 1 else None)
        if name not in train:
            raise ValueError(f"--input {path} holds the datasets {sorted(train)}: pass --dataset with one of them")
        return train[name], dev.get(name, [])
    files = files_below(path)  # every file format --data reads
    if not files:
        raise ValueError(f"--input {path} holds no data files and no train/ folder")
    return files, []


def read_records(files: list[Path], field: str | None) -> tuple[list[dict], list[str], Counter]:
    """(usable records, the text to embed of each, counts of skipped records by reason).

    A record is usable when train.py would train on it (`sources.to_messages` accepts it) and, with `field`,
    it has a non-empty string there."""
    records, texts, skipped = [], [], Counter()
    for path in files:
        for record in sources.read_jsonl(path):
            try:
                messages = sources.to_messages(record)
            except ValueError:
                skipped["not trainable"] += 1
                continue
            if field is None:
                text = embeddings.first_user_turn(messages)
            elif isinstance(record.get(field), str) and record[field].strip():
                text = record[field]
            else:
                skipped[f"no string field {field!r}"] += 1
                continue
            records.append(record)
            texts.append(text)
    return records, texts, skipped


# --------------------------------------------------------------------------- clustering


def cluster(vectors, k: int, seed: int, n_init: int):
    """(k-means model, labels renumbered by first appearance, the renumbering old -> new)."""
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(vectors.numpy())
    order = {}
    for label in kmeans.labels_.tolist():
        order.setdefault(label, len(order))
    return kmeans, [order[label] for label in kmeans.labels_.tolist()], order


def hold_out(labels: list[int], k: int, fraction: float, seed: int) -> set[int]:
    """Indices held out as dev: per cluster, round(fraction * size) of its members (at least 1), seeded."""
    rng = random.Random(f"routemix/pseudo-domains/{seed}")
    held = set()
    for c in range(k):
        members = [i for i, label in enumerate(labels) if label == c]
        if len(members) < 2:
            raise ValueError(f"cluster {c} has {len(members)} record(s): too few to hold out a dev set; use a smaller --k")
        held.update(rng.sample(members, max(1, round(fraction * len(members)))))
    return held


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")


def title(text: str) -> str:
    """`text` on one line (runs of white space made one space), cut to TITLE_CHARS."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def report_markdown(report: dict) -> str:
    lines = [f"# {report['k']} pseudo-domains of {report['input']}", "",
             (f"model {report['model']}, embedded: {report['field'] or 'first user turn'}, seed {report['seed']}, "
              f"dev: {report['dev_source']}; skipped records: {report['skipped'] or 'none'}"), "",
             "| cluster | train | dev |", "|---|---|---|"]
    lines += [f"| {name} | {c['train']} | {c['dev']} |" for name, c in report["clusters"].items()]
    for name, c in report["clusters"].items():
        lines += ["", f"## {name}", ""] + [f"- {t}" for t in c["examples"]]
    return "\n".join(lines) + "\n"


def main(args: Args) -> dict:
    if args.k < 2:
        raise ValueError(f"--k must be at least 2, got {args.k}")
    if not 0 < args.dev_fraction < 1:
        raise ValueError(f"--dev-fraction must be in (0, 1), got {args.dev_fraction}")
    if (args.out / "train").exists() or (args.out / "dev").exists():
        raise ValueError(f"{args.out} already holds a data folder; pass another --out")
    train_files, dev_files = dataset_files(args)
    records, texts, skipped = read_records(train_files, args.field)
    if len(records) < 2 * args.k:
        raise ValueError(f"{len(records)} usable records in {args.input} cannot make {args.k} clusters with dev sets")
    encoder = embeddings.load_encoder(args.model)
    vectors = embeddings.embed(encoder, texts)
    kmeans, labels, order = cluster(vectors, args.k, args.seed, args.n_init)
    names = [f"cluster_{c:0{len(str(args.k - 1))}d}" for c in range(args.k)]

    if dev_files:
        dev_records, dev_texts, dev_skipped = read_records(dev_files, args.field)
        skipped.update({f"dev {reason}": n for reason, n in dev_skipped.items()})
        dev_labels = [order[label] for label in kmeans.predict(embeddings.embed(encoder, dev_texts).numpy()).tolist()]
        empty = [names[c] for c in range(args.k) if c not in dev_labels]
        if empty:
            raise ValueError(f"no dev record of {args.input} falls into {empty}; use a smaller --k, or pass the train "
                             "files alone as --input to hold dev sets out of train")
        train_of = [[r for r, label in zip(records, labels) if label == c] for c in range(args.k)]
        dev_of = [[r for r, label in zip(dev_records, dev_labels) if label == c] for c in range(args.k)]
        dev_source = f"the input's dev split ({len(dev_records)} records), by nearest centre"
    else:
        held = hold_out(labels, args.k, args.dev_fraction, args.seed)
        train_of = [[r for i, (r, label) in enumerate(zip(records, labels)) if label == c and i not in held] for c in range(args.k)]
        dev_of = [[r for i, (r, label) in enumerate(zip(records, labels)) if label == c and i in held] for c in range(args.k)]
        dev_source = f"{args.dev_fraction:g} of each cluster held out of train"

    for name, train, dev in zip(names, train_of, dev_of):
        write_jsonl(args.out / "train" / name / "part-000.jsonl", train)
        write_jsonl(args.out / "dev" / f"{name}.jsonl", dev)
    report = {
        "input": str(args.input), "k": args.k, "model": args.model, "field": args.field, "seed": args.seed,
        "dev_source": dev_source, "skipped": dict(skipped),
        "clusters": {
            name: {"train": len(train), "dev": len(dev),
                   "examples": [title(t) for t, label in zip(texts, labels) if label == c][:EXAMPLE_TITLES]}
            for c, (name, train, dev) in enumerate(zip(names, train_of, dev_of))
        },
    }
    (args.out / "pseudo_domains.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (args.out / "report.md").write_text(report_markdown(report))
    from outputs import plots

    plots.plot_clusters(vectors, labels, names, args.out / "clusters.png")
    print(report_markdown(report))
    print(f"-> {args.out} (train/, dev/, pseudo_domains.json, report.md, clusters.png)")
    return report


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except ValueError as error:
        raise SystemExit(f"routemix: error: {error}") from None
