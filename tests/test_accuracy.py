"""eval.accuracy: the final-answer scorer on hand-made replies, the held-out problems (scripts/make_eval_sets.py),
and main() end to end with stub answerers (exact numbers) and with an untrained tiny model (which cannot be
right)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from eval import accuracy
from eval.accuracy import final_answer, is_correct, numbers
from launch import REPO
from transformers import AutoModelForCausalLM

from models import load_tokenizer, tiny_config
from scripts import make_eval_sets

DEMO = REPO / "data" / "demo"


@pytest.mark.parametrize("reply, reference, right", [
    # math: the numbers of the final answer, in order; units, currency signs, separators and markup are free
    ("Step 1: 5 × $250 = $1,250.\nStep 2: $1,250 + $0.50 = $1,250.50.\nAnswer: $1,250.50", "$1250.5", True),
    ("Answer: 1250.50 dollars", "$1250.5", True),
    ("**Answer:** 1250.5", "$1250.5", True),
    ("Distance = 45 × 8. So the answer is 360 km.", "360 km", True),
    ("Answer: x = -3", "x = -3", True),
    ("Answer: each friend gets 5, and 3 are left over", "each friend gets 5, and 3 are left over", True),
    ("Answer: 1250", "$1250.5", False),                       # wrong number
    ("Answer: 1250.5 or 12", "$1250.5", False),               # one number too many
    ("Answer: 3 are left over, each gets 5", "each friend gets 5, and 3 are left over", False),  # order counts
    ("1250.5", "$1250.5", False),                             # no final answer marker: no answer
    ("Answer: 7\nStep 3: checking again.\nAnswer: 360 km", "360 km", True),  # the last marker counts
])
def test_math_answers(reply, reference, right):
    assert is_correct(reply, reference, "numbers") is right


@pytest.mark.parametrize("reply, reference, right", [
    # reasoning: the words of the final answer, ignoring case, punctuation and markup
    ("Step 3: Counting 2 days forward lands on Saturday.\nTherefore it will be Saturday.", "it will be Saturday.", True),
    ("THEREFORE it will be **saturday**!", "it will be Saturday.", True),
    ("Therefore: Yes, it follows necessarily.", "Yes, it follows necessarily.", True),
    ("Therefore the answer is: aunt.", "aunt.", True),
    ("Therefore it will be Sunday.", "it will be Saturday.", False),
    ("Therefore it will be Saturday, I think.", "it will be Saturday.", False),
    ("It will be Saturday.", "it will be Saturday.", False),  # no marker
])
def test_reasoning_answers(reply, reference, right):
    assert is_correct(reply, reference, "words") is right


def test_final_answer_and_numbers_by_hand():
    assert final_answer("Step 1: ...\nAnswer: 14 weeks\n") == "14 weeks"
    assert final_answer("Conclusion: Therefore the street gets wet.") == "the street gets wet"
    assert final_answer("no marker here") is None
    assert numbers("$1,250.50 and -3 and 2,5") == [1250.5, -3.0, 2.0, 5.0]  # "2,5" is two numbers, not 2500


def demo_user_turns() -> list[str]:
    """Every user turn of the demo's math and reasoning records, read straight from the files."""
    turns = []
    for path in [DEMO / "train" / n / "part-000.jsonl" for n in ("math", "reasoning")] + \
                [DEMO / "dev" / f"{n}.jsonl" for n in ("math", "reasoning")]:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if "instruction" in record:
                turns.append(record["instruction"] + "\n\n" + record["input"])
            else:
                turns += [t["value"] for t in record["conversations"] if t["from"] == "human"]
    return turns


