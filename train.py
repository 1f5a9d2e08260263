"""routemix: instruction-tune a Mixture-of-Experts LM on several datasets with a dynamic data mixture.

Every `--probe-every` optimizer steps a short probe counts which experts each dataset's dev
tokens are routed to; datasets whose routing looks alike are redundant and are sampled less
(Zhu et al., NAACL 2025, "Dynamic Data Mixing Maximizes Instruction Tuning for Mixture-of-Experts").

Single process (CPU laptop or one GPU), the embedded tiny MoE on the bundled demo data:
    accelerate launch train.py
Real work:
    accelerate launch train.py --model allenai/OLMoE-1B-7B-0924 --data path/to/data --bf16
One node, 8 GPUs (the accelerate config picks DDP, FSDP or DeepSpeed; see configs/):
    accelerate launch --config_file configs/fsdp2.yaml --num_processes 8 train.py --model ... --data ...
Two CPU processes (gloo), for debugging distributed code on a laptop:
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train.py
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import tyro
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

import data
import distributed
import mixture
import plots
import routing
import sources
from models import TargetHead, load_model
from run_folder import COMPLETE, append_jsonl, complete_checkpoints, truncate_jsonl, write_atomic
from sampler import MixtureSampler


@dataclass
class Args:
    # --- what to train on
    model: str = "tiny"
    """`tiny` (an embedded random-init 2-layer MoE, runs on a laptop CPU), a local folder, or a Hugging Face hub id."""
    data: Path = Path(__file__).resolve().parent / "data" / "demo"
    """Dataset folder: `train/<name>/*.jsonl` and `dev/<name>.jsonl` (or `dev/<name>/*.jsonl`)."""
    out: Path | None = None
    """Run folder (default `runs/<timestamp>`): logs, mixture log, plots, checkpoints, `final/` model."""
    trust_remote_code: bool = False
    """Allow the model's own Python code from the hub. Off unless you trust the model's authors."""
    router_pattern: str | None = None
    """Regex on module names that finds the routers of a model routemix does not recognise."""

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
    """bf16 mixed precision (on GPUs that support it)."""
    attn_implementation: str | None = None
    """Attention kernel (default: flash_attention_2 on CUDA when flash-attn is installed, else sdpa)."""
    freeze_router: bool = True
    """Keep the router weights fixed, as in the paper, so routing stays a stable representation of the data."""
    aux_loss_coef: float = 0.0
    """Weight of the model's MoE load-balancing loss (0 = off)."""

    # --- the mixture
    mix: Literal["dynamic", "static", "refloss", "random", "random-batch", "cycle"] = "dynamic"
    """How sampling weights change each period: `dynamic` (routing redundancy, the paper), `static`, `refloss`
    (dev loss minus a reference loss, DoReMi-style), `random`, `random-batch` (one dataset per period), `cycle`."""
    init_weights: str = "uniform"
    """Initial sampling weights: `uniform`, `size` (proportional to train size) or a JSON file {"name": weight}."""
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
    agg: Literal["mean", "min", "max"] = "mean"
    """How a dataset's distances to the other datasets (j != i) are aggregated."""
    eta: float = 10.0
    """Step size of the weight update: w <- softmax(log w + eta * delta)."""
    c: float = 0.05
    """Smoothing: w <- (1 - c) * w + c / k keeps every weight >= c / k."""
    ref_loss: Path | None = None
    """JSON {"name": loss} of a reference model's dev losses, for `--mix refloss`."""
    probe_only: bool = False
    """Run one probe on the loaded model, write `<out>/probe_weights.json`, and exit without training."""

    # --- logging and checkpoints
    log_every: int = 10
    """Optimizer steps between log lines (metrics.jsonl, TensorBoard)."""
    save_every: int = 100
    """Optimizer steps between checkpoints (the last step always saves); `plots/` is redrawn at each."""
    keep_checkpoints: int = 2
    """Number of complete checkpoints kept."""
    resume: str = "auto"
    """`auto`: continue from the newest complete checkpoint in `out`; `none`: start fresh (refuses a used `out`);
    or a checkpoint folder."""
    skip_bad_records: bool = False
    """Skip malformed JSONL lines (counted and reported) instead of stopping."""
    skip_nonfinite: int = 0
    """Skip up to this many optimizer steps whose loss or gradient is NaN/inf, instead of stopping at the first."""
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
    if args.mix == "refloss" and args.ref_loss is None:
        raise SystemExit("--mix refloss needs --ref-loss <json of reference dev losses>")
    return args


