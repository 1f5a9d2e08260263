"""Chat formatting with assistant-only labels, and padding-free packing.

Records arrive as chat messages from `sources.py`. Each is rendered with the tokenizer's chat
template and trained on its assistant tokens only (every assistant turn, including the
end-of-turn text the template writes after it: ChatML's <|im_end|> and the newline after it);
examples are packed whole into rows with `position_ids` that restart per example.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from os.path import commonprefix
from typing import NamedTuple

import torch

from reading.sources import DataError, Messages

IGNORE_INDEX = -100

# --------------------------------------------------------------------------- tokenisation


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX outside assistant tokens
    truncated: bool = False


class Rendered(NamedTuple):
    """A conversation rendered with the chat template, and the character span of each assistant turn in it."""

    text: str
    spans: list[tuple[int, int]]


def encode(tokenizer, messages: Messages, max_len: int) -> Example:
    """Render `messages` with the chat template and label the assistant spans (see `encode_many`)."""
    return encode_many(tokenizer, [messages], max_len)[0]


def encode_many(tokenizer, conversations: list[Messages], max_len: int) -> list[Example]:
    """Render each conversation with the chat template and label its assistant spans (`assistant_spans`);
    one tokenizer call. Tokens whose first character falls in a span are trained on."""
    rendered = [assistant_spans(tokenizer, messages) for messages in conversations]
    examples = []
    for (_, spans), (input_ids, offsets) in zip(rendered, tokenize(tokenizer, [text for text, _ in rendered])):
        labels = [IGNORE_INDEX] * len(input_ids)
        span = 0
        for t, (char_start, _) in enumerate(offsets):
            while span < len(spans) and char_start >= spans[span][1]:
                span += 1
            if span < len(spans) and char_start >= spans[span][0]:
                labels[t] = input_ids[t]
        labels[0] = IGNORE_INDEX  # nothing predicts the first token of an example
        examples.append(Example(input_ids[:max_len], labels[:max_len], truncated=len(input_ids) > max_len))
    return examples


def assistant_spans(tokenizer, messages: Messages) -> Rendered:
    """The rendered conversation and the character span of each assistant turn in it: what the model
    must write at that turn, through the template's end-of-turn text.

    Where the template renders the conversation prefix-wise, turn i's span starts where the rendering
    of messages[:i] with a generation prompt ends and ends where the rendering of messages[:i+1] ends.
    Templates like Qwen3's render a turn differently once later turns follow (an earlier turn loses
    its think block), so that the two renderings are no prefix of the whole one; a boundary that they
    do not give is found from the turn's content in the whole rendering instead: the span starts at
    the content and ends after it and the end-of-turn text (what follows the content when the turn
    is rendered last, as far as the whole rendering follows it with the same). Raises ValueError
    when a turn's content does not appear in the rendering (the template changes it).
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans, previous_end = [], 0
    cursor = 0  # where the last content found ends in `text`: where to look for the next one
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            found = locate(text, message["content"], cursor)
            cursor = found[1] if found else cursor
            continue
        prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        last = i == len(messages) - 1  # then messages[: i + 1] is the whole conversation, rendered above
        whole = text if last else tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        start = len(prompt) if text.startswith(prompt) and len(prompt) >= previous_end else None
        end = len(whole) if text.startswith(whole) else None
        if start is None or end is None:
            content = locate(text, message["content"], max(cursor, previous_end) if start is None else start)
            if content is None:
                raise ValueError(
                    f"the chat template does not render assistant turn {len(spans) + 1}'s content as given (it changes "
                    "or drops part of it), so its tokens cannot be found"
                )
            if start is None:
                start = content[0]
            if end is None:
                end = content[1] + len(commonprefix([text[content[1] :], end_of_turn(whole, message["content"], prompt)]))
        if not previous_end <= start <= end:
            raise ValueError(f"the chat template renders assistant turn {len(spans) + 1} out of order")
        spans.append((start, end))
        previous_end = cursor = end
    return Rendered(text, spans)


