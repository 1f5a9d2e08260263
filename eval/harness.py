"""lm-evaluation-harness tasks on a checkpoint, through lm-eval's Hugging Face model wrapper.

    python -m eval.harness --checkpoint runs/dynamic-mix/final                    # the paper's tasks
    python -m eval.harness --checkpoint runs/dynamic-mix/final --tasks mmlu gsm8k_cot
    python -m eval.harness --checkpoint runs/dynamic-mix/final --tasks demo_mc --include-path eval/tasks

`--tasks paper` (the default) stands for the paper's downstream tasks: mmlu, bbh, gsm8k_cot,
mbpp, arc_easy, arc_challenge, boolq, each with lm-eval's default prompt and number of shots
(override with --num-fewshot). Their datasets come from the Hugging Face Hub: the first run
needs network access (or a filled HF_HOME cache); without it the run stops with a message
saying so. Local YAML tasks (`--include-path`, e.g. `eval/tasks/demo_mc/`) need no network.

mbpp executes model-written code, so it never goes through lm-eval (whose code tasks run it
unsandboxed): the harness hands it, with the loaded model, to `eval.mbpp` (the paper's 3-shot
prompt, programs run in `eval.sandbox`; --apply-chat-template means its chat mode), which writes
`eval/mbpp.json` beside the others.

Writes one result JSON per evaluated task or group to `<checkpoint or --out>/eval/<task>.json`
(eval.results); the score is acc_norm, acc or exact_match, whichever the task reports first
in that order (strict-match before flexible-extract); `seconds` is the wall time of the whole
lm-eval run, shared by the tasks it evaluated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from eval import extras, mbpp
from eval.generation import load_checkpoint, model_folder
from eval.hub import HubUnavailable, hub_unavailable, reached_for_hub
from eval.results import EvalResult, results_dir, run_name, settings_of, write_result

TASK_GROUPS = {"paper": ["mmlu", "bbh", "gsm8k_cot", "mbpp", "arc_easy", "arc_challenge", "boolq"]}
SANDBOXED_TASKS = {"mbpp"}
"""Tasks that run model-written code: evaluated by routemix's own module (eval.mbpp), never by lm-eval."""
SCORE_PREFERENCE = [
    "acc_norm,none",
    "acc,none",
    "exact_match,strict-match",
    "exact_match,get-answer",
    "exact_match,flexible-extract",
    "exact_match,none",
]


@dataclass
class Args:
    """Evaluate a checkpoint on lm-evaluation-harness tasks."""

    checkpoint: Path
    """Checkpoint folder: model.safetensors, config.json, tokenizer files."""
    tasks: tuple[str, ...] = ("paper",)
    """lm-eval task, group or tag names; "paper" = mmlu bbh gsm8k_cot mbpp arc_easy arc_challenge boolq."""
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
    mbpp_problems: Path | None = None
    """The mbpp task's problems from a local JSONL file (eval.mbpp's --problems) instead of the hub's test split."""
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


def lm_eval_tasks(names: tuple[str, ...]) -> list[str]:
    """The expanded tasks that lm-eval evaluates: all but SANDBOXED_TASKS."""
    return [task for task in expand_tasks(names) if task not in SANDBOXED_TASKS]


def mbpp_args(args: Args) -> mbpp.Args:
    """eval.mbpp's settings for a harness run: the same checkpoint, output, limit and batch size; --mbpp-problems;
    chat mode with --apply-chat-template; --num-fewshot shots (default 3)."""
    return mbpp.Args(
        checkpoint=args.checkpoint, problems=args.mbpp_problems, mode="chat" if args.apply_chat_template else "completion",
        shots=3 if args.num_fewshot is None else args.num_fewshot, batch_size=args.batch_size, limit=args.limit,
        out=args.out, run_name=args.run_name, seed=args.seed, trust_remote_code=args.trust_remote_code,
    )


def HFLM(**kwargs):
    """lm-eval's Hugging Face model wrapper (lm-eval is an evaluation extra, imported when used)."""
    return extras.require("lm_eval.models.huggingface", "eval.harness").HFLM(**kwargs)


def simple_evaluate(**kwargs) -> dict:
    """lm-eval's `simple_evaluate` (imported when used)."""
    return extras.require("lm_eval", "eval.harness").simple_evaluate(**kwargs)


def task_manager_for(tasks: list[str], include_path: tuple[Path, ...]):
    """A TaskManager that knows `tasks`. When the local folders hold all of them, lm-eval's own
    ~15k task files are not indexed (that takes seconds)."""
    TaskManager = extras.require("lm_eval.tasks", "eval.harness").TaskManager
    paths = [str(path) for path in include_path] or None
    if paths:
        local = TaskManager(include_path=paths, include_defaults=False)
        if all(task in local.all_tasks for task in tasks):
            return local
    return TaskManager(include_path=paths)


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
    """lm-eval's results dict for `lm_eval_tasks(args.tasks)`; raises HubUnavailable when a task's dataset cannot
    be downloaded."""
    tasks = lm_eval_tasks(args.tasks)
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
        raise hub_unavailable(f"evaluating {tasks}", error, "evaluate local tasks with --include-path") from error


def main(args: Args) -> list[EvalResult]:
    args.checkpoint = Path(model_folder(args.checkpoint))  # a run folder: its final/ or newest checkpoint
    start = time.monotonic()
    if lm_eval_tasks(args.tasks):
        extras.require("lm_eval", "eval.harness")  # before the model loads
    code_args = mbpp_args(args) if SANDBOXED_TASKS & set(expand_tasks(args.tasks)) else None
    if code_args is not None:
        mbpp.check_args(code_args)
        problems = mbpp.selected_problems(code_args)  # before the model: an unreachable hub fails fast
    model, tokenizer = load_checkpoint(args.checkpoint, args.trust_remote_code)
    written = []
    if lm_eval_tasks(args.tasks):
        written += write_lm_eval_results(evaluate(model, tokenizer, args), args, time.monotonic() - start)
    if code_args is not None:
        written.append(mbpp.run(model, tokenizer, problems, code_args, time.monotonic()))
    return written


def write_lm_eval_results(results: dict, args: Args, seconds: float) -> list[EvalResult]:
    """One result file per task or group lm-eval reported."""
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
