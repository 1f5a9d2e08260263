"""One table of every evaluation result: rows are runs, columns are tasks, plus their average.

    python -m eval.show runs/uniform runs/dynamic-mix          # run folders, checkpoints or eval/ folders
    python -m eval.show runs --out runs/summary

Collects the result JSON files the eval tools wrote (`.../eval/<task>.json`, see eval.results)
and prints a markdown table of each task's score. "average" is the mean over the tasks whose
score enters the paper's average (downstream tasks, not dev loss), shown only for runs that
have all of them, so that averages compare like with like. Results without a score (MT-Bench
answers waiting for a judge) are listed under the table. Writes `<out>/summary.md` and a bar
chart of the averaged tasks, `<out>/summary.png`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from eval.report import Grid, bar_chart, markdown_table
from eval.results import EvalResult, collect_results

AVERAGE = "average"


@dataclass
class Args:
    """Collect evaluation results into one table."""

    paths: tyro.conf.Positional[tuple[Path, ...]] = (Path("runs"),)
    """Run folders, checkpoints, eval/ folders or result files (searched recursively for eval/*.json)."""
    out: Path = Path("runs/summary")
    """Folder for summary.md and summary.png."""


def summary_grid(results: list[EvalResult]) -> tuple[Grid, list[str], list[str]]:
    """(run -> column -> score, the averaged columns followed by "average", the other columns).
    Runs and tasks are sorted by name."""
    averaged = sorted({r.task for r in results if r.value is not None and r.in_average})
    others = sorted({r.task for r in results if r.value is not None and not r.in_average})
    grid: Grid = {}
    for result in sorted(results, key=lambda r: r.run):
        if result.value is not None:
            grid.setdefault(result.run, {})[result.task] = result.value
    for scores in grid.values():
        complete = averaged and all(task in scores for task in averaged)
        scores[AVERAGE] = sum(scores[task] for task in averaged) / len(averaged) if complete else None
    return grid, [*averaged, AVERAGE] if averaged else [], others


def summary(results: list[EvalResult]) -> tuple[str, Grid, list[str]]:
    """(markdown of the table and of the unscored results, the grid, the averaged columns)."""
    grid, averaged, others = summary_grid(results)
    text = markdown_table(grid, averaged + others) if grid else "no scored results\n"
    unscored = sorted((r for r in results if r.value is None), key=lambda r: (r.run, r.task))
    if unscored:
        text += "\nwithout a score:\n" + "".join(
            f"- {r.run} / {r.task}: {r.settings.get('answer_file', r.checkpoint)}\n" for r in unscored
        )
    return text, grid, averaged


def main(args: Args) -> str:
    results = collect_results(list(args.paths))
    if not results:
        raise SystemExit(f"no result files (eval/<task>.json) under {', '.join(map(str, args.paths))}")
    text, grid, averaged = summary(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(text)
    if averaged:
        bar_chart(grid, averaged, args.out / "summary.png", ylabel="score", title="evaluation")
    print(text)
    print(f"-> {args.out / 'summary.md'}" + (f", {args.out / 'summary.png'}" if averaged else ""))
    return text


if __name__ == "__main__":
    main(tyro.cli(Args))
