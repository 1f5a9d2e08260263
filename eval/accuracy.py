"""Exact-match accuracy of greedy answers on held-out problems whose final answer can be checked.

    python -m eval.accuracy runs/dynamic-mix/final                       # against data/demo
    python -m eval.accuracy runs/a/final runs/b/final --data data/unequal

The paper judged mixtures by downstream accuracy, not by dev loss. A data folder's held-out problems are
`<data>/eval/<name>.jsonl` (scripts/make_eval_sets.py writes them for the demo's `math` and `reasoning`, whose
generators end every answer in a final answer, leaving out every problem the folder's train and dev sets hold;
data/demo/eval/ is committed). Each is asked with its first user turn (and system prompt), the checkpoint answers
greedily, and the answer counts when its final answer matches the one the problem's worked answer ends in:

- the final answer is the rest of the line after the last answer marker ("answer:", "the answer is",
  "therefore", "conclusion:"); a reply without a marker has no answer and is wrong;
- `numbers` (math): the numbers in it must equal the reference's numbers, in order ("$1,250.50", "1250.5" and
  "1250.50 dollars" agree; units and wording are free, since the question fixes them);
- `words` (reasoning): its words must equal the reference's, ignoring case, punctuation and markup.

The reference is read from the worked answer by the same extraction, so a reply that ends the way the training
answers do is scored the way they would be.

Writes `<checkpoint>/eval/accuracy.json` (eval.results: `<name>/accuracy`, `<name>/correct`,
`<name>/examples` per dataset, and `accuracy`, the mean over datasets) and every question, reply and verdict
to `<checkpoint>/eval/accuracy_samples.jsonl`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tyro

from eval.generation import chat_prompt, generate, load_checkpoint
from eval.results import EvalResult, results_dir, run_name, settings_of, write_result
from reading.records import to_messages

MARKERS = ("answer:", "the answer is", "therefore", "conclusion:")
"""Where a final answer starts (the last one in a reply counts), as the demo generators write them."""
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


# --------------------------------------------------------------------------------------------------
# Final answers and their comparison


def final_answer(text: str) -> str | None:
    """The rest of the line after the last answer marker, without the colon before it or the full stop after it; None
    without a marker."""
    lowered = text.lower()
    found = [(lowered.rfind(marker), marker) for marker in MARKERS]
    position, marker = max(found)
    if position < 0:
        return None
    rest = text[position + len(marker):].split("\n", 1)[0]
    return rest.strip().lstrip(":").strip().rstrip(".").strip()


def numbers(answer: str) -> list[float]:
    """The numbers in an answer, in order: thousands separators and currency signs are not part of a number's value."""
    plain = re.sub(r"(?<=\d),(?=\d{3}\b)", "", answer)
    return [float(n) for n in NUMBER.findall(plain)]


def words(answer: str) -> list[str]:
    """The answer's words, lower case, without punctuation or markup."""
    return re.sub(r"[^0-9a-z]+", " ", answer.lower()).split()


def is_correct(reply: str, reference: str, compare: str) -> bool:
    """Whether the final answer of `reply` matches `reference` (itself a final answer) under `compare`."""
    answer = final_answer(reply)
    if answer is None:
        return False
    if compare == "numbers":
        expected = numbers(reference)
        return bool(expected) and numbers(answer) == expected
    if compare == "words":
        return words(answer) == words(reference)
    raise ValueError(f"compare must be 'numbers' or 'words', got {compare!r}")


# --------------------------------------------------------------------------------------------------
# Held-out problems


@dataclass(frozen=True)
class Problem:
    messages: list[dict[str, str]]  # the conversation up to the first assistant turn
    reference: str  # the final answer the worked answer ends in
    worked: str  # the worked answer
    compare: str  # "numbers" or "words"


def load_problems(data: Path | str, examples: int | None = None) -> dict[str, list[Problem]]:
    """The held-out problems of `data` (`<data>/eval/<name>.jsonl`), the first `examples` of each (None: all)."""
    folder = Path(data) / "eval"
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        raise SystemExit(f"{folder}: no held-out problems (<name>.jsonl); write them with "
                         f"`python scripts/make_eval_sets.py --data {data}`")
    problems = {}
    for path in files:
        batch = []
        for number, line in enumerate(path.read_text().splitlines()[:examples], 1):
            record = json.loads(line)
            messages = to_messages(record)
            first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
            reference = final_answer(messages[first]["content"])
            if reference is None or record.get("compare") not in ("numbers", "words"):
                raise ValueError(f"{path}:{number}: a problem needs a worked answer that ends in a final answer and "
                                 f"`compare` (numbers or words)")
            batch.append(Problem(messages[:first], reference, messages[first]["content"], record["compare"]))
        problems[path.stem] = batch
    return problems


