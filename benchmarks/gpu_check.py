"""routemix's CUDA paths on one GPU, in one command: bf16 correctness first, then speed against the model's ceiling.

    python benchmarks/gpu_check.py --out runs/gpu_check             # one CUDA device; under 8 minutes on one H200
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check   # CPU, tiny sizes, seconds (tests/test_gpu_check.py)

1. Correctness, bf16 autocast, on every attention kernel present (eager, sdpa, flex_attention, flash-attn):
   packed = separate for micro-batches of several packed rows, with a negative control (the same rows with
   nothing that keeps the examples apart); GPT-OSS (attention sinks) on its kernels too; the `TargetHead` loss
   equal to the full-logits loss; the probe's routing histograms on the same dev batches across kernels.
2. Speed: routemix's training step (`PackedStream` batches, `train.forward_backward`, clipping, fused AdamW,
   as train.py's loop runs them) on a 1B-class random-init MoE built from a config (OLMoE-1B-7B's dimensions on
   the Qwen3-MoE classes, which have every kernel; as many layers as `--memory-fraction` of the device holds),
   bf16 autocast, next to a plain forward+backward+AdamW ceiling on the same model in the same run; per kernel,
   with and without gradient checkpointing; tokens/s, MFU (model FLOPs counted from the config: attention
   within each example, active experts only, the LM head at target positions), peak memory; the probe at the
   paper's schedule (5 batches of every dataset every 100 steps) as a share of wall time.

Writes `gpu_check.json` and `gpu_check.md` to `--out` and prints the table last. Needs transformers >= 5.0 and
the machine's own torch; BENCHMARKS.md says how to carry tyro to a machine without network.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import transformers
import tyro
from accelerate import Accelerator

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/gpu_check.py` puts benchmarks/ first on the path, not the repo
    sys.path.insert(0, str(REPO))

import itertools

from reading import data
from lifecycle import distributed
import routing
from reading import sources
import train
from benchmarks.long_mix import write_long_mix
from models import TargetHead, attention, load_tokenizer, token_loss_sum
from sampler import MixtureSampler

DATASHEET_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "H800": 989.4e12, "A100": 312e12, "L40S": 362e12}
"""Dense bf16 tensor-core peaks of SXM parts (vendor datasheets), by a substring of the device name."""
PAPER_PROBE_EVERY, PAPER_PROBE_BATCHES = 100, 5
ALL_KERNELS = ("eager", "sdpa", attention.VARLEN, "flex_attention", "flash_attention_2", "flash_attention_3")


@dataclass
class Args:
    out: Path = Path("runs") / "gpu_check"
    """Folder for gpu_check.json and gpu_check.md."""
    dry_run: bool = False
    """CPU, tiny model and batches, a few steps: checks that every section produces its numbers (seconds)."""
    rows: int = 8
    """Rows per micro-batch (train.py's default)."""
    seq_len: int = 2048
    """Tokens per row (train.py's default for real models)."""
    layers: int | None = None
    """Decoder layers of the speed model (default: as many as `memory-fraction` of the device holds, at most 16)."""
    memory_fraction: float = 0.45
    """Share of device memory for the speed model's weights, gradients and AdamW state (fp32: 16 bytes a parameter)."""
    steps: int = 8
    """Timed steps per speed configuration."""
    warmup: int = 3
    """Steps before the timed window (allocator, kernel selection, flex_attention compilation)."""
    tolerance: float = 2e-2
    """Largest relative error (||packed - separate|| / ||separate||) accepted as equal under bf16."""
    time_limit_s: float = 400.0
    """No new speed configuration starts after this many seconds (the rest are listed as skipped)."""


@dataclass
class Sizes:
    """The two models of the check: a small one for correctness, a 1B-class one for speed."""

    small: dict
    speed: dict
    correctness_rows: list[list[int]]
    correctness_seq_len: int
    probe_seq_len: int
    """Rows of the probe-histogram check, long enough for several demo dev examples each."""


def sizes(args: Args, device: torch.device) -> Sizes:
    if args.dry_run:
        args.rows, args.seq_len, args.steps, args.warmup, args.layers = 2, 128, 2, 1, 2
        speed = {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16, "num_experts": 8,
                 "num_experts_per_tok": 2, "moe_intermediate_size": 64}
        return Sizes(small={"hidden_size": 64, "head_dim": 16, "moe_intermediate_size": 64}, speed=speed,
                     correctness_rows=[[17, 12], [22, 9, 9], [31]], correctness_seq_len=40, probe_seq_len=512)
    # OLMoE-1B-7B (allenai/OLMoE-1B-7B-0924): 16 layers, hidden 2048, 16 heads of 128, 64 experts top-8 of 1024
    speed = {"hidden_size": 2048, "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 128, "num_experts": 64,
             "num_experts_per_tok": 8, "moe_intermediate_size": 1024, "vocab_size": 50304}
    per_layer = 4 * 2048 * 2048 + 64 * 3 * 2048 * 1024 + 64 * 2048
    embeddings = 2 * 50304 * 2048
    budget = args.memory_fraction * torch.cuda.get_device_properties(device).total_memory / 16
    args.layers = args.layers or max(1, min(16, int((budget - embeddings) // per_layer)))
    return Sizes(small={"hidden_size": 256, "head_dim": 64, "moe_intermediate_size": 256}, speed=speed,
                 correctness_rows=[[700, 300], [256, 512, 200], [1000]], correctness_seq_len=1024, probe_seq_len=args.seq_len)


def moe_config(vocab_size: int, layers: int, **overrides) -> transformers.Qwen3MoeConfig:
    base = {"vocab_size": vocab_size, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 128,
                "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "num_experts": 8,
                "num_experts_per_tok": 2, "norm_topk_prob": True, "max_position_embeddings": 4096, "tie_word_embeddings": False,
                "use_cache": False}
    return transformers.Qwen3MoeConfig(**{**base, **overrides})


def build(config, device: torch.device, seed: int = 0) -> torch.nn.Module:
    """A random-init model built on `device`, routers frozen; fp32 weights: what train.py's --bf16 trains on one
    process (`distributed.weights_dtype`: bf16 autocast over float32 master weights)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    routing.freeze_routers(model, routing.find_routers(model))
    return model


def kernels_present(model: torch.nn.Module, device: torch.device, training: bool) -> list[str]:
    """The kernels this model and machine can run right (`attention.check_kernel`). Not flex_attention on the CPU
    (the dry run): inductor's CPU code for it does not compile under bf16 autocast (torch 2.13); tests/test_attention.py
    checks it there in fp32."""
    present = []
    for kernel in ALL_KERNELS if device.type == "cuda" else ("eager", "sdpa", attention.VARLEN):
        try:
            attention.check_kernel(model, kernel, device, training)
        except (ValueError, ImportError):
            continue
        if kernel == "flash_attention_3" and importlib.util.find_spec("flash_attn_interface") is None:
            continue
        present.append(kernel)
    return present


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


# --------------------------------------------------------------------------- 1. correctness


def packed_rows(lengths: list[list[int]], seq_len: int, vocab_size: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    rows = [[torch.randint(3, vocab_size, (n,), generator=generator).tolist() for n in row] for row in lengths]
    return data.collate_packed([[data.Example(ids, ids) for ids in row] for row in rows], seq_len, pad_id=0), rows


@torch.no_grad()
def packed_vs_separate(model, kernel: str, device: torch.device, lengths, seq_len: int) -> dict:
    """Relative error of packed against separate logits, over every example, and of the negative control."""
    attention.configure(model, device, kernel, training=False)
    batch, rows = packed_rows(lengths, seq_len, model.config.vocab_size)
    with autocast(device):
        packed = model(**attention.packed_inputs(model.config, batch, device)).logits
        control = model(input_ids=batch["input_ids"].to(device)).logits
        positions_only = model(input_ids=batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device)).logits
        separate, got, ctrl, own = [], [], [], []
        for r, row in enumerate(rows):
            start = 0
            for ids in row:
                separate.append(model(input_ids=torch.tensor([ids], device=device)).logits[0])
                got.append(packed[r, start : start + len(ids)])
                ctrl.append(control[r, start : start + len(ids)])
                own.append(positions_only[r, start : start + len(ids)])
                start += len(ids)
    separate = torch.cat(separate)
    result = {"relative_error": relative(torch.cat(got), separate), "control_relative_error": relative(torch.cat(ctrl), separate),
              "position_ids_only_relative_error": relative(torch.cat(own), separate)}
    return result


def target_head_check(model, device: torch.device, lengths, seq_len: int) -> dict:
    """The TargetHead loss against the full-logits loss, on a packed batch under bf16 autocast."""
    attention.configure(model, device, "sdpa" if "sdpa" in attention.supported_kernels(model) else "eager", training=False)
    batch, _ = packed_rows(lengths, seq_len, model.config.vocab_size, seed=1)
    batch["labels"][:, ::3] = data.IGNORE_INDEX  # positions without a target, as prompts have
    head = TargetHead(model)
    inputs = attention.packed_inputs(model.config, batch, device)
    with torch.no_grad(), autocast(device):
        full = token_loss_sum(model(**inputs).logits, batch["labels"].to(device))
        with head.on(batch["labels"], device) as targets:
            selected = TargetHead.loss_sum(model(**inputs).logits, targets, batch["labels"])
    return {"full_logits_loss": full.item(), "target_head_loss": selected.item(), "relative_error": abs(selected.item() / full.item() - 1)}


def probe_histograms(model, kernels: list[str], device: torch.device, accelerator: Accelerator, dev, tokenizer, rows, seq_len):
    """`train.probe` on the same dev batches with every kernel, in fp32 and under bf16 autocast; differences from
    the first kernel as a share of all counted (token, expert) pairs, and for the negative control (no position_ids)."""
    args = SimpleNamespace(seq_len=seq_len, micro_batch_size=rows, probe_batches=1, probe_tokens="all")
    probe = train.DevProbe(train.make_probe_batches(dev, tokenizer, args), TargetHead(model),
                           routing.RoutingCapture(routing.find_routers(model)), response_only=False)
    results = {}
    for precision in ("fp32", "bf16"):
        histograms = {}
        for kernel in kernels:
            attention.configure(model, device, kernel, training=False)
            with autocast(device) if precision == "bf16" else torch.autocast(device.type, enabled=False):
                histograms[kernel] = train.probe(model, probe, accelerator)[0]
        unpacked = {name: [{**b, "position_ids": torch.arange(seq_len).expand_as(b["position_ids"])} for b in bs]
                    for name, bs in probe.batches.items()}
        attention.configure(model, device, kernels[0], training=False)
        with autocast(device) if precision == "bf16" else torch.autocast(device.type, enabled=False):
            control = train.probe(model, dataclasses.replace(probe, batches=unpacked), accelerator)[0]
        reference = histograms[kernels[0]]
        total = reference.sum().item()

        def share(h, reference=reference, total=total):
            return (h - reference).abs().sum().item() / 2 / total

        results[precision] = {
            "identical": {k: bool(torch.equal(h, reference)) for k, h in histograms.items()},
            "differing_share": {k: share(h) for k, h in histograms.items()},
            "control_differing_share": share(control),
            "counted_pairs": total,
        }
    return results


def correctness(args: Args, device: torch.device, plan: Sizes, accelerator: Accelerator, dev, tokenizer) -> dict:
    vocab = len(tokenizer)
    result = {}
    model = build(moe_config(vocab, 2, **plan.small), device)
    kernels = kernels_present(model, device, training=False)
    result["kernels"] = kernels
    result["packed_vs_separate"] = {k: packed_vs_separate(model, k, device, plan.correctness_rows, plan.correctness_seq_len) for k in kernels}
    gpt_oss = build(transformers.GptOssConfig(vocab_size=vocab, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4,
                                              num_experts_per_tok=2, layer_types=["sliding_attention", "full_attention"],
                                              sliding_window=128, use_cache=False), device)
    result["gpt_oss_packed_vs_separate"] = {k: packed_vs_separate(gpt_oss, k, device, plan.correctness_rows, plan.correctness_seq_len)
                                            for k in kernels_present(gpt_oss, device, training=False)}
    del gpt_oss
    result["target_head"] = target_head_check(model, device, plan.correctness_rows, plan.correctness_seq_len)
    result["probe_histograms"] = probe_histograms(model, kernels, device, accelerator, dev, tokenizer, args.rows, plan.probe_seq_len)
    ok = all(r["relative_error"] <= args.tolerance < r["control_relative_error"]
             for group in ("packed_vs_separate", "gpt_oss_packed_vs_separate") for r in result[group].values())
    probe = result["probe_histograms"]
    ok &= all(probe["fp32"]["identical"].values())
    ok &= all(s <= probe["bf16"]["control_differing_share"] / 10 for s in probe["bf16"]["differing_share"].values())
    ok &= result["target_head"]["relative_error"] <= 1e-2
    result["ok"] = bool(ok)
    return result


# --------------------------------------------------------------------------- 2. speed


def model_flops(config, lengths: list[int], targets: int) -> float:
    """Training FLOPs of one step (forward + backward = 3 x forward) counted from a Qwen3-MoE-style config:
    per token the attention projections, the router and its top-k experts (active experts only, SwiGLU);
    attention scores within each example of `lengths` (causal: L(L+1)/2 query-key pairs, QK and PV);
    the LM head at `targets` positions. Embedding lookups, norms and softmaxes are not counted."""
    h, heads, kv, d = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim
    per_token = 2 * h * (2 * heads * d + 2 * kv * d) + 2 * h * config.num_experts
    per_token += config.num_experts_per_tok * 3 * 2 * h * config.moe_intermediate_size
    pairs = sum(n * (n + 1) // 2 for n in lengths)
    forward = config.num_hidden_layers * (per_token * sum(lengths) + pairs * 2 * 2 * heads * d) + 2 * h * config.vocab_size * targets
    return 3.0 * forward


def example_lengths(batch: dict) -> list[int]:
    """Lengths of the real examples of a packed batch (the padding block of a row is not one)."""
    lengths = []
    for positions, real in zip(batch["position_ids"].tolist(), batch["token_mask"].tolist()):
        starts = [t for t, p in enumerate(positions) if p == 0] + [len(positions)]
        lengths += [b - a for a, b in itertools.pairwise(starts) if real[a]]
    return lengths


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def timed(step: Callable[[], tuple[float, int]], args: Args, device: torch.device) -> dict:
    """Run `step` (returns FLOPs and real tokens of the step) warmup + steps times; throughput of the last `steps`."""
    for _ in range(args.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    flops = tokens = 0
    start = time.perf_counter()
    for _ in range(args.steps):
        f, t = step()
        flops, tokens = flops + f, tokens + t
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"seconds_per_step": seconds / args.steps, "tokens_per_s": tokens / seconds, "model_tflops_per_s": flops / seconds / 1e12,
            "peak_memory_gib": peak_memory_gib(device)}


def routemix_step(model, head, stream, optimizer, accelerator, config):
    """One optimizer step of train.py's loop: next batch, forward_backward, clipping, AdamW (no logging)."""

    def step():
        batch, _ = stream.next_batch()
        train.forward_backward(model, head, [batch], accelerator)
        grad_norm = torch.as_tensor(accelerator.clip_grad_norm_(model.parameters(), 1.0))
        if not torch.isfinite(grad_norm):  # train.py syncs here too
            raise RuntimeError("non-finite gradient in the speed check")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        targets = int((batch["labels"][:, 1:] != data.IGNORE_INDEX).sum())
        return model_flops(config, example_lengths(batch), targets), int(batch["token_mask"].sum())

    return step


def ceiling_step(model, optimizer, rows: int, seq_len: int, config, device):
    """The plain step on random full rows: every position trained, plain causal attention, full logits."""
    generator = torch.Generator().manual_seed(0)

    def step():
        input_ids = torch.randint(0, config.vocab_size, (rows, seq_len), generator=generator).to(device)
        loss = token_loss_sum(model(input_ids=input_ids).logits, input_ids) / (rows * (seq_len - 1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return model_flops(config, [seq_len] * rows, rows * (seq_len - 1)), rows * seq_len

    return step


def checkpoint_layers(accelerator: Accelerator, model, on: bool) -> None:
    """What `train.py --gradient-checkpointing` does (`distributed.enable_gradient_checkpointing`), or undoing it."""
    if on:
        distributed.enable_gradient_checkpointing(accelerator, model)
    else:  # transformers 5.1x names it gradient_checkpointing
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()


def matmul_tflops(device: torch.device, dry_run: bool) -> float:
    """A large bf16 matrix product's rate on this device (the measured ceiling MFU is also given against)."""
    n = 512 if dry_run else 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize(device)
    start, reps = time.perf_counter(), 3 if dry_run else 20
    for _ in range(reps):
        a @ b
    synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def speed(args: Args, device: torch.device, plan: Sizes, accelerator: Accelerator, tokenizer, data_dir: Path, started: float) -> dict:
    config = moe_config(len(tokenizer), args.layers, **plan.speed)
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    model = build(config, device)
    parameters = sum(p.numel() for p in model.parameters())
    head = TargetHead(model)
    model = accelerator.prepare(model)  # bf16 autocast around forward, as train.py
    distributed.drop_fp32_output_conversion(accelerator, model)
    inner = accelerator.unwrap_model(model)
    train_sets, dev_sets = sources.load_train_dev(data_dir)
    sizes_ = {name: len(c) for name, c in train_sets.items()}
    result = {"layers": args.layers, "parameters": parameters, "config": {k: getattr(config, k) for k in plan.speed} | {"num_hidden_layers": args.layers},
              "rows": args.rows, "seq_len": args.seq_len, "runs": []}
    kernels = kernels_present(inner, device, training=True)
    plans = [(k, "routemix", False) for k in kernels if k != "eager"] or [("eager", "routemix", False)]
    default = attention.default_kernel(inner, device)
    plans += [(default, "ceiling", False), (default, "routemix", True), (default, "ceiling", True)]
    for kernel, loop, checkpointing in plans:
        run = {"kernel": kernel, "loop": loop, "gradient_checkpointing": checkpointing}
        if time.perf_counter() - started > args.time_limit_s:
            result["runs"].append({**run, "skipped": f"time limit ({args.time_limit_s:.0f} s)"})
            continue
        attention.configure(inner, device, kernel, training=True)
        if checkpointing:
            checkpoint_layers(accelerator, inner, True)
        optimizer = torch.optim.AdamW([p for p in inner.parameters() if p.requires_grad], lr=1e-5, fused=device.type == "cuda")
        try:
            if loop == "routemix":
                sampler = MixtureSampler(sizes_, {name: 1.0 for name in sizes_}, seed=0)
                stream = data.PackedStream(sampler.draw, train_sets, tokenizer, args.seq_len, args.rows, sampler.upcoming)
                step = routemix_step(model, head, stream, optimizer, accelerator, config)
            else:
                step = ceiling_step(model, optimizer, args.rows, args.seq_len, config, device)
            run.update(timed(step, args, device))
        except Exception as error:  # noqa: BLE001 -- one failed configuration must not hide the others' numbers
            run["error"] = f"{type(error).__name__}: {error}"[:500]
            traceback.print_exc()
        finally:
            optimizer.zero_grad(set_to_none=True)
            del optimizer
            if checkpointing:
                checkpoint_layers(accelerator, inner, False)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        result["runs"].append(run)
    result["probe"] = probe_cost(model, inner, head, accelerator, dev_sets, tokenizer, args, device, default, result["runs"])
    return result


def probe_cost(model, inner, head, accelerator, dev_sets, tokenizer, args: Args, device, kernel: str, runs: list[dict]) -> dict:
    """One probe at the paper's size (5 batches of every dev set) and its share of wall time at the paper's
    schedule, against routemix's step time with the same kernel."""
    attention.configure(inner, device, kernel, training=False)
    probe_args = SimpleNamespace(seq_len=args.seq_len, micro_batch_size=args.rows, probe_batches=PAPER_PROBE_BATCHES, probe_tokens="all")
    probe = train.DevProbe(train.make_probe_batches(dev_sets, tokenizer, probe_args), head,
                           routing.RoutingCapture(routing.find_routers(inner)), response_only=False)
    train.probe(model, probe, accelerator)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    train.probe(model, probe, accelerator)
    synchronize(device)
    seconds = time.perf_counter() - start
    step = next((r["seconds_per_step"] for r in runs if r["loop"] == "routemix" and r["kernel"] == kernel
                 and not r["gradient_checkpointing"] and "seconds_per_step" in r), None)
    share = seconds / (seconds + PAPER_PROBE_EVERY * step) if step else None
    return {"kernel": kernel, "batches": sum(len(b) for b in probe.batches.values()), "seconds": seconds, "share_at_paper_schedule": share}


# --------------------------------------------------------------------------- report


def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "transformers": transformers.__version__}
    for package in ("accelerate", "tyro", "flash-attn", "triton"):
        try:
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            env[package] = None
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        env.update(device=properties.name, capability=f"{properties.major}.{properties.minor}",
                   memory_gib=round(properties.total_memory / 2**30, 1))
    else:
        env["device"] = "cpu"
    return env


def peak_flops(env: dict) -> float | None:
    return next((peak for name, peak in DATASHEET_BF16.items() if name in env.get("device", "")), None)


def table(report: dict) -> str:
    env, lines = report["environment"], []
    lines.append(f"{env['device']}; torch {env['torch']}, CUDA {env['cuda']}, transformers {env['transformers']}, "
                 f"accelerate {env['accelerate']}, flash-attn {env['flash-attn'] or 'not installed'}"
                 + ("; --dry-run: CPU, tiny sizes, the numbers mean nothing" if report["args"]["dry_run"] else ""))
    c = report.get("correctness")
    if c:
        lines += ["", f"Correctness (bf16 autocast): {'PASS' if c.get('ok') else 'FAIL'}", "",
                  "| check | kernel | relative error | negative control | position_ids only |", "|---|---|---|---|---|"]
        for group, label in (("packed_vs_separate", "packed = separate, Qwen3-MoE"), ("gpt_oss_packed_vs_separate", "packed = separate, GPT-OSS")):
            for kernel, r in c.get(group, {}).items():
                lines.append(f"| {label} | {kernel} | {r['relative_error']:.2e} | {r['control_relative_error']:.2e} "
                             f"| {r['position_ids_only_relative_error']:.2e} |")
        if "target_head" in c:
            lines.append(f"| TargetHead loss = full-logits loss | | {c['target_head']['relative_error']:.2e} | | |")
        for precision, p in c.get("probe_histograms", {}).items():
            for kernel, s in p["differing_share"].items():
                lines.append(f"| probe histograms, {precision}, vs {next(iter(p['identical']))} | {kernel} | {s:.2e} of pairs"
                             f"{' (identical)' if p['identical'][kernel] else ''} | {p['control_differing_share']:.2e} | |")
        if "error" in c:
            lines.append(f"\ncorrectness stopped: {c['error']}")
    s = report.get("speed")
    if s:
        peak = report.get("peak_flops")
        lines += ["", f"Speed: {s.get('parameters', 0) / 1e9:.2f}B-parameter MoE ({s.get('layers')} layers of OLMoE-1B-7B's dimensions), "
                  f"{s.get('rows')} x {s.get('seq_len')} tokens per step, bf16 autocast over fp32 weights, fused AdamW; "
                  f"bf16 matmul measured {report['matmul_tflops']:.0f} TFLOP/s" + (f", datasheet {peak / 1e12:.0f}" if peak else ""), "",
                  "| loop | kernel | grad. ckpt | tokens/s | TFLOP/s | MFU (datasheet) | MFU (measured matmul) | / ceiling | step s | peak GiB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        ceilings = {r["gradient_checkpointing"]: r["tokens_per_s"] for r in s.get("runs", []) if r["loop"] == "ceiling" and "tokens_per_s" in r}
        for r in s.get("runs", []):
            head = f"| {r['loop']} | {r['kernel']} | {'yes' if r['gradient_checkpointing'] else 'no'} |"
            if "tokens_per_s" not in r:
                lines.append(f"{head} {r.get('skipped') or r.get('error')} | | | | | | |")
                continue
            tf = r["model_tflops_per_s"]
            mfu = f"{tf * 1e12 / peak:.1%}" if peak else "-"
            ratio = r["tokens_per_s"] / ceilings[r["gradient_checkpointing"]] if r["gradient_checkpointing"] in ceilings else None
            memory = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
            lines.append(f"{head} {r['tokens_per_s']:,.0f} | {tf:.1f} | {mfu} | {tf / report['matmul_tflops']:.1%} "
                         f"| {f'{ratio:.2f}' if ratio else '-'} | {r['seconds_per_step']:.3f} | {memory} |")
        probe = s.get("probe")
        if probe:
            share = probe["share_at_paper_schedule"]
            lines += ["", (f"Probe ({probe['kernel']}, {probe['batches']} batches = 5 per dataset): {probe['seconds']:.2f} s; "
                      f"at the paper's schedule (every 100 steps) {f'{share:.2%}' if share is not None else '-'} of wall time")]
        if "error" in s:
            lines.append(f"\nspeed stopped: {s['error']}")
    lines.append(f"\ntotal {report['seconds']:.0f} s")
    return "\n".join(lines)


def main(args: Args) -> None:
    started = time.perf_counter()
    if int(transformers.__version__.split(".")[0]) < 5:
        raise SystemExit(f"routemix needs transformers >= 5.0; this machine has {transformers.__version__}")
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --dry-run for the CPU smoke run")
    device = torch.device("cpu" if args.dry_run else "cuda")
    env = environment(device)
    print(json.dumps(env), flush=True)
    plan = sizes(args, device)
    accelerator = Accelerator(mixed_precision="bf16", cpu=args.dry_run)
    tokenizer = load_tokenizer("tiny")
    report = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(args).items()}, "environment": env,
              "peak_flops": peak_flops(env)}
    with tempfile.TemporaryDirectory(prefix="routemix-gpu-check-") as workdir:
        data_dir = write_long_mix(Path(workdir) / "long_mix")
        _, dev = sources.load_train_dev(REPO / "data" / "demo")  # short examples: many example boundaries per row
        for name, section in (("correctness", lambda: correctness(args, device, plan, accelerator, dev, tokenizer)),
                              ("speed", lambda: speed(args, device, plan, accelerator, tokenizer, data_dir, started))):
            print(f"--- {name}", flush=True)
            section_start = time.perf_counter()
            try:
                report[name] = section()
            except Exception as error:  # noqa: BLE001 -- report what ran; the JSON says where it stopped
                traceback.print_exc()
                report[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
            report[name]["seconds"] = time.perf_counter() - section_start
            if name == "correctness":
                report["matmul_tflops"] = matmul_tflops(device, args.dry_run)
    report["seconds"] = time.perf_counter() - started
    text = table(report)
    report["table"] = text
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    (args.out / "gpu_check.md").write_text(text + "\n")
    print(f"\nwrote {args.out / 'gpu_check.json'} and gpu_check.md\n\n{text}")
    if any("error" in report.get(name, {}) for name in ("correctness", "speed")) or not report["correctness"].get("ok"):
        raise SystemExit(1)


if __name__ == "__main__":
    main(tyro.cli(Args))
