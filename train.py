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

from lifecycle.config import Args, check_datasets, check_rotation, parse, resolve_defaults, run_fingerprint, update_rule

if __name__ == "__main__":  # parse and check first: --help and flag errors answer before torch and transformers load
    ARGS = parse()  # a resume: the run's own settings for every flag left out

import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.utils import broadcast_object_list, set_seed  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from lifecycle import checkpoint  # noqa: E402
from reading import data  # noqa: E402
from lifecycle import distributed  # noqa: E402
import mixture  # noqa: E402
from outputs import model_card  # noqa: E402
from lifecycle import preflight  # noqa: E402
import routing  # noqa: E402
from lifecycle import run_folder  # noqa: E402
from lifecycle import run_lock  # noqa: E402
from reading import sources  # noqa: E402
from lifecycle import stopping  # noqa: E402
from models import TargetHead, attention, checkpoint_dtype, load_model, load_tokenizer, lora  # noqa: E402
from models.export import save_final  # noqa: E402
from models.families import BalanceLoss, moe_block_classes  # noqa: E402
from lifecycle.run_folder import RunLog, write_atomic  # noqa: E402
from sampler import MixtureSampler  # noqa: E402


def lr_lambda(warmup_steps: int, max_steps: int):
    """Linear warmup to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


# --------------------------------------------------------------------------------------------------
# The probe: routing histograms and dev losses of fixed dev batches


@dataclass
class DevProbe:
    """What every probe runs: the same packed dev batches of each dataset, and the hooks that read them."""

    batches: dict[str, list[dict[str, torch.Tensor]]]  # dataset name -> collated micro-batches (on the CPU)
    head: TargetHead
    capture: routing.RoutingCapture
    response_only: bool  # count the routing of assistant tokens only (`--probe-tokens response`)


def make_probe_batches(dev: dict, tokenizer, args: Args) -> dict[str, list[dict[str, torch.Tensor]]]:
    """The fixed dev batches of every probe: the first `probe-batches` packed micro-batches of each dev set."""
    batches = {}
    for name, conversations in dev.items():
        examples = data.encode_many(tokenizer, conversations, args.seq_len)
        packed = data.pack(examples, args.seq_len, args.micro_batch_size)[: args.probe_batches]
        if len(packed) < args.probe_batches:
            print(f"warning: dev set {name!r} fills {len(packed)} of {args.probe_batches} probe batches; using what exists"
                  + ("; with one batch the noise of its delta cannot be measured" if len(packed) == 1 else ""))
        batches[name] = [data.collate_packed(rows, args.seq_len, tokenizer.pad_token_id) for rows in packed]
        if not sum(data.count_targets(batch["labels"]) for batch in batches[name]):
            raise ValueError(f"--seq-len {args.seq_len}: no dev example of dataset {name!r} keeps an assistant token "
                             "within that many tokens (examples are truncated at the end); pass a longer --seq-len")
    return batches


@torch.no_grad()
def probe(model, dev: DevProbe, accelerator: Accelerator):
    """Routing histograms (k, L, E), dev losses (k,) and counted tokens (k,), summed over all ranks, in the
    order of the sorted dataset names; this rank's own share of the histograms, for `--debug-checks`; and the
    histograms of each probe batch apart (k, B, L, E; a dataset with fewer batches has zeros in the rest), since
    how the batches differ is how noisy delta is (`routing.redundancy_noise`).

    Each rank runs its share of every dataset's probe batches (batch b goes to rank b mod world);
    the model is in eval mode, so routers add no noise. Every rank runs the same number of forwards,
    because FSDP and ZeRO-3 gather parameters inside each forward and DDP syncs buffers in the first:
    a rank without a batch left re-runs batch 0 and counts nothing from it.
    """
    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    config = accelerator.unwrap_model(model).config
    histograms, loss_sums, loss_tokens, counted = [], [], [], []
    with dev.capture:
        for name in sorted(dev.batches):
            batches = dev.batches[name]
            per_batch = None  # (batches, L, E): this rank's counts of each batch, zeros for the other ranks' batches
            loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
            n_loss, n_counted = 0, 0
            for b in range(rank, math.ceil(len(batches) / world) * world, world):
                mine = b < len(batches)
                cpu_batch = batches[b if mine else 0]
                batch = {key: cpu_batch[key].to(accelerator.device) for key in ("labels", "token_mask")}
                with dev.head.on(cpu_batch["labels"], accelerator.device) as targets:
                    logits = model(**attention.packed_inputs(config, cpu_batch, accelerator.device)).logits
                mask = batch["token_mask"] & (batch["labels"] != data.IGNORE_INDEX) if dev.response_only else batch["token_mask"]
                counts = dev.capture.histogram(mask & mine)  # num_experts is known after a forward
                per_batch = counts.new_zeros((len(batches), *counts.shape)) if per_batch is None else per_batch
                if mine:
                    per_batch[b] = counts
                    loss_sum += dev.head.loss_sum(logits, targets, batch["labels"]).double()
                    n_loss += len(targets)
                    n_counted += int(mask.sum())
            histograms.append(per_batch)
            loss_sums.append(loss_sum)
            loss_tokens.append(n_loss)
            counted.append(n_counted)
    model.train()
    most = max(h.shape[0] for h in histograms)
    rank_batches = torch.stack([torch.cat([h, h.new_zeros((most - h.shape[0], *h.shape[1:]))]) for h in histograms])
    batch_histograms = accelerator.reduce(rank_batches.clone(), reduction="sum").cpu()
    loss_sums = accelerator.reduce(torch.stack(loss_sums), reduction="sum").cpu()
    tokens = accelerator.reduce(torch.tensor([loss_tokens, counted], device=accelerator.device), reduction="sum").cpu()
    dev_loss = (loss_sums / tokens[0].clamp(min=1)).tolist()
    return batch_histograms.sum(dim=1), dev_loss, tokens[1].tolist(), rank_batches.sum(dim=1).cpu(), batch_histograms


def probe_lengths(batches: dict[str, list[dict[str, torch.Tensor]]]) -> list[tuple[int, int]]:
    """(real tokens, examples) in each dataset's probe batches, sorted by name: the repetition cap's estimate of
    example lengths before the training stream has drawn any (the same on every rank)."""
    return [(sum(int(b["token_mask"].sum()) for b in batches[name]),
             sum(int(((b["position_ids"] == 0) & b["token_mask"]).sum()) for b in batches[name]))
            for name in sorted(batches)]


def step_capacity(args: Args, accelerator: Accelerator) -> int:
    """Tokens one optimizer step can hold, on all ranks together."""
    return args.micro_batch_size * args.seq_len * args.grad_accum * accelerator.num_processes


def counted_datasets(micro_batches: list[dict], response_only: bool) -> torch.Tensor:
    """Each token's dataset over a step's micro-batches, flattened in forward order, -1 where routing does not
    count (padding; with `--probe-tokens response` also every token that is not an assistant token)."""
    ids = [torch.where(b["labels"] != data.IGNORE_INDEX, b["dataset_ids"], -1) if response_only else b["dataset_ids"]
           for b in micro_batches]
    return torch.cat([i.reshape(-1) for i in ids])


def drawn_so_far(step: int, sampler: MixtureSampler, stream: data.PackedStream, args: Args,
                 accelerator: Accelerator) -> mixture.Usage:
    """Examples and tokens drawn of each dataset on all ranks together, and the tokens the rest of the run will
    draw (at the rate so far; before the first step, a full batch per step), for the repetition cap."""
    local = [[sampler.drawn[n] for n in sampler.names], [stream.drawn_tokens[n] for n in sampler.names]]
    drawn, tokens = accelerator.reduce(torch.tensor(local, device=accelerator.device), reduction="sum").cpu().tolist()
    return mixture.Usage.at(step, args.max_steps, drawn, tokens, step_capacity(args, accelerator))


def reweight(step: int, period: int, model, dev: DevProbe, mix: mixture.Mixture, sampler: MixtureSampler,
             stream: data.PackedStream, args: Args, ref_loss: list[float] | None, accelerator: Accelerator,
             trained: routing.PeriodCounts | None = None) -> tuple[dict, torch.Tensor]:
    """Probe, compute the next weights (identically on every rank) and hand them to the sampler.

    With `trained` (`--probe-source train`) the histograms are those the period's training forwards counted,
    and the dev probe runs only when the strategy needs dev losses (refloss). Returns the update's record, as
    `mixture.jsonl` logs it, and this rank's own histograms.
    """
    start = time.perf_counter()
    dev_loss, probe_tokens, delta_se = None, None, None
    if trained is None or args.mix == "refloss":
        histograms, dev_loss, probe_tokens, rank_histograms, batch_histograms = probe(model, dev, accelerator)
        if args.mix == "dynamic":  # how far the probe's own sampling noise moves delta (the rule discounts it)
            delta_se = routing.redundancy_noise(batch_histograms, [len(dev.batches[n]) for n in sorted(dev.batches)],
                                                args.layers, args.distance, args.agg)
    stale, unseen = [], []
    if trained is not None:
        rank_histograms, tokens = trained.take()
        histograms = accelerator.reduce(rank_histograms.clone(), reduction="sum").cpu()
        probe_tokens = accelerator.reduce(torch.tensor(tokens, device=accelerator.device), reduction="sum").cpu().tolist()
        histograms, stale, unseen = trained.carry_over(histograms, probe_tokens)
        rank_histograms = rank_histograms.cpu()
    g = routing.representations(histograms, args.layers)
    pairwise = routing.pairwise(g, args.distance)
    delta = mixture.refloss_delta(dev_loss, ref_loss) if args.mix == "refloss" else routing.redundancy(g, args.distance, args.agg)
    if unseen and args.mix != "refloss":  # no routing seen yet: no evidence either way, so the mean of the others
        delta = torch.as_tensor(delta).clone()
        delta[unseen] = delta[[i for i in range(len(delta)) if i not in unseen]].mean()
    names, before = sampler.names, list(sampler.weights.values())
    update = mix.update(period, delta, drawn_so_far(step, sampler, stream, args, accelerator), delta_se)
    # from the furthest place any rank has reached in the run's one data order, so that every rank draws each place
    # with the same weights (sampler.py)
    furthest = int(accelerator.gather(torch.tensor([sampler.position], device=accelerator.device)).max())
    sampler.set_weights(dict(zip(names, update["weights_after"])), at=step, start=furthest)
    record = {
        "step": step, "strategy": args.mix, "names": names,
        "weights_before": before, **update, "weights_after": list(sampler.weights.values()),  # as drawn (normalised)
        "histograms": histograms.tolist(), "probe_source": args.probe_source,
        "routing_carried_over": [names[i] for i in stale], "routing_unseen": [names[i] for i in unseen], "layers": args.layers,
        "distance": args.distance, "agg": args.agg, "update": args.update, "rule": asdict(mix.rule),
        "max_epochs": args.max_epochs, "eta": args.eta, "c": args.c, "pairwise": pairwise.tolist(),
        "delta": torch.as_tensor(delta).tolist(), "probe_tokens": probe_tokens, "dev_loss": dev_loss,
        "seconds": time.perf_counter() - start,
    }
    return record, rank_histograms


def write_probe_weights(model, dev: DevProbe, mix: mixture.Mixture, sampler: MixtureSampler, stream: data.PackedStream,
                        args: Args, ref_loss: list[float] | None, accelerator: Accelerator, log: RunLog,
                        debug: distributed.DebugChecks) -> None:
    """`--probe-only`: one probe and weight update on the loaded model, logged as usual, and the sampler's new
    weights written to `probe_weights.json` in the `--init-weights` format."""
    record, rank_histograms = reweight(0, 1, model, dev, mix, sampler, stream, args, ref_loss, accelerator)
    debug.weights(0, sampler.names, record["weights_after"], rank_histograms)
    log.mixture(record)
    log.plots(sampler.history, record)
    if accelerator.is_main_process:
        write_atomic(args.out / "probe_weights.json", json.dumps(sampler.weights, indent=2))
        print(f"wrote {args.out / 'probe_weights.json'}")


# --------------------------------------------------------------------------------------------------
# One optimizer step's forward and backward


def forward_backward(model, head: TargetHead, micro_batches: list[dict], accelerator: Accelerator,
                     balance: BalanceLoss | None = None, aux_loss_coef: float = 0.0):
    """Forward and backward over one optimizer step's micro-batches; returns `(summed token loss, tokens)`
    over all ranks' micro-batches. The LM head runs only at positions with a target (`TargetHead`); the
    MoE balance loss (`balance`, weighted by `aux_loss_coef`) counts real tokens only.

    The loss of a step is the sum over all of its assistant tokens (every micro-batch, every rank)
    divided by their count, so micro-batches with more tokens weigh more. accelerate divides each
    micro-batch loss by the accumulation steps and DDP averages over ranks; the scale undoes both.
    """
    n_tokens = sum(data.count_targets(batch["labels"]) for batch in micro_batches)
    global_tokens = int(accelerator.reduce(torch.tensor(n_tokens, device=accelerator.device), reduction="sum"))
    scale = accelerator.gradient_accumulation_steps * accelerator.num_processes / max(global_tokens, 1)
    loss_sum = torch.zeros((), device=accelerator.device)
    config = accelerator.unwrap_model(model).config
    for cpu_batch in micro_batches:
        with accelerator.accumulate(model):
            balance_on = balance.on(cpu_batch["token_mask"]) if balance else nullcontext({})
            with head.on(cpu_batch["labels"], accelerator.device) as targets, balance_on as extra:
                # input_ids, position_ids, and what the attention kernel needs to keep packed examples apart
                outputs = model(**attention.packed_inputs(config, cpu_batch, accelerator.device), **extra)
            token_loss = head.loss_sum(outputs.logits, targets, cpu_batch["labels"])
            loss = token_loss * scale
            if balance:
                loss = loss + aux_loss_coef * balance.value(outputs)
            accelerator.backward(loss)
            loss_sum += token_loss.detach()
    return loss_sum, global_tokens


def stop_or_skip_nonfinite(step: int, skipped: int, args: Args, loss_sum: torch.Tensor, datasets: list, out: Path,
                           accelerator: Accelerator) -> int:
    """A step whose loss or gradient is NaN/inf (the same on every rank after the gradient all-reduce) was not
    applied: stop, naming the step and its datasets, once more than `--skip-nonfinite` such steps happened;
    returns `skipped`, the count of such steps so far, when the run goes on."""
    names, allowed, outcome = sorted(set().union(*datasets)), args.skip_nonfinite, distributed.nonfinite_outcome(accelerator)
    if skipped > allowed:
        last_good = checkpoint.complete_checkpoints(out)
        raise SystemExit(
            f"non-finite loss or gradient at step {step} (loss sum {float(loss_sum):.4g}, datasets in the step: "
            f"{names}); {outcome}. Non-finite steps so far: {skipped} (allowed "
            f"by --skip-nonfinite: {allowed}). Last good checkpoint: {last_good[-1] if last_good else 'none'}"
        )
    if accelerator.is_main_process:
        print(f"warning: skipped non-finite step {step} ({skipped}/{allowed}), datasets {names}")
    return skipped


def initial_weights(args: Args, names: list[str], sizes: dict[str, int], train_sets: dict) -> list[float]:
    """`--init-weights`: uniform, by size, from a file (mixture.py), or from sentence embeddings, an optional extra
    imported only when asked for (one update of the run's own rule from uniform weights)."""
    if args.init_weights == "embedding" or args.init_weights.startswith("embedding:"):
        from extras import embeddings

        return embeddings.initial_weights(args.init_weights, train_sets, names, args)
    return mixture.initial_weights(args.init_weights, names, sizes)


def read_data(args: Args, tokenizer, is_main: bool):
    """The datasets, checked before anything is written: every record is rendered once with the chat template on
    every rank alike (`check_renders`: a bad record stops every rank, naming file and line), what was skipped
    reported, the strategy checked against the number of datasets, and the initial weights and reference losses.
    Returns (train sets, dev sets, names, sizes, initial weights, reference losses or None, the data report)."""
    loaded = sources.load(args.data, skip_bad_records=args.skip_bad_records)  # every rank: one writes the cache, all map it
    unrendered = {"train": {}, "dev": {}}  # with --skip-bad-records: what the template cannot render, counted
    train_sets = data.check_renders(tokenizer, loaded.train, skip_bad=args.skip_bad_records, skipped=unrendered["train"])
    dev_sets = data.check_renders(tokenizer, loaded.dev, skip_bad=args.skip_bad_records, skipped=unrendered["dev"])
    data_report = sources.count_unrendered(loaded.report, unrendered)
    if is_main:
        print(sources.format_report(data_report))
    names, sizes = sorted(train_sets), {name: len(train_sets[name]) for name in sorted(train_sets)}
    check_datasets(args, names, warn=is_main)
    weights = sources.mixture_weights(loaded, names, args.init_weights) or initial_weights(args, names, sizes, train_sets)
    weights = broadcast_object_list([weights])[0]  # rank 0's: embeddings on other devices may differ in the last bit
    check_rotation(args, names, weights)
    ref_loss = mixture.load_ref_loss(args.ref_loss, names) if args.ref_loss else None
    return train_sets, dev_sets, names, sizes, weights, ref_loss, data_report


def build_model(args: Args, accelerator: Accelerator, tokenizer, out: Path, export_dtype: torch.dtype):
    """The model in the dtype its engine needs, its routers found (or a message saying why not) and frozen, LoRA,
    the target head, the balance loss, gradient checkpointing. Hooks go on before `prepare`, so that every wrapper
    passes through them. Returns (model, routers, head, balance loss or None)."""
    model, _ = load_model(args.model, device=accelerator.device, seed=args.seed, tokenizer=tokenizer,
                          dtype=distributed.weights_dtype(accelerator, args.bf16, export_dtype),
                          trust_remote_code=args.trust_remote_code, attn_implementation=args.attn_implementation,
                          training=not args.probe_only)
    routers = routing.find_routers(model, args.router_pattern, pattern_name="--router-pattern")  # or stops, saying why
    if args.freeze_router:
        routing.freeze_routers(model, routers)
    if args.lora_r:  # peft keeps the router and LM-head modules, so the hooks below find them in the PeftModel
        model = lora.wrap(model, tokenizer, args, routers + routing.other_routers(model), out, accelerator)
    head = TargetHead(model)  # logits only where there is a target (BENCHMARKS.md: what it saves)
    balance = BalanceLoss(model, args.router_pattern) if args.aux_loss_coef > 0 else None  # or stops: no such loss
    if args.gradient_checkpointing:
        distributed.enable_gradient_checkpointing(accelerator, model)
    distributed.set_zero3_leaf_modules(accelerator, moe_block_classes(model, args.router_pattern))
    return model, routers, head, balance


def build_mixture(args: Args, names: list[str], sizes: dict[str, int], weights: list[float], dev: DevProbe,
                  accelerator: Accelerator) -> tuple[mixture.Mixture, MixtureSampler]:
    """The strategy's state between probes and the sampler that draws by its weights. The cap (`--max-epochs`)
    plans from the tokens drawn so far; before the first draw, from the probe batches' lengths."""
    mix = mixture.Mixture(args.mix, names, sizes, weights, update_rule(args), seed=args.seed, max_epochs=args.max_epochs,
                          prior=probe_lengths(dev.batches))
    start = mix.start(mixture.Usage.at(0, args.max_steps, [0] * len(names), [0] * len(names),
                                       step_capacity(args, accelerator)))
    for message in mix.cap_messages(start, step=0) if accelerator.is_main_process else []:
        print(message)
    sampler = MixtureSampler(sizes, dict(zip(names, start["weights_after"])), seed=args.seed,
                             rank=accelerator.process_index, world=accelerator.num_processes,
                             max_draws=mixture.max_draws(sizes, args.max_epochs))
    return mix, sampler


def build_optimizer(model, args: Args):
    """AdamW over the trainable parameters, with linear warmup and cosine decay stepped once per optimizer step."""
    # fused: one kernel per optimizer step instead of several per parameter (BENCHMARKS.md)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=args.weight_decay, fused=True)
    warmup_steps = math.ceil(args.warmup_ratio * args.max_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup_steps, args.max_steps))


