"""Weighting strategies x seeds on one data folder and one token budget, compared on the full dev sets.

    python -m experiments.compare --data data/demo --seeds 0 1 2 3 4 --out runs/compare/demo
    python -m experiments.unequal_data --out data/unequal && \\
        python -m experiments.compare --data data/unequal --seeds 0 1 2 3 4 --out runs/compare/unequal

Every (strategy, seed) is one `python train.py` run in `<out>/<strategy>/seed_<s>`, with the same steps,
batch shape and seed as the others (so the same token budget), then `eval.dev_loss` on the full dev sets and
`eval.accuracy` (exact-match accuracy of greedy answers on the held-out problems in `<data>/eval/`, which
scripts/make_eval_sets.py writes for `math` and `reasoning`; skipped for data without them).
The comparison is resumable: a run whose model and evaluation exist is skipped, an interrupted run resumes
from its last checkpoint (train.py's `--resume auto`), and `summary.md` is rewritten from whatever exists.
Several processes with the same arguments share the runs between them (a run is locked while one works on it).

The strategies (`--strategies` picks some, run in that order for each seed; refloss and final-static take files
from the uniform and dynamic runs of the same seed):

| name | train.py flags |
|---|---|
| uniform | `--mix static` (no cap: plain uniform sampling) |
| size | `--mix static --init-weights size` (no cap) |
| random | `--mix random` |
| refloss | `--mix refloss --ref-loss <the uniform run's last probe dev losses, same seed>` |
| paper | `--mix dynamic --update paper --max-epochs None`: the paper's rule exactly as published |
| dynamic | `--mix dynamic`: routemix's defaults (dev probe) |
| dynamic-train | `--mix dynamic --probe-source train`: the same, routing from the training passes |
| final-static | `--mix static --init-weights <the dynamic run's final weights, same seed>` (the paper's "final static") |

Writes `<out>/summary.md` (mean dev loss per dataset, the mean over datasets and the token-weighted
mean, and accuracy per checkable dataset and their mean, each with a 95% confidence interval over seeds
(Student t); the paired differences to uniform of the mean and token-weighted dev loss and of the accuracy,
with their intervals; the final weights and the most passes over any dataset), `<out>/summary.json` (every
number) and `<out>/summary.png` (the means with their intervals). Wall time and machine load of every run are in
`<out>/<strategy>/seed_<s>/compare.json` and in the summary.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tyro

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Strategy:
    name: str
    flags: tuple[str, ...]
    after: str | None = None  # the strategy whose run (same seed) this one needs
    about: str = ""


STRATEGIES = {s.name: s for s in (
    Strategy("uniform", ("--mix", "static", "--max-epochs", "None"), about="static uniform weights, no cap"),
    Strategy("size", ("--mix", "static", "--init-weights", "size", "--max-epochs", "None"),
             about="static, proportional to train size, no cap"),
    Strategy("random", ("--mix", "random"), about="fresh Dirichlet(1) weights every period"),
    Strategy("refloss", ("--mix", "refloss", "--ref-loss", "{ref_loss}"), after="uniform",
             about="DoReMi-style: dev loss minus the uniform run's final dev loss"),
    Strategy("paper", ("--mix", "dynamic", "--update", "paper", "--max-epochs", "None"),
             about="the paper's rule as published: eta 10, c 0.05, no cap"),
    Strategy("dynamic", ("--mix", "dynamic"), about="routemix's default dynamic mixture (dev probe)"),
    Strategy("dynamic-train", ("--mix", "dynamic", "--probe-source", "train"),
             about="the same, routing counted in the training passes"),
    Strategy("final-static", ("--mix", "static", "--init-weights", "{final_weights}"), after="dynamic",
             about="static with the dynamic run's final weights"),
)}


@dataclass
class Args:
    """Compare weighting strategies over several seeds (see the module docstring)."""

    data: Path = REPO / "data" / "demo"
    """Data folder (train/<name>/, dev/<name>.jsonl)."""
    out: Path = Path("runs/compare/demo")
    """Folder of the runs and the summary."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Seeds; every strategy runs every seed."""
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    """Which strategies, in order (see the module docstring)."""
    train_flags: tuple[str, ...] = ()
    """More train.py flags for every run (e.g. `--max-steps 600`), after the strategy's own."""
    threads: int | None = None
    """OMP_NUM_THREADS of every run (default: as inherited)."""
    summary_only: bool = False
    """Only rewrite the summary from the runs that exist."""
    accuracy_examples: int = 100
    """Held-out problems per checkable dataset for `eval.accuracy` (`<data>/eval/`; 0: no accuracy)."""


