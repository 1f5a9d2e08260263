"""The bundled demo data and the tiny tokenizer: reproducible, well-formed, and what train.py expects."""

import hashlib
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from lifecycle.config import MODEL_DEFAULTS
from reading import data
from scripts.make_demo_data import DATASETS, DEV_RECORDS, TRAIN_RECORDS, generate
from scripts.train_tokenizer import SPECIAL_TOKENS, VOCAB_SIZE, train_bpe, wrap_for_transformers

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO = REPO_ROOT / "data" / "demo"
TINY = REPO_ROOT / "models" / "tiny"
DEMO_FILES = [f"train/{name}/part-000.jsonl" for name in DATASETS] + [f"dev/{name}.jsonl" for name in DATASETS]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def first_prompt(record: dict) -> str:
    """The first user turn of a ShareGPT, OpenAI-messages or Alpaca record."""
    if "conversations" in record:
        return next(turn["value"] for turn in record["conversations"] if turn["from"] == "human")
    if "messages" in record:
        return next(message["content"] for message in record["messages"] if message["role"] == "user")
    return record["instruction"] + "\n" + record["input"]


def as_messages(record: dict) -> list[dict]:
    """A record as chat messages (the same mapping data.py applies)."""
    if "conversations" in record:
        roles = {"system": "system", "human": "user", "gpt": "assistant"}
        messages = [{"role": roles[turn["from"]], "content": turn["value"]} for turn in record["conversations"]]
        if record.get("system_prompt"):
            messages.insert(0, {"role": "system", "content": record["system_prompt"]})
        return messages
    if "messages" in record:
        return record["messages"]
    user = record["instruction"] + ("\n\n" + record["input"] if record["input"] else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TINY)


# --- data -------------------------------------------------------------------


