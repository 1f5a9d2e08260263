"""Loss and perplexity of checkpoints on each dev set of a data folder, compared in one table.

    python -m eval.dev_loss --checkpoints runs/uniform/final runs/dynamic-mix/final --data data/demo

The dev sets are `<data>/dev/<name>.jsonl` (or `dev/<name>/*.jsonl`), read and formatted exactly
as in training (`sources.load`, `data.encode`: chat template, loss on assistant tokens only,
conversations cut at --max-len tokens). A dataset's loss is the cross-entropy summed over all
its assistant tokens divided by their number; perplexity is exp(loss); "loss" over all datasets
is the plain mean of the dataset losses (every dataset counts the same).

Writes each checkpoint's result to `<checkpoint>/eval/dev_loss.json` (eval.results), and the
comparison of all checkpoints to `<out>/dev_loss.json` ({run: {dataset: {loss, perplexity,
tokens}}}), `<out>/dev_loss.md` and a bar chart `<out>/dev_loss.png`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from tqdm import tqdm

from reading import data
from reading import sources
from eval.generation import load_checkpoint, model_folder
from eval.report import bar_chart, markdown_table
from eval.results import EvalResult, results_dir, run_name, settings_of, write_result
from models import token_loss_sum

logger = logging.getLogger(__name__)


@dataclass
class Args:
    """Dev-set loss and perplexity of one or more checkpoints."""

    checkpoints: tuple[Path, ...]
    """Checkpoint folders to compare."""
    data: Path
    """Data folder holding dev/<name>.jsonl (or dev/<name>/*.jsonl), a hub dataset id or a mixture file (see sources.py)."""
    max_len: int = 2048
    """Tokens per conversation; longer ones are cut, as in training."""
    batch_size: int = 8
    """Conversations per forward pass (right-padded)."""
    limit: int | None = None
    """Only the first N conversations of each dev set."""
    out: Path = Path("runs/dev_loss")
    """Folder for the comparison: dev_loss.json, dev_loss.md, dev_loss.png."""
    run_names: tuple[str, ...] = ()
    """Row names, one per checkpoint (default: the run folders' names)."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoints to run."""


@torch.no_grad()
def summed_loss(model, examples: list[data.Example], pad_id: int, batch_size: int) -> tuple[float, int]:
    """(cross-entropy summed over the labelled tokens of `examples`, number of those tokens).
    Label t is the target of the logits at position t - 1 (labels are aligned with input_ids)."""
    total, tokens = 0.0, 0
    by_length = sorted(examples, key=lambda e: len(e.input_ids))  # similar lengths, little padding
    for start in range(0, len(by_length), batch_size):
        batch = data.collate_padded(by_length[start : start + batch_size], pad_id)
        logits = model(
            input_ids=batch["input_ids"].to(model.device), attention_mask=batch["attention_mask"].to(model.device)
        ).logits
        total += token_loss_sum(logits, batch["labels"].to(model.device)).item()
        tokens += data.count_targets(batch["labels"])
    return total, tokens


def dev_metrics(model, tokenizer, dev: dict[str, list[sources.Messages]], max_len: int, batch_size: int) -> dict[str, float]:
    """`<name>/loss`, `<name>/perplexity`, `<name>/tokens` per dev set, and "loss", the mean of the losses."""
    metrics = {}
    for name, conversations in tqdm(dev.items(), desc="dev sets"):
        examples = data.encode_many(tokenizer, conversations, max_len)
        if truncated := sum(e.truncated for e in examples):
            logger.warning("%s: %d of %d conversations cut at %d tokens", name, truncated, len(examples), max_len)
        total, tokens = summed_loss(model, examples, tokenizer.pad_token_id, batch_size)
        if tokens == 0:
            raise ValueError(f"dev set {name!r} has no assistant tokens within {max_len} tokens")
        metrics |= {f"{name}/loss": total / tokens, f"{name}/perplexity": math.exp(total / tokens), f"{name}/tokens": tokens}
    metrics["loss"] = sum(metrics[f"{name}/loss"] for name in dev) / len(dev)
    return metrics


def main(args: Args) -> list[EvalResult]:
    if args.run_names and len(args.run_names) != len(args.checkpoints):
        raise SystemExit("--run-names needs one name per checkpoint")
    # a run folder: its final/, or its newest checkpoint
    args.checkpoints = tuple(Path(model_folder(c)) for c in args.checkpoints)
    dev = {name: conversations[: args.limit] for name, conversations in sources.load(args.data, splits=("dev",)).dev.items()}
    names = args.run_names or tuple(run_name(c) for c in args.checkpoints)
    results = []
    for checkpoint, name in zip(args.checkpoints, names):
        start = time.monotonic()
        model, tokenizer = load_checkpoint(checkpoint, args.trust_remote_code)
        metrics = dev_metrics(model, tokenizer, dev, args.max_len, args.batch_size)
        result = EvalResult(
            run=name,
            checkpoint=str(checkpoint.resolve()),
            task="dev_loss",
            metrics=metrics,
            seconds=time.monotonic() - start,
            score="loss",
            in_average=False,
            settings=settings_of(args) | {"data": str(args.data.resolve() if args.data.exists() else args.data)},
        )
        write_result(result, results_dir(checkpoint))
        results.append(result)
        del model

    datasets = list(dev)
    comparison = {
        r.run: {d: {k: r.metrics[f"{d}/{k}"] for k in ("loss", "perplexity", "tokens")} for d in datasets} for r in results
    }
    losses = {r.run: {d: r.metrics[f"{d}/loss"] for d in datasets} | {"mean": r.metrics["loss"]} for r in results}
    perplexities = {r.run: {d: r.metrics[f"{d}/perplexity"] for d in datasets} for r in results}
    table = "## dev loss\n\n" + markdown_table(losses, [*datasets, "mean"]) + "\n## dev perplexity\n\n"
    table += markdown_table(perplexities, datasets)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dev_loss.json").write_text(json.dumps(comparison, indent=2) + "\n")
    (args.out / "dev_loss.md").write_text(table)
    bar_chart(losses, [*datasets, "mean"], args.out / "dev_loss.png", ylabel="loss (assistant tokens)", title="dev loss")
    print(table)
    print(f"-> {args.out / 'dev_loss.md'}, dev_loss.json, dev_loss.png; per checkpoint: <checkpoint>/eval/dev_loss.json")
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(tyro.cli(Args))