# --------------------------------------------------------------------------------------------------
# Running and evaluating


def run_folder(out: Path, strategy: str, seed: int) -> Path:
    return out / strategy / f"seed_{seed}"


def evaluations(args: Args) -> tuple[str, ...]:
    """The result files every finished run has: dev loss, and accuracy when the data has checkable answers."""
    from eval import accuracy

    checkable = args.accuracy_examples > 0 and accuracy.has_problems(args.data)
    return ("dev_loss", "accuracy") if checkable else ("dev_loss",)


def finished(folder: Path, tasks: tuple[str, ...] = ("dev_loss",)) -> bool:
    return (folder / "final" / "model.safetensors").exists() and all(
        (folder / "final" / "eval" / f"{task}.json").exists() for task in tasks)


def strategy_flags(strategy: Strategy, out: Path, seed: int) -> list[str]:
    """The strategy's train.py flags, with the files it takes from the run it comes after filled in."""
    folder = run_folder(out, strategy.name, seed)
    values = {}
    if strategy.after is not None:
        source = run_folder(out, strategy.after, seed)
        folder.mkdir(parents=True, exist_ok=True)
        if "{ref_loss}" in strategy.flags:  # the reference model's dev losses on the same probe batches
            last = json.loads((source / "mixture.jsonl").read_text().splitlines()[-1])
            (folder / "ref_loss.json").write_text(json.dumps(dict(zip(last["names"], last["dev_loss"])), indent=2))
            values["{ref_loss}"] = str(folder / "ref_loss.json")
        if "{final_weights}" in strategy.flags:
            values["{final_weights}"] = str(source / "final" / "mixture_weights.json")
    return [values.get(flag, flag) for flag in strategy.flags]


def load_average() -> float:
    return os.getloadavg()[0]


def train(strategy: Strategy, seed: int, args: Args) -> dict:
    """One `python train.py` run (resumed if interrupted); returns what compare.json records."""
    folder = run_folder(args.out, strategy.name, seed)
    command = [sys.executable, "train.py", "--data", str(args.data.resolve()), "--seed", str(seed),
               "--out", str(folder.resolve()), *strategy_flags(strategy, args.out, seed), *args.train_flags]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    folder.mkdir(parents=True, exist_ok=True)
    resumed = (folder / "config.json").exists()
    load_before, start = load_average(), time.perf_counter()
    with open(folder / "train.log", "a") as log:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{strategy.name} seed {seed} failed (exit {result.returncode}); see {folder / 'train.log'}")
    return {"command": command, "train_seconds": seconds, "resumed": resumed,
            "load_before": load_before, "load_after": load_average()}


def evaluate(folder: Path, args: Args, tasks: tuple[str, ...]) -> float:
    """The evaluations `tasks` that `<folder>/final/eval/` lacks: `eval.dev_loss` on the full dev sets, `eval.accuracy`
    on held-out checkable problems."""
    from eval import accuracy, dev_loss

    start, final, name = time.perf_counter(), folder / "final", f"{folder.parent.name}/{folder.name}"
    if not (final / "eval" / "dev_loss.json").exists():
        dev_loss.main(dev_loss.Args(checkpoints=(final,), data=args.data, out=folder / "dev_loss", run_names=(name,)))
    if "accuracy" in tasks and not (final / "eval" / "accuracy.json").exists():
        accuracy.main(accuracy.Args(checkpoints=(final,), data=args.data, examples=args.accuracy_examples,
                                    run_names=(name,)))
    return time.perf_counter() - start


