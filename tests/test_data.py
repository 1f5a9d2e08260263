"""Assistant-only labels for every record format, and packed batches equal to one-by-one forwards."""

import json
import re
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from reading import data
from reading import sources
from launch import REPO
from models import TINY_DIR, load_model, token_loss_sum
from sampler import MixtureSampler


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TINY_DIR)


def trained_text(tokenizer, example):
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != data.IGNORE_INDEX])


def prompt_text(tokenizer, example):
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label == data.IGNORE_INDEX])


RECORDS = {
    "sharegpt": (
        {"system_prompt": "Be brief.", "conversations": [
            {"from": "human", "value": "Add 2 and 3."}, {"from": "gpt", "value": "5"},
            {"from": "human", "value": "Times 4?"}, {"from": "gpt", "value": "20"}]},
        "5<|im_end|>\n20<|im_end|>\n",
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nAdd 2 and 3.<|im_end|>\n<|im_start|>assistant\n"
        "<|im_start|>user\nTimes 4?<|im_end|>\n<|im_start|>assistant\n",
    ),
    "messages": (
        {"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]},
        "Paris.<|im_end|>\n",
        "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n",
    ),
    "alpaca": (
        {"instruction": "Reverse the word.", "input": "abc", "output": "cba"},
        "cba<|im_end|>\n",
        "<|im_start|>user\nReverse the word.\n\nabc<|im_end|>\n<|im_start|>assistant\n",
    ),
}


@pytest.mark.parametrize("fmt", sorted(RECORDS))
def test_labels_cover_every_assistant_turn_and_nothing_else(tokenizer, fmt):
    record, trained, prompt = RECORDS[fmt]
    example = data.encode(tokenizer, sources.to_messages(record), max_len=512)
    assert trained_text(tokenizer, example) == trained
    assert prompt_text(tokenizer, example) == prompt
    labelled = [i for i, label in enumerate(example.labels) if label != data.IGNORE_INDEX]
    assert all(example.labels[i] == example.input_ids[i] for i in labelled)
    assert not example.truncated


def test_truncation_is_flagged(tokenizer):
    record, _, _ = RECORDS["sharegpt"]
    example = data.encode(tokenizer, sources.to_messages(record), max_len=10)
    assert len(example.input_ids) == len(example.labels) == 10 and example.truncated


def test_pack_is_best_fit_in_order():
    lengths = [6, 5, 4, 3, 3, 2]
    examples = [data.Example(list(range(n)), list(range(n))) for n in lengths]
    batches = data.pack(examples, seq_len=8, rows=2)
    as_lengths = [[[len(e.input_ids) for e in row] for row in batch] for batch in batches]
    # 6 -> row 0 (2 left); 5 -> row 1 (3 left); 4 fits nowhere: a new batch. 4 -> row 0 (4 left);
    # 3 -> row 0, the fuller row that fits (1 left); 3 -> row 1 (5 left); 2 -> row 1 (3 left).
    assert as_lengths == [[[6], [5]], [[4, 3], [3, 2]]]


@pytest.fixture(scope="module")
def tiny_model():
    model, tokenizer = load_model("tiny", seed=0)
    return model.eval(), tokenizer


def test_packed_equals_one_by_one_with_negative_control(tiny_model, tokenizer):
    model, _ = tiny_model
    examples = [data.encode(tokenizer, sources.to_messages(RECORDS[f][0]), 512) for f in sorted(RECORDS)]
    seq_len = sum(len(e.input_ids) for e in examples) + 5  # 5 padding tokens at the end of the row
    batch = data.collate_packed([examples], seq_len, tokenizer.pad_token_id)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        no_positions = model(input_ids=batch["input_ids"]).logits[0]
        packed_loss = token_loss_sum(packed[None], batch["labels"])
        start, separate_loss, worst, worst_control = 0, 0.0, 0.0, 0.0
        for e in examples:
            n = len(e.input_ids)
            alone = model(input_ids=torch.tensor([e.input_ids])).logits[0]
            worst = max(worst, (packed[start : start + n] - alone).abs().max().item())
            worst_control = max(worst_control, (no_positions[start : start + n] - alone).abs().max().item())
            separate_loss += token_loss_sum(alone[None], torch.tensor([e.labels])).item()
            start += n
    assert worst <= 1e-5
    assert abs(packed_loss.item() - separate_loss) <= 1e-5 * separate_loss
    assert worst_control > 1e-2  # without position_ids attention crosses examples: packing would be wrong


def test_batched_tokenising_equals_one_tokenizer_call_per_text(tokenizer):
    train_set, _ = sources.load_train_dev(REPO / "data" / "demo")
    conversations = [c for name in sorted(train_set) for c in train_set[name][:40]]  # incl. two-turn reasoning
    texts = [data.assistant_spans(tokenizer, messages)[0] for messages in conversations]
    one_by_one = [tokenizer(t, add_special_tokens=False, return_offsets_mapping=True) for t in texts]
    expected = [(e["input_ids"], [tuple(o) for o in e["offset_mapping"]]) for e in one_by_one]
    assert [(ids, [tuple(o) for o in offsets]) for ids, offsets in data.tokenize(tokenizer, texts)] == expected
    # a tokenizer with padding set on its Rust backend goes through `tokenizer(text)` instead (which unsets it)
    tokenizer.backend_tokenizer.enable_padding(length=4096)
    assert [(ids, [tuple(o) for o in offsets]) for ids, offsets in data.tokenize(tokenizer, texts)] == expected
    assert tokenizer.backend_tokenizer.padding is None
    many = data.encode_many(tokenizer, conversations, 128)
    assert [(e.input_ids, e.labels, e.truncated) for e in many] == [
        (e.input_ids, e.labels, e.truncated) for e in (data.encode(tokenizer, m, 128) for m in conversations)
    ]
    assert any(e.truncated for e in many) and not all(e.truncated for e in many)


def test_tokenising_ahead_changes_no_batch_and_no_count(tokenizer):
    train_set, _ = sources.load_train_dev(REPO / "data" / "demo")
    sizes = {name: len(conversations) for name, conversations in train_set.items()}

    def batches(ahead: bool):
        sampler = MixtureSampler(sizes, {name: 1.0 for name in sizes}, seed=3)
        stream = data.PackedStream(sampler.draw, train_set, tokenizer, 96, 4, sampler.upcoming if ahead else None)
        out = [stream.next_batch() for _ in range(30)]
        return out, stream

    (plain, plain_stream), (ahead, ahead_stream) = batches(False), batches(True)
    for (a, a_trained), (b, b_trained) in zip(plain, ahead):
        assert a_trained == b_trained and all(torch.equal(a[key], b[key]) for key in a)
    assert ahead_stream.truncated == plain_stream.truncated and sum(plain_stream.truncated.values()) > 0
    assert len(ahead_stream._cache) > len(plain_stream._cache)  # it did tokenise ahead


def datasets_by_text(batch: dict, tokenizer, names: list[str]) -> torch.Tensor:
    """Each token's dataset read from the text of its example (records that name their dataset), -1 at padding:
    an oracle that does not use the stream's dataset tagging. Examples are the blocks of position_ids 0, 1, ..."""
    expected = torch.full_like(batch["input_ids"], -1)
    for r in range(batch["input_ids"].shape[0]):
        real = int(batch["token_mask"][r].sum())
        starts = [i for i in range(real) if batch["position_ids"][r, i] == 0] + [real]
        for start, end in zip(starts, starts[1:]):
            (name,) = set(re.findall(r"dataset (\w+) says", tokenizer.decode(batch["input_ids"][r, start:end])))
            expected[r, start:end] = names.index(name)
    return expected


def test_every_token_carries_the_dataset_its_text_came_from(tokenizer):
    """Short examples of three datasets, several to a row: every token's dataset id is the one its text names."""
    names = ["alpha", "beta", "gamma"]
    conversations = {name: [[{"role": "user", "content": f"dataset {name} says {i}"},
                             {"role": "assistant", "content": f"reply {i} from dataset {name} says"}] for i in range(30)]
                     for name in names}
    sampler = MixtureSampler(dict.fromkeys(names, 30), dict.fromkeys(names, 1.0), seed=3)
    stream = data.PackedStream(sampler.draw, conversations, tokenizer, 128, 4, sampler.upcoming)
    mixed = 0
    for _ in range(4):
        batch, _ = stream.next_batch()
        expected = datasets_by_text(batch, tokenizer, names)
        assert torch.equal(batch["dataset_ids"], expected)
        mixed += sum(len(set(row[row >= 0].tolist())) > 1 for row in expected)
    assert mixed >= 4  # rows that hold examples of several datasets: a row tagged with one dataset would show


def test_batches_carry_each_tokens_dataset_and_count_drawn_tokens(tokenizer):
    train_set, _ = sources.load_train_dev(REPO / "data" / "demo")
    sizes = {name: len(conversations) for name, conversations in train_set.items()}
    sampler = MixtureSampler(sizes, {name: 1.0 for name in sizes}, seed=2)
    drawn = []

    def draw():
        drawn.append(sampler.draw())
        return drawn[-1]

    stream = data.PackedStream(draw, train_set, tokenizer, 128, 4, sampler.upcoming)
    for _ in range(5):
        batch, trained = stream.next_batch()
        ids = batch["dataset_ids"]
        assert torch.equal(ids >= 0, batch["token_mask"])  # -1 exactly at padding
        # each example's tokens carry its dataset: a block of position_ids 0, 1, ... has one dataset id
        starts = (batch["position_ids"] == 0) & batch["token_mask"]
        for row in range(ids.shape[0]):
            blocks = torch.cumsum(starts[row].long(), 0)
            for block in blocks[batch["token_mask"][row]].unique():
                assert len(ids[row][(blocks == block) & batch["token_mask"][row]].unique()) == 1
        # assistant tokens per dataset, counted from the ids, equal what next_batch reports
        names = sorted(sizes)
        counted = {names[i]: int(((ids == i) & (batch["labels"] != data.IGNORE_INDEX)).sum()) for i in range(len(names))}
        assert {k: v for k, v in counted.items() if v} == dict(trained)
    lengths = {name: sum(len(stream.example(n, i).input_ids) for n, i in drawn if n == name) for name in sizes}
    assert dict(stream.drawn_tokens) == {k: v for k, v in lengths.items() if v}
    restored = data.PackedStream(draw, train_set, tokenizer, 128, 4)
    restored.load_state_dict(json.loads(json.dumps(stream.state_dict())))
    assert restored.drawn_tokens == stream.drawn_tokens and restored.pending == stream.pending
    # the fixed probe batches have no dataset ids: one dataset per batch
    assert "dataset_ids" not in data.collate_packed([[stream.example(*drawn[0])]], 256, tokenizer.pad_token_id)


# --------------------------------------------------------------------------------------------------
# Packing edges found by mutation testing (scripts/mutmut_modules.py), on examples of given lengths


@pytest.fixture
def lengths_as_examples(monkeypatch):
    """Conversations that are just their token counts: each encodes to that many tokens (cut at seq_len)."""

    def encode_many(tokenizer, conversations, max_len):
        return [data.Example(list(range(1, n + 1))[:max_len], [7] * min(n, max_len), truncated=n > max_len)
                for n in conversations]

    monkeypatch.setattr(data, "encode_many", encode_many)


def in_order(keys):
    return iter(keys).__next__


PAD = SimpleNamespace(pad_token_id=0)  # all the packing needs of a tokenizer


def test_best_fit_takes_the_fullest_row_that_holds_the_example():
    assert data.best_fit([5, 3, 8], 3) == 1  # an exact fit is a fit
    assert data.best_fit([8, 5, 6], 4) == 1  # the least room that holds it, not the first row
    assert data.best_fit([2, 1], 3) is None


def test_next_batch_places_longest_first_skips_what_does_not_fit_and_keeps_it(lengths_as_examples):
    # one row of 10: drawn 4, 5, 6 (15 tokens >= 10); longest first: 6, then 5 does not fit (4 left) and waits,
    # then 4 fills the row
    stream = data.PackedStream(in_order([("d", 2), ("d", 1), ("d", 0)]), {"d": [6, 5, 4]}, PAD, 10, 1)
    batch, _ = stream.next_batch()
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3] and batch["token_mask"].all()
    assert stream.pending == [("d", 1)]


def test_next_batch_draws_until_the_batch_is_full_and_no_further(lengths_as_examples):
    # 2 rows of 8 and examples of 4: exactly 4 examples fill them, a fifth is not drawn
    keys = [("d", i) for i in range(6)]
    stream = data.PackedStream(in_order(keys), {"d": [4] * 6}, PAD, 8, 2)
    batch, trained = stream.next_batch()
    assert batch["token_mask"].all() and stream.pending == [] and stream.drawn_tokens == {"d": 16}
    assert trained == {"d": 16}


def test_truncated_examples_are_counted_once_each(lengths_as_examples):
    # four examples longer than seq_len 4, each drawn twice (two passes); `upcoming` names examples already
    # tokenised, which must not be tokenised (and counted) again
    order = [("d", 0), ("d", 1), ("d", 2), ("d", 3)] * 2
    upcoming = lambda name, n: [0, 1, 2]  # noqa: E731 - what a sampler would say is next
    stream = data.PackedStream(in_order(order), {"d": [9, 9, 9, 9]}, PAD, 4, 1, upcoming)
    for _ in range(8):
        stream.next_batch()
    assert stream.truncated == {"d": 4}
