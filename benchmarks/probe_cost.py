"""What routing costs at the paper's schedule: `--probe-source dev` (the probe's own forwards) against
`--probe-source train` (counting inside the training forwards), for k = 4 and k = 16 datasets.

    python benchmarks/probe_cost.py --repeats 3            # the BENCHMARKS.md table
    python benchmarks/probe_cost.py --quick                # a few steps: checks that every row is produced

For each k, three configurations of `train.main` (run in their own child process, through
benchmarks.routemix_loop, interleaved repetition by repetition): `static` (no probe: the baseline), `dev`
(dynamic, a probe of 5 batches x k dev sets every 100 steps) and `train` (dynamic, routing counted in the
training forwards, updated every 100 steps). A configuration's routing share is 1 - static / config of the
window's seconds, paired within a repetition (wall time; and CPU time of the process, which other processes on
a shared machine disturb less). For `dev` the measured probe blocks' share of the window is given too.
k = 4 is the demo data; k = 16 is built here from the demo generators (4 generators x 4 seeds, 300 train and
100 dev records each, so that 5 probe batches of 8 x 256 tokens fill).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/probe_cost.py` puts benchmarks/ first on the path, not the repo
    sys.path.insert(0, str(REPO))

PAPER_PROBE_EVERY, PAPER_PROBE_BATCHES = 100, 5
CONFIGS = ("static", "dev", "train")


@dataclass
class Args:
    repeats: int = 3
    """Interleaved repetitions."""
    steps: int = 200
    """Timed steps (after `warmup`); a multiple of 100 so that the paper's schedule updates a whole number of times."""
    warmup: int = 5
    threads: int = 1
    """torch threads per child (1: robust on a machine that others share)."""
    quick: bool = False
    """A few steps and one probe batch: only checks that every row is produced."""
    out: Path = Path("runs/benchmarks/probe_cost.json")
    child: str | None = None
    """(internal) run one configuration `<k>:<config>` in this process."""
    child_data: Path | None = None
    child_out: Path | None = None


def sixteen_datasets(root: Path) -> Path:
    """16 datasets from the 4 demo generators with 4 seeds each: train/<generator>_<seed>/, dev/<generator>_<seed>.jsonl."""
    from scripts.make_demo_data import DATASETS, draw_unique_records, to_jsonl

    for source, make_record in DATASETS.items():
        for seed in range(4):
            records = draw_unique_records(make_record, random.Random(f"probe-cost-{source}-{seed}"), 400)
            (root / "train" / f"{source}_{seed}").mkdir(parents=True, exist_ok=True)
            (root / "dev").mkdir(exist_ok=True)
            (root / "train" / f"{source}_{seed}" / "part-000.jsonl").write_bytes(to_jsonl(records[:300]))
            (root / "dev" / f"{source}_{seed}.jsonl").write_bytes(to_jsonl(records[300:]))
    return root


def measure(args: Args) -> dict:
    import torch

    from benchmarks import routemix_loop

    torch.set_num_threads(args.threads)
    config = args.child.split(":")[1]
    every, batches = (args.steps, 1) if args.quick else (PAPER_PROBE_EVERY, PAPER_PROBE_BATCHES)
    mix, probe_source = {"static": ("static", "dev"), "dev": ("dynamic", "dev"), "train": ("dynamic", "train")}[config]
    return routemix_loop.train_loop(mix, 10**9 if config == "static" else every, batches, warmup=args.warmup,
                                    steps=args.steps, rows=8, seq_len=256, data_dir=args.child_data,
                                    probe_source=probe_source)


def run_child(args: Args, k: int, config: str, data_dir: Path, workdir: Path) -> dict:
    out = workdir / f"k{k}-{config}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", f"{k}:{config}", "--child-data", str(data_dir),
               "--child-out", str(out), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--threads", str(args.threads), *(["--quick"] if args.quick else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    load = os.getloadavg()[0]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"k={k} {config} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    measured = json.loads(out.read_text())
    return {"seconds": measured["seconds"], "cpu_seconds": measured["real_tokens"] / measured["real_tokens_per_cpu_s"], "probe_share": measured.get("probe_share"),
            "load_before": load, "load_after": os.getloadavg()[0]}


def median_range(values: list[float]) -> str:
    return f"{100 * statistics.median(values):.1f} [{100 * min(values):.1f}-{100 * max(values):.1f}] %"


def main(args: Args) -> None:
    if args.child is not None:
        args.child_out.write_text(json.dumps(measure(args)))
        return
    if args.quick:
        args.steps, args.warmup, args.repeats = 4, 1, 1
    start = time.perf_counter()
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="routemix-probe-cost-") as tmp:
        folders = {4: REPO / "data" / "demo", 16: sixteen_datasets(Path(tmp) / "k16")}
        for _ in range(args.repeats):
            for k, folder in folders.items():
                for config in CONFIGS:
                    runs.setdefault(f"{k}:{config}", []).append(run_child(args, k, config, folder, Path(tmp)))
    lines = [f"probe cost at the paper's schedule (every {PAPER_PROBE_EVERY} steps; dev: {PAPER_PROBE_BATCHES} batches x k), "
             f"{args.steps} timed steps of 8 x 256, {args.threads} thread(s), median [min-max] of {args.repeats} "
             "interleaved repetitions", "",
             "| k | probe source | share of wall time | share of CPU time | dev probe blocks' share of the window | s per step |",
             "|---|---|---|---|---|---|"]
    for k in (4, 16):
        static = runs[f"{k}:static"]
        for config in ("dev", "train"):
            rows = runs[f"{k}:{config}"]
            wall = [1 - s["seconds"] / r["seconds"] for s, r in zip(static, rows)]
            cpu = [1 - s["cpu_seconds"] / r["cpu_seconds"] for s, r in zip(static, rows)]
            blocks = median_range([r["probe_share"] for r in rows]) if config == "dev" else "-"
            per_step = statistics.median(r["seconds"] for r in rows) / args.steps
            lines.append(f"| {k} | {config} | {median_range(wall)} | {median_range(cpu)} | {blocks} | {per_step:.3f} |")
    loads = [r["load_before"] for rs in runs.values() for r in rs]
    lines += ["", f"load average before each run: {min(loads):.1f}-{max(loads):.1f}; total {time.perf_counter() - start:.0f} s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, "table": lines}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