def locate(text: str, content: str, start: int) -> tuple[int, int] | None:
    """Where `content` (or, for templates that trim it, `content.strip()`) first appears in `text` at or after `start`."""
    for candidate in dict.fromkeys((content, content.strip())):
        found = text.find(candidate, start)
        if found != -1:
            return found, found + len(candidate)
    return None


def end_of_turn(whole: str, content: str, prompt: str) -> str:
    """What the template writes after an assistant turn's `content` when the turn ends the conversation `whole`."""
    # the turn's content comes after the part that `whole` shares with the generation prompt
    found = locate(whole, content, len(prompt) if whole.startswith(prompt) else len(commonprefix([whole, prompt])))
    return whole[found[1] :] if found else ""


def check_renders(
    tokenizer, datasets: dict[str, Sequence[Messages]], *, skip_bad: bool = False, skipped: dict[str, dict] | None = None
) -> dict[str, Sequence[Messages]]:
    """Render every record once, before training, so that one the template cannot render or label
    stops the run here, naming its file and line (`conversations.where(index)` where the dataset
    knows it, else its index) and dataset. Every rank checks all records in the same order, with no
    collective, so every rank stops alike and none is left waiting for another. Training renders
    again when it first uses a record (`PackedStream`), so nothing rendered is kept here.

    With `skip_bad`, such records are left out (the datasets returned are views without them) and
    counted in `skipped[name]` as `{"bad_render": n, "first": where}`. A template that cannot label
    even a plain two-turn conversation stops before the first record.
    """
    probe = [{"role": role, "content": f"routemix probe {i}"} for i, role in enumerate(["user", "assistant"] * 2)]
    try:
        assistant_spans(tokenizer, probe)
    except Exception as error:  # noqa: BLE001 -- jinja2's errors, the template's raise_exception, assistant_spans' ValueError
        raise DataError(f"the chat template cannot render a plain user/assistant conversation: {error}") from None
    checked = {}
    for name, conversations in datasets.items():
        bad = []
        for index in range(len(conversations)):
            try:
                assistant_spans(tokenizer, conversations[index])
            except Exception as error:  # noqa: BLE001 -- whatever the template raises for this record
                where = where_of(conversations, index)
                if not skip_bad:
                    raise DataError(
                        f"{where}: dataset {name!r}: the chat template cannot render this record: {error} "
                        "(--skip-bad-records skips such records)"
                    ) from None
                bad.append(index)
                if skipped is not None:
                    skipped.setdefault(name, {"bad_render": 0, "first": where})["bad_render"] += 1
        if len(bad) == len(conversations):
            raise DataError(f"dataset {name!r}: the chat template renders none of its {len(bad)} records")
        checked[name] = Without(conversations, bad) if bad else conversations
    return checked


class Without(Sequence):
    """`conversations` without the records at `left_out` (a view: nothing is copied)."""

    def __init__(self, conversations: Sequence[Messages], left_out: list[int]):
        self.conversations = conversations
        left_out = set(left_out)
        self.indices = [i for i in range(len(conversations)) if i not in left_out]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Messages:
        return self.conversations[self.indices[index]]

    def where(self, index: int) -> str:
        return where_of(self.conversations, self.indices[index])


def where_of(conversations: Sequence[Messages], index: int) -> str:
    """Where record `index` comes from (`file:line`), if the dataset knows (`sources`' conversations do)."""
    return conversations.where(index) if hasattr(conversations, "where") else f"record {index}"


