"""The command line of train.py: every flag with its documentation, and the values derived from them.

Nothing heavy is imported here, so `python train.py --help` answers before torch loads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ANCHORED_ETA, ANCHORED_EMA, ANCHORED_PULL, ANCHORED_C, ANCHORED_AGG = 0.3, 0.5, 1.0, 0.05, "max"
"""`--update anchored`'s defaults (README, "Choosing the update": the experiments behind them)."""
DEFAULT_MAX_EPOCHS = None


@dataclass
class Args:
    # --- what to train on
    model: str = "tiny"
    """`tiny` (an embedded random-init 2-layer MoE, runs on a laptop CPU), a local folder, or a Hugging Face hub id."""
    data: Path = Path(__file__).resolve().parent / "data" / "demo"
    """Dataset folder (`train/<name>/` and `dev/<name>.jsonl` or `dev/<name>/`: .jsonl, .jsonl.gz, .json, .parquet or
    saved `datasets`), a hub dataset id laid out the same way, or a mixture file (.yaml/.json; README: Data)."""
    out: Path | None = None
    """Run folder (default `runs/<timestamp>`): logs, mixture log, plots, checkpoints, `final/` model."""
    trust_remote_code: bool = False
    """Allow the model's own Python code from the hub. Off unless you trust the model's authors."""
    router_pattern: str | None = None
    """Regex on module names that finds the routers of a model routemix does not recognise."""
    chat_template: str | None = None
    """Chat template for a model whose tokenizer has none (the paper's LLaMA-MoE and MoLM, most base models):
    `vicuna` (FastChat's vicuna_v1.1, the paper's format), `chatml`, or a Jinja file. Default: the model's own.
    Saved with the tokenizer in `final/`."""

    # --- optimisation
    max_steps: int = 300
    """Number of optimizer steps."""
    seed: int = 0
    """Seeds the model init (tiny), the sampler and every random strategy."""
    lr: float | None = None
    """Peak learning rate (default: 1e-3 for `tiny`, 2e-5 otherwise)."""
    warmup_ratio: float = 0.03
    """Share of `max-steps` spent in linear warmup; a cosine decay to 0 follows."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    micro_batch_size: int = 8
    """Rows per micro-batch; each row packs whole examples into `seq-len` tokens."""
    seq_len: int | None = None
    """Tokens per packed row (default: 256 for `tiny`, 2048 otherwise). Longer examples are truncated and counted."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (per process). The step's loss is the mean over all of its assistant tokens."""
    bf16: bool = False
    """bf16 mixed precision (on GPUs that support it). The weights load in bf16 where the engine keeps float32 master
    weights itself (DeepSpeed; FSDP2 for a bf16 checkpoint), else in float32 under bf16 autocast (README: Memory)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward instead of keeping them (transformers' activation
    checkpointing, on every engine): less memory, a slower step; the same losses and gradients."""
    attn_implementation: str | None = None
    """Attention kernel (default: flash_attention_2 on CUDA when flash-attn is installed, else sdpa)."""
    freeze_router: bool = True
    """Keep the router weights fixed, as in the paper, so routing stays a stable representation of the data."""
    aux_loss_coef: float = 0.0
    """Weight of the model's MoE load-balancing loss (0 = off), computed over real tokens only (padding never counts)."""

    # --- LoRA (peft): train low-rank adapters instead of all weights
    lora_r: int = 0
    """LoRA rank; 0 trains all weights. Routers are never adapted and stay frozen."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator: the update is (alpha / r) * B @ A."""
    lora_dropout: float = 0.0
    """Dropout on the adapters' input (nn.Linear targets only: peft has none for fused 3-D expert parameters)."""
    lora_target_modules: tuple[str, ...] = ("all",)
    """What gets adapters: `all` (every nn.Linear but the LM head and the routers, and every fused 3-D expert
    parameter such as `experts.gate_up_proj`), or names matched against the end of module/parameter names,
    e.g. `q_proj k_proj v_proj o_proj gate_up_proj down_proj`."""

    # --- the mixture
    mix: Literal["dynamic", "static", "refloss", "random", "random-batch", "cycle"] = "dynamic"
    """How sampling weights change each period: `dynamic` (routing redundancy, the paper), `static`, `refloss`
    (dev loss minus a reference loss, DoReMi-style), `random`, `random-batch` (one dataset per period), `cycle`."""
    init_weights: str = "uniform"
    """Initial sampling weights: `uniform`, `size` (proportional to train size), `embedding` (from the datasets' mean
    sentence embeddings with the --distance/--agg/--eta/--c rule, the paper's SentEmb; `embedding:<sentence-transformers
    id or path>` for another encoder; needs requirements-embeddings.txt) or a JSON file {"name": weight}."""
    probe_every: int | None = None
    """Optimizer steps between probes / weight updates (default: 25 for `tiny`, 100 otherwise, as the paper)."""
    probe_batches: int | None = None
    """Micro-batches of each dataset's dev set per probe, the same examples every probe (default: 3 for `tiny`, 5 otherwise, as the paper)."""
    probe_tokens: Literal["all", "response"] = "all"
    """Count the routing of all real tokens (the paper) or only of assistant tokens."""
    layers: Literal["last", "all"] = "last"
    """Routing representation: the last MoE layer (the paper) or all layers, each normalised, concatenated."""
    distance: Literal["cos", "l2", "inv-l2"] = "cos"
    """Redundancy: 1 - cosine similarity, l2 distance, or l2 with ranks reversed (the paper's ablation)."""
    agg: Literal["mean", "min", "max"] | None = None
    """How a dataset's distances to the other datasets (j != i) are aggregated (default: `mean` for `--update paper`,
    the paper's; `max` for `anchored`: a dataset is redundant when its nearest neighbour routes alike, which the mean
    over all others dilutes)."""
    update: Literal["anchored", "paper"] = "anchored"
    """How delta moves the weights (dynamic, refloss). `paper`: the published rule, w <- softmax(log w + eta * delta),
    which compounds over probes until one dataset holds nearly everything. `anchored`: delta in units of its spread
    over datasets, averaged over probes (`--delta-ema`), and the log-weights pulled towards the initial ones
    (`--pull`), so weights settle instead of running off (README: the defaults and why)."""
    eta: float | None = None
    """Step size: for `paper` a multiple of delta (default 10, the paper's); for `anchored` log-units of weight per
    standard deviation of delta (default 0.3)."""
    c: float | None = None
    """Smoothing: w <- (1 - c) * w + c / k keeps every weight >= c / k (default: 0.05, the paper's for LLaMA-MoE)."""
    delta_ema: float | None = None
    """`anchored`: e <- ema * e + (1 - ema) * delta over probes (default 0.5)."""
    pull: float | None = None
    """`anchored`: log w <- (1 - pull) * log w + pull * log w0 before each step, 0..1 (default 1: the
    weights follow the current e alone, softmax(log w0 + eta * e))."""
    max_epochs: float | None = DEFAULT_MAX_EPOCHS
    """Repetition cap: no dataset is drawn more than this many passes over the whole run (planned over `max-steps`
    from the tokens drawn so far); a weight that would exceed it is capped and the excess goes to the other datasets
    in proportion to their weights. `None`: no cap."""
    probe_source: Literal["dev", "train"] = "dev"
    """Where the routing histograms come from: `dev` (the paper: an eval-mode probe over fixed dev batches) or
    `train` (counted in the period's own training forwards, per dataset, at no extra forward; dev losses still come
    from the dev probe when `--mix refloss` needs them)."""
    ref_loss: Path | None = None
    """JSON {"name": loss} of a reference model's dev losses, for `--mix refloss`."""
    probe_only: bool = False
    """Run one probe on the loaded model, write `<out>/probe_weights.json`, and exit without training."""

    # --- logging and checkpoints
    log_every: int = 10
    """Optimizer steps between log lines (metrics.jsonl and the trackers)."""
    report_to: Literal["tensorboard", "wandb", "mlflow", "all", "none"] = "tensorboard"
    """Where scalars and the routing heatmap go besides metrics.jsonl and mixture.jsonl: `tensorboard` (offline,
    in `<out>/tensorboard`), `wandb`, `mlflow` (both set up by their own environment variables, e.g. WANDB_MODE,
    MLFLOW_TRACKING_URI), `all` (every one of these that is installed) or `none`."""
    save_every: int = 100
    """Optimizer steps between checkpoints (the last step always saves); `plots/` is redrawn at each."""
    keep_checkpoints: int = 2
    """Number of complete checkpoints kept."""
    resume: str = "auto"
    """`auto`: continue from the newest complete checkpoint in `out`; `none`: start fresh (refuses a used `out`);
    or a checkpoint folder."""
    push_to_hub: str | None = None
    """Hub repo id (`user/name`) to upload `final/` to at the end, model card included (huggingface_hub's token:
    HF_TOKEN or `hf auth login`)."""
    skip_bad_records: bool = False
    """Skip the records that otherwise stop the run (malformed lines, invalid UTF-8, non-text content, tool use,
    what the chat template cannot render), counted and reported, instead of stopping."""
    skip_nonfinite: int = 0
    """Skip up to this many optimizer steps whose loss or gradient is NaN/inf, instead of stopping at the first
    (refused under DeepSpeed, whose optimizer step runs before the gradient norm is known)."""
    debug_checks: bool = False
    """Stop as soon as ranks drift apart: after every weight update all ranks must hold bitwise the same sampling
    weights, after every optimizer step the same parameters (when every rank holds them all: not under FSDP or
    ZeRO-3). Each rank also logs its probe share and parameter checksum to `<out>/debug/rank_<r>.jsonl`."""


