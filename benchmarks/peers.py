"""The loops routemix is compared with, on the same tiny MoE, data, batch shape and optimiser settings.

- `hf_trainer_padded`: the paper's loop shape. The reference code trained with the Hugging Face
  `Trainer`, one example per row, every row padded to the sequence length, no packing.
- `trl_packed`: TRL's `SFTTrainer` with `packing=True` (best-fit decreasing packing; TRL then trains
  padding-free: the micro-batch is flattened into one row with `position_ids`).

Both draw their examples from routemix's own `MixtureSampler` with uniform weights (static mixing),
tokenise them before training (as both libraries do), and run fp32 AdamW at routemix's defaults
(lr 1e-3, 3% warmup then cosine, clipping at 1.0, frozen routers, no gradient checkpointing).
A callback ticks `StepClock` at every `on_step_begin`; a forward pre-hook counts the tokens of every forward.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from reading import data
import routing
from reading import sources
from benchmarks.clock import StepClock, peak_rss_mib
from models import load_model
from sampler import MixtureSampler


def sampled_conversations(data_dir: Path, count: int, seed: int = 0) -> list[sources.Messages]:
    """`count` training conversations in the order a uniform `MixtureSampler` draws them."""
    train_sets, _ = sources.load_train_dev(data_dir)
    sampler = MixtureSampler({name: len(c) for name, c in train_sets.items()}, {name: 1.0 for name in train_sets}, seed=seed)
    return [train_sets[name][index] for name, index in (sampler.draw() for _ in range(count))]


def tiny_model_with_frozen_routers():
    model, tokenizer = load_model("tiny", seed=0)
    routing.freeze_routers(model, routing.find_routers(model))  # as routemix trains by default
    return model, tokenizer


def count_tokens(clock: StepClock):
    """A forward pre-hook (with kwargs) that counts the real and trained tokens of every forward."""

    def hook(_module, args, kwargs):
        input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        mask = kwargs.get("attention_mask")
        labels = kwargs["labels"]
        real = int(mask.sum()) if mask is not None else input_ids.numel()  # padding-free rows hold no padding
        clock.count(real, data.count_targets(labels))

    return hook


class TickEveryStep(TrainerCallback):
    def __init__(self, clock: StepClock):
        self.clock = clock

    def on_step_begin(self, args, state, control, **kwargs):
        self.clock.tick()


def trainer_arguments(out: str, max_steps: int, rows: int) -> dict:
    """The `TrainingArguments` both peers share: routemix's defaults, no saving, no reporting."""
    return {
        "output_dir": out, "max_steps": max_steps, "per_device_train_batch_size": rows, "learning_rate": 1e-3,
        "lr_scheduler_type": "cosine", "warmup_steps": math.ceil(0.03 * max_steps), "weight_decay": 0.0,
        "max_grad_norm": 1.0, "logging_steps": 10, "save_strategy": "no", "report_to": "none", "disable_tqdm": True,
        "use_cpu": True, "seed": 0, "dataloader_num_workers": 0, "dataloader_pin_memory": False, "bf16": False,
        "gradient_checkpointing": False,
    }


def pad_to_seq_len(seq_len: int, pad_id: int):
    """Collator of the paper's loop shape: one example per row, right-padded to `seq_len`, attention mask."""

    def collate(examples: list[data.Example]) -> dict[str, torch.Tensor]:
        batch = data.collate_padded(examples, pad_id, width=seq_len)
        return {key: batch[key] for key in ("input_ids", "labels", "attention_mask")}

    return collate


def hf_trainer_padded(warmup: int, steps: int, rows: int, seq_len: int, data_dir: Path) -> dict:
    """The Hugging Face `Trainer`, every example padded to `seq_len`, no packing."""
    clock = StepClock()
    model, tokenizer = tiny_model_with_frozen_routers()
    max_steps = warmup + steps + 1
    examples = data.encode_many(tokenizer, sampled_conversations(data_dir, max_steps * rows), seq_len)
    model.register_forward_pre_hook(count_tokens(clock), with_kwargs=True)
    with tempfile.TemporaryDirectory(prefix="routemix-bench-hf-") as out:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**trainer_arguments(out, max_steps, rows), remove_unused_columns=False),
            train_dataset=examples,
            data_collator=pad_to_seq_len(seq_len, tokenizer.pad_token_id),
            callbacks=[TickEveryStep(clock)],
        )
        trainer.train()
    return {**clock.window(warmup, steps), "peak_rss_mib": peak_rss_mib()}


def prompt_completion(messages: sources.Messages) -> dict:
    """TRL's conversational prompt-completion record: the loss is on the last assistant turn only."""
    last = max(i for i, message in enumerate(messages) if message["role"] == "assistant")
    return {"prompt": messages[:last], "completion": [messages[last]]}


def trl_packed(warmup: int, steps: int, rows: int, seq_len: int, data_dir: Path) -> dict:
    """TRL `SFTTrainer` with `packing=True` at `max_length = seq_len`."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    clock = StepClock()
    model, tokenizer = tiny_model_with_frozen_routers()
    max_steps = warmup + steps + 1
    # a packed row holds ~2.4 demo examples; 3 per row leaves room so that the window stays inside one epoch
    records = [prompt_completion(m) for m in sampled_conversations(data_dir, 3 * max_steps * rows)]
    model.register_forward_pre_hook(count_tokens(clock), with_kwargs=True)
    with tempfile.TemporaryDirectory(prefix="routemix-bench-trl-") as out:
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**trainer_arguments(out, max_steps, rows), max_length=seq_len, packing=True),
            train_dataset=Dataset.from_list(records),
            processing_class=tokenizer,
            callbacks=[TickEveryStep(clock)],
        )
        trainer.train()
    return {**clock.window(warmup, steps), "peak_rss_mib": peak_rss_mib()}