@contextmanager
def claimed(folder: Path):
    """Whether this process may work on `folder` now: a run another `experiments.compare` process (same `--out`) is
    working on is locked, and skipped here."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".compare.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def run_all(args: Args) -> None:
    """Every (seed, strategy) not finished yet. Several processes with the same arguments share the work (each
    run is locked while one works on it); a run whose `after` run is not finished waits for a later pass."""
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    tasks = evaluations(args)
    progress = True
    while progress:
        progress = False
        for seed in args.seeds:  # seed by seed: an interrupted comparison has whole seeds to compare
            for name in args.strategies:
                strategy, folder = STRATEGIES[name], run_folder(args.out, name, seed)
                after = strategy.after and run_folder(args.out, strategy.after, seed)
                if finished(folder, tasks) or (after and not finished(after)):
                    continue
                with claimed(folder) as mine:
                    if not mine or finished(folder, tasks):
                        continue
                    record = {}
                    if not (folder / "final" / "model.safetensors").exists():
                        print(f"== {name} seed {seed}", flush=True)
                        record = train(strategy, seed, args)
                    record["eval_seconds"] = evaluate(folder, args, tasks)
                    previous = json.loads((folder / "compare.json").read_text()) if (folder / "compare.json").exists() else {}
                    (folder / "compare.json").write_text(json.dumps(previous | record, indent=2))
                progress = True
                write_summary(args)  # after every run: an interrupted comparison still has its table


# --------------------------------------------------------------------------------------------------
# Statistics and the summary

T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
"""The 97.5% quantile of Student's t with 1, 2, ..., 30 degrees of freedom."""


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """(mean, half-width of its 95% confidence interval: t_{0.975, n-1} * sd / sqrt(n)); None for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    t = T_975[len(values) - 2] if len(values) - 1 <= len(T_975) else 1.96
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def run_numbers(folder: Path) -> dict | None:
    """Dev losses, final weights, passes over each dataset and wall time of one finished run (None if unfinished)."""
    if not finished(folder):
        return None
    metrics = json.loads((folder / "final" / "eval" / "dev_loss.json").read_text())["metrics"]
    names = sorted(key.removesuffix("/loss") for key in metrics if key.endswith("/loss"))
    losses = {name: metrics[f"{name}/loss"] for name in names}
    tokens = {name: metrics[f"{name}/tokens"] for name in names}
    updates = [json.loads(line) for line in (folder / "mixture.jsonl").read_text().splitlines()]
    final = json.loads((folder / "final" / "mixture_weights.json").read_text())
    drawn = updates[-1].get("epochs_drawn")  # passes drawn so far, when the run logs them
    timing = json.loads((folder / "compare.json").read_text()) if (folder / "compare.json").exists() else {}
    scored = folder / "final" / "eval" / "accuracy.json"
    accuracy = json.loads(scored.read_text())["metrics"] if scored.exists() else None
    return {
        "accuracy": None if accuracy is None else
                    {key.removesuffix("/accuracy"): value for key, value in accuracy.items() if key.endswith("/accuracy")},
        "accuracy_mean": None if accuracy is None else accuracy["accuracy"],
        "loss": losses,
        "mean": statistics.fmean(losses.values()),
        "token_weighted": sum(losses[n] * tokens[n] for n in names) / sum(tokens.values()),
        "weights": final,
        "max_epochs_drawn": max(drawn) if drawn else None,
        "train_seconds": timing.get("train_seconds"),
        "load": [timing.get("load_before"), timing.get("load_after")],
    }


def paired(by_seed: dict[int, dict], uniform: dict[int, dict], key: str) -> tuple[float, float | None] | None:
    """The mean and interval of this strategy's `key` minus uniform's, seed by seed, over the seeds both have."""
    seeds = [s for s in sorted(set(by_seed) & set(uniform)) if by_seed[s].get(key) is not None
             and uniform[s].get(key) is not None]
    return mean_ci([by_seed[s][key] - uniform[s][key] for s in seeds]) if seeds else None


def summarise(runs: dict[str, dict[int, dict]]) -> dict:
    """strategy -> {"seeds", "loss": {name: (mean, ci)}, "mean", "token_weighted", "vs_uniform" (paired, over the
    seeds both have), "vs_uniform_token_weighted", "wins_vs_uniform" (mean dev loss lower), "weights": {name: mean
    final weight}, "max_epochs_drawn", "train_seconds", and where every seed has an accuracy: "accuracy": {name:
    (mean, ci)}, "accuracy_mean", "vs_uniform_accuracy", "accuracy_wins_vs_uniform" (accuracy higher)}."""
    summary = {}
    for strategy, by_seed in runs.items():
        if not by_seed:
            continue
        numbers = list(by_seed.values())
        names = sorted(numbers[0]["loss"])
        row = {
            "seeds": sorted(by_seed),
            "loss": {n: mean_ci([r["loss"][n] for r in numbers]) for n in names},
            "mean": mean_ci([r["mean"] for r in numbers]),
            "token_weighted": mean_ci([r["token_weighted"] for r in numbers]),
            "weights": {n: statistics.fmean(r["weights"][n] for r in numbers) for n in names},
            "max_epochs_drawn": max((r["max_epochs_drawn"] for r in numbers if r["max_epochs_drawn"] is not None),
                                    default=None),
            "train_seconds": sum(r["train_seconds"] or 0.0 for r in numbers),
        }
        scored = [r for r in numbers if r.get("accuracy") is not None]
        if scored and len(scored) == len(numbers):
            row["accuracy"] = {n: mean_ci([r["accuracy"][n] for r in scored]) for n in sorted(scored[0]["accuracy"])}
            row["accuracy_mean"] = mean_ci([r["accuracy_mean"] for r in scored])
        uniform = runs.get("uniform", {})
        both = sorted(set(by_seed) & set(uniform))
        if both and strategy != "uniform":
            row["vs_uniform"] = paired(by_seed, uniform, "mean")
            row["vs_uniform_token_weighted"] = paired(by_seed, uniform, "token_weighted")
            row["wins_vs_uniform"] = sum(by_seed[s]["mean"] < uniform[s]["mean"] for s in both)
            if "accuracy" in row and (vs := paired(by_seed, uniform, "accuracy_mean")) is not None:
                row["vs_uniform_accuracy"] = vs
                row["accuracy_wins_vs_uniform"] = sum(by_seed[s]["accuracy_mean"] > uniform[s]["accuracy_mean"]
                                                      for s in both if uniform[s].get("accuracy_mean") is not None)
        summary[strategy] = row
    return summary


def _cell(value: tuple[float, float | None], digits: int = 3) -> str:
    mean, ci = value
    return f"{mean:.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else "")


def markdown(summary: dict, data: Path) -> str:
    names = sorted(next(iter(summary.values()))["loss"])
    lines = [f"Dev loss on the full dev sets of `{data}`: mean ± 95% CI half-width over seeds (Student t).", "",
             "| strategy | seeds | " + " | ".join(names) + " | mean | token-weighted | mean - uniform (paired) | wins "
             "| token-weighted - uniform (paired) |",
             "|---" * (len(names) + 7) + "|"]
    for strategy, row in summary.items():
        vs = _cell(row["vs_uniform"]) if "vs_uniform" in row else "-"
        wins = f"{row['wins_vs_uniform']}/{len(row['seeds'])}" if "wins_vs_uniform" in row else "-"
        vs_weighted = _cell(row["vs_uniform_token_weighted"]) if "vs_uniform_token_weighted" in row else "-"
        lines.append(f"| {strategy} | {len(row['seeds'])} | " + " | ".join(_cell(row["loss"][n]) for n in names)
                     + f" | {_cell(row['mean'])} | {_cell(row['token_weighted'])} | {vs} | {wins} | {vs_weighted} |")
    scored = {strategy: row for strategy, row in summary.items() if "accuracy" in row}
    if scored:
        checked = sorted(next(iter(scored.values()))["accuracy"])
        lines += ["", ("Exact-match accuracy of greedy answers on held-out problems (`eval.accuracy`): mean ± 95% CI "
                       "half-width over seeds; wins: seeds with a higher mean accuracy than uniform."), "",
                  "| strategy | seeds | " + " | ".join(checked) + " | mean | mean - uniform (paired) | wins |",
                  "|---" * (len(checked) + 5) + "|"]
        for strategy, row in scored.items():
            vs = _cell(row["vs_uniform_accuracy"]) if "vs_uniform_accuracy" in row else "-"
            wins = f"{row['accuracy_wins_vs_uniform']}/{len(row['seeds'])}" if "accuracy_wins_vs_uniform" in row else "-"
            lines.append(f"| {strategy} | {len(row['seeds'])} | " + " | ".join(_cell(row["accuracy"][n]) for n in checked)
                         + f" | {_cell(row['accuracy_mean'])} | {vs} | {wins} |")
    lines += ["", ("Final sampling weights (mean over seeds), the most passes drawn over any dataset (when logged) and "
                   "the training wall time of all seeds:"), "",
              "| strategy | " + " | ".join(names) + " | max passes | train minutes |", "|---" * (len(names) + 3) + "|"]
    for strategy, row in summary.items():
        passes = f"{row['max_epochs_drawn']:.2f}" if row["max_epochs_drawn"] is not None else "-"
        lines.append(f"| {strategy} | " + " | ".join(f"{row['weights'][n]:.3f}" for n in names)
                     + f" | {passes} | {row['train_seconds'] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """Mean dev loss per dataset, over datasets and token-weighted, and (when measured) accuracy per checkable dataset
    and its mean: one bar per strategy, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(next(iter(summary.values()))["loss"])
    panels = [("dev loss (assistant tokens)", [*names, "mean", "token-weighted"],
               lambda row: [row["loss"][n] for n in names] + [row["mean"], row["token_weighted"]])]
    scored = {strategy: row for strategy, row in summary.items() if "accuracy" in row}
    if scored:
        checked = sorted(next(iter(scored.values()))["accuracy"])
        panels.append(("exact-match accuracy", [*checked, "mean"],
                       lambda row: [row["accuracy"][n] for n in checked] + [row["accuracy_mean"]]))
    figure, axes = plt.subplots(1, len(panels), figsize=(sum(max(4.0, 1.3 * len(c)) for _, c, _ in panels) + 1, 4.2),
                                squeeze=False)
    for ax, (label, columns, values_of) in zip(axes[0], panels):
        rows = summary if label.startswith("dev") else scored
        width = 0.8 / len(rows)
        for r, (strategy, row) in enumerate(rows.items()):
            values = values_of(row)
            x = [c + (r - (len(rows) - 1) / 2) * width for c in range(len(columns))]
            ax.bar(x, [m for m, _ in values], width=width, yerr=[ci or 0.0 for _, ci in values], capsize=2,
                   label=strategy, color=f"C{list(summary).index(strategy) % 10}")
        ax.set_xticks(range(len(columns)), columns, rotation=20)
        ax.set_ylabel(label)
        ax.set_title(f"{label.split(' (')[0]}, mean and 95% CI over seeds")
    axes[0][0].legend(fontsize="small", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_summary(args: Args) -> dict | None:
    runs = {name: {seed: numbers for seed in args.seeds
                   if (numbers := run_numbers(run_folder(args.out, name, seed))) is not None}
            for name in args.strategies}
    summary = summarise(runs)
    if not summary:
        return None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    (args.out / "summary.md").write_text(markdown(summary, args.data))
    plot(summary, args.out / "summary.png")
    return summary


def main(args: Args) -> None:
    start = time.perf_counter()
    if not args.summary_only:
        run_all(args)
    summary = write_summary(args)
    if summary is None:
        raise SystemExit(f"no finished runs under {args.out}")
    print((args.out / "summary.md").read_text())
    print(f"-> {args.out / 'summary.md'}, summary.json, summary.png ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main(tyro.cli(Args))