def resolve_defaults(args: Args) -> Args:
    """Derived values, computed once right after parsing."""
    tiny = args.model == "tiny"
    args.lr = args.lr if args.lr is not None else (1e-3 if tiny else 2e-5)
    args.seq_len = args.seq_len or (256 if tiny else 2048)
    args.probe_every = args.probe_every or (25 if tiny else 100)
    args.probe_batches = args.probe_batches or (3 if tiny else 5)
    args.out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    if args.lora_r and not args.freeze_router:
        raise SystemExit("--no-freeze-router with --lora-r: under LoRA the routers are never adapted and stay frozen")
    if args.mix == "refloss" and args.ref_loss is None:
        raise SystemExit("--mix refloss needs --ref-loss <json of reference dev losses>")
    args.agg = args.agg or ("mean" if args.update == "paper" else ANCHORED_AGG)
    if args.update == "paper":
        given = [flag for flag, value in (("--delta-ema", args.delta_ema), ("--pull", args.pull)) if value is not None]
        if given:
            raise SystemExit(f"{' and '.join(given)} belong to --update anchored; --update paper is the published rule")
        args.eta = 10.0 if args.eta is None else args.eta
        args.c = 0.05 if args.c is None else args.c
    else:
        args.eta = ANCHORED_ETA if args.eta is None else args.eta
        args.c = ANCHORED_C if args.c is None else args.c
        args.delta_ema = ANCHORED_EMA if args.delta_ema is None else args.delta_ema
        args.pull = ANCHORED_PULL if args.pull is None else args.pull
    if args.max_epochs is not None and not args.max_epochs > 0:
        raise SystemExit(f"--max-epochs must be positive (or None for no cap), got {args.max_epochs}")
    if args.probe_only and args.probe_source == "train":
        raise SystemExit("--probe-only runs no training forward: it needs --probe-source dev")
    return args


def run_fingerprint(args: Args, sizes: dict[str, int]) -> dict:
    """What a checkpoint must agree with to be resumed."""
    return {"model": args.model, "seq_len": args.seq_len, "mix": args.mix, "datasets": sizes}
