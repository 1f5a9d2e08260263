"""The model card of a run's `final/` (its README.md, what the hub shows) and `--push-to-hub`.

    model_card.publish(final, args, sizes, dev_sets, sampler.history, record)   # main process, after the export:
    # write(...) the card, then push(final, args.push_to_hub) with huggingface_hub when --push-to-hub is given

The card says what a reader of a hub page needs to judge and reuse the model: the base model, the data
(each dataset's source and size), how the mixture moved (a table and `weights.png`, copied from
`plots/`), the flags that shape the result, and the final dev losses.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict
from pathlib import Path

# the flags that shape the result (everything else is logging, paths and plumbing)
FLAGS = ("model", "chat_template", "data", "max_steps", "micro_batch_size", "seq_len", "grad_accum", "lr", "warmup_ratio",
         "weight_decay", "bf16", "freeze_router", "aux_loss_coef", "mix", "init_weights", "probe_every", "probe_batches",
         "probe_tokens", "probe_source", "layers", "distance", "agg", "update", "eta", "c", "delta_ema", "pull", "delta_noise",
         "max_epochs", "seed")
LORA_FLAGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
TRAJECTORY_ROWS = 12  # the table samples the weight history; weights.png has all of it


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |\n"


def _table(header: list[str], rows: list[list]) -> str:
    return _row(header) + _row(["---"] * len(header)) + "".join(_row(r) for r in rows)


def render(args, sizes: dict[str, int], dev_sizes: dict[str, int], history: list[tuple[int, list[float]]],
           record: dict | None, weights_png: bool) -> str:
    """The card's markdown, YAML front matter first (the hub reads `base_model`, `library_name`, `tags`)."""
    names, lora = list(sizes), bool(getattr(args, "lora_r", 0))
    base = None if args.model == "tiny" else args.model
    front = ["---", f"library_name: {'peft' if lora else 'transformers'}", "pipeline_tag: text-generation",
             "tags: [routemix, mixture-of-experts, dynamic-data-mixing" + (", lora" if lora else "") + "]"]
    front += [f"base_model: {base}"] if base else []
    text = "\n".join([*front, "---", ""]) + "\n"
    text += f"# {Path(args.out).name}\n\n"
    text += (f"`{base}`" if base else "routemix's embedded tiny MoE (random init, seed "
             f"{args.seed})") + ", instruction-tuned with routemix (an open-source trainer that mixes many instruction "
    text += (f"datasets for Mixture-of-Experts models) and its `{args.mix}` data mixture" + (
             " (the sampling weights follow the routing redundancy of each dataset: the method of [Zhu et al., NAACL "
             "2025](https://arxiv.org/abs/2406.11256))" if args.mix == "dynamic" else "")
             + (f", LoRA rank {args.lora_r} merged into the weights (the adapter alone is in `adapter/`)"
                if lora else "")
             + ".\n\n")

    final_weights = history[-1][1] if history else [None] * len(names)
    text += f"## Data\n\nFrom `{args.data}`:\n\n"
    text += _table(["dataset", "train records", "dev records", "final weight"],
                   [[n, f"{sizes[n]:,}", f"{dev_sizes.get(n, 0):,}", f"{w:.4f}" if w is not None else ""]
                    for n, w in zip(names, final_weights)])

    if history:
        text += "\n## Sampling weights during training\n\n" + ("![weights over steps](weights.png)\n\n" if weights_png else "")
        picks = sorted({round(i * (len(history) - 1) / max(1, TRAJECTORY_ROWS - 1)) for i in range(TRAJECTORY_ROWS)})
        text += _table(["from step", *names], [[history[i][0], *(f"{w:.4f}" for w in history[i][1])] for i in picks])

    if record is not None and record["dev_loss"] is not None:  # None: --probe-source train ran no dev probe
        text += f"\n## Dev loss at step {record['step']}\n\n"
        text += _table(["dataset", "loss", "perplexity"],
                       [[n, f"{loss:.4f}", f"{math.exp(loss):.2f}"] for n, loss in zip(record["names"], record["dev_loss"])])
        text += _row(["mean", f"{sum(record['dev_loss']) / len(record['dev_loss']):.4f}", ""])

    config = asdict(args)
    text += "\n## Training flags\n\n" + _table(["flag", "value"], [[f"`--{k.replace('_', '-')}`", f"`{config[k]}`"]
                                                                    for k in FLAGS + (LORA_FLAGS if lora else ()) if k in config])
    where = getattr(args, "push_to_hub", None) or "path/to/final"
    text += ("\n## Use\n\n```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
             f'model = AutoModelForCausalLM.from_pretrained("{where}")\n'
             f'tokenizer = AutoTokenizer.from_pretrained("{where}")  # with its chat template\n```\n')
    return text


def write(final: Path, args, sizes: dict[str, int], dev_sizes: dict[str, int], history: list[tuple[int, list[float]]],
          record: dict | None) -> Path:
    """`final/README.md`, with `plots/weights.png` copied beside it (the card shows it; the hub serves it)."""
    weights_png = Path(args.out) / "plots" / "weights.png"
    if weights_png.exists():
        shutil.copyfile(weights_png, final / "weights.png")
    card = final / "README.md"
    card.write_text(render(args, sizes, dev_sizes, history, record, weights_png.exists()))
    return card


def publish(final: Path, args, sizes: dict[str, int], dev_sets: dict, history: list[tuple[int, list[float]]],
            record: dict | None) -> None:
    """The card in `final/`, and `final/` on the hub when `--push-to-hub` names a repo."""
    write(final, args, sizes, {name: len(dev_sets[name]) for name in sizes}, history, record)
    if args.push_to_hub:
        push(final, args.push_to_hub)


def push(final: Path, repo_id: str, api=None) -> str:
    """Create the hub model repo `repo_id` (if new) and upload `final/` to it; returns the commit's URL.
    The token is huggingface_hub's (HF_TOKEN, or `hf auth login`)."""
    from huggingface_hub import HfApi

    api = api or HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=final, repo_type="model",
                                   commit_message=f"routemix: upload {final}", ignore_patterns=["eval/*"])
    except Exception as error:  # noqa: BLE001 -- network, auth, a name taken: the model is safe on disk either way
        raise SystemExit(f"--push-to-hub {repo_id}: the upload failed ({type(error).__name__}: {error}); the model is in "
                         f"{final}: upload it later with `hf upload {repo_id} {final}`") from None
    print(f"pushed {final} to {commit}")
    return str(commit)