def lr_lambda(warmup_steps: int, max_steps: int):
    """Linear warmup to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def find_resume_checkpoint(args: Args) -> Path | None:
    """The checkpoint to resume from, per `--resume`."""
    if args.resume == "none":
        if (args.out / "config.json").exists():
            raise SystemExit(f"{args.out} already holds a run; pass another --out, or --resume auto to continue it")
        return None
    if args.resume == "auto":
        checkpoints = complete_checkpoints(args.out)
        return checkpoints[-1] if checkpoints else None
    path = Path(args.resume)
    if not (path / COMPLETE).exists():
        raise SystemExit(f"--resume {path}: not a complete routemix checkpoint (no {COMPLETE} marker)")
    return path


def run_fingerprint(args: Args, sizes: dict[str, int]) -> dict:
    """What a checkpoint must agree with to be resumed."""
    return {"model": args.model, "seq_len": args.seq_len, "mix": args.mix, "datasets": sizes}


def make_probe_batches(dev: dict, tokenizer, args: Args) -> dict[str, list[dict[str, torch.Tensor]]]:
    """The fixed dev batches of every probe: the first `probe-batches` packed micro-batches of each dev set."""
    batches = {}
    for name, conversations in dev.items():
        examples = data.encode_many(tokenizer, conversations, args.seq_len)
        packed = data.pack(examples, args.seq_len, args.micro_batch_size)[: args.probe_batches]
        if len(packed) < args.probe_batches:
            print(f"warning: dev set {name!r} fills {len(packed)} of {args.probe_batches} probe batches; using what exists")
        batches[name] = [data.collate_packed(rows, args.seq_len, tokenizer.pad_token_id) for rows in packed]
    return batches


@torch.no_grad()
def probe(model, head: TargetHead, capture: routing.RoutingCapture, probe_batches: dict, args: Args, accelerator: Accelerator):
    """Routing histograms (k, L, E), dev losses (k,) and counted tokens (k,), summed over all ranks.

    Each rank runs its share of every dataset's probe batches (batch b goes to rank b mod world);
    the model is in eval mode, so routers add no noise. Every rank runs the same number of forwards,
    because FSDP and ZeRO-3 gather parameters inside each forward and DDP syncs buffers in the first:
    a rank without a batch left re-runs batch 0 and counts nothing from it. Also returns this rank's
    own share of the histograms, for `--debug-checks`.
    """
    model.eval()
    names = sorted(probe_batches)
    rank, world = accelerator.process_index, accelerator.num_processes
    histograms, loss_sums, loss_tokens, counted = [], [], [], []
    with capture:
        for name in names:
            batches = probe_batches[name]
            histogram = 0
            loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
            n_loss, n_counted = 0, 0
            for b in range(rank, math.ceil(len(batches) / world) * world, world):
                mine = b < len(batches)
                cpu_batch = batches[b if mine else 0]
                batch = {key: value.to(accelerator.device) for key, value in cpu_batch.items()}
                with head.on(cpu_batch["labels"], accelerator.device) as targets:
                    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
                mask = batch["token_mask"] if args.probe_tokens == "all" else batch["token_mask"] & (batch["labels"] != data.IGNORE_INDEX)
                histogram = histogram + capture.histogram(mask & mine)  # num_experts is known after a forward
                if mine:
                    loss_sum += head.loss_sum(logits, targets, batch["labels"]).double()
                    n_loss += len(targets)
                    n_counted += int(mask.sum())
            histograms.append(histogram)
            loss_sums.append(loss_sum)
            loss_tokens.append(n_loss)
            counted.append(n_counted)
    model.train()
    rank_histograms = torch.stack(histograms)
    histograms = accelerator.reduce(rank_histograms.clone(), reduction="sum").cpu()
    loss_sums = accelerator.reduce(torch.stack(loss_sums), reduction="sum").cpu()
    tokens = accelerator.reduce(torch.tensor([loss_tokens, counted], device=accelerator.device), reduction="sum").cpu()
    dev_loss = (loss_sums / tokens[0].clamp(min=1)).tolist()
    return histograms, dev_loss, tokens[1].tolist(), rank_histograms.cpu()


def forward_backward(model, head: TargetHead, micro_batches: list[dict], accelerator: Accelerator, aux_loss_coef: float = 0.0):
    """Forward and backward over one optimizer step's micro-batches; returns `(summed token loss, tokens)`
    over all ranks' micro-batches. The LM head runs only at positions with a target (`TargetHead`).

    The loss of a step is the sum over all of its assistant tokens (every micro-batch, every rank)
    divided by their count, so micro-batches with more tokens weigh more. accelerate divides each
    micro-batch loss by the accumulation steps and DDP averages over ranks; the scale undoes both.
    """
    n_tokens = sum(int((batch["labels"][:, 1:] != data.IGNORE_INDEX).sum()) for batch in micro_batches)
    global_tokens = int(accelerator.reduce(torch.tensor(n_tokens, device=accelerator.device), reduction="sum"))
    scale = accelerator.gradient_accumulation_steps * accelerator.num_processes / max(global_tokens, 1)
    loss_sum = torch.zeros((), device=accelerator.device)
    for cpu_batch in micro_batches:
        batch = {key: value.to(accelerator.device, non_blocking=True) for key, value in cpu_batch.items()}
        with accelerator.accumulate(model):
            with head.on(cpu_batch["labels"], accelerator.device) as targets:
                outputs = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                                output_router_logits=aux_loss_coef > 0)
            token_loss = head.loss_sum(outputs.logits, targets, batch["labels"])
            loss = token_loss * scale
            if aux_loss_coef > 0:
                loss = loss + aux_loss_coef * outputs.aux_loss
            accelerator.backward(loss)
            loss_sum += token_loss.detach()
    return loss_sum, global_tokens


def main(args: Args) -> None:
    args = resolve_defaults(args)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.grad_accum,
        mixed_precision="bf16" if args.bf16 else "no",
        step_scheduler_with_optimizer=False,  # we step the LR schedule once per optimizer step ourselves
    )
    distributed.check_launch(accelerator)
    set_seed(args.seed)
    is_main = accelerator.is_main_process
    out = args.out
    resume_from = find_resume_checkpoint(args)
    accelerator.wait_for_everyone()  # every rank has looked at `out` before the main process changes it
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        for folder in (out / "checkpoints").glob("step_*"):
            if not (folder / COMPLETE).exists():
                print(f"removing {folder}: an interrupted save")
                shutil.rmtree(folder)
        write_atomic(out / "config.json", json.dumps(asdict(args), indent=2, default=str))

    # --- model, routers, data
    model, tokenizer = load_model(
        args.model, device=accelerator.device, seed=args.seed, trust_remote_code=args.trust_remote_code,
        attn_implementation=args.attn_implementation,
    )
    routers = routing.find_routers(model, args.router_pattern)  # fails here for a model without MoE routers
    head = TargetHead(model)  # logits only where there is a target (tiny model, demo data: step 137 -> 105 ms)
    capture = routing.RoutingCapture(routers)
    if args.freeze_router:
        for _, router in routers + routing.other_routers(model):
            router.requires_grad_(False)
    stats: dict[str, Counter] = {}
    train, dev = sources.load_train_dev(args.data, skip_bad_lines=args.skip_bad_records, stats=stats)
    names = sorted(train)
    sizes = {name: len(train[name]) for name in names}
    skipped = {name: dict(counts) for name, counts in stats.items() if counts}
    if skipped and is_main:
        print(f"skipped records: {skipped}")
    if len(names) < 3 and args.mix == "dynamic" and is_main:
        print(f"warning: with {len(names)} datasets the dynamic update cannot move the weights "
              "(each dataset's redundancy is the same); use 3 or more")
    weights = mixture.initial_weights(args.init_weights, names, sizes)
    ref_loss = mixture.load_ref_loss(args.ref_loss, names) if args.ref_loss else None
    probe_batches = make_probe_batches(dev, tokenizer, args)

    sampler = MixtureSampler(sizes, dict(zip(names, weights)), seed=args.seed, rank=accelerator.process_index)
    stream = data.PackedStream(sampler.draw, train, tokenizer, args.seq_len, args.micro_batch_size, sampler.upcoming)

    trainable = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel per step, not ~10 per parameter (tiny MoE, 2 CPU threads: 8.9 -> 3.4 ms per step)
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(math.ceil(args.warmup_ratio * args.max_steps), args.max_steps))
    distributed.fill_deepspeed_auto_values(accelerator, args.micro_batch_size, args.max_grad_norm)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    fingerprint = run_fingerprint(args, sizes)
    step, tokens_seen = 0, 0

    def save_checkpoint(step: int) -> None:
        """accelerate's state (model, optimizer, LR schedule, RNGs) on every rank, routemix's own state
        (sampler, packing stream, counters) as one JSON file per rank, then the completion marker."""
        folder = out / "checkpoints" / f"step_{step}"
        accelerator.save_state(folder)
        state = {"step": step, "tokens": tokens_seen, "fingerprint": fingerprint,
                 "sampler": sampler.state_dict(), "stream": stream.state_dict()}
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"routemix_state_{accelerator.process_index}.json", json.dumps(state))
        accelerator.wait_for_everyone()
        if is_main:
            write_atomic(folder / COMPLETE, "")
            for old in complete_checkpoints(out)[: -args.keep_checkpoints]:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()

    if resume_from is not None:
        saved_ranks = len(list(resume_from.glob("routemix_state_*.json")))
        if saved_ranks != accelerator.num_processes:
            raise SystemExit(f"cannot resume from {resume_from}: it was written by {saved_ranks} processes and this run "
                             f"has {accelerator.num_processes}; every rank continues its own sample stream, so launch "
                             "with the same number of processes")
        state = json.loads((resume_from / f"routemix_state_{accelerator.process_index}.json").read_text())
        changed = {key: (state["fingerprint"][key], value) for key, value in fingerprint.items() if state["fingerprint"][key] != value}
        if changed:
            raise SystemExit(f"cannot resume from {resume_from}: the run changed: "
                             + "; ".join(f"{key} was {was}, now {now}" for key, (was, now) in changed.items()))
        accelerator.load_state(resume_from)
        sampler.load_state_dict(state["sampler"])
        stream.load_state_dict(state["stream"])
        step, tokens_seen = state["step"], state["tokens"]
        if is_main:
            truncate_jsonl(out / "metrics.jsonl", step)
            truncate_jsonl(out / "mixture.jsonl", step)
            print(f"resumed from {resume_from} at step {step}")

    debug_log = out / "debug" / f"rank_{accelerator.process_index}.jsonl"  # --debug-checks: this rank's view
    if args.debug_checks:
        debug_log.parent.mkdir(parents=True, exist_ok=True)
        truncate_jsonl(debug_log, step)  # a resumed run redoes the steps after its checkpoint

    latest_probe = {}  # the last probe's histograms and pairwise matrix, for the plots

    def update_mixture(step: int, period: int) -> None:
        """Probe, compute the next weights, hand them to the sampler, log everything about it (plots: `draw_plots`)."""
        start = time.perf_counter()
        histograms, dev_loss, probe_tokens, rank_histograms = probe(model, head, capture, probe_batches, args, accelerator)
        g = routing.representations(histograms, args.layers)
        pairwise = routing.pairwise(g, args.distance)
        delta = routing.redundancy(g, args.distance, args.agg) if args.mix != "refloss" else mixture.refloss_delta(dev_loss, ref_loss)
        before = sampler.weights
        after = mixture.next_weights(
            args.mix, [before[n] for n in names], period=period, seed=args.seed, delta=delta, eta=args.eta, c=args.c
        )
        sampler.set_weights(dict(zip(names, after)), at=step)
        after = [sampler.weights[n] for n in names]  # what the sampler draws with (normalised to sum 1)
        if args.debug_checks:
            distributed.assert_same_on_all_ranks(accelerator, f"the sampling weights at step {step}", torch.tensor(after, dtype=torch.float64), names)
            append_jsonl(debug_log, {"step": step, "probe_histograms": rank_histograms.tolist(), "weights": after})
        seconds = time.perf_counter() - start
        if not is_main:
            return
        record = {
            "step": step, "strategy": args.mix, "names": names,
            "weights_before": [before[n] for n in names], "weights_after": after,
            "histograms": histograms.tolist(), "layers": args.layers, "distance": args.distance, "agg": args.agg,
            "eta": args.eta, "c": args.c, "pairwise": torch.as_tensor(pairwise).tolist(),
            "delta": torch.as_tensor(delta).tolist(), "probe_tokens": probe_tokens, "dev_loss": dev_loss, "seconds": seconds,
        }
        append_jsonl(out / "mixture.jsonl", record)
        for i, name in enumerate(names):
            writer.add_scalar(f"mixture/weight_{name}", after[i], step)
            writer.add_scalar(f"mixture/delta_{name}", record["delta"][i], step)
            writer.add_scalar(f"losses/dev_{name}", dev_loss[i], step)
        writer.add_scalar("charts/probe_seconds", seconds, step)
        latest_probe.update(step=step, histograms=histograms, pairwise=pairwise)

    def draw_plots() -> None:
        """The PNGs in `plots/` and the TensorBoard routing heatmap, from the latest probe. Drawn at checkpoints,
        not at every probe: the three figures take ~0.3 s, as long as the demo schedule's probe itself."""
        if not is_main or not latest_probe:
            return
        (out / "plots").mkdir(exist_ok=True)
        plots.plot_weights(sampler.history, names, out / "plots" / "weights.png")
        heatmap = plots.plot_routing(latest_probe["histograms"], names, out / "plots" / "routing.png")
        plots.plot_pairwise(latest_probe["pairwise"], names, args.distance, out / "plots" / "pairwise.png")
        writer.add_image("mixture/routing", heatmap, latest_probe["step"], dataformats="HWC")

    writer = SummaryWriter(out / "tensorboard", purge_step=step or None) if is_main else None
    if args.probe_only:
        update_mixture(step=0, period=1)
        draw_plots()
        if is_main:
            weights_after = json.loads((out / "mixture.jsonl").read_text().splitlines()[-1])["weights_after"]
            (out / "probe_weights.json").write_text(json.dumps(dict(zip(names, weights_after)), indent=2))
            print(f"wrote {out / 'probe_weights.json'}")
        model, optimizer, scheduler = accelerator.free_memory(model, optimizer, scheduler)  # see the end of main
        accelerator.end_training()
        return

    # --- the loop: m optimizer steps, then probe -> reweight -> log -> checkpoint
    model.train()
    progress = tqdm(total=args.max_steps, initial=step, disable=not is_main, desc="train")
    skipped_nonfinite = 0
    train_seconds, tokens_since_log = 0.0, 0  # since the last log line; probes and saves do not count
    while step < args.max_steps:
        step_start = time.perf_counter()
        micro_batches, datasets = zip(*(stream.next_batch() for _ in range(args.grad_accum)))
        loss_sum, global_tokens = forward_backward(model, head, micro_batches, accelerator, args.aux_loss_coef)
        # all parameters: FSDP clips only when given exactly the model's own (frozen ones have no gradient);
        # DeepSpeed has clipped inside its step already and returns the norm as a float
        grad_norm = torch.as_tensor(accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm))
        if not torch.isfinite(grad_norm):  # a NaN/inf loss; the same on every rank after the gradient all-reduce
            optimizer.zero_grad(set_to_none=True)
            skipped_nonfinite += 1
            names_in_step = sorted(set().union(*datasets))
            if skipped_nonfinite > args.skip_nonfinite:
                raise SystemExit(
                    f"non-finite loss or gradient at step {step + 1} (loss sum {float(loss_sum):.4g}, datasets in the "
                    f"step: {names_in_step}); stopped without updating the model or saving. Non-finite steps so far: "
                    f"{skipped_nonfinite} (allowed by --skip-nonfinite: {args.skip_nonfinite}). Last good checkpoint: "
                    f"{complete_checkpoints(out)[-1] if complete_checkpoints(out) else 'none'}"
                )
            if is_main:
                print(f"warning: skipped non-finite step {step + 1} ({skipped_nonfinite}/{args.skip_nonfinite}), datasets {names_in_step}")
            continue
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if args.debug_checks:
            distributed.check_parameters_in_sync(model, accelerator, step, debug_log)
        tokens_seen += global_tokens
        tokens_since_log += int(sum(batch["token_mask"].sum() for batch in micro_batches)) * accelerator.num_processes
        train_seconds += time.perf_counter() - step_start
        progress.update(1)
        last_step = step == args.max_steps

        # --- once in a while: probe -> reweight -> log -> checkpoint
        if step % args.probe_every == 0 or last_step:
            update_mixture(step, period=step // args.probe_every)
        if step % args.log_every == 0 or last_step:
            step_loss = float(accelerator.reduce(loss_sum, reduction="sum")) / max(global_tokens, 1)
            if is_main:
                record = {"step": step, "loss": step_loss, "lr": scheduler.get_last_lr()[0], "tokens": tokens_seen,
                          "tokens_per_s": tokens_since_log / train_seconds, "weights": sampler.weights}
                append_jsonl(out / "metrics.jsonl", record)
                writer.add_scalar("losses/train", step_loss, step)
                writer.add_scalar("charts/lr", record["lr"], step)
                writer.add_scalar("charts/tokens_per_s", record["tokens_per_s"], step)
                writer.add_scalar("charts/grad_norm", float(grad_norm), step)
                progress.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
            train_seconds, tokens_since_log = 0.0, 0
        if step % args.save_every == 0 or last_step:
            draw_plots()
            save_checkpoint(step)

    progress.close()
    # --- the final model, loadable with from_pretrained
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)
    if is_main:
        final = out / "final"
        accelerator.unwrap_model(model).save_pretrained(final, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(final)
        (final / "mixture_weights.json").write_text(json.dumps(sampler.weights, indent=2))
        writer.close()
        truncated = dict(stream.truncated)
        print(f"done: {step} steps, {tokens_seen} assistant tokens, final weights {sampler.weights}"
              + (f", truncated examples {truncated}" if truncated else "") + f"\nmodel in {final}")
    # Free the model before the process group: DDP holds the group, and a gloo group freed by DDP (which
    # keeps the GIL) while gloo's thread still needs the GIL deadlocks at exit (seen with torch 2.13).
    model, optimizer, scheduler = accelerator.free_memory(model, optimizer, scheduler)
    accelerator.end_training()  # also destroys the process group


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except ValueError as error:  # bad input (data, weights files, a model without routers): a message, not a traceback
        if os.environ.get("ROUTEMIX_TRACEBACK"):
            raise
        raise SystemExit(f"routemix: error: {error}\n(set ROUTEMIX_TRACEBACK=1 for the traceback)") from None