def resume(accelerator: Accelerator, folder: Path, sampler: MixtureSampler, stream: data.PackedStream,
           mix: mixture.Mixture, trained: routing.PeriodCounts | None) -> tuple[int, int]:
    """Continue from a checkpoint: accelerate's state, the sampler's and packing stream's own streams (no batches
    skipped or replayed), the mixture's state and the train-pass routing counts. Returns (step, tokens seen)."""
    state = checkpoint.load(accelerator, folder, sampler, stream)
    # a checkpoint from before the cap and the anchored rule: the strategy's weights were the sampler's
    mix.load_state_dict(state.get("mixture") or {"weights": list(sampler.weights.values()), "signal": None})
    if trained is not None:
        trained.load_state_dict(state["trained_routing"], accelerator.device)
    return state["step"], state["tokens"]


def export_final(accelerator: Accelerator, model, tokenizer, weights: dict[str, float], out: Path, dtype: torch.dtype) -> Path:
    """The trained model as `out/final` in `dtype` (the checkpoint's own), loadable with `from_pretrained`, with its
    tokenizer and final weights. Every rank takes part: FSDP2 and ZeRO-3 gather the shards (models/export.py).
    A LoRA run's `final/` holds the adapter merged into the weights, and `final/adapter/` the adapter itself."""
    final = out / "final"
    if lora.is_adapted(accelerator.unwrap_model(model)):
        model = lora.save_adapter_and_merge(accelerator, model, tokenizer, final)
    save_final(accelerator, model, tokenizer, final, dtype)
    if accelerator.is_main_process:
        (final / "mixture_weights.json").write_text(json.dumps(weights, indent=2))
    return final


