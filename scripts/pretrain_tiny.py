"""Pretrain the embedded tiny MoE on the corpus of scripts/build_corpus.py and ship it in models/tiny/.

A plain causal LM: each row is a window of `--seq-len` consecutive tokens of one domain's train
split (documents packed back to back, each ended by <|endoftext|>), the domain drawn uniformly per row
so that prose, code and math are seen equally often whatever their sizes. The routers train with the
rest, under Qwen3-MoE's load-balancing loss (`output_router_logits`, `router_aux_loss_coef`), so that
they can specialise without collapsing onto a few experts. The batches of step t depend only on
`--seed` and t, so a rerun resumes exactly from the last checkpoint.

    python scripts/build_corpus.py && python scripts/train_tokenizer.py && python scripts/build_corpus.py
    nohup python scripts/pretrain_tiny.py > ~/.cache/routemix/corpus/pretrain.log 2>&1 &   # renices itself (--nice)
    python scripts/pretrain_tiny.py        # after an interruption: continues from the checkpoint

Writes `--out` (default models/tiny/: model.safetensors, config.json, the tokenizer beside them) and
`--report` (default docs/pretraining.json: held-out perplexity per domain at random init and after,
tokens seen, wall time). Checkpoints go to `--cache`/pretrain/seed<seed>/ every `--checkpoint-minutes`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import tyro
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import models  # noqa: E402 -- the repository root goes on the path first, as for every script

DOMAINS = ("code", "math", "prose")


@dataclass
class Args:
    cache: Path = Path.home() / ".cache" / "routemix" / "corpus"
    """build_corpus.py's --cache: tokens are read from its tokens/ folder, checkpoints go to pretrain/"""
    tokenizer: Path = models.TINY_DIR
    """the tokenizer the corpus was counted with (train_tokenizer.py's output)"""
    out: Path = models.TINY_DIR
    """where the pretrained model is saved (with the tokenizer beside it)"""
    report: Path = Path(__file__).resolve().parent.parent / "docs" / "pretraining.json"
    """held-out perplexity before and after, tokens seen, wall time"""
    seed: int = 0
    """initial weights and every batch"""
    max_steps: int = 600
    """optimizer steps"""
    batch_size: int = 16
    """rows per step"""
    seq_len: int = 256
    """tokens per row"""
    lr: float = 2e-3
    """peak learning rate (AdamW), after a linear warmup, then cosine down to a tenth of it"""
    warmup_steps: int = 100
    """steps of linear warmup"""
    weight_decay: float = 0.1
    """AdamW weight decay on matrices (not on norms)"""
    router_aux_loss_coef: float = 0.01
    """weight of the load-balancing loss added to the LM loss"""
    eval_tokens: int = 32768
    """held-out tokens per domain for the perplexity (from the start of each held-out split)"""
    log_every: int = 50
    """steps between printed losses"""
    checkpoint_minutes: float = 3.0
    """wall minutes between checkpoints (and at the last step)"""
    threads: int = 1
    """torch CPU threads; one is fastest on a shared machine, where more threads wait on each other"""
    nice: int = 5
    """added to the process's niceness, to leave the CPU to interactive work first"""


def load_tokens(cache: Path, split: str) -> dict[str, np.ndarray]:
    return {domain: np.load(cache / "tokens" / f"{domain}.{split}.npy", mmap_mode="r") for domain in DOMAINS}


def batch_for_step(tokens: dict[str, np.ndarray], seed: int, step: int, batch_size: int, seq_len: int) -> torch.Tensor:
    """Rows (batch_size, seq_len) for step `step`: a domain uniformly, then a window of it; a function of
    (seed, step) only, which is what makes a resume exact."""
    rng = np.random.default_rng([seed, step])
    rows = []
    for domain_index in rng.integers(len(DOMAINS), size=batch_size):
        stream = tokens[DOMAINS[domain_index]]
        start = int(rng.integers(len(stream) - seq_len))
        rows.append(np.asarray(stream[start:start + seq_len], dtype=np.int64))
    return torch.from_numpy(np.stack(rows))


def learning_rate(step: int, args: Args) -> float:
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def heldout_perplexity(model, heldout: dict[str, np.ndarray], eval_tokens: int, seq_len: int, batch_size: int) -> dict:
    """exp(mean next-token loss) per domain over the first `eval_tokens` held-out tokens, in rows of seq_len."""
    was_training = model.training
    model.eval()
    result = {}
    for domain, stream in heldout.items():
        rows = min(eval_tokens, len(stream) - 1) // seq_len
        ids = torch.from_numpy(np.asarray(stream[:rows * seq_len + 1], dtype=np.int64))
        windows = torch.stack([ids[r * seq_len:(r + 1) * seq_len + 1] for r in range(rows)])
        loss_sum, count = 0.0, 0
        for chunk in windows.split(batch_size):
            logits = model(input_ids=chunk[:, :-1]).logits
            loss_sum += torch.nn.functional.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum").item()
            count += chunk[:, 1:].numel()
        result[domain] = {"perplexity": math.exp(loss_sum / count), "loss": loss_sum / count, "tokens": count}
    model.train(was_training)
    return result


