"""Chat with a trained model in the terminal: multi-turn, with the model's chat template, tokens streamed as they come.

    python -m eval.chat runs/dynamic-mix/final
    python -m eval.chat runs/dynamic-mix/checkpoints/step_200 --temperature 0.7 --system "You are terse."

Type a message and press enter; `/reset` forgets the conversation, `/exit` (or end of input) quits.
Greedy decoding by default; `--temperature` > 0 samples (with `--top-p`). Every turn is rendered from the
whole conversation with the checkpoint's chat template, so the model sees exactly what it was trained on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from transformers import TextStreamer

from eval.generation import chat_prompt, end_token_ids, load_checkpoint, model_folder


@dataclass
class Args:
    """Interactive chat with a checkpoint."""

    checkpoint: tyro.conf.Positional[Path]
    """A model folder: a run's `final/`, a `checkpoints/step_N/`, or any Hugging Face model folder."""
    max_new_tokens: int = 256
    """Tokens per reply at most."""
    temperature: float = 0.0
    """0: greedy; above 0: sampled at this temperature."""
    top_p: float = 1.0
    """Nucleus sampling (with --temperature > 0)."""
    system: str | None = None
    """A system message at the start of every conversation."""
    seed: int = 0
    """Seeds sampling."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint to run."""


class Chat:
    """One conversation: the messages so far, and a reply to each new user message, streamed to stdout."""

    def __init__(self, model, tokenizer, args: Args):
        self.model, self.tokenizer, self.args = model, tokenizer, args
        self.messages: list[dict[str, str]] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.args.system}] if self.args.system else []

    @torch.no_grad()
    def reply(self, text: str) -> str:
        self.messages.append({"role": "user", "content": text})
        prompt = self.tokenizer(chat_prompt(self.tokenizer, self.messages), return_tensors="pt",
                                add_special_tokens=False).to(self.model.device)
        sampling = ({"do_sample": True, "temperature": self.args.temperature, "top_p": self.args.top_p}
                    if self.args.temperature > 0 else {"do_sample": False})
        streamer = TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)  # prints as tokens come
        generated = self.model.generate(**prompt, max_new_tokens=self.args.max_new_tokens, streamer=streamer,
                                        eos_token_id=end_token_ids(self.model, self.tokenizer),
                                        pad_token_id=self.tokenizer.pad_token_id, **sampling)
        answer = self.tokenizer.decode(generated[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
        self.messages.append({"role": "assistant", "content": answer})
        return answer


def main(args: Args, lines=sys.stdin) -> Chat:
    args.checkpoint = Path(model_folder(args.checkpoint))  # a run folder: its final/ or newest checkpoint
    """Chat over `lines` (standard input) until `/exit` or their end; returns the conversation."""
    model, tokenizer = load_checkpoint(args.checkpoint, args.trust_remote_code)
    torch.manual_seed(args.seed)
    chat = Chat(model, tokenizer, args)
    print(f"chatting with {args.checkpoint} ({'greedy' if args.temperature == 0 else f'temperature {args.temperature}'}); "
          "/reset starts over, /exit quits", flush=True)
    while True:
        print("you> ", end="", flush=True)
        line = lines.readline()
        if not line or line.strip() == "/exit":  # end of input quits too
            print()
            return chat
        if line.strip() == "/reset":
            chat.reset()
            print("(conversation reset)", flush=True)
        elif line.strip():
            print("model> ", end="", flush=True)
            chat.reply(line.rstrip("\n"))


if __name__ == "__main__":
    main(tyro.cli(Args))
