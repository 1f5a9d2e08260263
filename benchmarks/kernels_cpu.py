"""Forward+backward of the tiny MoE on real packed batches, per attention kernel: where packed rows cost time.

    python benchmarks/kernels_cpu.py 1 2048 3    # rows, seq-len, repetitions: one packed 2,048-token row of long chats
    python benchmarks/kernels_cpu.py 8 256 3     # train.py's tiny default shape, the demo data

One thread, CPU seconds of this process (a shared machine's other processes inflate wall time, and with two
threads every OpenMP barrier, but hardly one thread's CPU time), every kernel on the same 5 batches,
interleaved; prints one JSON line of medians. "causal (no packing)" runs the same rows without position_ids:
wrong (examples see each other) but the attention cost of a plain causal row, a floor for the packed ones.
"""
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from reading import data
from reading import sources
from benchmarks import machine
from benchmarks.long_mix import write_long_mix
from models import attention, load_model, token_loss_sum
from sampler import MixtureSampler

torch.set_num_threads(1)
rows, seq, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
model, tok = load_model("tiny")
model.train()
data_dir = write_long_mix(Path(tempfile.mkdtemp(prefix="routemix-long-mix-"))) if seq > 256 else REPO / "data" / "demo"
tr, _ = sources.load_train_dev(data_dir)
sampler = MixtureSampler({n: len(c) for n, c in tr.items()}, {n: 1.0 for n in tr}, seed=0)
stream = data.PackedStream(sampler.draw, tr, tok, seq, rows, sampler.upcoming)
batches = [stream.next_batch()[0] for _ in range(5)]
def run(kind, batch):
    if kind == "causal (no packing)":
        attention.configure(model, torch.device("cpu"), "sdpa"); logits = model(input_ids=batch["input_ids"]).logits
    else:
        attention.configure(model, torch.device("cpu"), kind); logits = model(**attention.packed_inputs(model.config, batch, "cpu")).logits
    token_loss_sum(logits, batch["labels"]).backward()
    model.zero_grad(set_to_none=True)
kinds = ["sdpa", "sdpa_varlen", "eager", "causal (no packing)"]
for k in kinds: run(k, batches[0])
times = {k: [] for k in kinds}
m = machine.OthersMeter(); m.start(); load = os.getloadavg()[0]
for rep in range(reps):
    for batch in batches:
        for k in kinds:
            t = time.process_time(); run(k, batch); times[k].append(time.process_time() - t)
res = {"shape": f"{rows} x {seq}", "examples_per_batch": [int((b["position_ids"] == 0).sum() - (b["token_mask"][:, -1] == 0).sum()) for b in batches],
       "real_tokens": [int(b["token_mask"].sum()) for b in batches], "load_average": load, "others_busy_cores": m.stop(),
       "cpu_ms_median": {k: round(statistics.median(v) * 1e3, 1) for k, v in times.items()},
       "cpu_ms_min_max": {k: [round(min(v) * 1e3, 1), round(max(v) * 1e3, 1)] for k, v in times.items()}, "n": len(times["sdpa"])}
print(json.dumps(res))
