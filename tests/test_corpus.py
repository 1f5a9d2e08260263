"""The pretraining pipeline of the embedded model, end to end on a tiny stand-in corpus, and the shipped weights.

The stand-in is a folder of a few files laid out as the Debian packages unpack (`--from-dir`), so these tests
need no apt and no network, yet run the same extraction, split, tokenisation and manifest code as the real
build; then the tokenizer trainer and a few steps of pretraining run on it as users launch them.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer

import models
from scripts.build_corpus import SOURCES, heldout, html_to_text
from scripts.train_tokenizer import CHATML_TEMPLATE, SPECIAL_TOKENS, corpus_texts, train_bpe

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = REPO_ROOT / "models" / "tiny"
DOCUMENTS_PER_DOMAIN = 8

PAGE = """<html><head><title>T</title><style>p {{color: red}}</style><script>var x = 1;</script></head>
<body><nav>Next Previous</nav><h1>Chapter {n}</h1><p>The package manager installs &amp; removes software, number {n}.</p>
<p>Each package lists its dependencies; apt resolves them before it unpacks anything.</p></body></html>"""
PYTHON = "def f{n}(x):\n    \"\"\"Return x plus {n}.\"\"\"\n    return x + {n}\n\n\nclass C{n}:\n    pass\n"
MAXIMA = "/* integrals {n} */\nintegrate(x^{n} * sin(x), x, 0, %pi);\nexpand((a + b)^{n});\n"


def write_stand_in(root: Path) -> None:
    """DOCUMENTS_PER_DOMAIN files per domain, at the paths the real packages use, plus files that must be left out."""
    handbook = root / "debian-handbook" / "usr/share/doc/debian-handbook/html"
    stdlib = root / "libpython3.11-minimal" / "usr/lib/python3.11"
    share = root / "maxima-share" / "usr/share/maxima/5.46.0/share"
    for n in range(DOCUMENTS_PER_DOMAIN):
        for path, text in ((handbook / "en-US" / f"page{n}.html", PAGE.format(n=n)),
                           (stdlib / "pkg" / f"mod{n}.py", PYTHON.format(n=n) * 20),
                           (share / "calculus" / f"f{n}.mac", MAXIMA.format(n=n) * 20)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    (handbook / "de-DE").mkdir()
    (handbook / "de-DE" / "page0.html").write_text("<p>Paketverwaltung</p>")  # another language: not included
    (share / "test_batch_encodings").mkdir()
    (share / "test_batch_encodings" / "latin1.mac").write_text("excluded")
    (stdlib / "pkg" / "duplicate.py").write_text(PYTHON.format(n=0) * 20)  # identical text: dropped


def run(script: str, *flags: str) -> str:
    done = subprocess.run([sys.executable, f"scripts/{script}", *flags], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The stand-in built into a cache folder, tokens counted with the shipped tokenizer."""
    root = tmp_path_factory.mktemp("corpus")
    write_stand_in(root / "unpacked")
    run("build_corpus.py", "--from-dir", str(root / "unpacked"), "--cache", str(root / "cache"),
        "--heldout-percent", "30", "--no-copy-manifest", "--tokenizer", str(TINY))
    return root / "cache"


def test_html_to_text_keeps_the_visible_text_only():
    text = html_to_text(PAGE.format(n=3))
    assert text == ("Chapter 3\n\nThe package manager installs & removes software, number 3.\n\n"
                    "Each package lists its dependencies; apt resolves them before it unpacks anything.\n")


