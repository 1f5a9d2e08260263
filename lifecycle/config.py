"""The command line of train.py: every flag with its documentation, and the values derived from them.

Nothing heavy is imported here, so `python train.py --help` answers before torch loads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

ANCHORED_ETA, ANCHORED_EMA, ANCHORED_PULL, ANCHORED_C, ANCHORED_AGG, ANCHORED_NOISE = 0.3, 0.5, 1.0, 0.05, "max", 2.0
"""`--update anchored`'s defaults (README, "Choosing the update": the experiments behind them)."""
DEFAULT_MAX_EPOCHS = None


@dataclass
class Args:
    # --- what to train on
    model: str = "tiny"
    """`tiny` (an embedded random-init 2-layer MoE, runs on a laptop CPU), a local folder, or a Hugging Face hub id."""
    data: Path = Path(__file__).resolve().parents[1] / "data" / "demo"
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
    """Peak learning rate (default: by the model's size, printed at start: 1e-3 for a small model such as `tiny`, 2e-5
    otherwise; for a routemix checkpoint or final/, what its run used)."""
    warmup_ratio: float = 0.03
    """Share of `max-steps` spent in linear warmup; a cosine decay to 0 follows."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    micro_batch_size: int | None = None
    """Rows per micro-batch (default: 4 for a small model, 8 otherwise; see --lr); each row packs whole examples into
    `seq-len` tokens."""
    seq_len: int | None = None
    """Tokens per packed row (default: 512 for a small model, 2048 otherwise; see --lr). Longer examples are truncated
    and counted."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (per process). The step's loss is the mean over all of its assistant tokens."""
    bf16: bool = False
    """bf16 mixed precision (on GPUs that support it). The weights load in bf16 where the engine keeps float32 master
    weights itself (DeepSpeed; FSDP2 for a bf16 checkpoint), else in float32 under bf16 autocast (README: Memory)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward instead of keeping them (transformers' activation
    checkpointing, on every engine): less memory, a slower step; the same losses and gradients."""
    attn_implementation: str | None = None
    """Attention kernel: eager, sdpa, flex_attention (trains on CUDA only; on CPU with --probe-only), flash_attention_2/3.
    Default: flash_attention_2 on CUDA when flash-attn is installed and right for the model, else sdpa; a kernel the model
    lacks or that would be wrong on packed rows is refused (GPT-OSS: eager on CPU, flex_attention on CUDA)."""
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
    id or path>` for another encoder; needs requirements/embeddings.txt) or a JSON file {"name": weight}."""
    probe_every: int | None = None
    """Optimizer steps between probes / weight updates (default: 25 for a small model, 100 otherwise, as the paper; see
    --lr)."""
    probe_batches: int | None = None
    """Micro-batches of each dataset's dev set per probe, the same examples every probe (default: 3 for a small model, 5
    otherwise, as the paper; see --lr)."""
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
    delta_noise: float | None = None
    """`anchored`: how many of its own standard errors a dataset's delta must stand from the mean delta before it
    moves the weights (default 2). The error comes from how delta varies over the probe's batches (a jackknife); a
    deviation inside the band moves nothing, one far outside it moves by almost the full eta (README: the
    defaults). 0: off. With one probe batch, or `--probe-source train`, the error is not measured and delta is
    taken as exact."""
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
    """Derived values, computed once right after parsing, then every flag checked (`check`). Idempotent. The defaults
    that depend on the model (MODEL_DEFAULTS) stay None until the model's config is read (`model_defaults`)."""
    if args.lora_r and not args.freeze_router:
        raise SystemExit("--no-freeze-router with --lora-r: under LoRA the routers are never adapted and stay frozen")
    resolve_rule(args)
    check(args)  # `out` stays None here: the default run folder is created, uniquely, by run_lock.claim
    return args


def resolve_rule(flags) -> None:
    """The update rule's flags (`--distance --agg --update --eta --c --delta-ema --pull --delta-noise`) with their
    defaults filled in, on train.py's Args and on `python -m extras.embeddings`'s alike: the same flags give the same
    rule."""
    flags.agg = flags.agg or ("mean" if flags.update == "paper" else ANCHORED_AGG)
    if flags.update == "paper":
        given = [flag for flag, value in (("--delta-ema", flags.delta_ema), ("--pull", flags.pull),
                                          ("--delta-noise", flags.delta_noise)) if value is not None]
        if given:
            raise SystemExit(f"{' and '.join(given)} belong to --update anchored; --update paper is the published rule")
        flags.eta = 10.0 if flags.eta is None else flags.eta
        flags.c = 0.05 if flags.c is None else flags.c
    else:
        flags.eta = ANCHORED_ETA if flags.eta is None else flags.eta
        flags.c = ANCHORED_C if flags.c is None else flags.c
        flags.delta_ema = ANCHORED_EMA if flags.delta_ema is None else flags.delta_ema
        flags.pull = ANCHORED_PULL if flags.pull is None else flags.pull
        flags.delta_noise = ANCHORED_NOISE if flags.delta_noise is None else flags.delta_noise


def update_rule(flags):
    """The `mixture.Rule` of resolved rule flags (`resolve_rule`): `--update paper` (the published rule) or `anchored`
    (README: the defaults)."""
    import mixture  # torch: imported only when a rule is built, so that flag errors answer before torch loads

    return mixture.Rule(eta=flags.eta, c=flags.c, scale="std" if flags.update == "anchored" else "none",
                        ema=flags.delta_ema or 0.0, pull=flags.pull or 0.0, noise=flags.delta_noise or 0.0)


MODEL_DEFAULTS = {
    "small": {"lr": 1e-3, "seq_len": 512, "micro_batch_size": 4, "probe_every": 25, "probe_batches": 3},
    "large": {"lr": 2e-5, "seq_len": 2048, "micro_batch_size": 8, "probe_every": 100, "probe_batches": 5},
}
"""The defaults that depend on the model: "small" for a model a laptop CPU trains (the embedded tiny MoE), "large" for
everything else (the paper's probe period and batches). The small rows are long enough for the demo's longest
conversations under the tiny tokenizer, which was trained on the pretraining corpus and not on them."""
SMALL_MODEL_PARAMETERS = 50_000_000
"""Models with fewer parameters than this (estimated from their config) get the "small" defaults."""


def model_defaults(args: Args, parameters: int | None, recorded: dict | None) -> str | None:
    """Fill in the model-dependent flags left out (MODEL_DEFAULTS): the values the routemix run that wrote the model
    recorded (`recorded`: its checkpoint's or final/'s settings), else by the model's size (`parameters`, estimated
    from its config; None when the config does not say). Returns the line to print, or None when every one was given."""
    missing = [name for name in MODEL_DEFAULTS["small"] if getattr(args, name) is None]
    if not missing:
        return None
    if recorded is not None and all(recorded.get(name) is not None for name in missing):
        values, why = recorded, "what the routemix run that wrote it used"
    elif parameters is not None and parameters < SMALL_MODEL_PARAMETERS:
        values = MODEL_DEFAULTS["small"]
        why = f"a small model: about {parameters / 1e6:.1f}M parameters, from its config"
    else:
        size = "size unknown" if parameters is None else f"about {parameters / 1e6:,.0f}M parameters, from its config"
        values, why = MODEL_DEFAULTS["large"], f"a large model: {size}"
    for name in missing:
        setattr(args, name, values[name])
    check(args)
    return (f"defaults for --model {args.model} ({why}): "
            + " ".join(f"{flag(name)} {getattr(args, name)}" for name in missing))


# (flag, lowest allowed value, why) for the integer flags; a value below it would crash far from its cause or,
# worse, train something else than asked (0 used to mean "the default" for some, "keep everything" for others).
AT_LEAST = [
    ("max_steps", 1, "0 steps would export the untrained model as final/"),
    ("micro_batch_size", 1, "rows per micro-batch"),
    ("grad_accum", 1, "micro-batches per optimizer step"),
    ("seq_len", 2, "a row needs 2 tokens for one next-token target; leave it out for the default"),
    ("probe_every", 1, "optimizer steps between probes; leave it out for the default"),
    ("probe_batches", 1, "dev batches per dataset and probe; leave it out for the default"),
    ("log_every", 1, "optimizer steps between log lines"),
    ("save_every", 1, "optimizer steps between checkpoints"),
    ("keep_checkpoints", 1, "the newest checkpoint is what a resume continues from"),
    ("skip_nonfinite", 0, "steps that may be skipped"),
    ("lora_r", 0, "the LoRA rank; 0 trains all weights"),
    ("seed", 0, "seeds must be in [0, 2**32)"),
]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check(args: Args) -> None:
    """Refuse every flag value that is out of range, naming the flag, before anything loads or is written."""
    for name, lowest, why in AT_LEAST:
        value = getattr(args, name)
        if value is not None and value < lowest:  # None: a model-dependent default, not chosen yet
            raise SystemExit(f"{flag(name)} {value}: must be at least {lowest} ({why})")
    if args.seed >= 2**32:
        raise SystemExit(f"--seed {args.seed}: must be below 2**32 (numpy's seed range)")
    for name, value, ok, rule in [
        ("lr", args.lr, args.lr is None or args.lr > 0, "> 0"),
        ("warmup_ratio", args.warmup_ratio, 0 <= args.warmup_ratio <= 1, "in [0, 1]"),
        ("weight_decay", args.weight_decay, args.weight_decay >= 0, ">= 0"),
        ("max_grad_norm", args.max_grad_norm, args.max_grad_norm > 0, "> 0 (inf: no clipping)"),
        ("aux_loss_coef", args.aux_loss_coef, args.aux_loss_coef >= 0, ">= 0 (0: off)"),
        ("eta", args.eta, args.eta > 0, ("> 0 (a negative step size inverts the method: use --distance inv-l2 "
                                         "for the paper's inverse ablation, --mix static for fixed weights)")),
        ("c", args.c, 0 <= args.c <= 1, "in [0, 1] (the share of the uniform mixture)"),
        ("lora_alpha", args.lora_alpha, args.lora_alpha > 0, "> 0"),
        ("lora_dropout", args.lora_dropout, 0 <= args.lora_dropout < 1, "in [0, 1)"),
    ]:
        if value is None:
            continue
        if not ok or math.isnan(value) or (math.isinf(value) and name != "max_grad_norm"):
            raise SystemExit(f"{flag(name)} {value}: must be finite and {rule}")
    if args.mix == "refloss" and args.ref_loss is None:
        raise SystemExit("--mix refloss needs --ref-loss <json of reference dev losses>")
    for name in ("delta_ema", "pull"):  # None under --update paper
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 1:
            raise SystemExit(f"{flag(name)} {value}: must be in [0, 1]")
    if args.delta_noise is not None and not (args.delta_noise >= 0 and math.isfinite(args.delta_noise)):
        raise SystemExit(f"--delta-noise {args.delta_noise}: must be finite and >= 0 (standard errors; 0: off)")
    if args.max_epochs is not None and not args.max_epochs > 0:
        raise SystemExit(f"--max-epochs {args.max_epochs}: must be positive (or None for no cap)")
    if args.probe_only and args.probe_source == "train":
        raise SystemExit("--probe-only runs no training forward: it needs --probe-source dev")
    if args.ref_loss is not None and args.mix != "refloss":
        raise SystemExit(f"--ref-loss {args.ref_loss} is used only by --mix refloss, and --mix is {args.mix}")
    if args.router_pattern is not None:
        try:
            re.compile(args.router_pattern)
        except re.error as error:
            raise SystemExit(f"--router-pattern {args.router_pattern!r}: not a regular expression ({error})") from None


def check_datasets(args: Args, names: list[str], warn: bool = True) -> None:
    """The strategy against the number of datasets, once the data is read (before the model loads)."""
    if len(names) < 2:
        raise SystemExit(f"--data {args.data}: routemix mixes 2 or more datasets and found {len(names)} ({names}); "
                         "scripts/pseudo_domains.py splits one dataset into k pseudo-datasets")
    if len(names) < 3 and args.mix == "dynamic" and warn:
        print(f"warning: with {len(names)} datasets the dynamic update cannot move the weights "
              "(each dataset's redundancy is the same); use 3 or more")


def check_rotation(args: Args, names: list[str], weights: list[float]) -> None:
    """`--mix cycle` rotates the weights by one dataset each period: refuse initial weights that are all equal,
    which rotate into themselves (the run would be `--mix static` under another name)."""
    if args.mix == "cycle" and max(weights) - min(weights) <= 1e-12 * max(weights):
        raise SystemExit(f"--mix cycle rotates the initial weights by one dataset each period, and --init-weights "
                         f"{args.init_weights} gives all {len(names)} datasets the same weight, so rotating changes "
                         "nothing: pass --init-weights <file.json> with unequal weights (one-hot: sequential training, "
                         "e.g. {\"" + names[0] + "\": 1, ...} with the others near 0), or use --mix static")


# The settings a resume may change (README, "Resume"). Every other setting, and the datasets' names and sizes, the
# initial weights and the reference losses, changes what is trained: a resume that changes one is refused.
MAY_CHANGE_ON_RESUME = {
    "max_steps": "the run is extended or shortened: the remaining steps follow the LR schedule of a run of the new "
                 "length (linear warmup, then cosine to 0 at the new last step)",
    "log_every": "logging only", "report_to": "logging only", "save_every": "checkpoints only",
    "keep_checkpoints": "checkpoints only", "push_to_hub": "publishing only",
    "out": "where the run is", "resume": "which checkpoint",
    "data": "the folder may move (the datasets' names and sizes must stay)",
    "skip_bad_records": "(the datasets' sizes must stay)", "skip_nonfinite": "how many bad steps are tolerated",
    "debug_checks": "checks only", "probe_only": "trains nothing", "trust_remote_code": "permission only",
    "attn_implementation": "the same attention, another kernel (floats may differ in the last bits)",
    "gradient_checkpointing": "memory for time: the same computation",
}
PROCESSES_ON_RESUME = ("the run's data order continues where all ranks together were; which rank and micro-batch each "
                       "example lands in, the packing and the loss's scaling differ (docs/distributed.md: Elastic resume)")
"""What a resume on another number of processes (`processes` in the fingerprint, not a flag) changes."""


def run_fingerprint(args: Args, sizes: dict[str, int], initial_weights: list[float], ref_loss: list[float] | None,
                    processes: int = 1) -> dict:
    """Every setting of the run as a checkpoint records it (JSON values), with what the files named by flags hold
    (initial weights, reference losses) instead of their paths, the datasets' names and sizes, and the number of
    processes."""
    settings = json.loads(json.dumps(asdict(args), default=str))
    names = sorted(sizes)
    settings["init_weights"] = dict(zip(names, initial_weights))
    settings["ref_loss"] = dict(zip(names, ref_loss)) if ref_loss is not None else None
    settings["datasets"] = sizes
    settings["processes"] = processes
    return settings


def setting(key: str) -> str:
    """A fingerprint key as the user knows it: the flag, or `datasets`."""
    return key if key == "datasets" else flag(key)


def changes_on_resume(saved: dict, now: dict, step: int, refusal: str) -> list[str]:
    """Compare the settings of a checkpoint at `step` with this run's: raise SystemExit (starting with `refusal`)
    naming every change that would train something else, with old and new values; return notes on the allowed
    changes, and on settings that only one of the two routemix versions knows (not compared)."""
    compared = [key for key in now if key in saved and key not in MAY_CHANGE_ON_RESUME and key != "processes"]
    changed = [f"{setting(key)} was {saved[key]!r}, now {now[key]!r}" for key in compared if saved[key] != now[key]]
    if changed:
        raise SystemExit(f"{refusal}: settings that change what is trained differ: " + "; ".join(changed)
                         + ". Resume with the checkpoint's values, or start a new run with another --out (a resume may "
                         f"change only {', '.join(flag(key) for key in MAY_CHANGE_ON_RESUME)} and the number of processes)")
    if step > now["max_steps"]:
        raise SystemExit(f"{refusal}: it is at step {step}, past --max-steps {now['max_steps']}; pass --max-steps "
                         f">= {step}, or --resume with an earlier checkpoint")
    notes = []
    if unknown := sorted(set(now).symmetric_difference(saved) - set(MAY_CHANGE_ON_RESUME) - {"processes"}):
        notes.append(f"not compared (only one of the checkpoint and this routemix knows them): {', '.join(unknown)}")
    if "max_steps" in saved and saved["max_steps"] != now["max_steps"]:
        notes.append(f"--max-steps was {saved['max_steps']}, now {now['max_steps']} (at step {step}): "
                     + MAY_CHANGE_ON_RESUME["max_steps"])
    if "processes" in saved and "processes" in now and saved["processes"] != now["processes"]:
        rows = [s["micro_batch_size"] * s["grad_accum"] * s["processes"] for s in (saved, now)]
        notes.append(f"processes was {saved['processes']}, now {now['processes']} (at step {step}): {PROCESSES_ON_RESUME}; "
                     f"the effective batch (micro-batch-size x grad-accum x processes) was {rows[0]} rows per optimizer "
                     f"step, now {rows[1]}")
    return notes


# --------------------------------------------------------------------------------------------------
# The command line


def paragraphs(text: str) -> str:
    """A docstring as --help shows it: the lines of each paragraph joined (tyro keeps the source's line breaks,
    which then break lines inside phrases), paragraphs kept apart."""
    blocks, lines = [], []
    for line in text.split("\n") + [""]:
        if line.strip():
            lines.append(line.strip())
        elif lines:
            blocks.append(" ".join(lines))
            lines = []
    return "\n\n".join(blocks)


def cli(cls, args: list[str] | None = None, default=None):
    """`tyro.cli(cls)` with each field's docstring reflowed (`paragraphs`); `default`: an instance of `cls` whose
    values are the defaults (a resume's recorded settings)."""
    import docstring_parser  # tyro's own docstring reader
    import tyro

    docs = {p.arg_name: p.description for p in docstring_parser.parse_from_object(cls).params if p.description}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    reflowed = dataclasses.make_dataclass(cls.__name__, [
        (f.name, Annotated[hints[f.name], tyro.conf.arg(help=paragraphs(docs.get(f.name, "")))],
         dataclasses.field(default=f.default))
        for f in dataclasses.fields(cls)])
    written = cls.__doc__ if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}(") else None
    defaults = None if default is None else reflowed(**{name: getattr(default, name) for name in names})
    parsed = tyro.cli(reflowed, args=args, description=written, default=defaults)
    return cls(**{name: getattr(parsed, name) for name in names})


FROM_THE_COMMAND_LINE = ("out", "resume", "probe_only")
"""What a resume takes from this command even when left out: where the run is, which checkpoint, the mode."""


def started_config(args: Args) -> Path | None:
    """The `config.json` of the run this command continues (`--resume auto` with an `--out` that holds one, or the run
    folder of a `--resume <checkpoint>`); None for a new run."""
    if args.resume == "none":
        return None
    if args.resume == "auto":
        path = args.out / "config.json" if args.out is not None else None
    else:
        path = Path(args.resume).resolve().parents[1] / "config.json"  # <run>/checkpoints/step_N
    return path if path is not None and path.is_file() else None


def recorded_args(path: Path) -> Args:
    """The settings a run recorded in its `config.json` (resolved values), as Args; settings this routemix does not
    know are left out, settings the file lacks keep their defaults."""
    recorded, hints = json.loads(path.read_text()), typing.get_type_hints(Args)
    values = {}
    for field in dataclasses.fields(Args):
        if field.name in recorded and field.name not in FROM_THE_COMMAND_LINE:
            value = recorded[field.name]
            if value is not None and Path in (hints[field.name], *typing.get_args(hints[field.name])):
                value = Path(value)  # JSON holds paths as strings
            elif isinstance(value, list):
                value = tuple(value)
            values[field.name] = value
    return dataclasses.replace(Args(), **values)


def parse(argv: list[str] | None = None) -> Args:
    """train.py's command line. A resume continues the run as it was started: every setting left out comes from the
    run's own `config.json`, not from the defaults (README, "Resume"), and the settings given that differ from it are
    printed (which of them a resume may change is checked against the checkpoint, `changes_on_resume`)."""
    args = cli(Args, argv)
    path = started_config(args)
    if path is None:
        return resolve_defaults(args)
    started = recorded_args(path)
    args = cli(Args, argv, default=started)
    given = [f"{flag(f.name)} {getattr(args, f.name)} (the run has {getattr(started, f.name)})"
             for f in dataclasses.fields(Args)
             if f.name not in FROM_THE_COMMAND_LINE and getattr(args, f.name) != getattr(started, f.name)]
    if os.environ.get("RANK", "0") == "0":
        print(f"resume: the run's settings from {path}" + (f"; given here: {', '.join(given)}" if given else ""),
              flush=True)
    return resolve_defaults(args)