# --------------------------------------------------------------------------------------------------


def announce_final(final: Path, args: Args, step: int, tokens_seen: int, sizes: dict[str, int], dev_sets: dict,
                   sampler: MixtureSampler, stream: data.PackedStream, record: dict | None) -> None:
    """The model card (final/README.md; --push-to-hub uploads it with the model) and the closing summary."""
    model_card.publish(final, args, sizes, dev_sets, sampler.history, record)
    truncated = dict(stream.truncated)
    print(f"done: {step} steps, {tokens_seen} assistant tokens, final weights {sampler.weights}"
          + (f", truncated examples {truncated}" if truncated else "") + f"\nmodel in {final}")


def main(args: Args) -> None:
    args = resolve_defaults(args)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.grad_accum,
        mixed_precision="bf16" if args.bf16 else "no",
        step_scheduler_with_optimizer=False,  # we step the LR schedule once per optimizer step ourselves
    )  # the trackers (--report-to) start in RunLog, once the run folder is known
    run_folder.tracker_names(args.report_to)  # or stops: a tracker asked for is not installed
    distributed.check_launch(accelerator)
    distributed.check_skip_nonfinite(accelerator, args.skip_nonfinite)
    set_seed(args.seed)
    is_main = accelerator.is_main_process

    # --- everything is checked before anything is written: the model (its config only: a missing folder or a hub
    # that cannot be reached stops here) and the defaults that follow from its size, the run folder's lock, then the
    # tokenizer and data (a missing chat template or a bad record stops the run before a large model spends minutes
    # loading; every record is rendered once, `check_renders`, on every rank alike), then whether it resumes
    model_config = preflight.model_config(args.model, args.trust_remote_code)
    chosen = preflight.apply_model_defaults(args, model_config)  # by the model's size, or what its routemix run used
    if chosen and is_main:
        print(chosen)
    preflight.check_positions(model_config, args.model, args.seq_len)
    out, lock = run_lock.claim(accelerator, args.out)  # one run per folder: held until the run ends
    # how a stopped run continues: in a default folder, only with its --out (alone, the command starts a new run)
    again = "the same command" if args.out is not None else f"the same command with --out {out}"
    with lock.released_if_refused():  # a run refused here leaves no lock behind
        tokenizer = load_tokenizer(args.model, chat_template=args.chat_template,
                                   trust_remote_code=args.trust_remote_code)
        train_sets, dev_sets, names, sizes, weights, ref_loss, data_report = read_data(args, tokenizer, is_main)
        args.out, fingerprint = out, run_fingerprint(args, sizes, weights, ref_loss, accelerator.num_processes)
        resume_from = checkpoint.find(out, args.resume, fingerprint, accelerator)  # refuses a changed run
    accelerator.wait_for_everyone()  # every rank has looked at `out` before the main process changes it
    if is_main:
        checkpoint.remove_interrupted(out)
        write_atomic(out / "config.json", json.dumps(asdict(args), indent=2, default=str))
        write_atomic(out / "data_report.json", json.dumps(data_report, indent=2))

    # --- model and routers, the probe, the mixture, the sampler and packing stream, the optimizer
    export_dtype = checkpoint_dtype(args.model, args.trust_remote_code)  # the final model is saved in it
    model, routers, head, balance = build_model(args, accelerator, tokenizer, out, export_dtype)
    dev = DevProbe(make_probe_batches(dev_sets, tokenizer, args), head, routing.RoutingCapture(routers),
                   response_only=args.probe_tokens == "response")
    mix, sampler = build_mixture(args, names, sizes, weights, dev, accelerator)
    stream = data.PackedStream(sampler.draw, train_sets, tokenizer, args.seq_len, args.micro_batch_size, sampler.upcoming)
    trained = routing.PeriodCounts(dev.capture, len(names)) if args.probe_source == "train" else None
    optimizer, scheduler = build_optimizer(model, args)
    distributed.fill_deepspeed_auto_values(accelerator, args.micro_batch_size, args.max_grad_norm)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    distributed.drop_fp32_output_conversion(accelerator, model)  # bf16 logits stay bf16; the loss upcasts in chunks
    checkpoint.use_model_keys(accelerator)  # checkpoints are models too: from_pretrained reads their weights

    # --- resume: the sampler, packing stream and mixture continue where they were (no batches skipped or replayed)
    step, tokens_seen = resume(accelerator, resume_from, sampler, stream, mix, trained) if resume_from else (0, 0)
    log = RunLog(out, names, args.distance, accelerator, step=step, config=asdict(args), report_to=args.report_to)
    debug = distributed.DebugChecks(accelerator, out, args.debug_checks, step, sampler)

    if args.probe_only:  # the paper's static gate-load baseline: weights from one probe, no training
        write_probe_weights(model, dev, mix, sampler, stream, args, ref_loss, accelerator, log, debug)
        log.close()
        model, optimizer, scheduler = accelerator.free_memory(model, optimizer, scheduler)  # see the end of main
        accelerator.end_training()
        lock.release()
        return

    # --- the loop: `probe-every` optimizer steps, then probe -> reweight -> log -> checkpoint
    model.train()
    progress = tqdm(total=args.max_steps, initial=step, disable=not is_main, desc="train")
    skipped_nonfinite, record, stop = 0, None, False  # record: the latest weight update, for the plots
    train_seconds, tokens_since_log = 0.0, 0  # since the last log line; probes and saves do not count
    stopping.arm()  # from here on SIGTERM / SIGINT finish the step and save before exiting
    while step < args.max_steps and not stop:
        step_start = time.perf_counter()
        micro_batches, datasets = zip(*(stream.next_batch() for _ in range(args.grad_accum)))
        debug.draws(step + 1)
        counting = trained.counting(counted_datasets(micro_batches, dev.response_only)) if trained else nullcontext()
        with counting:  # --probe-source train: the routing of this step's own forwards, per dataset
            loss_sum, global_tokens = forward_backward(model, head, micro_batches, accelerator, balance, args.aux_loss_coef)
        # all parameters: FSDP clips only when given exactly the model's own (frozen ones have no gradient);
        # DeepSpeed has clipped inside its step already and returns the norm as a float
        grad_norm = torch.as_tensor(accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm))
        if not torch.isfinite(grad_norm):  # the step is not applied: stop, or skip it (--skip-nonfinite)
            optimizer.zero_grad(set_to_none=True)
            skipped_nonfinite = stop_or_skip_nonfinite(step + 1, skipped_nonfinite + 1, args, loss_sum, datasets, out, accelerator)
            continue
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        debug.parameters(model, step)
        tokens_seen += global_tokens
        tokens_since_log += int(sum(batch["token_mask"].sum() for batch in micro_batches)) * accelerator.num_processes
        train_seconds += time.perf_counter() - step_start
        progress.update(1)
        last_step = step == args.max_steps
        stop = stopping.agreed(accelerator)  # a signal on any rank: every rank saves this step, then stops

        # --- once in a while: probe -> reweight -> log -> checkpoint
        if step % args.probe_every == 0 or last_step:
            record, rank_histograms = reweight(step, step // args.probe_every, model, dev, mix, sampler, stream, args,
                                               ref_loss, accelerator, trained)
            debug.weights(step, names, record["weights_after"], rank_histograms)
            log.mixture(record)
            for message in mix.cap_messages(record, step) if is_main else []:
                print(message)
        if step % args.log_every == 0 or last_step:
            step_loss = float(accelerator.reduce(loss_sum, reduction="sum")) / max(global_tokens, 1)
            log.metrics({"step": step, "loss": step_loss, "lr": scheduler.get_last_lr()[0], "tokens": tokens_seen,
                         "tokens_per_s": tokens_since_log / train_seconds, "weights": sampler.weights}, float(grad_norm))
            progress.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{tokens_since_log / train_seconds:.0f}")
            train_seconds, tokens_since_log = 0.0, 0
        if step % args.save_every == 0 or last_step or stop:
            log.plots(sampler.history, record)
            checkpoint.save(accelerator, out, step, keep=args.keep_checkpoints, state={
                "step": step, "tokens": tokens_seen, "fingerprint": fingerprint,
                "sampler": sampler.state_dict(), "stream": stream.state_dict(), "mixture": mix.state_dict(),
                "trained_routing": trained.state_dict() if trained else None}, model=model, tokenizer=tokenizer)
    progress.close()

    final = None if stop else export_final(accelerator, model, tokenizer, sampler.weights, out, export_dtype)
    log.close()
    if is_main and final is not None:
        announce_final(final, args, step, tokens_seen, sizes, dev_sets, sampler, stream, record)
    # Free the model before the process group: DDP holds the group, and a gloo group freed by DDP (which
    # keeps the GIL) while gloo's thread still needs the GIL deadlocks at exit (seen with torch 2.13).
    model, optimizer, scheduler = accelerator.free_memory(model, optimizer, scheduler)
    accelerator.end_training()  # also destroys the process group
    lock.release()
    if stop:
        stopping.exit_stopped(step, args.max_steps, out / "checkpoints" / f"step_{step}", is_main, again)


if __name__ == "__main__":
    stopping.install()  # SIGTERM / SIGINT stop at the end of an optimizer step, with a checkpoint (stopping.py)
    try:
        main(ARGS)
    except ValueError as error:  # bad input (data, weights files, a model without routers): a message, not a traceback
        if os.environ.get("ROUTEMIX_TRACEBACK"):
            raise
        raise SystemExit(f"routemix: error: {error}\n(set ROUTEMIX_TRACEBACK=1 for the traceback)") from None
