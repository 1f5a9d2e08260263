"""Benchmarks: routemix's training throughput next to its peers and its ceiling, probe and sampler costs, memory.

    python benchmarks/run.py                 # the full table (~15 min on 2 busy cores); JSON in runs/benchmarks/
    python benchmarks/run.py --quick         # a few steps per configuration: checks that every row is produced
    python benchmarks/run.py --only routemix-static ceiling --repeats 5

Every configuration runs in its own child process (a clean peak RSS, no shared state), with
`torch.set_num_threads(threads)`, on the tiny MoE and the demo data at 8 rows x 256 tokens.
Repetitions are interleaved (A B C ... A B C ...) so that a busy spell on the machine hits every
configuration alike; the table gives medians and min-max over repetitions, and ratios are taken
within a repetition, then the median. BENCHMARKS.md explains every row.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tyro

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/run.py` puts benchmarks/ first on the path, not the repo
    sys.path.insert(0, str(REPO))

from benchmarks import long_mix, machine

THROUGHPUT = ["routemix-static", "routemix-static-sdpa-varlen", "routemix-dynamic-paper", "routemix-dynamic-demo", "hf-trainer-padded",
              "trl-packed", "ceiling"]
LONG = ["routemix-static", "routemix-static-sdpa-varlen", "hf-trainer-padded", "trl-packed", "ceiling"]
"""The configurations of `--long`: one packed 2,048-token row of long chats against the padded loop and the ceiling."""
CONFIGS = THROUGHPUT + ["micro"]
DESCRIPTIONS = {
    "routemix-static": "routemix loop, static uniform weights, no probes",
    "routemix-static-sdpa-varlen": "the same with --attn-implementation sdpa_varlen (sdpa per packed example, no mask)",
    "routemix-dynamic-paper": "routemix loop, dynamic mixing, paper schedule (5 batches x k every 100 steps)",
    "routemix-dynamic-demo": "routemix loop, dynamic mixing, demo schedule (train.py tiny defaults)",
    "hf-trainer-padded": "paper's loop shape: HF Trainer, each example padded to seq-len, no packing",
    "trl-packed": "TRL SFTTrainer, packing=True (bfd, padding-free)",
    "ceiling": "plain forward+backward+AdamW on random full rows",
}
PAPER_PROBE_EVERY, PAPER_PROBE_BATCHES = 100, 5


@dataclass
class Args:
    quick: bool = False
    """Smoke run: 4 steps of 4 x 128 tokens per configuration, one repetition, two configurations at a time;
    checks that every row is produced. The numbers mean nothing."""
    repeats: int = 3
    """Repetitions of every configuration, interleaved."""
    warmup: int = 5
    """Steps run before the timed window (allocator, caches, first tokenisation)."""
    steps: int = 100
    """Steps in the timed window; a multiple of 100, so the paper schedule probes a whole number of times in it."""
    max_busy_cores: float = 0.3
    """Before each configuration, wait until other processes keep fewer than this many cores busy..."""
    max_wait_s: float = 300.0
    """...but no longer than this (seconds); then run anyway. The table reports how busy the others were."""
    max_others_cores: float = 0.1
    """A run during which other processes kept more cores than this busy is disturbed: it is discarded and rerun..."""
    reruns: int = 2
    """...at most this many times per configuration and repetition (then the last run counts, and the table shows it)."""
    threads: int = 2
    """`torch.set_num_threads` (and OMP_NUM_THREADS) of every configuration."""
    long: bool = False
    """Long packed rows: the long-chat mix of benchmarks/long_mix.py, routemix at one row of 2,048 tokens, the padded
    loop at 4 rows padded to 2,048 (issue 17's shapes), the ceiling at 1 x 2,048; the configurations in LONG."""
    rows: int = 8
    """Rows per micro-batch (train.py's default)."""
    padded_rows: int | None = None
    """Rows per micro-batch of hf-trainer-padded (default: `rows`)."""
    seq_len: int = 256
    """Tokens per row (train.py's default for the tiny model)."""
    data: Path = REPO / "data" / "demo"
    """Dataset folder, as for train.py."""
    only: list[str] = field(default_factory=list)
    """Run only these configurations (default: all): routemix-static, routemix-dynamic-paper, routemix-dynamic-demo,
    hf-trainer-padded, trl-packed, ceiling, micro."""
    out: Path = Path("runs") / "benchmarks" / "results.json"
    """Where the JSON with every repetition's raw numbers and the summary goes."""
    child: str | None = None
    """Internal: run one configuration in this process and write its result to `--child-out`."""
    child_out: Path | None = None
    """Internal: the child's result file."""


def resolve(args: Args) -> Args:
    if args.long and args.child is None:
        args.rows, args.seq_len, args.padded_rows = 1, 2048, 4
        args.data = long_mix.write_long_mix(Path(tempfile.mkdtemp(prefix="routemix-long-mix-")))
        args.only = args.only or LONG
    if args.quick:
        # two configurations at a time, one thread each: a smoke run should not keep more threads than cores busy
        args.repeats, args.warmup, args.steps, args.rows, args.seq_len, args.threads = 1, 1, 4, 4, 128, 1
        args.max_wait_s, args.reruns = 0.0, 0
    elif args.child is None and args.steps % PAPER_PROBE_EVERY and any("dynamic" in c for c in args.only or CONFIGS):
        raise SystemExit(f"--steps must be a multiple of {PAPER_PROBE_EVERY} (the paper's probe period)")
    unknown = sorted(set(args.only) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configurations {unknown}; choose from {CONFIGS}")
    return args


# --------------------------------------------------------------------------- child: one configuration


def measure(args: Args) -> dict:
    """Run configuration `args.child` in this process."""
    import torch

    torch.set_num_threads(args.threads)
    shape = {"warmup": args.warmup, "steps": args.steps, "rows": args.rows, "seq_len": args.seq_len}
    if args.child.startswith("routemix-"):
        import train
        from benchmarks import routemix_loop

        from lifecycle import preflight

        demo = train.resolve_defaults(train.Args())
        preflight.apply_model_defaults(demo)  # the demo's probe period and batches follow its model
        # --quick keeps a probe in the short window: every window (paper) or half window (demo), one batch each
        attn_implementation = "sdpa_varlen" if args.child == "routemix-static-sdpa-varlen" else None
        mix, probe_every, probe_batches = {
            "routemix-static": ("static", 10**9, PAPER_PROBE_BATCHES),
            "routemix-static-sdpa-varlen": ("static", 10**9, PAPER_PROBE_BATCHES),
            "routemix-dynamic-paper": ("dynamic", args.steps, 1) if args.quick else ("dynamic", PAPER_PROBE_EVERY, PAPER_PROBE_BATCHES),
            "routemix-dynamic-demo": ("dynamic", args.steps // 2, 1) if args.quick else ("dynamic", demo.probe_every, demo.probe_batches),
        }[args.child]
        result = routemix_loop.train_loop(mix, probe_every, probe_batches, data_dir=args.data, attn_implementation=attn_implementation,
                                          **shape)
        return result if mix == "static" else {**result, "probe_every": probe_every, "probe_batches": probe_batches}
    if args.child in ("hf-trainer-padded", "trl-packed"):
        from benchmarks import peers

        if args.child == "hf-trainer-padded":
            return peers.hf_trainer_padded(data_dir=args.data, **{**shape, "rows": args.padded_rows or args.rows})
        return peers.trl_packed(data_dir=args.data, **shape)
    from benchmarks import components

    if args.child == "ceiling":
        return components.ceiling(**shape)
    if args.child == "micro":
        repeats, draws, updates = (3, 10_000, 100) if args.quick else (30, 300_000, 3_000)
        return {
            "capture": components.capture_overhead(args.data, args.rows, args.seq_len, repeats),
            "sampler": components.sampler_cost(args.data, draws, updates),
        }
    raise SystemExit(f"unknown configuration {args.child!r}")


def run_undisturbed(args: Args, config: str, workdir: Path) -> dict:
    """`run_child`, rerun while other processes disturbed it (at most `--reruns` times); the discarded
    runs' throughput and disturbance are kept in the result."""
    discarded = []
    result = run_child(args, config, workdir)
    while "error" not in result and result["others_busy_cores"] > args.max_others_cores and len(discarded) < args.reruns:
        discarded.append({key: result.get(key) for key in ("real_tokens_per_s", "others_busy_cores")})
        result = run_child(args, config, workdir)
    return {**result, "discarded": discarded}


def run_child(args: Args, config: str, workdir: Path) -> dict:
    """One configuration in a fresh process; its result, or `{"error": ...}` with the end of its output."""
    result_file, log_file = workdir / f"{config}.json", workdir / f"{config}.log"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", config, "--child-out", str(result_file),
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--threads", str(args.threads),
               "--rows", str(args.rows), "--seq-len", str(args.seq_len), "--data", str(args.data)]
    if args.padded_rows:
        command += ["--padded-rows", str(args.padded_rows)]
    if args.quick:
        command.append("--quick")
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}
    busy_before = machine.wait_until_quiet(args.max_busy_cores, args.max_wait_s) if args.max_wait_s > 0 else None
    others, start = machine.OthersMeter(), time.perf_counter()
    others.start()
    with open(log_file, "w") as log:
        returncode = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if returncode != 0 or not result_file.exists():
        return {"error": f"exit code {returncode}", "log_tail": log_file.read_text()[-3000:]}
    return {**json.loads(result_file.read_text()), "process_seconds": time.perf_counter() - start,
            "busy_cores_before": busy_before, "others_busy_cores": others.stop()}


# --------------------------------------------------------------------------- summary and table


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(stats: dict | None, digits: int = 0, scale: float = 1.0) -> str:
    if stats is None:
        return "-"
    m, lo, hi = (stats[k] * scale for k in ("median", "min", "max"))
    return f"{m:,.{digits}f} [{lo:,.{digits}f}-{hi:,.{digits}f}]"


def paired_ratios(runs: dict[str, list[dict]], numerator: str, denominator: str, key: str = "real_tokens_per_s") -> dict | None:
    """`numerator / denominator` within each repetition where both ran, as a spread over repetitions."""
    ratios = [a[key] / b[key] for a, b in zip(runs.get(numerator, []), runs.get(denominator, [])) if key in a and key in b]
    return spread(ratios) if ratios else None


def summarize(runs: dict[str, list[dict]], skipped: dict[str, str]) -> dict:
    summary = {}
    for config in [c for c in THROUGHPUT if c in runs or c in skipped]:
        good = [r for r in runs.get(config, []) if "error" not in r]
        if config in skipped or not good:
            summary[config] = {"skipped": skipped.get(config) or "failed: " + runs[config][0]["error"]}
            continue
        row = {key: spread([r[key] for r in good]) for key in
               ("real_tokens_per_s", "assistant_tokens_per_s", "real_tokens_per_cpu_s", "peak_rss_mib", "others_busy_cores",
                "setup_seconds")}
        row["discarded_runs"] = sum(len(r.get("discarded", [])) for r in runs.get(config, []))
        row["vs_routemix_static"] = paired_ratios(runs, config, "routemix-static")
        if "probe_seconds" in good[0] and good[0]["probe_steps"]:
            row["probe_every"] = good[0]["probe_every"]
            row["probe_batches"] = good[0]["probe_batches"]
            row["probe_seconds"] = spread([s for r in good for s in r["probe_seconds"]])
            row["probe_block_seconds"] = spread([s for r in good for s in r["probe_block_seconds"]])
            row["probe_share"] = spread([r["probe_share"] for r in good])
        summary[config] = row
    micro = [r for r in runs.get("micro", []) if "error" not in r]
    if micro:
        summary["micro"] = {
            "forward_seconds": spread([statistics.median(r["capture"]["forward_seconds"]) for r in micro]),
            "forward_with_capture_seconds": spread([statistics.median(r["capture"]["forward_with_capture_seconds"]) for r in micro]),
            "capture_overhead": spread([r["capture"]["overhead"] for r in micro]),
            "draws_per_s": spread([r["sampler"]["draws_per_s"] for r in micro]),
            "set_weights_seconds": spread([r["sampler"]["set_weights_seconds"] for r in micro]),
            "peak_rss_mib": spread([r["peak_rss_mib"] for r in micro]),
        }
    elif "micro" in runs:
        summary["micro"] = {"skipped": "failed: " + runs["micro"][0]["error"]}
    summary["bar"] = {
        f"{loop} / {peer}": paired_ratios(runs, loop, peer)
        for loop in ("routemix-static", "routemix-dynamic-paper") for peer in ("trl-packed", "ceiling")
    }
    return summary


def table(summary: dict, args: Args) -> str:
    lines = [
        (f"{args.repeats} interleaved repetition(s), {args.steps} timed steps after {args.warmup} warm-up steps, "
         f"{args.rows} x {args.seq_len} tokens per step" + (f" ({args.padded_rows} x {args.seq_len} for hf-trainer-padded)" if args.padded_rows else "")
         + (", long-chat mix (benchmarks/long_mix.py)" if args.long else "") + f", {args.threads} threads; median [min-max]"
         + ("; --quick: a smoke run, the numbers mean nothing" if args.quick else "")),
        "",
        "| configuration | real tokens/s | assistant tokens/s | / routemix static | setup s | peak RSS MiB | others' busy cores |",
        "|---|---|---|---|---|---|---|",
    ]
    for config in THROUGHPUT:
        row = summary.get(config)
        if row is None:
            continue
        if "skipped" in row:
            lines.append(f"| {config}: {DESCRIPTIONS[config]} | {row['skipped']} | | | | | |")
            continue
        lines.append(f"| {config}: {DESCRIPTIONS[config]} | {fmt(row['real_tokens_per_s'])} | {fmt(row['assistant_tokens_per_s'])} "
                     f"| {fmt(row['vs_routemix_static'], 2)} | {fmt(row['setup_seconds'], 1)} | {fmt(row['peak_rss_mib'])} "
                     f"| {fmt(row['others_busy_cores'], 2)} |")
    probes = [(c, summary[c]) for c in THROUGHPUT if "probe_seconds" in summary.get(c, {})]
    if probes:
        lines += ["", "| probe schedule | seconds per probe | whole probe block s | share of wall time |", "|---|---|---|---|"]
        for config, row in probes:
            lines.append(f"| {config}: {row['probe_batches']} batches x k every {row['probe_every']} steps "
                         f"| {fmt(row['probe_seconds'], 3)} | {fmt(row['probe_block_seconds'], 3)} | {fmt(row['probe_share'], 1, 100)} % |")
    micro = summary.get("micro")
    if micro and "skipped" not in micro:
        lines += ["", "| micro-benchmark | median [min-max] |", "|---|---|",
                  f"| eval forward, 8 x 256 packed dev batch, ms | {fmt(micro['forward_seconds'], 1, 1e3)} |",
                  f"| same with RoutingCapture active + histogram(), ms | {fmt(micro['forward_with_capture_seconds'], 1, 1e3)} |",
                  f"| routing capture overhead | {fmt(micro['capture_overhead'], 1, 100)} % |",
                  f"| MixtureSampler.draw, draws/s | {fmt(micro['draws_per_s'])} |",
                  f"| MixtureSampler.set_weights, us | {fmt(micro['set_weights_seconds'], 1, 1e6)} |"]
    elif micro:
        lines += ["", f"micro-benchmarks: {micro['skipped']}"]
    bar = {k: v for k, v in summary["bar"].items() if v is not None}
    if bar:
        lines += ["", "| bar (real tokens/s, paired per repetition) | ratio | target |", "|---|---|---|"]
        for name, stats in bar.items():
            target = 2.0 if "trl" in name else 0.8
            verdict = "met" if stats["median"] >= target else "NOT met"
            lines.append(f"| {name} | {fmt(stats, 2)} | >= {target} ({verdict}) |")
    return "\n".join(lines)


def main(args: Args) -> None:
    args = resolve(args)
    if args.child is not None:
        from benchmarks.clock import peak_rss_mib

        result = {**measure(args), "config": args.child}
        result.setdefault("peak_rss_mib", peak_rss_mib())
        args.child_out.write_text(json.dumps(result))
        return
    configs = args.only or CONFIGS
    skipped = {}
    if "trl-packed" in configs and importlib.util.find_spec("trl") is None:
        skipped["trl-packed"] = "not installed (pip install -r benchmarks/requirements.txt torch==2.13.0)"
    runs: dict[str, list[dict]] = {c: [] for c in configs if c not in skipped}
    load_before = os.getloadavg()
    print(f"load average {load_before[0]:.2f}; {args.repeats} repetition(s) of {list(runs)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="routemix-bench-") as workdir, ThreadPoolExecutor(2 if args.quick else 1) as pool:
        for repeat in range(args.repeats):
            # one at a time (--quick: two), in the same order every repetition
            for config, result in zip(runs, pool.map(lambda config: run_undisturbed(args, config, Path(workdir)), list(runs))):
                runs[config].append(result)
                status = result.get("error") or f"{result.get('real_tokens_per_s', 0):,.0f} real tokens/s"
                print(f"  [{repeat + 1}/{args.repeats}] {config}: {status}, "
                      f"others kept {result.get('others_busy_cores', 0):.2f} cores busy"
                      + "".join(f"; discarded a run where others kept {d['others_busy_cores']:.2f} cores busy"
                                for d in result.get("discarded", [])), flush=True)
                if "error" in result:
                    print(result["log_tail"], file=sys.stderr)
    summary = summarize(runs, skipped)
    text = table(summary, args)
    print("\n" + text)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(args).items()},
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "summary": summary, "runs": runs, "skipped": skipped, "table": text,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")
    if any("error" in r for results in runs.values() for r in results):
        raise SystemExit("some configurations failed (see above)")


if __name__ == "__main__":
    main(tyro.cli(Args))
