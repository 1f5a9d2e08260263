"""Peak memory per parameter and step time, with and without `--gradient-checkpointing` (BENCHMARKS.md, "Memory").

    python benchmarks/memory.py --repeats 3        # ~10 min on 2 cores
    python benchmarks/memory.py --quick            # one short repetition: checks that every row is produced

Two models: the embedded tiny MoE, and a larger CPU-sized Qwen3-MoE (8 layers, hidden 512, 16 experts
top-2, ~110M parameters) saved to a temporary folder and loaded by path. Each configuration runs in its
own child process (a clean peak RSS) on the demo data, with the training step train.py runs: packed rows,
logits at targets only (`TargetHead`), routers frozen, fused AdamW, float32 weights. A thread samples
the process's RSS every millisecond during all steps; "activations" is the peak minus the RSS before
the first forward, when weights, gradient buffers (kept between steps here, zeroed rather than freed) and
AdamW state are already allocated. glibc's mmap threshold is fixed (`MALLOC_MMAP_THRESHOLD_`) so that
freed activations leave the RSS.
Repetitions are interleaved; the table gives medians [min-max].
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import tyro

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LARGER = dict(hidden_size=512, intermediate_size=1024, moe_intermediate_size=512, num_hidden_layers=8,
              num_attention_heads=8, num_key_value_heads=4, head_dim=64, num_experts=16, num_experts_per_tok=2)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def larger_model(folder: Path) -> Path:
    """The larger CPU-sized Qwen3-MoE, saved with the tiny tokenizer (created once per benchmark run)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3MoeConfig

    tokenizer = AutoTokenizer.from_pretrained(REPO / "models" / "tiny")
    config = Qwen3MoeConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                            bos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False, max_position_embeddings=4096, **LARGER)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def child(model_name: str, checkpointing: bool, warmup: int, steps: int, rows: int, seq_len: int, threads: int) -> dict:
    """One configuration, in this process: `warmup` + `steps` training steps; RSS and step times of the last `steps`."""
    from types import SimpleNamespace

    import torch

    from reading import data
    from lifecycle import distributed
    import routing
    from reading import sources
    from models import TargetHead, attention, load_model

    torch.set_num_threads(threads)
    model, tokenizer = load_model(model_name, seed=0)
    for _, router in routing.find_routers(model):
        router.requires_grad_(False)
    if checkpointing:
        distributed.enable_gradient_checkpointing(SimpleNamespace(state=SimpleNamespace(fsdp_plugin=None)), model)
    model.train()
    head = TargetHead(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    train_sets, _ = sources.load_train_dev(REPO / "data" / "demo")
    order = iter([(name, i) for i in range(10**6) for name in sorted(train_sets)])
    stream = data.PackedStream(order.__next__, train_sets, tokenizer, seq_len, rows)
    batches = [stream.next_batch()[0] for _ in range(warmup + steps)]

    def step(batch):
        with head.on(batch["labels"]) as targets:
            outputs = model(**attention.packed_inputs(model.config, batch, "cpu", torch.float32))
        (head.loss_sum(outputs.logits, targets, batch["labels"]) / len(targets)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # gradient buffers stay allocated: counted before the steps

    # weights, gradient buffers and AdamW state exist before the first forward (a step on zero gradients moves
    # nothing: Adam's update is 0 / (0 + eps)), so the RSS growth from here on is what the steps add
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    before, peak, running = rss_bytes(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for batch in batches[:warmup]:
        step(batch)
    times = []
    for batch in batches[warmup:]:
        start = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - start)
    running[0] = False
    sampler.join()
    parameters = sum(p.numel() for p in model.parameters())
    return {"parameters": parameters, "rss_before": before, "peak_rss": max(peak[0], before),
            "step_s": statistics.median(times)}


def main(repeats: int = 3, quick: bool = False, rows: int = 8, seq_len: int = 256, threads: int = 2,
         out: Path = REPO / "runs" / "benchmarks" / "memory.json") -> None:
    """Runs every (model, checkpointing) configuration `repeats` times, interleaved, and prints the table."""
    warmup, steps = (1, 2) if quick else (3, 10)
    repeats = 1 if quick else repeats
    with tempfile.TemporaryDirectory(prefix="routemix-memory-") as tmp:
        models = {"tiny": "tiny", "larger": str(larger_model(Path(tmp) / "larger"))}
        configurations = [(name, ckpt) for name in models for ckpt in (False, True)]
        results = {c: [] for c in configurations}
        for _ in range(repeats):
            for name, ckpt in configurations:
                command = [sys.executable, __file__, "--child", models[name], str(ckpt), str(warmup), str(steps), str(rows),
                           str(seq_len), str(threads)]
                # a fixed mmap threshold: freed activations go back to the system, so the RSS follows live memory
                env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(threads)}
                done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True, env=env)
                results[name, ckpt].append(json.loads(done.stdout.strip().splitlines()[-1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({f"{n} checkpointing={c}": r for (n, c), r in results.items()}, indent=2))

    def cell(values, fmt):
        return f"{fmt(statistics.median(values))} [{fmt(min(values))}-{fmt(max(values))}]"

    print(f"{rows} x {seq_len} tokens per step, {threads} threads, float32 weights, {repeats} interleaved repetitions; "
          "median [min-max]\n")
    print("| model | parameters | gradient checkpointing | peak RSS / parameter, bytes | activations / parameter, bytes "
          "| activations MiB | step s |")
    print("|---|---|---|---|---|---|---|")
    for (name, ckpt), runs in results.items():
        n = runs[0]["parameters"]
        print(f"| {name} | {n / 1e6:.1f}M | {'on' if ckpt else 'off'} "
              f"| {cell([r['peak_rss'] / n for r in runs], lambda v: f'{v:.1f}')} "
              f"| {cell([(r['peak_rss'] - r['rss_before']) / n for r in runs], lambda v: f'{v:.1f}')} "
              f"| {cell([(r['peak_rss'] - r['rss_before']) / 2**20 for r in runs], lambda v: f'{v:.0f}')} "
              f"| {cell([r['step_s'] for r in runs], lambda v: f'{v:.3f}')} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        name, ckpt, warmup, steps, rows, seq_len, threads = sys.argv[2:]
        print(json.dumps(child(name, ckpt == "True", int(warmup), int(steps), int(rows), int(seq_len), int(threads))))
    else:
        tyro.cli(main)