def test_build_corpus_writes_splits_tokens_and_manifest(corpus):
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["duplicates_dropped"] == 1
    assert {entry["package"] for entry in manifest["packages"]} == {source.package for source in SOURCES}
    tokenizer = AutoTokenizer.from_pretrained(TINY)
    for domain in ("prose", "code", "math"):
        counts = manifest["domains"][domain]
        assert counts["train"]["documents"] + counts["heldout"]["documents"] == DOCUMENTS_PER_DOMAIN
        assert counts["heldout"]["documents"] > 0 and counts["train"]["documents"] > 0
        for split in ("train", "heldout"):
            records = [json.loads(line) for line in (corpus / "text" / f"{domain}.{split}.jsonl").read_text().splitlines()]
            assert all(heldout(r["text"], 30) == (split == "heldout") for r in records)
            assert sum(len(r["text"].encode()) for r in records) == counts[split]["bytes"]
            ids = np.load(corpus / "tokens" / f"{domain}.{split}.npy")
            assert ids.size == counts[split]["tokens"]
            expected = [i for r in records for i in (*tokenizer(r["text"])["input_ids"], tokenizer.bos_token_id)]
            assert ids.tolist() == expected
    sources = [json.loads(line)["source"] for line in (corpus / "text" / "prose.train.jsonl").read_text().splitlines()]
    assert all("/en-US/" in source for source in sources)
    assert manifest["tokenizer_sha256"] == hashlib.sha256((TINY / "tokenizer.json").read_bytes()).hexdigest()


def test_train_tokenizer_is_deterministic_with_the_chatml_specials(corpus, tmp_path):
    run("train_tokenizer.py", "--corpus", str(corpus), "--vocab-size", "300", "--out", str(tmp_path))
    again = train_bpe(corpus_texts(corpus / "text"), 300)
    assert json.loads((tmp_path / "tokenizer.json").read_text())["model"] == json.loads(again.to_str())["model"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tokenizer) == 300
    assert [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 3)
    assert tokenizer.chat_template == CHATML_TEMPLATE


def test_pretrain_runs_saves_and_resumes(corpus, tmp_path):
    flags = ["--cache", str(corpus), "--out", str(tmp_path / "model"), "--report", str(tmp_path / "report.json"),
             "--max-steps", "3", "--batch-size", "2", "--seq-len", "32", "--eval-tokens", "64", "--warmup-steps", "1",
             "--log-every", "1", "--nice", "0"]
    run("pretrain_tiny.py", *flags)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["steps"] == 3 and report["tokens_seen"] == 3 * 2 * 32
    assert set(report["heldout_before"]) == set(report["heldout_after"]) == {"code", "math", "prose"}
    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as weights:
        first = {name: weights.get_tensor(name) for name in weights.keys()}
    assert json.loads((tmp_path / "model" / "config.json").read_text())["output_router_logits"] is False

    # a rerun finds the finished checkpoint and continues from it: no step is taken again
    assert "resumed at step 3" in run("pretrain_tiny.py", *flags)
    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as weights:
        assert all(torch.equal(first[name], weights.get_tensor(name)) for name in weights.keys())


def test_shipped_tiny_is_pretrained_and_matches_its_tokenizer():
    model, tokenizer = models.load_model("tiny", training=False)
    config = model.config
    assert config.vocab_size == len(tokenizer) == 4096
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 3)
    assert (config.pad_token_id, config.eos_token_id) == (0, 3)
    assert sum(p.numel() for p in model.parameters()) <= 5_000_000
    assert (TINY / "model.safetensors").stat().st_size <= 20_000_000
    corpus = json.loads((REPO_ROOT / "docs" / "corpus.json").read_text())
    assert corpus["tokenizer_sha256"] == hashlib.sha256((TINY / "tokenizer.json").read_bytes()).hexdigest()
    report = json.loads((REPO_ROOT / "docs" / "pretraining.json").read_text())
    for domain, after in report["heldout_after"].items():
        assert after["perplexity"] < report["heldout_before"][domain]["perplexity"] / 10

    random_a, _ = models.load_model("tiny-random", seed=1, tokenizer=tokenizer, training=False)
    random_b, _ = models.load_model("tiny-random", seed=1, tokenizer=tokenizer, training=False)
    shape = ("vocab_size", "hidden_size", "num_hidden_layers", "num_experts", "num_experts_per_tok", "moe_intermediate_size")
    assert [getattr(random_a.config, key) for key in shape] == [getattr(config, key) for key in shape]
    pretrained, a, b = (dict(m.named_parameters()) for m in (model, random_a, random_b))
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not torch.equal(a["model.embed_tokens.weight"], pretrained["model.embed_tokens.weight"])
