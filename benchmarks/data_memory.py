"""Peak memory per rank and start-up time of reading a large data folder: Python lists of records (routemix
before sources.py kept records in Arrow) next to `sources.load` (cached, memory-mapped Arrow), cold and cached.

    python benchmarks/data_memory.py                         # 1M synthetic records, 3 repetitions (~15 min on 2 cores)
    python benchmarks/data_memory.py --records 20000 --repeats 1    # a quick look

The data folder (4 datasets in the 4 record shapes, 4 files each, ~1 KB per record, and 500 dev records
each) is generated once into `--workdir`. Every measurement runs in its own child process; "2 ranks"
starts two children at once, as `accelerate launch --num_processes 2` would. Each child reports the
seconds from its start to the data loaded, its peak RSS then and how much of its RSS is anonymous
memory (the process's own heap; the rest is mostly file pages: libraries and the memory-mapped Arrow
tables, which the page cache shares between processes and can drop), the same after `--reads`
random reads (`datasets[name][i]`, as the sampler and packing read records; every read maps the pages
around the record), and the time per read.
Repetitions are interleaved; the table gives medians (min-max). BENCHMARKS.md holds the numbers.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tyro

REPO = Path(__file__).resolve().parents[1]
NAMES = ("chat", "code", "math", "reasoning")
WORDS = ["the", "a", "model", "data", "expert", "router", "token", "mixture", "weight", "probe", "dataset", "train", "loss", "answer", "question", "step"]


@dataclass
class Args:
    records: int = 1_000_000
    """Training records in all (split evenly over the 4 datasets)."""
    repeats: int = 3
    """Repetitions of every measurement, interleaved."""
    workdir: Path = Path("runs/data_memory")
    """Where the generated data folder and the Arrow cache go (reused when the record count matches)."""
    reads: int = 20_000
    """Random reads timed after loading."""
    child: str | None = None
    """(internal) run one measurement: `lists` or `arrow`."""


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def record(name: str, rng: random.Random) -> dict:
    """One synthetic record; each dataset has one of the formats sources.py reads (~1 KB of text)."""
    question, answer = text(rng, 35), text(rng, 110)
    if name == "chat":
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
    if name == "code":
        return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
                "system_prompt": "You write careful code."}
    if name == "math":
        return {"instruction": question[:60], "input": question[60:], "output": answer}
    half = len(answer) // 2
    return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer[:half]},
                              {"from": "human", "value": "and then?"}, {"from": "gpt", "value": answer[half:]}]}


def generate(folder: Path, records: int) -> None:
    if (folder / "COMPLETE").exists() and json.loads((folder / "COMPLETE").read_text()) == records:
        return
    shutil.rmtree(folder, ignore_errors=True)
    rng = random.Random(0)
    for name in NAMES:
        per_file = records // len(NAMES) // 4
        for part in range(4):
            path = folder / "train" / name / f"part-{part}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w") as f:
                f.writelines(json.dumps(record(name, rng)) + "\n" for _ in range(per_file))
        (folder / "dev").mkdir(exist_ok=True)
        with open(folder / "dev" / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(record(name, rng)) + "\n" for _ in range(500))
    (folder / "COMPLETE").write_text(json.dumps(records))


def load_as_lists(folder: Path):
    """routemix before records stayed in Arrow: every record parsed into a Python list of messages, per rank."""
    from reading import sources

    splits = {}
    for split in ("train", "dev"):
        splits[split] = {}
        for name, part in sources.folder_parts(folder, split).items():
            splits[split][name] = [sources.to_messages(r) for path in part.files for _, r, _ in sources.read_records(Path(path))]
    return splits["train"], splits["dev"]


def run_child(args: Args, data: Path, cache: Path) -> None:
    """One measurement in this process; prints its result as one JSON line."""
    start = time.perf_counter()
    from reading import sources
    from sampler import MixtureSampler

    imported = time.perf_counter()
    if args.child == "lists":
        train, _ = load_as_lists(data)
    else:
        loaded = sources.load(data, cache_dir=cache)
        train = loaded.train
    loaded_at = time.perf_counter()
    loaded_memory = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **memory_now()}
    sampler = MixtureSampler({name: len(c) for name, c in train.items()}, {name: 1.0 for name in train}, seed=0)
    draws = [sampler.draw() for _ in range(args.reads)]
    read_start = time.perf_counter()
    for name, index in draws:
        train[name][index]
    read_seconds = time.perf_counter() - read_start
    print(json.dumps({
        "records": sum(len(c) for c in train.values()),
        "import_seconds": imported - start,
        "load_seconds": loaded_at - imported,
        "startup_seconds": loaded_at - start,
        "read_us": read_seconds / args.reads * 1e6,
        **loaded_memory,
        **{f"{key}_after_reads": value for key, value in memory_now().items()},
    }))


def memory_now() -> dict:
    """RSS now, and the part of it that is anonymous (heap: this process's own objects, which nothing shares
    or can drop); the rest is mostly file pages (libraries, memory-mapped Arrow) that the page cache shares
    between processes. Linux only."""
    rollup = dict(line.split(":", 1) for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:])
    return {f"{key.lower()}_mib": int(rollup[key].split()[0]) / 1024 for key in ("Rss", "Anonymous")}


def measure(args: Args, mode: str, ranks: int, data: Path, cache: Path) -> list[dict]:
    command = [sys.executable, __file__, "--child", mode, "--workdir", str(args.workdir), "--records", str(args.records),
               "--reads", str(args.reads)]

    def one(_):
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(ranks) as pool:
        return list(pool.map(one, range(ranks)))


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main(args: Args) -> None:
    data, cache = args.workdir / f"data-{args.records}", args.workdir / f"cache-{args.records}"
    if args.child:
        run_child(args, data, cache)
        return
    generate(data, args.records)
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        shutil.rmtree(cache, ignore_errors=True)
        for label, mode, ranks in [("arrow, cold cache, 1 rank", "arrow", 1), ("lists, 1 rank", "lists", 1),
                                   ("arrow, cached, 1 rank", "arrow", 1), ("lists, 2 ranks", "lists", 2),
                                   ("arrow, cached, 2 ranks", "arrow", 2)]:
            runs.setdefault(label, []).extend(measure(args, mode, ranks, data, cache))
            print(label, json.dumps(runs[label][-1]), flush=True)
    print(f"\n{args.records} records ({sum(f.stat().st_size for f in data.rglob('*.jsonl')) / 2**20:.0f} MiB of JSON lines), "
          f"medians (min-max) over {args.repeats} repetitions, per rank:\n")
    print("| reading | start-up s | peak RSS MiB, loaded | of which anonymous | RSS after the reads | of which anonymous "
          "| random read µs |")
    print("|---|---|---|---|---|---|---|")
    keys = ("startup_seconds", "peak_rss_mib", "anonymous_mib", "rss_mib_after_reads", "anonymous_mib_after_reads", "read_us")
    for label, results in runs.items():
        cells = [summary([r[key] for r in results]) for key in keys]
        print(f"| {label} | " + " | ".join(cells) + " |")
    (args.workdir / f"results-{args.records}.json").write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    if str(REPO) not in sys.path:  # `python benchmarks/data_memory.py` puts benchmarks/ first on the path, not the repo
        sys.path.insert(0, str(REPO))
    main(tyro.cli(Args))