def test_generator_is_deterministic_and_matches_committed_files(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    summary = generate(first)
    generate(second)
    assert set(summary) == {"code", "math", "explain", "reasoning"}
    for relative in DEMO_FILES:
        produced = (first / relative).read_bytes()
        assert produced == (second / relative).read_bytes(), relative
        assert produced == (DEMO / relative).read_bytes(), f"{relative} is stale: rerun scripts/make_demo_data.py"
    total_bytes = sum(row["train_bytes"] + row["dev_bytes"] for row in summary.values())
    assert total_bytes < 5_000_000


@pytest.mark.parametrize("name", list(DATASETS))
def test_counts_and_no_dev_record_repeats_a_train_prompt(name):
    train = read_jsonl(DEMO / "train" / name / "part-000.jsonl")
    dev = read_jsonl(DEMO / "dev" / f"{name}.jsonl")
    assert len(train) == TRAIN_RECORDS >= 1000
    assert len(dev) == DEV_RECORDS >= 64
    train_prompts = {first_prompt(record) for record in train}
    assert len(train_prompts) == len(train)
    assert not train_prompts & {first_prompt(record) for record in dev}
    train_lines = set((DEMO / "train" / name / "part-000.jsonl").read_text(encoding="utf-8").splitlines())
    assert not train_lines & set((DEMO / "dev" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines())


def test_each_dataset_uses_its_record_format():
    code = read_jsonl(DEMO / "train" / "code" / "part-000.jsonl")
    reasoning = read_jsonl(DEMO / "train" / "reasoning" / "part-000.jsonl")
    explain = read_jsonl(DEMO / "train" / "explain" / "part-000.jsonl")
    math = read_jsonl(DEMO / "train" / "math" / "part-000.jsonl")
    for record in code + reasoning:
        assert [turn["from"] for turn in record["conversations"] if turn["from"] != "system"][-2:] == ["human", "gpt"]
    assert any("system_prompt" in record for record in code)
    assert any(record["conversations"][0]["from"] == "system" for record in code)
    two_turn = sum([t["from"] for t in r["conversations"]].count("human") == 2 for r in reasoning) / len(reasoning)
    assert 0.15 <= two_turn <= 0.25
    for record in explain:
        assert [m["role"] for m in record["messages"] if m["role"] != "system"] == ["user", "assistant"]
    for record in math:
        assert set(record) == {"instruction", "input", "output"}
    empty_inputs = sum(record["input"] == "" for record in math)
    assert 0 < empty_inputs < len(math)


# --- tokenizer ---------------------------------------------------------------


def test_tokenizer_special_tokens_and_size(tokenizer):
    config = json.loads((TINY / "config.json").read_text())
    assert len(tokenizer) == VOCAB_SIZE == config["vocab_size"] == 4096
    assert tokenizer.convert_tokens_to_ids(["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2, 3]
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == ("<|pad|>", "<|endoftext|>", "<|im_end|>")
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 3)


@pytest.mark.parametrize("text", ["Hello, world!", "  two leading spaces\n\ttab", "naïve café → 你好 🙂",
                                  "def f(x):\n    return x * 2\n", ""])
def test_tokenizer_round_trips_text(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.unk_token_id is None
    assert tokenizer.decode(ids) == text


def test_committed_tokenizer_is_the_recorded_one_as_train_tokenizer_writes_it(tmp_path):
    """The corpus the tokenizer is trained on is not in a clone (scripts/build_corpus.py builds it), so this
    checks offline what can be: models/tiny/tokenizer.json is the one whose hash the corpus build recorded,
    it is set up as train_bpe sets a tokenizer up, and wrapping and saving it as train_tokenizer.py does
    writes back the three committed files byte for byte. tests/test_corpus.py retrains on a stand-in corpus:
    the trainer's determinism."""
    committed_bytes = (TINY / "tokenizer.json").read_bytes()
    recorded = json.loads((REPO_ROOT / "docs" / "corpus.json").read_text())["tokenizer_sha256"]
    assert hashlib.sha256(committed_bytes).hexdigest() == recorded, "models/tiny or docs/corpus.json is stale"

    committed = json.loads(committed_bytes)
    fresh = json.loads(train_bpe(iter(["a tiny text"]), 300).to_str())
    for key in ("normalizer", "pre_tokenizer", "decoder", "added_tokens"):
        assert committed[key] == fresh[key], key
    assert {k: v for k, v in committed["model"].items() if k not in ("vocab", "merges")} == \
        {k: v for k, v in fresh["model"].items() if k not in ("vocab", "merges")}
    assert [token["content"] for token in committed["added_tokens"]] == SPECIAL_TOKENS
    assert all(committed["model"]["vocab"][token["content"]] == token["id"] for token in committed["added_tokens"])
    assert sorted(committed["model"]["vocab"].values()) == list(range(VOCAB_SIZE))

    wrap_for_transformers(Tokenizer.from_file(str(TINY / "tokenizer.json"))).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (tmp_path / name).read_bytes() == (TINY / name).read_bytes(), f"models/tiny/{name} is stale"


def test_chat_template_renders_chatml(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
    ]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n"
    )
    assert tokenizer.apply_chat_template(messages[1:2], tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_assistant_mask_covers_replies_and_their_end_of_turn_only(tokenizer):
    """The template's `{% generation %}` blocks mark what data.py trains on: each reply, its <|im_end|>
    and the newline after it (the token the model predicts after <|im_end|>; generation stops at <|im_end|>)."""
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there."},
        {"role": "user", "content": "And you?"},
        {"role": "assistant", "content": "Fine, ünïcode → ok."},
    ]
    out = tokenizer.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(mask) == len(ids)
    masked = [token for token, keep in zip(ids, mask) if keep]
    expected = tokenizer.encode("Hello there.<|im_end|>\nFine, ünïcode → ok.<|im_end|>\n", add_special_tokens=False)
    assert masked == expected
    assert ids[-1] == tokenizer.encode("\n", add_special_tokens=False)[0] and mask[-1] == 1
    example = data.encode(tokenizer, messages, max_len=512)
    assert example.input_ids == ids and [label != data.IGNORE_INDEX for label in example.labels] == [bool(m) for m in mask]


def test_dev_examples_round_trip_and_have_the_intended_length(tokenizer):
    """Short conversations, and none longer than one row at the small-model default --seq-len: the tiny model
    sees every dev example whole (under the corpus-trained tokenizer some exceed 256 tokens, hence 512)."""
    seq_len = MODEL_DEFAULTS["small"]["seq_len"]
    for name in DATASETS:
        lengths = []
        for record in read_jsonl(DEMO / "dev" / f"{name}.jsonl"):
            rendered = tokenizer.apply_chat_template(as_messages(record), tokenize=False)
            ids = tokenizer.encode(rendered, add_special_tokens=False)
            assert tokenizer.decode(ids) == rendered
            lengths.append(len(ids))
        assert 40 <= sum(lengths) / len(lengths) <= 200, name
        assert max(lengths) <= seq_len, name
