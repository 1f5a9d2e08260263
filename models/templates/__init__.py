"""Chat templates for models whose tokenizer has none (`train.py --chat-template NAME|PATH`).

- `chatml`: ChatML (`<|im_start|>role\\n...<|im_end|>\\n`), no default system message; the tiny
  model's template. Needs a tokenizer that has `<|im_start|>` and `<|im_end|>` as tokens.
- `vicuna`: FastChat's `vicuna_v1.1` conversation, which the paper's code trained and evaluated
  with: the default system message below unless the record has one, then
  `USER: {user} ASSISTANT: {assistant}</s>` per turn, the generation prompt `ASSISTANT:`. FastChat
  writes a literal `</s>` (LLaMA's eos); the template writes the tokenizer's eos token, as the
  paper's training code does (`conv.sep2 = tokenizer.eos_token`), so that the model learns to stop
  whatever its tokenizer.

Each wraps what the assistant writes in `{% generation %}` so that transformers'
`return_assistant_tokens_mask` marks the same tokens that `data.py` trains on.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent
BUILTIN = {"chatml": TEMPLATES_DIR / "chatml.jinja", "vicuna": TEMPLATES_DIR / "vicuna.jinja"}


def resolve(name_or_path: str, tokenizer) -> str:
    """The Jinja text of a built-in template (`BUILTIN`) or of a template file, checked against `tokenizer`."""
    if name_or_path in BUILTIN:
        text = BUILTIN[name_or_path].read_text(encoding="utf-8")
    elif Path(name_or_path).is_file():
        text = Path(name_or_path).read_text(encoding="utf-8")
    else:
        raise ValueError(f"--chat-template {name_or_path}: neither a built-in ({', '.join(BUILTIN)}) nor a file")
    if name_or_path == "chatml":
        missing = [token for token in ("<|im_start|>", "<|im_end|>") if not is_one_token(tokenizer, token)]
        if missing:
            raise ValueError(
                f"--chat-template chatml: the tokenizer has no {' or '.join(missing)} token, so ChatML's markers would be "
                "split into pieces and generation would not stop at the end of a turn; use --chat-template vicuna "
                f"(ends turns with the tokenizer's eos {tokenizer.eos_token!r}) or a Jinja file"
            )
    if name_or_path == "vicuna" and tokenizer.eos_token is None:
        raise ValueError("--chat-template vicuna ends every assistant turn with the eos token, and this tokenizer has none")
    return text


def is_one_token(tokenizer, token: str) -> bool:
    """Whether `token` is a single token of `tokenizer` (not split into pieces)."""
    return len(tokenizer.encode(token, add_special_tokens=False)) == 1