def test_held_out_problems_are_new_fixed_and_committed(tmp_path):
    """The committed data/demo/eval/ is what scripts/make_eval_sets.py writes, and none of its problems is in a user
    turn of the demo's math or reasoning records (read straight from the files)."""
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("eval"))
    assert make_eval_sets.write(folder) == {"math": 100, "reasoning": 100}  # code and explain have no final answer
    for name in ("math", "reasoning"):
        assert (folder / "eval" / f"{name}.jsonl").read_bytes() == (DEMO / "eval" / f"{name}.jsonl").read_bytes(), \
            f"data/demo/eval/{name}.jsonl is stale: rerun scripts/make_eval_sets.py"
    seen = "\0".join(demo_user_turns())
    problems = accuracy.load_problems(DEMO)
    for name, batch in problems.items():
        assert len(batch) == 100 and len({p.messages[-1]["content"] for p in batch}) == 100
        for problem in batch:
            assert problem.messages[-1]["role"] == "user" and problem.reference
            prompt = problem.messages[-1]["content"].split("\n\n")[-1]  # the problem itself, without an instruction
            assert prompt not in seen, prompt
    assert {p.compare for p in problems["math"]} == {"numbers"} and {p.compare for p in problems["reasoning"]} == {"words"}
    assert [p.reference for p in accuracy.load_problems(DEMO, 3)["math"]] == ["6 coins", "12 shells", "$629"]


def small_checkable_data(root: Path) -> Path:
    """math, reasoning and code with a few demo records each, and held-out problems for the first two."""
    for name in ("math", "reasoning", "code"):
        lines = (DEMO / "train" / name / "part-000.jsonl").read_text().splitlines()
        (root / "train" / name).mkdir(parents=True)
        (root / "dev").mkdir(exist_ok=True)
        (root / "train" / name / "part.jsonl").write_text("\n".join(lines[:10]) + "\n")
        (root / "dev" / f"{name}.jsonl").write_text("\n".join(lines[10:14]) + "\n")
    make_eval_sets.write(root, count=4)
    return root


def test_main_scores_stub_answerers_exactly(tmp_path):
    data = small_checkable_data(tmp_path / "data")
    checkpoint = tmp_path / "run" / "final"
    checkpoint.mkdir(parents=True)
    problems = accuracy.load_problems(data)

    def half_right(batch):  # right on the 1st and 3rd problem of each dataset, reformatted; wrong on the rest
        return [f"Let me think.\n**Answer:** {p.reference.upper()}" if i % 2 == 0 else "Answer: 0 nothing"
                for i, p in enumerate(batch)]

    (result,) = accuracy.main(accuracy.Args(checkpoints=(checkpoint,), data=data), replies=half_right)
    assert result.metrics == {"math/accuracy": 0.5, "math/correct": 2, "math/examples": 4,
                              "reasoning/accuracy": 0.5, "reasoning/correct": 2, "reasoning/examples": 4, "accuracy": 0.5}
    stored = json.loads((checkpoint / "eval" / "accuracy.json").read_text())
    assert stored["task"] == "accuracy" and stored["score"] == "accuracy" and stored["run"] == "run"
    samples = [json.loads(line) for line in (checkpoint / "eval" / "accuracy_samples.jsonl").read_text().splitlines()]
    assert [s["correct"] for s in samples] == [True, False, True, False] * 2
    (result,) = accuracy.main(accuracy.Args(checkpoints=(checkpoint,), data=data),
                              replies=lambda batch: ["Answer: " + p.reference for p in batch])

    assert result.metrics["accuracy"] == 1.0 and result.metrics["math/correct"] == 4


def test_main_on_an_untrained_tiny_model_is_never_right(tmp_path):
    """Greedy replies of random weights: a few tokens of noise, no final answer, accuracy exactly 0."""
    data = small_checkable_data(tmp_path / "data")
    tokenizer = load_tokenizer("tiny")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id))
    checkpoint = tmp_path / "untrained" / "final"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    (result,) = accuracy.main(accuracy.Args(checkpoints=(checkpoint,), data=data, examples=3, max_new_tokens=12))
    assert result.metrics == {"math/accuracy": 0.0, "math/correct": 0, "math/examples": 3,
                              "reasoning/accuracy": 0.0, "reasoning/correct": 0, "reasoning/examples": 3, "accuracy": 0.0}
    samples = [json.loads(line) for line in (checkpoint / "eval" / "accuracy_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and all(s["answer"] is None or not s["correct"] for s in samples)