def build_model(tokenizer, args: Args):
    config = models.tiny_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    config.output_router_logits = True
    config.router_aux_loss_coef = args.router_aux_loss_coef
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.set_experts_implementation("grouped_mm")
    return model


def optimizer_for(model, args: Args) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))


def save_checkpoint(path: Path, model, optimizer, step: int, state: dict) -> None:
    """Written beside, then renamed over the old one: an interrupted save leaves the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, **state}, partial)
    os.replace(partial, path)


def export(model, tokenizer_dir: Path, out: Path) -> None:
    """save_pretrained as safetensors, float32, with the fine-tuning defaults: no router logits in outputs."""
    model.config.output_router_logits = False
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer_dir.resolve() != out.resolve():
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            shutil.copy(tokenizer_dir / name, out / name)


def main(args: Args) -> None:
    os.nice(args.nice)
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    train_tokens, heldout_tokens = load_tokens(args.cache, "train"), load_tokens(args.cache, "heldout")
    model = build_model(tokenizer, args)
    optimizer = optimizer_for(model, args)
    checkpoint_path = args.cache / "pretrain" / f"seed{args.seed}" / "checkpoint.pt"
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model: {parameters:,} parameters; {args.max_steps} steps of {args.batch_size}x{args.seq_len} tokens", flush=True)

    if checkpoint_path.exists():
        saved = torch.load(checkpoint_path, weights_only=False)
        if saved["args"] != {k: str(v) for k, v in asdict(args).items()}:
            raise SystemExit(f"{checkpoint_path} was written with other settings; delete it to start over")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step, before, wall = saved["step"], saved["before"], saved["wall_seconds"]
        print(f"resumed at step {step} ({wall / 60:.1f} min of earlier runs)", flush=True)
    else:
        step, wall = 0, 0.0
        before = heldout_perplexity(model, heldout_tokens, args.eval_tokens, args.seq_len, args.batch_size)
        print("held-out perplexity at random init:", {d: round(r["perplexity"], 1) for d, r in before.items()}, flush=True)

    model.train()
    started = last_save = time.time()
    while step < args.max_steps:
        rows = batch_for_step(train_tokens, args.seed, step, args.batch_size, args.seq_len)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        outputs = model(input_ids=rows, labels=rows, output_router_logits=True)  # shifted inside; loss includes the balancing term
        outputs.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        last_step = step == args.max_steps

        if step % args.log_every == 0 or last_step:
            elapsed = wall + time.time() - started
            lm_loss = outputs.loss.item() - args.router_aux_loss_coef * outputs.aux_loss.item()
            print(f"step {step} lm loss {lm_loss:.3f} aux {outputs.aux_loss.item():.3f} "
                  f"lr {learning_rate(step - 1, args):.2e} {step * rows.numel() / elapsed:.0f} tok/s "
                  f"{elapsed / 60:.1f} min", flush=True)
        if time.time() - last_save > args.checkpoint_minutes * 60 or last_step:
            save_checkpoint(checkpoint_path, model, optimizer, step,
                            {"before": before, "wall_seconds": wall + time.time() - started,
                             "args": {k: str(v) for k, v in asdict(args).items()}})
            last_save = time.time()

    wall += time.time() - started
    after = heldout_perplexity(model, heldout_tokens, args.eval_tokens, args.seq_len, args.batch_size)
    print("held-out perplexity after:", {d: round(r["perplexity"], 1) for d, r in after.items()}, flush=True)
    export(model, args.tokenizer, args.out)
    manifest = json.loads((args.cache / "manifest.json").read_text())
    report = {
        "parameters": parameters,
        "config": {k: getattr(model.config, k) for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                          "num_attention_heads", "num_key_value_heads", "head_dim",
                                                          "num_experts", "num_experts_per_tok", "moe_intermediate_size",
                                                          "router_aux_loss_coef")},
        "steps": step,
        "tokens_seen": step * args.batch_size * args.seq_len,
        "wall_minutes": round(wall / 60, 1),
        "threads": args.threads,
        "heldout_before": before,
        "heldout_after": after,
        "corpus_tokenizer_sha256": manifest.get("tokenizer_sha256"),
        "args": {k: str(v) for k, v in asdict(args).items()},
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1) + "\n")
    print(f"saved {args.out}; report {args.report}", flush=True)


if __name__ == "__main__":
    main(tyro.cli(Args))
