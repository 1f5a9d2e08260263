"""The one result shape every evaluation tool writes, where it goes, and how it is read back.

A result is one JSON file, `<checkpoint or --out>/eval/<task>.json`:

    {"run": "dynamic-mix", "checkpoint": "/abs/runs/dynamic-mix/final", "task": "humaneval",
     "metrics": {"pass@1": 0.134}, "score": "pass@1", "in_average": true, "seconds": 41.2,
     "settings": {"mode": "chat", "max_new_tokens": 512, ...}}

`score` names the metric the paper reports for the task: the number `eval.show` puts in its
table (null when the task has no single number, e.g. MT-Bench answers awaiting a judge).
`in_average` says whether that number enters the average over tasks (downstream scores do,
dev loss does not).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

RESULTS_FOLDER = "eval"
FIELDS = {"run", "checkpoint", "task", "metrics", "seconds"}


@dataclass
class EvalResult:
    """One evaluation of one checkpoint on one task."""

    run: str
    """Row name in tables: the training run (see `run_name`)."""
    checkpoint: str
    """Absolute path of the evaluated checkpoint folder."""
    task: str
    """Column name in tables, also the file stem: "humaneval", "dev_loss", "mmlu", ..."""
    metrics: dict[str, float]
    """Every number the tool measured, by name."""
    seconds: float
    """Wall time of the evaluation, model loading included."""
    score: str | None = None
    """The key of `metrics` the paper reports for this task, or None."""
    in_average: bool = True
    """Whether `score` enters the average over tasks."""
    settings: dict = field(default_factory=dict)
    """The options the evaluation ran with (for reproducing it)."""

    @property
    def value(self) -> float | None:
        """The reported number, None when the task has no score."""
        return None if self.score is None else self.metrics.get(self.score)


def run_name(checkpoint: Path | str) -> str:
    """`runs/dynamic-mix/final` -> "dynamic-mix"; `runs/dynamic-mix/checkpoints/step_200` -> "dynamic-mix-step_200"
    (a trajectory's points stay apart); any other folder -> its own name."""
    path = Path(checkpoint).resolve()
    if path.parent.name == "checkpoints":
        return f"{path.parent.parent.name}-{path.name}"
    return path.parent.name if path.name == "final" else path.name


def results_dir(checkpoint: Path | str, out: Path | str | None = None) -> Path:
    """Where results of `checkpoint` go: `<out>/eval` when `out` is given, else `<checkpoint>/eval`."""
    return Path(out if out is not None else checkpoint) / RESULTS_FOLDER


def settings_of(args) -> dict:
    """A tool's options (its tyro dataclass) as JSON-ready settings: paths become strings."""
    return json.loads(json.dumps(asdict(args), default=str))


def write_result(result: EvalResult, directory: Path | str) -> Path:
    """Write `result` to `<directory>/<task>.json` and return the path."""
    path = Path(directory) / f"{result.task}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return path


def read_result(path: Path | str) -> EvalResult | None:
    """The result in `path`, or None if the file is JSON of another shape."""
    try:
        record = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not FIELDS <= record.keys():
        return None
    known = EvalResult.__dataclass_fields__.keys()
    return EvalResult(**{k: v for k, v in record.items() if k in known})


def collect_results(paths: list[Path | str]) -> list[EvalResult]:
    """Every result under `paths` (result files, results folders, checkpoints or run folders,
    searched recursively for `eval/*.json`). A later result for the same run and task replaces
    an earlier one, with a warning."""
    files = []
    for path in map(Path, paths):
        if path.is_file():
            files.append(path)
        elif path.name == RESULTS_FOLDER:
            files += sorted(path.glob("*.json"))
        else:
            files += sorted(path.rglob(f"{RESULTS_FOLDER}/*.json"))
    results: dict[tuple[str, str], EvalResult] = {}
    for file in files:
        result = read_result(file)
        if result is None:
            continue
        if (result.run, result.task) in results:
            logger.warning("two results for run %r task %r; keeping %s", result.run, result.task, file)
        results[(result.run, result.task)] = result
    return list(results.values())