def has_problems(data: Path | str) -> bool:
    return any((Path(data) / "eval").glob("*.jsonl"))


# --------------------------------------------------------------------------------------------------
# Scoring a checkpoint


Generator = Callable[[list[Problem]], list[str]]
"""Problems -> one reply to each one's conversation."""
ROOM = 1.5
"""A reply may run this many times as long as the longest worked answer of its dataset (in the checkpoint's tokens):
one that is still going past that will not end in the right answer, and greedy decoding of a batch runs as long as
its longest reply, so the bound is most of the evaluation's time."""


def greedy_replies(model, tokenizer, max_new_tokens: int | None, batch_size: int) -> Generator:
    """The checkpoint's greedy replies, at most `max_new_tokens` tokens (None: ROOM times the longest worked answer)."""
    def replies(problems: list[Problem]) -> list[str]:
        prompts = [chat_prompt(tokenizer, p.messages) for p in problems]
        longest = max(len(tokenizer(p.worked, add_special_tokens=False)["input_ids"]) for p in problems)
        limit = max_new_tokens or math.ceil(ROOM * longest)
        return generate(model, tokenizer, prompts, max_new_tokens=limit, batch_size=batch_size, desc="answering")
    return replies


def score(problems: dict[str, list[Problem]], replies: Generator) -> tuple[dict[str, float], list[dict]]:
    """(metrics, samples): per dataset its accuracy, correct answers and examples, and `accuracy`, their mean over
    datasets (every dataset counts the same, as the mean dev loss does)."""
    metrics, samples = {}, []
    for name, batch in problems.items():
        answers = replies(batch)
        verdicts = [is_correct(a, p.reference, p.compare) for a, p in zip(answers, batch)]
        metrics |= {f"{name}/accuracy": sum(verdicts) / len(batch), f"{name}/correct": sum(verdicts),
                    f"{name}/examples": len(batch)}
        samples += [{"dataset": name, "prompt": p.messages[-1]["content"], "reference": p.reference, "reply": a,
                     "answer": final_answer(a), "correct": v} for p, a, v in zip(batch, answers, verdicts)]
    metrics["accuracy"] = sum(metrics[f"{name}/accuracy"] for name in problems) / len(problems)
    return metrics, samples


@dataclass
class Args:
    """Exact-match accuracy of greedy answers on held-out checkable problems."""

    checkpoints: tyro.conf.Positional[tuple[Path, ...]]
    """Checkpoint folders (a run's final/)."""
    data: Path = Path(__file__).resolve().parents[1] / "data" / "demo"
    """The data folder the checkpoints were tuned on; its held-out problems are `<data>/eval/<name>.jsonl`."""
    examples: int | None = None
    """The first this many problems of each dataset (default: all)."""
    max_new_tokens: int | None = None
    """Longest reply (default: 1.5 times the longest worked answer of the dataset's problems)."""
    batch_size: int = 50
    """Prompts per generate() call (a tiny model's decoding step costs about the same for one prompt as for many)."""
    run_names: tuple[str, ...] = ()
    """Names of the runs in the results (default: the run folders' names)."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoints to run."""


def main(args: Args, replies: Generator | None = None) -> list[EvalResult]:
    """Score every checkpoint; `replies` replaces the checkpoint's own greedy answers (tests)."""
    if not args.checkpoints:
        raise SystemExit("name one or more checkpoint folders, e.g. `python -m eval.accuracy runs/<run>/final`")
    if args.run_names and len(args.run_names) != len(args.checkpoints):
        raise SystemExit("--run-names needs one name per checkpoint")
    problems = load_problems(args.data, args.examples)
    results = []
    for checkpoint, name in zip(args.checkpoints, args.run_names or [run_name(c) for c in args.checkpoints]):
        start = time.monotonic()
        answer = replies
        if answer is None:
            model, tokenizer = load_checkpoint(checkpoint, args.trust_remote_code)
            answer = greedy_replies(model, tokenizer, args.max_new_tokens, args.batch_size)
        metrics, samples = score(problems, answer)
        result = EvalResult(run=name, checkpoint=str(Path(checkpoint).resolve()), task="accuracy", metrics=metrics,
                            seconds=time.monotonic() - start, score="accuracy", in_average=True,
                            settings=settings_of(args))
        folder = results_dir(checkpoint)
        write_result(result, folder)
        (folder / "accuracy_samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
        results.append(result)
        print(f"{name}: " + ", ".join(f"{n} {metrics[f'{n}/accuracy']:.3f} ({metrics[f'{n}/correct']}/"
                                      f"{metrics[f'{n}/examples']})" for n in problems)
              + f"; mean {metrics['accuracy']:.3f} -> {folder / 'accuracy.json'}")
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
