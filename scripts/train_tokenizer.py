"""Train the tiny model's tokenizer on the pretraining corpus and save it to models/tiny/.

A byte-level BPE with 4,096 entries: every byte is in the base alphabet, so no text is ever unknown.
The vocabulary is small because the tiny model's embedding and LM head grow with it, and they would
otherwise hold most of its parameters. The first ids are the special tokens:

    0 <|pad|>        padding
    1 <|endoftext|>  bos; also ends each document of the pretraining corpus
    2 <|im_start|>   opens a ChatML turn
    3 <|im_end|>     closes a turn; eos (generation stops here)

The chat template is the built-in ChatML one (models/templates/chatml.jinja): it wraps each
assistant reply, its <|im_end|> and the newline after it in `{% generation %}` so that
`apply_chat_template(..., return_assistant_tokens_mask=True, return_dict=True)` marks exactly the
tokens that data.py trains on.

The corpus is the train split of every domain that scripts/build_corpus.py wrote (never the held-out
split, and never routemix's instruction data):

    python scripts/build_corpus.py       # first: text/<domain>.<split>.jsonl under the cache
    python scripts/train_tokenizer.py    # writes models/tiny/: tokenizer.json, tokenizer_config.json,
                                         # chat_template.jinja

Deterministic: the same corpus gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

REPO_ROOT = Path(__file__).resolve().parent.parent
VOCAB_SIZE = 4096
"""Entries in the vocabulary, special tokens included."""
MODEL_MAX_LENGTH = 2048
"""Longest sequence the tiny model is meant to see; recorded in tokenizer_config.json."""
PAD, BOS, IM_START, IM_END = "<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, IM_START, IM_END]
"""In id order: <|pad|> = 0, <|endoftext|> = 1, <|im_start|> = 2, <|im_end|> = 3."""

CHATML_TEMPLATE = (REPO_ROOT / "models" / "templates" / "chatml.jinja").read_text(encoding="utf-8")
"""The built-in `chatml` template: no default system prompt; the generation span is the assistant content,
<|im_end|> and the newline after it (the tokens data.py trains on)."""


CHAT_ROLES = ("system", "user", "assistant")


def corpus_texts(text_dir: Path) -> Iterator[str]:
    """The ChatML role names, then the text of every document in `text_dir/<domain>.train.jsonl`, in
    sorted file order. The role names go in so that the chat template's headers are seen at least once."""
    yield from CHAT_ROLES
    for path in sorted(text_dir.glob("*.train.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)["text"]


def train_bpe(texts: Iterator[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """A byte-level BPE trained on `texts`, with SPECIAL_TOKENS at ids 0..3."""
    tokenizer = Tokenizer(models.BPE())  # no unk_token: the byte alphabet covers every input
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def wrap_for_transformers(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """The trained tokenizer with its special-token roles and chat template, ready for save_pretrained."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        chat_template=CHATML_TEMPLATE,
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path.home() / ".cache" / "routemix" / "corpus",
                        help="build_corpus.py's --cache: the corpus text is read from its text/ folder")
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE, help="entries, special tokens included")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "tiny", help="tokenizer output folder")
    args = parser.parse_args()
    if not sorted((args.corpus / "text").glob("*.train.jsonl")):
        raise SystemExit(f"{args.corpus / 'text'}: no <domain>.train.jsonl; run scripts/build_corpus.py first")
    tokenizer = train_bpe(corpus_texts(args.corpus / "text"), args.vocab_size)
    for token_id, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == token_id, f"{token} should have id {token_id}"
    wrapped = wrap_for_transformers(tokenizer)
    args.out.mkdir(parents=True, exist_ok=True)
    written = wrapped.save_pretrained(args.out)
    print(f"vocabulary: {tokenizer.get_vocab_size()} entries; wrote {', '.join(sorted(Path(p).name for p in written))}")


if __name__ == "__main__":
    main()
