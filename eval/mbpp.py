"""MBPP (Austin et al., 2021), the paper's code benchmark: write a Python function from a one-line task and
three asserts; run it against the asserts in the sandbox (`eval.sandbox`, never lm-eval's unsandboxed
execution), report pass@k.

    python -m eval.mbpp --checkpoint runs/dynamic-mix/final                      # the 500 test problems, hub
    python -m eval.mbpp --checkpoint runs/dynamic-mix/final --problems mbpp_test.jsonl
    python -m eval.mbpp --checkpoint runs/dynamic-mix/final --mode chat

Problems: the test split of `google-research-datasets/mbpp` (config `full`, task ids 11-510) through
`datasets` (the first run needs the Hub, later ones read the cache), or a local JSONL file of records in
that dataset's shape (`task_id`, `text`, `test_list`, optional `test_setup_code`; the `sanitized` config's
`prompt` and `test_imports` work too). The few-shot examples are MBPP tasks 2, 3 and 4, so a file that
holds them is refused (keep its test split).

Prompt, the paper's 3-shot format (Austin et al.; lm-eval's `mbpp` task): each example is
"You are an expert Python programmer, and here is your task: {text} Your code should pass these
tests:\\n\\n{asserts}\\n[BEGIN]\\n{code}\\n[DONE]", examples joined by a blank line, then the problem up to
"[BEGIN]\\n". `completion` (default) continues that raw prompt; `chat` puts each example in a user turn
and its code in an assistant turn of the checkpoint's chat template. The completion is cut at "[DONE]"
(and taken out of a ``` block if it wrote one); the program is test_setup_code, the completion, the asserts.

Writes `<checkpoint or --out>/eval/mbpp.json` (eval.results; score pass@1, in the average) and every sample
with its outcome to `mbpp_samples.jsonl` beside it. `eval.harness --tasks paper` runs this too.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from reading import sources
from eval.generation import chat_prompt, generate, load_checkpoint, model_folder
from eval.hub import hub_unavailable, reached_for_hub
from eval.humaneval import check_completions, write_samples
from eval.results import EvalResult, results_dir, run_name, settings_of, write_result
from eval.sandbox import Limits

HUB_DATASET = ("google-research-datasets/mbpp", "full", "test")
STOP = ["[DONE]"]
SHOTS = [  # MBPP tasks 2, 3, 4 (the prompt split), as Austin et al. and lm-eval prompt with them
    {
        "task_id": 2,
        "text": "Write a function to find the similar elements from the given two tuple lists.",
        "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ",
        "test_list": [
            "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
            "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
            "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
        ],
    },
    {
        "task_id": 3,
        "text": "Write a python function to identify non-prime numbers.",
        "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):\r\n"
                "        if n % i == 0:\r\n            result = True\r\n    return result",
        "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True", "assert is_not_prime(35) == True"],
    },
    {
        "task_id": 4,
        "text": "Write a function to find the largest integers from a given list of numbers using heap queue algorithm.",
        "code": "import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n  return largest_nums",
        "test_list": [
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]",
        ],
    },
]
CODE_BLOCK = re.compile(r"```(?:python|py)?[^\n]*\n(.*?)(?:```|$)", re.DOTALL)


@dataclass
class Args:
    """Evaluate a checkpoint on MBPP."""

    checkpoint: Path
    """Checkpoint folder: model.safetensors, config.json, tokenizer files."""
    problems: Path | None = None
    """Local JSONL file of MBPP problems; default: the test split from the Hugging Face Hub."""
    mode: Literal["completion", "chat"] = "completion"
    """completion: the raw 3-shot prompt (the paper's); chat: the examples as turns of the chat template."""
    shots: int = 3
    """Few-shot examples (0 to 3)."""
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
    limit: float | None = None
    """Only the first N problems (a fraction if < 1; quick checks, the score is then not comparable)."""
    timeout_s: float = 10.0
    """Wall-clock limit of one program, interpreter start included."""
    workers: int | None = None
    """Programs run in parallel; None: one per CPU."""
    out: Path | None = None
    """Results go to <out>/eval/ instead of <checkpoint>/eval/."""
    run_name: str | None = None
    """Row name in tables (default: the run folder's name)."""
    seed: int = 0
    """Seed of the sampling."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint to run."""


# --------------------------------------------------------------------------- problems


def problem_of(record: dict, where: str) -> dict:
    """An MBPP record (`full` or `sanitized` shape) -> {task_id, text, test_list, setup}; ValueError naming `where`."""
    text = record.get("text", record.get("prompt"))
    tests = record.get("test_list")
    if not isinstance(text, str) or not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise ValueError(f"{where}: not an MBPP problem (needs a string `text` or `prompt` and a list of assert strings "
                         f"`test_list`; keys {sorted(record)})")
    setup = record.get("test_setup_code") or "\n".join(record.get("test_imports") or [])
    return {"task_id": record.get("task_id"), "text": text, "test_list": tests, "setup": setup}


def load_problems(path: Path | None) -> list[dict]:
    """The problems of a local JSONL file, or of the hub's test split when `path` is None."""
    if path is None:
        import datasets

        try:
            rows = datasets.load_dataset(HUB_DATASET[0], HUB_DATASET[1], split=HUB_DATASET[2])
        except Exception as error:
            if reached_for_hub(error):
                raise hub_unavailable(f"MBPP's test split ({HUB_DATASET[0]})", error, "pass --problems <local JSONL file>") from error
            raise
        return [problem_of(dict(row), f"{HUB_DATASET[0]} row {i}") for i, row in enumerate(rows)]
    problems = [problem_of(record, f"{path}:{line}") for line, record in enumerate(sources.read_jsonl(path), start=1)]
    shots = sorted({shot["task_id"] for shot in SHOTS} & {p["task_id"] for p in problems})
    if shots:
        raise ValueError(f"{path} holds MBPP tasks {shots}, the few-shot examples; keep only its test split (task ids 11-510)")
    return problems


# --------------------------------------------------------------------------- prompts and programs


def task_prompt(problem: dict) -> str:
    """One problem as the prompt states it, up to (not including) "[BEGIN]"."""
    tests = "\n".join(problem["test_list"])
    return f"You are an expert Python programmer, and here is your task: {problem['text']} Your code should pass these tests:\n\n{tests}\n"


def generation_prompts(problems: list[dict], mode: str, shots: int, tokenizer) -> list[str]:
    """What the model continues, one string per problem."""
    examples = SHOTS[:shots]
    if mode == "completion":
        prefix = "".join(f"{task_prompt(s)}[BEGIN]\n{s['code']}\n[DONE]\n\n" for s in examples)
        return [f"{prefix}{task_prompt(p)}[BEGIN]\n" for p in problems]
    turns = [m for s in examples for m in ({"role": "user", "content": task_prompt(s)}, {"role": "assistant", "content": s["code"]})]
    return [chat_prompt(tokenizer, [*turns, {"role": "user", "content": task_prompt(p)}]) for p in problems]


def code_of(completion: str) -> str:
    """The code of a completion: the inside of its first ``` block when it has one, else all of it."""
    block = CODE_BLOCK.search(completion)
    return block.group(1) if block else completion


def program(problem: dict, completion: str) -> str:
    """The file the sandbox runs: the test setup, the model's code, the asserts."""
    tests = "\n".join(problem["test_list"])
    return f"{problem['setup']}\n{code_of(completion)}\n\n{tests}\n"


def check_args(args: Args) -> None:
    if args.num_samples > 1 and args.temperature <= 0:
        raise SystemExit("--num-samples > 1 needs --temperature > 0 (greedy samples are all the same)")
    if not 0 <= args.shots <= len(SHOTS):
        raise SystemExit(f"--shots must be 0 to {len(SHOTS)}, got {args.shots}")


def selected_problems(args: Args) -> list[dict]:
    """The problems to evaluate: loaded (hub or --problems), the first --limit of them."""
    problems = load_problems(args.problems)
    if args.limit is None:
        return problems
    return problems[: int(args.limit) if args.limit >= 1 else round(args.limit * len(problems))]


def run(model, tokenizer, problems: list[dict], args: Args, start: float) -> EvalResult:
    """Generate, run and score with a loaded model; write the result and the samples. `start` (time.monotonic)
    is when the evaluation began, model loading included."""
    prompts = generation_prompts(problems, args.mode, args.shots, tokenizer)
    texts = generate(
        model,
        tokenizer,
        [p for p in prompts for _ in range(args.num_samples)],
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=args.batch_size,
        stop=STOP,
        add_special_tokens=args.mode == "completion",
        seed=args.seed,
        desc="mbpp",
    )
    completions = [texts[i : i + args.num_samples] for i in range(0, len(texts), args.num_samples)]
    metrics, runs = check_completions(problems, completions, Limits(timeout_s=args.timeout_s), args.workers, program)
    metrics["problems"] = len(problems)
    result = EvalResult(
        run=args.run_name or run_name(args.checkpoint),
        checkpoint=str(args.checkpoint.resolve()),
        task="mbpp",
        metrics=metrics,
        seconds=time.monotonic() - start,
        score="pass@1",
        settings=settings_of(args) | {"problems_source": str(args.problems) if args.problems else "/".join(HUB_DATASET)},
    )
    directory = results_dir(args.checkpoint, args.out)
    path = write_result(result, directory)
    write_samples(directory / "mbpp_samples.jsonl", problems, completions, runs)
    print(f"mbpp {metrics} ({result.seconds:.1f} s) -> {path}")
    return result


def main(args: Args) -> EvalResult:
    args.checkpoint = Path(model_folder(args.checkpoint))  # a run folder: its final/ or newest checkpoint
    check_args(args)
    start = time.monotonic()
    problems = selected_problems(args)  # before the model: a missing file or an unreachable hub fails fast
    model, tokenizer = load_checkpoint(args.checkpoint, args.trust_remote_code)
    return run(model, tokenizer, problems, args, start)


if __name__ == "__main__":
    from eval.hub import HubUnavailable

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main(tyro.cli(Args))
    except (HubUnavailable, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