def tokenize(tokenizer, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Token ids and character offsets of each text, no special tokens added.

    Straight through the Rust tokenizer in one parallel call when the tokenizer has one and it has
    no truncation or padding set (faster per text than `tokenizer(text)`: no per-call
    configuration, no `BatchEncoding`; BENCHMARKS.md); otherwise one `tokenizer(text)` call per text.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        return [(encoding.ids, encoding.offsets) for encoding in backend.encode_batch(texts, add_special_tokens=False)]
    encodings = [tokenizer(text, add_special_tokens=False, return_offsets_mapping=True) for text in texts]
    return [(encoding["input_ids"], encoding["offset_mapping"]) for encoding in encodings]


# --------------------------------------------------------------------------- batches


def count_targets(labels: torch.Tensor) -> int:
    """Positions of a `(rows, seq_len)` batch that predict a trained token: the tokens a loss is averaged over."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def best_fit(free: list[int], length: int) -> int | None:
    """The row with the least free room that still holds `length` tokens (None if none does)."""
    fits = [r for r, room in enumerate(free) if room >= length]
    return min(fits, key=lambda r: free[r]) if fits else None


def pack(examples: list[Example], seq_len: int, rows: int) -> list[list[list[Example]]]:
    """All of `examples`, in order, best-fit into batches of `rows` rows of `seq_len` tokens (used for the
    fixed probe batches; training batches come from `PackedStream`)."""
    batches, placed, free = [], [[] for _ in range(rows)], [seq_len] * rows
    for example in examples:
        r = best_fit(free, len(example.input_ids))
        if r is None:
            batches.append(placed)
            placed, free = [[] for _ in range(rows)], [seq_len] * rows
            r = 0
        placed[r].append(example)
        free[r] -= len(example.input_ids)
    if any(placed):
        batches.append(placed)
    return batches


class PackedStream:
    """Training micro-batches: examples in the order `draw()` gives them, tokenised on first use
    (then cached), packed whole into `rows` rows of `seq_len` tokens. With `upcoming(name, n)` (the
    indices `draw` will give next for dataset `name`, e.g. `MixtureSampler.upcoming`), the first use of
    an example also tokenises the next `ENCODE_AHEAD` of its dataset in the same call.

    Each batch draws examples until it holds at least a batch's worth of tokens, counting the
    examples still waiting from the previous batch. The waiting examples are placed first, oldest
    first (so none waits for long), then the new ones longest first, each best-fit; those that fit
    no row wait for the next batch. The waiting examples are the stream's only state besides the
    sampler's (`state_dict()` holds them for exact resume). Rows come out fuller than when the first
    example that does not fit closes the batch (BENCHMARKS.md has the share of real tokens).

    Every batch also carries `dataset_ids`: the index of each token's dataset in the sorted dataset
    names (the sampler's order), -1 at padding, so that routing can be counted per dataset from the
    training forward itself (`--probe-source train`). `drawn_tokens` counts the tokens drawn of each
    dataset, for the repetition cap's estimate of examples per step.
    """

    ENCODE_AHEAD = 64

    def __init__(self, draw, datasets: dict[str, list[Messages]], tokenizer, seq_len: int, rows: int, upcoming=None):
        self.draw, self.datasets, self.tokenizer = draw, datasets, tokenizer
        self.seq_len, self.rows, self.upcoming = seq_len, rows, upcoming
        self.pending: list[tuple[str, int]] = []
        self.truncated: Counter = Counter()  # examples cut to seq_len, counted at first use
        self.dataset_index = {name: i for i, name in enumerate(sorted(datasets))}
        self.drawn_tokens: Counter = Counter()
        self._cache: dict[tuple[str, int], Example] = {}
        self._unused: set[tuple[str, int]] = set()  # tokenised ahead, not used yet

    def example(self, name: str, index: int) -> Example:
        key = (name, index)
        if key not in self._cache:
            ahead = self.upcoming(name, self.ENCODE_AHEAD) if self.upcoming else []
            indices = [index] + [i for i in ahead if i != index and (name, i) not in self._cache]
            conversations = [self.datasets[name][i] for i in indices]
            for i, example in zip(indices, encode_many(self.tokenizer, conversations, self.seq_len)):
                self._cache[name, i] = example
                self._unused.add((name, i))
        if key in self._unused:
            self._unused.discard(key)
            if self._cache[key].truncated:
                self.truncated[name] += 1
        return self._cache[key]

    def next_batch(self) -> tuple[dict[str, torch.Tensor], Counter]:
        """`(batch tensors, assistant tokens per dataset)`."""
        waiting, self.pending = self.pending, []
        drawn, tokens = [], sum(len(self.example(*key).input_ids) for key in waiting)
        while tokens < self.rows * self.seq_len:
            drawn.append(self.draw())
            length = len(self.example(*drawn[-1]).input_ids)
            tokens += length
            self.drawn_tokens[drawn[-1][0]] += length
        drawn.sort(key=lambda key: len(self.example(*key).input_ids), reverse=True)  # stable: ties keep draw order
        placed, free = [[] for _ in range(self.rows)], [self.seq_len] * self.rows
        row_datasets = [[] for _ in range(self.rows)]
        trained = Counter()
        for key in waiting + drawn:
            example = self.example(*key)
            r = best_fit(free, len(example.input_ids))
            if r is None:
                self.pending.append(key)
                continue
            placed[r].append(example)
            row_datasets[r].append(self.dataset_index[key[0]])
            free[r] -= len(example.input_ids)
            trained[key[0]] += sum(label != IGNORE_INDEX for label in example.labels)
        return collate_packed(placed, self.seq_len, self.tokenizer.pad_token_id, row_datasets), trained

    def state_dict(self) -> dict:
        return {"pending": [list(key) for key in self.pending], "drawn_tokens": dict(self.drawn_tokens)}

    def load_state_dict(self, state: dict) -> None:
        self.pending = [tuple(key) for key in state["pending"]]
        self.drawn_tokens = Counter(state.get("drawn_tokens", {}))


def collate_packed(rows: list[list[Example]], seq_len: int, pad_id: int,
                   datasets: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
    """Rows of whole examples -> tensors of shape (rows, seq_len).

    `position_ids` restart at 0 for every example (the model builds a block-diagonal causal mask
    from them, so attention never crosses examples); the padding at the end of a row is its own
    block with labels IGNORE_INDEX and `token_mask` False. With `datasets` (the dataset index of
    each example, row by row) the batch also has `dataset_ids`: each token's dataset, -1 at padding.
    """
    # plain lists first, one tensor per field: a tensor per example costs more than the model's data step
    input_ids, labels, position_ids, token_mask, dataset_ids = [], [], [], [], []
    for r, row in enumerate(rows):
        row_ids, row_labels, row_positions = [], [], []
        for e, example in enumerate(row):
            row_ids += example.input_ids
            row_labels += example.labels
            row_positions += range(len(example.input_ids))
            if datasets is not None:
                dataset_ids += [datasets[r][e]] * len(example.input_ids)
        n, padding = len(row_ids), seq_len - len(row_ids)
        input_ids += row_ids + [pad_id] * padding
        labels += row_labels + [IGNORE_INDEX] * padding
        position_ids += row_positions + list(range(padding))
        token_mask += [True] * n + [False] * padding
        dataset_ids += [-1] * padding if datasets is not None else []
    shape = (len(rows), seq_len)
    batch = {
        "input_ids": torch.tensor(input_ids, dtype=torch.long).view(shape),
        "labels": torch.tensor(labels, dtype=torch.long).view(shape),
        "position_ids": torch.tensor(position_ids, dtype=torch.long).view(shape),
        "token_mask": torch.tensor(token_mask, dtype=torch.bool).view(shape),
    }
    if datasets is not None:
        batch["dataset_ids"] = torch.tensor(dataset_ids, dtype=torch.long).view(shape)
    return batch


def collate_padded(examples: list[Example], pad_id: int, width: int | None = None) -> dict[str, torch.Tensor]:
    """One example per row, right-padded to the longest (or to `width`), with an attention mask (no packing)."""
    width = width or max(len(e.input_ids) for e in examples)
    shape = (len(examples), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros(shape, dtype=torch.long)
    for r, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[r, :n] = torch.tensor(e.input_ids)
        labels[r, :n] = torch.tensor(e.labels)
        attention_mask[r, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask, "token_mask": attention_mask.bool()}
