"""lm-evaluation-harness tasks on a checkpoint, through lm-eval's Hugging Face model wrapper.

    python -m eval.harness --checkpoint runs/dynamic-mix/final                    # the paper's tasks
    python -m eval.harness --checkpoint runs/dynamic-mix/final --tasks mmlu gsm8k_cot
    python -m eval.harness --checkpoint runs/dynamic-mix/final --tasks demo_mc --include-path eval/tasks

`--tasks paper` (the default) stands for the paper's downstream tasks: mmlu, bbh, gsm8k_cot,
arc_easy, arc_challenge, boolq, each with lm-eval's default prompt and number of shots
(override with --num-fewshot). Their datasets come from the Hugging Face Hub: the first run
needs network access (or a filled HF_HOME cache); without it the run stops with a message
saying so. Local YAML tasks (`--include-path`, e.g. `eval/tasks/demo_mc/`) need no network.

Writes one result JSON per evaluated task or group to `<checkpoint or --out>/eval/<task>.json`
(eval.results); the score is acc_norm, acc or exact_match, whichever the task reports first
in that order (strict-match before flexible-extract); `seconds` is the wall time of the whole
lm-eval run, shared by the tasks it evaluated.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

from eval.generation import load_checkpoint
from eval.results import EvalResult, results_dir, run_name, settings_of, write_result

TASK_GROUPS = {"paper": ["mmlu", "bbh", "gsm8k_cot", "arc_easy", "arc_challenge", "boolq"]}
SCORE_PREFERENCE = [
    "acc_norm,none",
    "acc,none",
    "exact_match,strict-match",
    "exact_match,get-answer",
    "exact_match,flexible-extract",
    "exact_match,none",
]
HUB_ERRORS = (ConnectionError, OfflineModeIsEnabled, LocalEntryNotFoundError)


class HubUnavailable(RuntimeError):
    """A task needs a dataset from the Hugging Face Hub, which cannot be reached."""


@dataclass
class Args:
    """Evaluate a checkpoint on lm-evaluation-harness tasks."""

    checkpoint: Path
    """Checkpoint folder: model.safetensors, config.json, tokenizer files."""
    tasks: tuple[str, ...] = ("paper",)
    """lm-eval task, group or tag names; "paper" = mmlu bbh gsm8k_cot arc_easy arc_challenge boolq."""
    include_path: tuple[Path, ...] = ()
    """Folders of local YAML tasks, searched before lm-eval's own (e.g. eval/tasks)."""
    num_fewshot: int | None = None
    """Few-shot examples per prompt; None: each task's default."""
    batch_size: int = 8
    """Requests per forward pass."""
    limit: float | None = None
    """Only the first N examples of each task (a fraction if < 1); scores are then not comparable."""
    apply_chat_template: bool = False
    """Render prompts with the checkpoint's chat template (few-shot examples as turns)."""
    max_length: int | None = None
    """Longest context in tokens; None: lm-eval reads it from the model config."""
    out: Path | None = None
    """Results go to <out>/eval/ instead of <checkpoint>/eval/."""
    run_name: str | None = None
    """Row name in tables (default: the run folder's name)."""
    seed: int = 1234
    """Seed of lm-eval's samplers and of generation."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint to run."""


def expand_tasks(names: tuple[str, ...]) -> list[str]:
    """Task names with the groups of TASK_GROUPS spelled out, duplicates dropped."""
    expanded = [task for name in names for task in TASK_GROUPS.get(name, [name])]
    return list(dict.fromkeys(expanded))


def task_manager_for(tasks: list[str], include_path: tuple[Path, ...]):
    """A TaskManager that knows `tasks`. When the local folders hold all of them, lm-eval's own
    ~15k task files are not indexed (that takes seconds)."""
    paths = [str(path) for path in include_path] or None
    if paths:
        local = TaskManager(include_path=paths, include_defaults=False)
        if all(task in local.all_tasks for task in tasks):
            return local
    return TaskManager(include_path=paths)


def reached_for_hub(error: BaseException | None) -> bool:
    """Whether `error`, or an exception it was raised from, says the Hub could not be reached."""
    while error is not None:
        if isinstance(error, HUB_ERRORS):
            return True
        error = error.__cause__ or error.__context__
    return False


def reported_names(results: dict) -> list[str]:
    """The tasks and groups that get a result file: those that are no group's subtask, a group
    without an aggregate score standing for its subtasks."""
    children = results["group_subtasks"]
    nested = {child for names in children.values() for child in names}

    def expand(name: str) -> list[str]:
        if score_metric(results["results"].get(name, {})) is None and children.get(name):
            return [leaf for child in children[name] for leaf in expand(child)]
        return [name]

    return [leaf for name in results["results"] if name not in nested for leaf in expand(name)]


def score_metric(metrics: dict[str, float]) -> str | None:
    """The metric a table shows for a task: the first of SCORE_PREFERENCE it reports."""
    return next((name for name in SCORE_PREFERENCE if name in metrics), None)


def evaluate(model, tokenizer, args: Args) -> dict:
    """lm-eval's results dict; raises HubUnavailable when a task's dataset cannot be downloaded."""
    tasks = expand_tasks(args.tasks)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size, max_length=args.max_length)
    try:
        return simple_evaluate(
            model=lm,
            tasks=tasks,
            num_fewshot=args.num_fewshot,
            limit=args.limit,
            apply_chat_template=args.apply_chat_template,
            fewshot_as_multiturn=args.apply_chat_template,
            task_manager=task_manager_for(tasks, args.include_path),
            log_samples=False,
            random_seed=args.seed,
            numpy_random_seed=args.seed,
            torch_random_seed=args.seed,
            fewshot_random_seed=args.seed,
        )
    except Exception as error:
        if not reached_for_hub(error):
            raise
        hint = "" if os.environ.get("HF_HUB_OFFLINE") == "1" else " Set HF_HUB_OFFLINE=1 to fail without retrying."
        raise HubUnavailable(
            f"evaluating {tasks} needs the Hugging Face Hub to download datasets, and it cannot be reached "
            f"({error}). Run once with network access to fill the datasets cache (HF_HOME), or evaluate "
            f"local tasks with --include-path.{hint}"
        ) from error


def main(args: Args) -> list[EvalResult]:
    start = time.monotonic()
    model, tokenizer = load_checkpoint(args.checkpoint, args.trust_remote_code)
    results = evaluate(model, tokenizer, args)
    seconds = time.monotonic() - start
    written = []
    for name in reported_names(results):
        metrics = {k: v for k, v in results["results"][name].items() if isinstance(v, (int, float))}
        result = EvalResult(
            run=args.run_name or run_name(args.checkpoint),
            checkpoint=str(args.checkpoint.resolve()),
            task=name,
            metrics=metrics,
            seconds=seconds,
            score=score_metric(metrics),
            settings=settings_of(args) | {"n-shot": results["n-shot"].get(name), "lm_eval": results.get("lm_eval_version")},
        )
        path = write_result(result, results_dir(args.checkpoint, args.out))
        print(f"{name}: {result.score} = {result.value} -> {path}")
        written.append(result)
    print(f"lm-eval: {len(written)} results in {seconds:.1f} s")
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main(tyro.cli(Args))
    except HubUnavailable as error:
        raise SystemExit(f"error: {error}") from None
